//! The `lstmkd` command line: one file per command, each with its arguments (`Args`) and the
//! function that runs it (`run`). The clap types live here alone (but for value enums such as
//! `data::Format`), so that the domain modules take plain options, callable without a command
//! line.

mod adapt;
mod bench;
mod data;
mod distill;
mod eval;
mod experiment;
mod export;
mod import;
mod info;
mod make_clips;
mod predict;
mod train;

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::{Parser, Subcommand};

use crate::config::RunConfig;
use crate::train::run::CONFIG_FILE;

#[derive(Parser, Debug)]
#[command(
    name = "lstmkd",
    version,
    about = "Knowledge distillation for image classifiers (LSTM KD, KD, FitNet, AT, DKD) on burn"
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Train a zoo model with cross-entropy (a teacher, or a student baseline).
    Train(train::Args),
    /// Distil a student from a frozen teacher (config with [teacher] and [distill] tables);
    /// writes the run like `train` plus `deployed.ckpt`, the student as deployed (its backbone,
    /// or with `fused` its backbone and extractors).
    Distill(distill::Args),
    /// Fit the teacher's extractors and aux heads on its frozen backbone (teacher adaptation)
    /// on a distillation config's data; written to teacher.extractors (default: adapt/ beside a
    /// run's best.ckpt, adapt-<name>/ beside any other teacher file).
    Adapt(adapt::Args),
    /// Run a comparison suite (rows x seeds on a shared teacher) and write results.md,
    /// results.json and plots under OUT/<suite>-<budget>. A run recorded with the same key
    /// (config, teacher, adapted extractors, results version), in the ledger or another
    /// `*-runs.json` ledger in its folder, is not trained again; finished runs are reused,
    /// interrupted ones resumed.
    Experiment(experiment::Args),
    /// Evaluate a checkpoint on its test set as deployed (batch norm folded into the
    /// convolutions): accuracy, per-class accuracy, confusion matrix,
    /// parameters and latency.
    Eval(eval::Args),
    /// Check a config's dataset (decodes every image, lists all bad files), describe it
    /// (sizes, classes, normalisation) and measure the loader's throughput alone (one training
    /// epoch of batches, no model).
    Data(data::Args),
    /// Write a generated motion dataset in the clips layout: Fashion-MNIST items sliding in
    /// one of four directions, the class being item and direction (one frame cannot tell it).
    MakeClips(make_clips::Args),
    /// Measure speed on synthetic images: the student's training step, the full LSTM-KD step,
    /// inference of the deployed student (batch 1 and --batch), a breakdown of both steps with
    /// their arithmetic against the matrix-product peak, and peak memory.
    Bench(bench::Args),
    /// Import PyTorch weights (torchvision or RepDistiller layout, .pth/.pt or .safetensors)
    /// of a zoo architecture as an lstmkd checkpoint, usable as a teacher, by eval, predict
    /// and export.
    Import(import::Args),
    /// Export a checkpoint: ONNX (opset 17, batch norm folded, normalisation inside, dynamic
    /// batch; checked against lstmkd's logits before writing) or safetensors (PyTorch names
    /// and layout).
    Export(export::Args),
    /// Classify images (PNG/JPEG files or folders) with a checkpoint: top classes with their
    /// probabilities, pre-processed as the checkpoint's data were.
    Predict(predict::Args),
    /// Describe a zoo model or a checkpoint: parameters, forward FLOPs and the shapes of its
    /// taps (and a checkpoint's header).
    Info(info::Args),
}

pub fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Train(args) => train::run(args),
        Command::Distill(args) => distill::run(args),
        Command::Adapt(args) => adapt::run(args),
        Command::Experiment(args) => experiment::run(args),
        Command::Eval(args) => eval::run(args),
        Command::Data(args) => data::run(args),
        Command::MakeClips(args) => make_clips::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Import(args) => import::run(args),
        Command::Export(args) => export::run(args),
        Command::Predict(args) => predict::run(args),
        Command::Info(args) => info::run(args),
    }
}

/// The config of a new run (`--config`) or of the run to resume (`--resume RUN_DIR`).
fn run_config(
    config: Option<PathBuf>,
    resume: Option<PathBuf>,
    overrides: &[String],
) -> Result<(RunConfig, bool)> {
    match (config, resume) {
        (Some(path), None) => Ok((RunConfig::load(&path, overrides)?, false)),
        (None, Some(dir)) => {
            if !dir.join(CONFIG_FILE).is_file() {
                bail!(
                    "--resume {}: holds no run to resume (no {CONFIG_FILE}); start one with --config FILE",
                    dir.display()
                );
            }
            let mut cfg = RunConfig::load_written(&dir.join(CONFIG_FILE), overrides)?;
            // The directory given on the command line wins over the saved out_dir, so a moved
            // run directory still resumes.
            cfg.train.out_dir = dir;
            Ok((cfg, true))
        }
        _ => bail!("give exactly one of --config FILE or --resume RUN_DIR"),
    }
}
