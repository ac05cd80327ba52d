//! `lstmkd distill`: a student distilled from a frozen teacher.

use std::path::PathBuf;

use anyhow::Result;

use super::run_config;

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// Distillation config (TOML): [data], [model], [optim], [schedule], [train],
    /// [teacher], [distill] (or --resume, or --list-losses).
    #[arg(long, required_unless_present_any = ["resume", "list_losses"], conflicts_with = "resume")]
    config: Option<PathBuf>,
    /// Continue the run in this directory from its last checkpoint.
    #[arg(long, value_name = "RUN_DIR")]
    resume: Option<PathBuf>,
    /// Override a config key, e.g. --set train.epochs=8 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
    /// List the registered losses usable in distill.weights.
    #[arg(long)]
    list_losses: bool,
}

pub(crate) fn run(args: Args) -> Result<()> {
    if args.list_losses {
        for spec in crate::distill::losses::REGISTRY {
            println!("{:<10} {}", spec.name, spec.about);
        }
        return Ok(());
    }
    let (cfg, resuming) = run_config(args.config, args.resume, &args.overrides)?;
    let run = crate::train::distill::distill(cfg, resuming)?;
    println!(
        "done: checkpoints in {}, deployed student {}",
        run.dir.display(),
        run.dir.join(crate::train::run::DEPLOYED).display()
    );
    Ok(())
}
