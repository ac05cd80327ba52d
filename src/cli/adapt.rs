//! `lstmkd adapt`: the teacher's extractors and aux heads fitted on its frozen backbone.

use std::path::PathBuf;

use anyhow::Result;

use crate::config::RunConfig;

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// The distillation config (TOML) whose [teacher] and [distill] extractors to fit.
    #[arg(long)]
    config: PathBuf,
    /// Override a config key, e.g. --set distill.adapt_epochs=2 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
}

pub(crate) fn run(args: Args) -> Result<()> {
    let cfg = RunConfig::load(&args.config, &args.overrides)?;
    let dir = crate::train::adapt::adapt(&cfg)?;
    println!("done: adapted teacher extractors in {}", dir.display());
    Ok(())
}
