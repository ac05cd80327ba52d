//! `lstmkd data`: a config's dataset checked (every image decoded), described, and its
//! loader timed alone.

use std::path::PathBuf;

use anyhow::{Result, bail};

use crate::config::RunConfig;
use crate::train::run::Run;

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// A train or distill config (TOML); its [data] table is checked.
    #[arg(long)]
    config: PathBuf,
    /// Override a config key, e.g. --set data.limit_train=1000 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
    /// Skip decoding every image of every split first (by default all bad files are
    /// listed and the command fails).
    #[arg(long)]
    quick: bool,
}

pub(crate) fn run(args: Args) -> Result<()> {
    let cfg = RunConfig::load(&args.config, &args.overrides)?;
    if !args.quick {
        // Before anything else reads the images (normalisation statistics stop at the first
        // bad one), so that every bad file is listed at once.
        let dataset = cfg.data.open()?;
        let mut bad = Vec::new();
        for (split, source) in [("train", &dataset.train), ("test", &dataset.test)] {
            let failed = crate::data::verify(source.as_ref(), split);
            println!(
                "checked     {split}: {} {} decoded, {} bad",
                source.len(),
                if source.frames() > 1 {
                    "clips"
                } else {
                    "images"
                },
                failed.len()
            );
            bad.extend(failed);
        }
        if !bad.is_empty() {
            let mut msg = format!("{}: {} bad files", cfg.data.root.display(), bad.len());
            for e in &bad {
                msg.push_str(&format!("\n  {e:#}"));
            }
            bail!(msg);
        }
    }
    let run = Run::open(cfg)?;
    let [c, h, w] = run.dataset.shape();
    println!(
        "dataset     {:?} at {}",
        run.cfg.data.format,
        run.cfg.data.root.display()
    );
    let frames = match run.dataset.frames() {
        1 => String::new(),
        f => format!(" x {f} frames per clip"),
    };
    println!(
        "images      {c}x{h}x{w}{frames}, {} classes",
        run.dataset.num_classes()
    );
    println!(
        "splits      {} train / {} val (seed {}) / {} test",
        run.train.split.len(),
        run.val.split.len(),
        run.cfg.train.seed,
        run.dataset.test.len()
    );
    println!(
        "mean        {:?}",
        run.cfg.data.mean.as_deref().unwrap_or_default()
    );
    println!(
        "std         {:?}",
        run.cfg.data.std.as_deref().unwrap_or_default()
    );
    let t0 = std::time::Instant::now();
    let mut n = 0usize;
    for batch in run.train.epoch(0)? {
        n += batch?.len();
    }
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "loader      {n} training {} (batch {}, augmented) in {secs:.2}s = {:.0}/s on {} threads",
        if run.dataset.frames() > 1 {
            "clips"
        } else {
            "images"
        },
        run.train.batch_size,
        n as f64 / secs,
        rayon::current_num_threads()
    );
    Ok(())
}
