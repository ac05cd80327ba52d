//! `lstmkd bench`: training and inference speed on synthetic images.

use std::path::PathBuf;

use anyhow::Result;

use crate::train::checkpoint::write_atomic;

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// Zoo model of the (random-weight) teacher.
    #[arg(long, default_value = "resnet32x4")]
    teacher: String,
    /// Zoo model of the student.
    #[arg(long, default_value = "resnet8x4")]
    student: String,
    /// Input size as CxHxW.
    #[arg(long, default_value = "3x32x32", value_parser = crate::models::parse_input)]
    input: [usize; 3],
    /// Number of classes of both models' classifiers.
    #[arg(long, default_value_t = 100)]
    classes: usize,
    /// Training batch size, and the larger inference batch.
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Untimed steps first (thread pools, allocator, caches).
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    /// Timed steps per case.
    #[arg(long, default_value_t = 10)]
    steps: usize,
    /// flex, tch, tch:cuda:N, cuda:N, vulkan[:N|:cpu] or wgpu[:N|:cpu] (all but flex need their cargo feature).
    #[arg(long, default_value = "flex")]
    device: String,
    /// Extractor conv channels (the paper: 256).
    #[arg(long, default_value_t = 256)]
    conv_channels: usize,
    /// Extractor LSTM hidden size per direction (the paper: 512).
    #[arg(long, default_value_t = 512)]
    hidden: usize,
    /// Also write the report as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Override the benched distillation config (the paper's losses, all active), e.g.
    /// --set distill.weights="{ce=1.0,kd=1.0,at=100.0}" (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
    /// Time only the inference of this checkpoint as deployed (a fused student with its
    /// extractors), at batch 1 and --batch, on its own input size.
    #[arg(long)]
    checkpoint: Option<PathBuf>,
}

pub(crate) fn run(args: Args) -> Result<()> {
    let opts = crate::bench::BenchOptions {
        teacher: args.teacher,
        student: args.student,
        input: args.input,
        classes: args.classes,
        batch: args.batch,
        warmup: args.warmup,
        steps: args.steps,
        device: args.device,
        conv_channels: args.conv_channels,
        hidden: args.hidden,
        overrides: args.overrides,
    };
    if let Some(path) = &args.checkpoint {
        let rows = crate::bench::checkpoint_inference(&opts, path)?;
        println!(
            "lstmkd bench: {} as deployed, device {}",
            path.display(),
            opts.device
        );
        crate::bench::print_timings(&rows);
        if let Some(json) = &args.json {
            write_atomic(json, serde_json::to_string_pretty(&rows)?.as_bytes())?;
        }
        return Ok(());
    }
    let report = crate::bench::run(&opts)?;
    crate::bench::print(&report);
    if let Some(json) = &args.json {
        write_atomic(json, serde_json::to_string_pretty(&report)?.as_bytes())?;
    }
    Ok(())
}
