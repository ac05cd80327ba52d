//! `lstmkd experiment`: a suite's rows over several seeds on one shared teacher and dataset,
//! with `results.md`, `results.json` and PNG plots. Runs recorded in the suite's ledger (or in
//! another ledger beside it, under the same config) and finished runs are not rerun;
//! interrupted ones resume.

pub mod ledger;
mod legacy_key;
pub mod plot;
pub mod suites;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Serialize;

use crate::config::RunConfig;
use crate::distill::DistillConfig;
use crate::stats::mean_std;
use crate::train::checkpoint::{Checkpoint, lock_beside, write_atomic};
use crate::train::distill::{adapted_checkpoint, extractor_differences};
use crate::train::metrics::read_jsonl;
use crate::train::run::{BEST, CONFIG_FILE, LAST, METRICS_FILE, Run, stored_differences};
use suites::{Kind, Row, Suite};

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub(crate) struct SeedResult {
    pub(crate) seed: u64,
    pub(crate) test_top1: f64,
    pub(crate) best_val: f64,
    pub(crate) epochs_to_target: Option<usize>,
    pub(crate) train_seconds: f64,
    pub(crate) val_curve: Vec<f64>,
    pub(crate) temperature: Vec<f64>,
}

/// A row against the suite's reference row over the seeds both have: the per-seed differences
/// of test top-1 (this row minus the reference).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Paired {
    pub(crate) reference: String,
    pub(crate) mean: f64,
    /// Sample std of the differences (0 with one seed).
    pub(crate) std: f64,
    /// Seeds where this row scored higher, of `seeds`.
    pub(crate) wins: usize,
    pub(crate) seeds: usize,
}

impl Paired {
    pub(crate) fn of(row: &[SeedResult], reference: &[SeedResult], label: &str) -> Option<Self> {
        let diffs: Vec<f64> = row
            .iter()
            .filter_map(|s| {
                let r = reference.iter().find(|r| r.seed == s.seed)?;
                Some(s.test_top1 - r.test_top1)
            })
            .collect();
        if diffs.is_empty() {
            return None;
        }
        let (mean, std) = mean_std(&diffs);
        Some(Self {
            reference: label.to_string(),
            mean,
            std,
            wins: diffs.iter().filter(|d| **d > 0.0).count(),
            seeds: diffs.len(),
        })
    }
}

#[derive(Debug, Serialize)]
pub(crate) struct RowResult {
    pub(crate) label: String,
    pub(crate) claim: String,
    pub(crate) seeds: Vec<SeedResult>,
    pub(crate) test_top1_mean: f64,
    pub(crate) test_top1_std: f64,
    pub(crate) params: usize,
    pub(crate) latency_ms_b1: f64,
    pub(crate) throughput_b64: f64,
    /// Against the suite's reference row (none for the reference itself).
    pub(crate) paired: Option<Paired>,
}

#[derive(Debug, Serialize)]
pub(crate) struct Results {
    pub(crate) suite: String,
    pub(crate) budget: String,
    pub(crate) config: PathBuf,
    pub(crate) target_acc: f64,
    pub(crate) rows: Vec<RowResult>,
}

/// The suite's base config table and its `[experiment]` table (budgets, target accuracy).
fn load_suite_config(path: &Path) -> Result<(toml::Table, toml::Table)> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read suite config", path.display()))?;
    let mut table: toml::Table =
        toml::from_str(&text).with_context(|| format!("{}: invalid TOML", path.display()))?;
    let exp = match table.remove("experiment") {
        Some(toml::Value::Table(t)) => t,
        _ => bail!(
            "{}: missing [experiment] table (budgets and target_acc)",
            path.display()
        ),
    };
    Ok((table, exp))
}

fn budget_overrides(exp: &toml::Table, budget: &str, path: &Path) -> Result<Vec<String>> {
    let list = exp
        .get(budget)
        .and_then(|v| v.as_array())
        .with_context(|| {
            format!(
                "{}: experiment.{budget}: missing list of overrides",
                path.display()
            )
        })?;
    list.iter()
        .map(|v| {
            v.as_str().map(String::from).with_context(|| {
                format!(
                    "{}: experiment.{budget}: entries must be strings",
                    path.display()
                )
            })
        })
        .collect()
}

fn row_config(
    base: &toml::Table,
    row: &Row,
    overrides: &[String],
    origin: &str,
) -> Result<RunConfig> {
    let mut table = base.clone();
    if row.kind == Kind::Alone {
        table.remove("teacher");
        table.remove("distill");
    }
    let mut all: Vec<String> = overrides.to_vec();
    all.extend(row.overrides.iter().cloned());
    RunConfig::parse(&toml::to_string(&table)?, origin, &all)
        .with_context(|| format!("row '{}'", row.label))
}

/// What a run's folder holds.
enum Folder {
    /// No run: it starts from scratch.
    Empty,
    /// A run of another config: the settings that differ.
    Other(Vec<String>),
    /// A run of this config that finished this many epochs (0: none yet).
    Started(usize),
    /// A run of this config that finished all its epochs.
    Finished(usize),
}

/// The epochs the run in `dir` has finished (0 before its first), or None where `dir` holds
/// no run.
fn epochs_done(dir: &Path) -> Result<Option<usize>> {
    if !dir.join(CONFIG_FILE).exists() {
        return Ok(None);
    }
    if !dir.join(LAST).exists() {
        return Ok(Some(0));
    }
    let ckpt = Checkpoint::load(&dir.join(LAST))?;
    Ok(Some(ckpt.meta.run("a suite run")?.epoch))
}

fn folder(cfg: &RunConfig) -> Result<Folder> {
    let dir = &cfg.train.out_dir;
    if !dir.join(CONFIG_FILE).exists() {
        return Ok(Folder::Empty);
    }
    let differ = stored_differences(dir, cfg)?;
    if !differ.is_empty() {
        return Ok(Folder::Other(differ));
    }
    let done = epochs_done(dir)?.unwrap_or(0);
    Ok(if done >= cfg.train.epochs {
        Folder::Finished(done)
    } else {
        Folder::Started(done)
    })
}

/// Where the run of `cfg` stands in its folder, for a dry run, and the share of its epochs
/// left to train. A folder that cannot be read is reported, not fatal: a dry run reports.
fn folder_state(cfg: &RunConfig) -> (String, f64) {
    let dir = cfg.train.out_dir.display();
    let epochs = cfg.train.epochs;
    match folder(cfg) {
        Err(e) => (format!("unreadable: {e:#}"), 1.0),
        Ok(Folder::Empty) => ("to train".into(), 1.0),
        Ok(Folder::Other(differ)) => (
            format!(
                "refused: {dir} holds a run of another config ({})",
                differ.join("; ")
            ),
            1.0,
        ),
        Ok(Folder::Started(0)) => (format!("to train ({dir} holds no finished epoch)"), 1.0),
        Ok(Folder::Started(done)) => (
            format!("interrupted in {dir} after epoch {done} of {epochs}: resumes"),
            (epochs - done) as f64 / epochs as f64,
        ),
        Ok(Folder::Finished(_)) => (format!("finished in {dir} (to evaluate and record)"), 0.0),
    }
}

/// Trains one row/seed unless already finished; returns its run directory.
fn train_one(cfg: RunConfig, kind: Kind) -> Result<PathBuf> {
    let dir = cfg.train.out_dir.clone();
    // A started run is continued (from epoch 0 when it never finished one). A run left by
    // another suite config in the same folder is not this row's: neither taken as finished
    // nor continued.
    let resume = match folder(&cfg)? {
        Folder::Empty => false,
        Folder::Started(_) => true,
        Folder::Other(differ) => bail!(
            "{}: holds a run of another config ({}); move it away or give --out another folder",
            dir.display(),
            differ.join("; ")
        ),
        Folder::Finished(done) => {
            println!("  already finished ({done} epochs): {}", dir.display());
            return Ok(dir);
        }
    };
    match kind {
        Kind::Alone => {
            let run = Run::new(cfg, resume)?;
            crate::train::classify::train(&run)?;
        }
        Kind::Distill => {
            crate::train::distill::distill(cfg, resume)?;
        }
    }
    Ok(dir)
}

pub(crate) struct Options {
    /// A built-in suite or one the suite config defines.
    pub(crate) suite: String,
    pub(crate) config: PathBuf,
    pub(crate) seeds: usize,
    pub(crate) budget: String,
    pub(crate) out: PathBuf,
    /// The ledger of finished runs (None: none kept).
    pub(crate) ledger: Option<PathBuf>,
    /// Say where each run stands (recorded, finished or interrupted in its folder, to train)
    /// and train nothing.
    pub(crate) dry_run: bool,
    /// Only these rows (`--rows`, e.g. "1-4,7"): their runs go into the ledger, and the
    /// report waits for a call over every row.
    pub(crate) rows: Option<String>,
}

impl Options {
    /// Where the suite's runs and results go: one folder per suite and budget, since the
    /// same row and seed is another run at another budget.
    pub(crate) fn dir(&self) -> PathBuf {
        self.out.join(format!("{}-{}", self.suite, self.budget))
    }
}

/// Fits the teacher's extractors once, before the first run that reads them. Processes given
/// other rows (`--rows`) may reach that run together: one adapts, the others wait for it.
fn ensure_adapted(cfg: &RunConfig, origin: &str, label: &str) -> Result<()> {
    let (t, d) = cfg
        .distillation()
        .with_context(|| format!("{origin}: row '{label}' distils"))?;
    let path = t.extractors_path();
    // The adaptation's best.ckpt appears after its first epoch: a file whose adaptation
    // stopped before its last one (killed, or still running elsewhere) is not ready.
    let ready = || -> Result<bool> {
        let dir = path.parent().unwrap_or(Path::new(""));
        Ok(path.exists() && epochs_done(dir)?.is_none_or(|done| done >= d.adapt_epochs))
    };
    if !d.needs().extractors || ready()? {
        return Ok(());
    }
    let _lock = lock_beside(&path)?;
    if !ready()? {
        println!("== adapting the teacher's extractors ({})", path.display());
        crate::train::adapt::adapt(cfg)?;
    }
    Ok(())
}

/// Refuses, before anything trains, runs that would read teacher extractors adapted for
/// another extractor (than the file holds, or than another run reading the same file needs):
/// met only when its row is reached, that error would come hours into a suite. `runs` are
/// (row label, config); the student alone's have no distill table and read no extractors.
pub fn check_lenses<'a>(runs: impl IntoIterator<Item = (&'a str, &'a RunConfig)>) -> Result<()> {
    let mut first: BTreeMap<PathBuf, (&str, &DistillConfig)> = BTreeMap::new();
    for (label, cfg) in runs {
        let Some((t, d)) = cfg.teacher.as_ref().zip(cfg.distill.as_ref()) else {
            continue;
        };
        // The teacher reads the file whenever the extractor losses are on, whatever the
        // student's extractors start from (`load_teacher`).
        if !d.needs().extractors {
            continue;
        }
        let path = t.extractors_path();
        if let Some((there, other)) = first.get(&path) {
            let differ = extractor_differences(other, d)?;
            if !differ.is_empty() {
                bail!(
                    "rows '{there}' (there) and '{label}' (here) read the teacher's extractors from {} but need different ones ({}); give one of them a teacher.extractors of its own",
                    path.display(),
                    differ.join(", ")
                );
            }
        } else {
            if path.exists() {
                adapted_checkpoint(t, d).with_context(|| format!("row '{label}'"))?;
            }
            first.insert(path, (label, d));
        }
    }
    Ok(())
}

/// A run recorded in a ledger: which file, its entry, and whether that file is another
/// suite's (then the entry is copied into this suite's ledger under this row's name).
struct Recorded {
    path: PathBuf,
    entry: ledger::Entry,
    elsewhere: bool,
}

/// One (row, seed) of the suite.
struct Planned<'a> {
    row: &'a Row,
    /// The row's place in the suite, from 0.
    index: usize,
    seed: usize,
    cfg: RunConfig,
    recorded: Option<Recorded>,
}

/// The rows `spec` picks out of `count` ("1-4,7": numbered from 1, as the runner prints them).
pub(crate) fn pick_rows(spec: &str, count: usize) -> Result<Vec<bool>> {
    let mut picked = vec![false; count];
    for part in spec.split(',') {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        let number = |s: &str| {
            s.trim()
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=count).contains(n))
        };
        match (number(a), number(b)) {
            (Some(a), Some(b)) if a <= b => picked[a - 1..b].iter_mut().for_each(|p| *p = true),
            _ if part.trim().is_empty() => bail!("--rows '{spec}': an empty entry"),
            _ => bail!(
                "--rows '{spec}': '{}' is not a row or a rising range of rows between 1 and {count}, the suite's rows",
                part.trim()
            ),
        }
    }
    Ok(picked)
}

/// A suite config read for one call: its base config, the budget's overrides, the suites.
struct SuiteConfig {
    base: toml::Table,
    budget: Vec<String>,
    target_acc: f64,
    origin: String,
    suites: Vec<Suite>,
}

impl SuiteConfig {
    fn load(o: &Options) -> Result<Self> {
        let (base, exp) = load_suite_config(&o.config)?;
        let budget = budget_overrides(&exp, &o.budget, &o.config)?;
        let target_acc = match exp.get("target_acc") {
            None => 0.9,
            Some(v) => match v.as_float().or_else(|| v.as_integer().map(|i| i as f64)) {
                Some(a) if a > 0.0 && a <= 1.0 => a,
                _ => bail!(
                    "{}: experiment.target_acc: a validation accuracy in (0, 1], got {v}",
                    o.config.display()
                ),
            },
        };
        let origin = o.config.display().to_string();
        let suites = suites::all(&exp, &origin)?;
        Ok(Self {
            base,
            budget,
            target_acc,
            origin,
            suites,
        })
    }

    fn suite(&self, name: &str) -> Result<&Suite> {
        match self.suites.iter().find(|s| s.name == name) {
            Some(suite) => Ok(suite),
            None => {
                // The paper's suites were named after "the seed" until 2026-12-07.
                if let Some(rest) = name.strip_prefix("seed-")
                    && self
                        .suites
                        .iter()
                        .any(|s| s.name == format!("paper-{rest}"))
                {
                    bail!("--suite '{name}': now called 'paper-{rest}'");
                }
                let names: Vec<&str> = self.suites.iter().map(|s| s.name.as_str()).collect();
                bail!(
                    "--suite '{name}': unknown; the suites of {}: {}",
                    self.origin,
                    names.join(", ")
                )
            }
        }
    }
}

/// Runs the suite and writes its results (None: a dry run, which trains and writes nothing,
/// or a run of some rows only, which records them in the ledger and writes no report).
pub(crate) fn run(o: &Options) -> Result<Option<Results>> {
    let sc = SuiteConfig::load(o)?;
    let suite = sc.suite(&o.suite)?;
    let picked = match &o.rows {
        Some(spec) => pick_rows(spec, suite.rows.len())?,
        None => vec![true; suite.rows.len()],
    };
    let mut ledger = o.ledger.as_deref().map(ledger::Ledger::open).transpose()?;
    let plan = plan(o, &sc, suite, &picked, ledger.as_ref())?;
    check_plan(&plan, o.dry_run)?;
    let mut rows = Vec::new();
    let mut dry = DryRun::default();
    for row_plan in plan.chunks(o.seeds.max(1)) {
        let mut seeds = Vec::new();
        let mut last_report = None;
        // The share of each run left to train, for a dry run's estimate.
        let mut left = Vec::new();
        for p in row_plan {
            println!(
                "== {} row {}/{} '{}' seed {}/{}",
                suite.name,
                p.index + 1,
                suite.rows.len(),
                p.row.label,
                p.seed + 1,
                o.seeds
            );
            match execute(o, &sc, p, ledger.as_mut())? {
                Outcome::Done(result, report) => {
                    seeds.push(result);
                    last_report = Some(report);
                    dry.recorded += usize::from(o.dry_run);
                }
                Outcome::Left(share) => left.push(share),
            }
        }
        if o.dry_run {
            dry.add_row(&seeds, &left);
            continue;
        }
        let (params, latency_ms_b1, throughput_b64) = last_report.context("at least one seed")?;
        let (mean, std) = mean_std(&seeds.iter().map(|s| s.test_top1).collect::<Vec<_>>());
        let row = row_plan[0].row;
        rows.push(RowResult {
            label: row.label.to_string(),
            claim: row.claim.to_string(),
            seeds,
            test_top1_mean: mean,
            test_top1_std: std,
            params,
            latency_ms_b1,
            throughput_b64,
            paired: None,
        });
    }
    if o.dry_run {
        dry.print(plan.len());
        return Ok(None);
    }
    if picked.contains(&false) {
        println!(
            "rows {} of '{}' done; the report needs every row (run without --rows)",
            o.rows.as_deref().unwrap_or_default(),
            suite.name
        );
        return Ok(None);
    }
    report(o, &sc, suite, rows).map(Some)
}

/// Every (row, seed) the call covers, with its config, its keys and where it is recorded.
fn plan<'a>(
    o: &Options,
    sc: &SuiteConfig,
    suite: &'a Suite,
    picked: &[bool],
    ledger: Option<&ledger::Ledger>,
) -> Result<Vec<Planned<'a>>> {
    let siblings = match ledger {
        Some(l) => l.siblings()?,
        None => Vec::new(),
    };
    let suite_dir = o.dir();
    let mut plan = Vec::new();
    for (index, row) in suite.rows.iter().enumerate().filter(|(i, _)| picked[*i]) {
        for seed in 0..o.seeds {
            let mut overrides = sc.budget.clone();
            let dir = suite_dir
                .join(suites::slug(&row.label))
                .join(format!("seed{seed}"));
            overrides.push(format!("train.seed={seed}"));
            // As a TOML string, so that quotes or backslashes in --out stay part of the path.
            let out_dir = toml::Value::String(dir.display().to_string());
            overrides.push(format!("train.out_dir={out_dir}"));
            let cfg = row_config(&sc.base, row, &overrides, &sc.origin)?;
            // Without a ledger there is nothing to look up, and no teacher to hash.
            let key = match ledger {
                Some(_) => Some(ledger::keys(&cfg, row.kind == Kind::Distill)?),
                None => None,
            };
            let recorded = key.as_ref().and_then(|key| {
                let own = ledger.into_iter().map(|l| (l, false));
                own.chain(siblings.iter().map(|l| (l, true)))
                    .find_map(|(l, elsewhere)| {
                        Some(Recorded {
                            path: l.path().to_path_buf(),
                            entry: l.find(seed as u64, key)?.clone(),
                            elsewhere,
                        })
                    })
            });
            plan.push(Planned {
                row,
                index,
                seed,
                cfg,
                recorded,
            });
        }
    }
    Ok(plan)
}

/// What is left to train is checked before any of it trains: a clash found when its row is
/// reached would come hours into the suite.
fn check_plan(plan: &[Planned], dry_run: bool) -> Result<()> {
    let to_train: Vec<&Planned> = plan.iter().filter(|p| p.recorded.is_none()).collect();
    check_lenses(to_train.iter().map(|p| (p.row.label.as_str(), &p.cfg)))?;
    if dry_run {
        return Ok(());
    }
    let mut refused = Vec::new();
    for p in &to_train {
        let state =
            folder(&p.cfg).with_context(|| format!("row '{}' seed {}", p.row.label, p.seed))?;
        if let Folder::Other(differ) = state {
            refused.push(format!(
                "{}: holds a run of another config ({})",
                p.cfg.train.out_dir.display(),
                differ.join("; ")
            ));
        }
    }
    if !refused.is_empty() {
        bail!(
            "{}\nmove them away or give --out another folder; nothing was trained",
            refused.join("\n")
        );
    }
    Ok(())
}

/// A run's parameters, ms per image at batch 1 and images per second at batch 64.
type Deployed = (usize, f64, f64);

/// What became of one planned run.
enum Outcome {
    /// Its result: recorded, or trained and evaluated now.
    Done(SeedResult, Deployed),
    /// A dry run's run to train: the share of it left.
    Left(f64),
}

/// One planned run: taken from a ledger, or trained, evaluated and recorded (in a dry run,
/// only said where it stands).
fn execute(
    o: &Options,
    sc: &SuiteConfig,
    p: &Planned,
    mut ledger: Option<&mut ledger::Ledger>,
) -> Result<Outcome> {
    let row = p.row;
    // Processes given overlapping rows take turns at a run: one trains it, the other then
    // finds it recorded in the ledger (or finished in its folder).
    let run_lock = match (&p.recorded, o.dry_run) {
        (None, false) => Some(lock_beside(&p.cfg.train.out_dir)?),
        _ => None,
    };
    // A distillation's key covers the extractors it reads, so they are adapted before the
    // run is looked up again (a run recorded with them is then found, not trained again).
    if run_lock.is_some() && row.kind == Kind::Distill {
        ensure_adapted(&p.cfg, &sc.origin, &row.label)?;
    }
    // Looked up again, in this ledger and those beside it: another process, or the
    // adaptation just done, may have made the run findable since the plan.
    // Taken once the extractors are there; training does not change them, so the same keys
    // record the run.
    let keys = match (&run_lock, &ledger) {
        (Some(_), Some(_)) => Some(ledger::keys(&p.cfg, row.kind == Kind::Distill)?),
        _ => None,
    };
    let recorded_since = match (&ledger, &keys) {
        (Some(l), Some(key)) => {
            let own = ledger::Ledger::open(l.path())?;
            let siblings = own.siblings()?;
            std::iter::once((own, false))
                .chain(siblings.into_iter().map(|s| (s, true)))
                .find_map(|(l, elsewhere)| {
                    Some(Recorded {
                        path: l.path().to_path_buf(),
                        entry: l.find(p.seed as u64, key)?.clone(),
                        elsewhere,
                    })
                })
        }
        _ => None,
    };
    if let Some(r) = p.recorded.as_ref().or(recorded_since.as_ref()) {
        let e = &r.entry;
        let named = if r.elsewhere || e.row != row.label {
            format!(" as '{}'", e.row)
        } else {
            String::new()
        };
        println!(
            "  recorded in {}{named}: test top-1 {:.2}%",
            r.path.display(),
            100.0 * e.result.test_top1
        );
        if let Some(l) = ledger.as_mut().filter(|_| r.elsewhere && !o.dry_run) {
            l.record(ledger::Entry {
                row: row.label.to_string(),
                ..e.clone()
            })?;
        }
        let deployed = (e.params, e.latency_ms_b1, e.throughput_b64);
        return Ok(Outcome::Done(e.result.clone(), deployed));
    }
    if o.dry_run {
        let (state, share) = folder_state(&p.cfg);
        println!("  {state}");
        return Ok(Outcome::Left(share));
    }
    let (result, deployed) = train_and_evaluate(p, sc.target_acc)?;
    if let (Some(l), Some(keys)) = (ledger, keys) {
        let key = keys
            .current
            .context("the run's adapted extractors, for its ledger key")?;
        l.record(ledger::Entry {
            row: row.label.to_string(),
            seed: p.seed as u64,
            config_sha256: key,
            key_format: ledger::KEY_FORMAT,
            results_version: ledger::RESULTS_VERSION,
            code: ledger::code().to_string(),
            result: result.clone(),
            params: deployed.0,
            latency_ms_b1: deployed.1,
            throughput_b64: deployed.2,
            machine: ledger::machine(),
            finished_unix: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        })?;
    }
    Ok(Outcome::Done(result, deployed))
}

/// Trains the run (or finishes it in its folder) and evaluates its student on the test set.
fn train_and_evaluate(p: &Planned, target_acc: f64) -> Result<(SeedResult, Deployed)> {
    let dir = train_one(p.cfg.clone(), p.row.kind)?;
    let ckpt = match p.row.kind {
        Kind::Alone => dir.join(BEST),
        Kind::Distill => dir.join(crate::train::run::DEPLOYED),
    };
    let (report, _) = crate::eval::run(&ckpt, &Default::default())?;
    let metrics = read_jsonl(&dir.join(METRICS_FILE))?;
    let val_curve: Vec<f64> = metrics.iter().map(|m| m.val_acc).collect();
    let result = SeedResult {
        seed: p.seed as u64,
        test_top1: report.top1,
        best_val: val_curve.iter().cloned().fold(0.0, f64::max),
        epochs_to_target: val_curve
            .iter()
            .position(|&a| a >= target_acc)
            .map(|e| e + 1),
        train_seconds: metrics.iter().map(|m| m.seconds).sum(),
        temperature: metrics
            .iter()
            .filter_map(|m| m.extra.get("temperature").copied())
            .collect(),
        val_curve,
    };
    let deployed = (report.params, report.latency_ms_b1, report.throughput_b64);
    Ok((result, deployed))
}

/// A dry run's count: runs recorded, and the training left (seconds where a row has
/// recorded seeds and those runs, and the runs of rows without).
#[derive(Default)]
struct DryRun {
    recorded: usize,
    seconds: f64,
    known: usize,
    unknown: usize,
}

impl DryRun {
    /// A row's recorded seeds tell how long its other seeds will train.
    fn add_row(&mut self, recorded: &[SeedResult], left: &[f64]) {
        let runs = left.iter().filter(|share| **share > 0.0).count();
        if recorded.is_empty() {
            self.unknown += runs;
        } else {
            let secs: Vec<f64> = recorded.iter().map(|s| s.train_seconds).collect();
            self.seconds += left.iter().sum::<f64>() * mean_std(&secs).0;
            self.known += runs;
        }
    }

    fn print(&self, total: usize) {
        println!(
            "{} of {total} runs recorded in a ledger, {} to train or to take from their folders",
            self.recorded,
            total - self.recorded
        );
        if self.known > 0 {
            println!(
                "about {:.1} h ({:.0} s) of training for the {} run(s) of rows with recorded seeds (from their mean on the machines that ran them)",
                self.seconds / 3600.0,
                self.seconds,
                self.known
            );
        }
        if self.unknown > 0 {
            println!(
                "{} run(s) of rows with no recorded seed: not estimated",
                self.unknown
            );
        }
    }
}

/// Pairs every row with the reference row seed by seed and writes the report.
fn report(
    o: &Options,
    sc: &SuiteConfig,
    suite: &Suite,
    mut rows: Vec<RowResult>,
) -> Result<Results> {
    if let Some(reference) = &suite.reference
        && let Some(k) = rows.iter().position(|r| r.label == *reference)
    {
        let base = rows[k].seeds.clone();
        for (j, row) in rows.iter_mut().enumerate() {
            if j != k {
                row.paired = Paired::of(&row.seeds, &base, reference);
            }
        }
    }
    let results = Results {
        suite: suite.name.to_string(),
        budget: o.budget.clone(),
        config: o.config.clone(),
        target_acc: sc.target_acc,
        rows,
    };
    write_results(&results, suite, &o.dir())?;
    Ok(results)
}

fn mean_curve(seeds: &[SeedResult], pick: impl Fn(&SeedResult) -> &Vec<f64>) -> Vec<(f64, f64)> {
    let len = seeds.iter().map(|s| pick(s).len()).min().unwrap_or(0);
    (0..len)
        .map(|e| {
            let v: Vec<f64> = seeds.iter().map(|s| pick(s)[e]).collect();
            ((e + 1) as f64, mean_std(&v).0)
        })
        .collect()
}

fn write_results(res: &Results, suite: &Suite, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    write_atomic(
        &dir.join("results.json"),
        serde_json::to_string_pretty(res)?.as_bytes(),
    )?;
    let mut md = format!(
        "# {} ({} budget)\n\n{}\n\nConfig `{}`, {} seed(s); test top-1 as mean +- sample std over seeds; \
         latency of the deployed student on this machine's default device.\n\n\
         | row | test top-1 (%) | {} | best val (%) | epochs to {:.0}% val | params | ms/img (b=1) | img/s (b=64) | train s/run | paper's claim |\n\
         |---|---|---|---|---|---|---|---|---|---|\n",
        res.suite,
        res.budget,
        suite.about,
        res.config.display(),
        res.rows.first().map_or(0, |r| r.seeds.len()),
        suite.reference.as_ref().map_or("paired".to_string(), |r| {
            format!("vs {r}, paired (points; seeds higher)")
        }),
        100.0 * res.target_acc
    );
    for r in &res.rows {
        let (val, _) = mean_std(&r.seeds.iter().map(|s| s.best_val).collect::<Vec<_>>());
        let reach: Vec<f64> = r
            .seeds
            .iter()
            .filter_map(|s| s.epochs_to_target.map(|e| e as f64))
            .collect();
        let reach = if reach.len() == r.seeds.len() {
            let (m, s) = mean_std(&reach);
            format!("{m:.1} +- {s:.1}")
        } else {
            format!(
                "not reached in {}/{}",
                r.seeds.len() - reach.len(),
                r.seeds.len()
            )
        };
        let (secs, _) = mean_std(&r.seeds.iter().map(|s| s.train_seconds).collect::<Vec<_>>());
        let paired = r.paired.as_ref().map_or("-".to_string(), |p| {
            format!(
                "{:+.2} +- {:.2} ({}/{})",
                100.0 * p.mean,
                100.0 * p.std,
                p.wins,
                p.seeds
            )
        });
        md.push_str(&format!(
            "| {} | {:.2} +- {:.2} | {} | {:.2} | {} | {} | {:.3} | {:.0} | {:.0} | {} |\n",
            r.label,
            100.0 * r.test_top1_mean,
            100.0 * r.test_top1_std,
            paired,
            100.0 * val,
            reach,
            r.params,
            r.latency_ms_b1,
            r.throughput_b64,
            secs,
            r.claim
        ));
    }
    md.push_str("\n![validation accuracy](val_acc.png)\n");
    let acc: Vec<(String, Vec<(f64, f64)>)> = res
        .rows
        .iter()
        .map(|r| {
            let c = mean_curve(&r.seeds, |s| &s.val_curve);
            (
                r.label.clone(),
                c.into_iter().map(|(e, a)| (e, 100.0 * a)).collect(),
            )
        })
        .collect();
    plot::line_chart(
        &dir.join("val_acc.png"),
        &format!("{}: validation accuracy", res.suite),
        "val top-1 (%)",
        &acc,
    )?;
    let temps: Vec<(String, Vec<(f64, f64)>)> = res
        .rows
        .iter()
        .map(|r| (r.label.clone(), mean_curve(&r.seeds, |s| &s.temperature)))
        .filter(|(_, c)| !c.is_empty())
        .collect();
    if !temps.is_empty() {
        plot::line_chart(
            &dir.join("temperature.png"),
            &format!("{}: temperature", res.suite),
            "T",
            &temps,
        )?;
        md.push_str("\n![temperature](temperature.png)\n");
    }
    write_atomic(&dir.join("results.md"), md.as_bytes())
}
