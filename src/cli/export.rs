//! `lstmkd export`: a checkpoint as ONNX or safetensors.

use std::path::PathBuf;

use anyhow::Result;

use crate::interop::export::ExportFormat;

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// An lstmkd checkpoint (trained, distilled, deployed or imported).
    #[arg(long)]
    checkpoint: PathBuf,
    #[arg(long, value_enum)]
    format: ExportFormat,
    /// The file to write.
    #[arg(long)]
    out: PathBuf,
    /// Replace --out if it exists.
    #[arg(long)]
    force: bool,
}

pub(crate) fn run(args: Args) -> Result<()> {
    let opts = crate::interop::export::ExportOptions {
        checkpoint: args.checkpoint,
        format: args.format,
        out: args.out,
        force: args.force,
    };
    let done = crate::interop::export::run(&opts)?;
    if let Some((diff, scale)) = done.check {
        println!(
            "checked     tract runs the graph: max |logit difference| {diff:.2e} (logits up to {scale:.2})"
        );
    }
    println!("wrote       {} ({} bytes)", opts.out.display(), done.bytes);
    Ok(())
}
