//! `lstmkd train`: a zoo model trained with cross-entropy (a teacher, or a student baseline).

use std::path::PathBuf;

use anyhow::{Result, bail};

use super::run_config;
use crate::train::run::Run;

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// Run config (TOML): [data], [model], [optim], [schedule], [train] (or --resume).
    #[arg(long, required_unless_present = "resume", conflicts_with = "resume")]
    config: Option<PathBuf>,
    /// Continue the run in this directory from its last checkpoint.
    #[arg(long, value_name = "RUN_DIR")]
    resume: Option<PathBuf>,
    /// Override a config key, e.g. --set optim.lr=0.05 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
}

pub(crate) fn run(args: Args) -> Result<()> {
    let (cfg, resuming) = run_config(args.config, args.resume, &args.overrides)?;
    if cfg.distill.is_some() || cfg.teacher.is_some() {
        bail!("this config has [teacher]/[distill] tables: run it with `lstmkd distill`");
    }
    if cfg.data.label_fraction < 1.0 {
        bail!(
            "data.label_fraction: plain training has only labels to learn from; train on the labelled share alone with data.limit_train"
        );
    }
    let run = Run::new(cfg, resuming)?;
    println!(
        "run {}: {} on {} ({} train / {} val {}, {} classes), device {}",
        run.dir.display(),
        run.cfg.model.name,
        run.cfg.data.root.display(),
        run.train.split.len(),
        run.val.split.len(),
        if run.dataset.frames() > 1 {
            "clips"
        } else {
            "images"
        },
        run.dataset.num_classes(),
        run.cfg.train.device
    );
    crate::train::classify::train(&run)?;
    println!("done: checkpoints in {}", run.dir.display());
    Ok(())
}
