//! `lstmkd predict`: images (or clip folders) classified with a checkpoint.

use std::path::PathBuf;

use anyhow::Result;

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// A checkpoint from train, distill (best.ckpt, deployed.ckpt) or import.
    #[arg(long)]
    checkpoint: PathBuf,
    /// Images (PNG/JPEG) and folders of images (searched recursively); for a clip checkpoint,
    /// clip folders (their frames sorted by name) and folders holding clip folders.
    #[arg(required = true, value_name = "FILES_OR_DIRS")]
    inputs: Vec<PathBuf>,
    /// How many classes to show per image.
    #[arg(long, default_value_t = 5)]
    top: usize,
    /// One JSON array on stdout (file, top classes, logits) instead of text.
    #[arg(long)]
    json: bool,
    /// Images per forward pass.
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    /// Device (flex, tch, tch:cuda:N, cuda:N, vulkan[:N|:cpu], wgpu[:N|:cpu]).
    #[arg(long, default_value = "flex")]
    device: String,
}

pub(crate) fn run(args: Args) -> Result<()> {
    let opts = crate::predict::PredictOptions {
        checkpoint: args.checkpoint,
        inputs: args.inputs,
        top: args.top,
        batch_size: args.batch_size,
        device: args.device,
    };
    let predictions = crate::predict::run(&opts)?;
    crate::predict::print(&predictions, args.json)
}
