//! `lstmkd experiment`: a comparison suite over seeds, with its ledger of finished runs.

use std::path::PathBuf;

use anyhow::{Result, bail};

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// paper-benchmark, paper-ablation, schedule, baselines, comparison, or a suite the
    /// suite config defines under [experiment.suites.<name>].
    #[arg(long)]
    suite: String,
    /// Suite config: a distillation config plus an [experiment] table of budgets.
    #[arg(long, default_value = "configs/experiments/fmnist.toml")]
    config: PathBuf,
    /// Seeds per row (0, 1, ...); a row's seeds are paired with the same seeds of KD.
    #[arg(long, default_value_t = 3)]
    seeds: usize,
    /// A budget named in the suite config's [experiment] table.
    #[arg(long, default_value = "quick")]
    budget: String,
    /// Parent of the suite's folder <suite>-<budget>/ (its runs, results and plots).
    #[arg(long, default_value = "runs/experiments")]
    out: PathBuf,
    /// The ledger each finished run's result is recorded in, to commit so that a suite
    /// can be carried on another day [default: docs/reproducing/<suite>-<budget>-runs.json].
    #[arg(long)]
    ledger: Option<PathBuf>,
    /// Keep no ledger: neither read nor write one.
    #[arg(long, conflicts_with = "ledger")]
    no_ledger: bool,
    /// Say where each run stands (recorded in a ledger, finished or interrupted in its
    /// folder, to train) and train or write nothing.
    #[arg(long)]
    dry_run: bool,
    /// Only these rows, numbered from 1 as the runner prints them (e.g. "1-4,7"). Their
    /// runs go into the ledger; processes given other rows can share it (with
    /// RAYON_NUM_THREADS splitting the cores; a run two were given is trained once), and a
    /// call over every row writes the report.
    #[arg(long, conflicts_with = "no_ledger")]
    rows: Option<String>,
}

pub(crate) fn run(args: Args) -> Result<()> {
    if args.seeds == 0 {
        bail!("--seeds: must be at least 1");
    }
    let (suite, budget) = (&args.suite, &args.budget);
    let ledger = (!args.no_ledger).then(|| {
        args.ledger.unwrap_or_else(|| {
            PathBuf::from(format!("docs/reproducing/{suite}-{budget}-runs.json"))
        })
    });
    let opts = crate::experiment::Options {
        suite: args.suite,
        config: args.config,
        seeds: args.seeds,
        budget: args.budget,
        out: args.out,
        ledger,
        dry_run: args.dry_run,
        rows: args.rows,
    };
    let t0 = std::time::Instant::now();
    if crate::experiment::run(&opts)?.is_none() {
        return Ok(());
    }
    let dir = opts.dir();
    println!(
        "done in {:.0}s: {}/results.md",
        t0.elapsed().as_secs_f64(),
        dir.display()
    );
    print!("{}", std::fs::read_to_string(dir.join("results.md"))?);
    Ok(())
}
