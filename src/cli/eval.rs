//! `lstmkd eval`: a checkpoint evaluated on its test set as deployed.

use std::path::PathBuf;

use anyhow::Result;

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// A checkpoint from train, distill (best.ckpt, deployed.ckpt) or import.
    #[arg(long)]
    checkpoint: PathBuf,
    /// Dataset root to evaluate on instead of the one the checkpoint was trained with
    /// (required for imported checkpoints, which have none).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Format of the dataset at --data (default: the run's, or image-folder).
    #[arg(long, value_enum)]
    format: Option<crate::data::Format>,
    /// Device (flex, tch, tch:cuda:N, cuda:N, vulkan[:N|:cpu], wgpu[:N|:cpu]); default: the run's, or flex.
    #[arg(long)]
    device: Option<String>,
    /// Evaluation batch size (default: the run's).
    #[arg(long)]
    batch_size: Option<usize>,
    /// Where eval.json and confusion.csv go (default: beside the checkpoint).
    #[arg(long)]
    out: Option<PathBuf>,
}

pub(crate) fn run(args: Args) -> Result<()> {
    let checkpoint = args.checkpoint;
    let opts = crate::eval::EvalOptions {
        data: args.data,
        format: args.format,
        device: args.device,
        batch_size: args.batch_size,
    };
    let (report, tally) = crate::eval::run(&checkpoint, &opts)?;
    let out = args.out.unwrap_or_else(|| {
        checkpoint
            .parent()
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("."))
    });
    let classes: Vec<String> = report.per_class.iter().map(|(c, _)| c.clone()).collect();
    crate::eval::write(&report, &tally, &classes, &out)?;
    println!("checkpoint  {}", checkpoint.display());
    println!(
        "model       {} ({} parameters)",
        report.model, report.params
    );
    let unit = if report.frames > 1 {
        ("clips ", "clip", "clips/s")
    } else {
        ("images", "image", "img/s")
    };
    println!("test {} {}", unit.0, report.images);
    println!("top-1       {:.2}%", 100.0 * report.top1);
    println!("top-5       {:.2}%", 100.0 * report.top5);
    println!("loss        {:.4}", report.loss);
    for (c, a) in &report.per_class {
        println!("  class {c:<12} {:.2}%", 100.0 * a);
    }
    println!(
        "latency     {:.3} ms/{} at batch 1, {:.0} {} at batch 64 ({})",
        report.latency_ms_b1, unit.1, report.throughput_b64, unit.2, report.device
    );
    println!(
        "wrote       {}/eval.json, {}/confusion.csv",
        out.display(),
        out.display()
    );
    Ok(())
}
