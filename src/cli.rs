//! The `lstmkd` command line.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

use crate::config::RunConfig;
use crate::models::{ModelConfig, ZOO, summarize};
use crate::train::run::{CONFIG_FILE, Run};

#[derive(Parser, Debug)]
#[command(
    name = "lstmkd",
    version,
    about = "Knowledge distillation for image classifiers (LSTM KD, KD, FitNet, AT, DKD) on burn"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Train a zoo model with cross-entropy (a teacher, or a student baseline).
    Train {
        /// Run config (TOML): [data], [model], [optim], [schedule], [train] (or --resume).
        #[arg(long, required_unless_present = "resume", conflicts_with = "resume")]
        config: Option<PathBuf>,
        /// Continue the run in this directory from its last checkpoint.
        #[arg(long, value_name = "RUN_DIR")]
        resume: Option<PathBuf>,
        /// Override a config key, e.g. --set optim.lr=0.05 (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        overrides: Vec<String>,
    },
    /// Distil a student from a frozen teacher (config with [teacher] and [distill] tables);
    /// writes the run like `train` plus `deployed.ckpt`, the student as deployed (its backbone,
    /// or with `fused` its backbone and extractors).
    Distill {
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
    },
    /// Fit the teacher's extractors and aux heads on its frozen backbone (teacher adaptation)
    /// on a distillation config's data; written to teacher.extractors (default: adapt/ beside a
    /// run's best.ckpt, adapt-<name>/ beside any other teacher file).
    Adapt {
        /// The distillation config (TOML) whose [teacher] and [distill] extractors to fit.
        #[arg(long)]
        config: PathBuf,
        /// Override a config key, e.g. --set distill.adapt_epochs=2 (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        overrides: Vec<String>,
    },
    /// Run a comparison suite (rows x seeds on a shared teacher) and write results.md,
    /// results.json and plots under OUT/<suite>-<budget>. A run recorded with the same config
    /// and teacher, in the ledger or another `*-runs.json` ledger in its folder, is not trained
    /// again; finished runs are reused, interrupted ones resumed.
    Experiment {
        /// seed-benchmark, seed-ablation, schedule, baselines, comparison, or a suite the
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
    },
    /// Evaluate a checkpoint on its test set as deployed (batch norm folded into the
    /// convolutions): accuracy, per-class accuracy, confusion matrix,
    /// parameters and latency.
    Eval {
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
        /// Device (flex, tch, tch:cuda:N, cuda:N, vulkan:N); default: the run's, or flex.
        #[arg(long)]
        device: Option<String>,
        /// Evaluation batch size (default: the run's).
        #[arg(long)]
        batch_size: Option<usize>,
        /// Where eval.json and confusion.csv go (default: beside the checkpoint).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Check a config's dataset (decodes every image, lists all bad files), describe it
    /// (sizes, classes, normalisation) and measure the loader's throughput alone (one training
    /// epoch of batches, no model).
    Data {
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
    },
    /// Write a generated motion dataset in the clips layout: Fashion-MNIST items sliding in
    /// one of four directions, the class being item and direction (one frame cannot tell it).
    MakeClips(crate::data::motion::MotionArgs),
    /// Measure speed on synthetic images: the student's training step, the full LSTM-KD step,
    /// inference of the deployed student (batch 1 and --batch), a breakdown of both steps with
    /// their arithmetic against the matrix-product peak, and peak memory.
    Bench(crate::bench::BenchArgs),
    /// Import PyTorch weights (torchvision or RepDistiller layout, .pth/.pt or .safetensors)
    /// of a zoo architecture as an lstmkd checkpoint, usable as a teacher, by eval, predict
    /// and export.
    Import(crate::interop::import::ImportArgs),
    /// Export a checkpoint: ONNX (opset 17, batch norm folded, normalisation inside, dynamic
    /// batch; checked against lstmkd's logits before writing) or safetensors (PyTorch names
    /// and layout).
    Export(crate::interop::export::ExportArgs),
    /// Classify images (PNG/JPEG files or folders) with a checkpoint: top classes with their
    /// probabilities, pre-processed as the checkpoint's data were.
    Predict(crate::predict::PredictArgs),
    /// Describe a zoo model or a checkpoint: parameters, forward FLOPs and the shapes of its
    /// taps (and a checkpoint's header).
    Info {
        /// A zoo model name (see --list); or give --checkpoint or --list instead.
        #[arg(long, required_unless_present_any = ["list", "checkpoint"], conflicts_with = "checkpoint")]
        model: Option<String>,
        /// Describe a checkpoint instead: its header (model, input, classes, normalisation,
        /// origin, run) and its network.
        #[arg(long)]
        checkpoint: Option<PathBuf>,
        /// Input size as CxHxW.
        #[arg(long, default_value = "3x32x32")]
        input: String,
        /// Number of classes of the model's classifier.
        #[arg(long, default_value_t = 100)]
        classes: usize,
        /// Width multiplier (MobileNetV2 and the CIFAR ResNets).
        #[arg(long, default_value_t = 1.0)]
        width: f64,
        /// List the zoo.
        #[arg(long)]
        list: bool,
    },
}

/// The header of a checkpoint, then its network as `info --model` describes one.
fn checkpoint_info(path: &std::path::Path) -> Result<(ModelConfig, [usize; 3], usize)> {
    let ckpt = crate::train::checkpoint::Checkpoint::load(path)?;
    let m = &ckpt.meta;
    println!("checkpoint  {}", path.display());
    println!("origin      {}", m.origin);
    let names = if m.classes.len() > 12 {
        format!(
            "{}, ... ({} in all)",
            m.classes[..12].join(", "),
            m.classes.len()
        )
    } else {
        m.classes.join(", ")
    };
    println!("classes     {names}");
    println!("normalise   mean {:?}, std {:?}", m.mean, m.std);
    if m.resize > 0 {
        println!(
            "preprocess  shorter side to {}, centre crop {}x{}",
            m.resize, m.input[1], m.input[2]
        );
    }
    if let Some(run) = &m.run {
        println!(
            "run         {} epochs, val top-1 {:.2}% (best {:.2}%), data {}",
            run.epoch,
            100.0 * run.val_acc,
            100.0 * run.best_val_acc,
            run.config.data.root.display()
        );
    }
    if let Some(f) = &m.fused {
        println!(
            "fused       backbone + {} extractors (input channels {:?}, window {}, hidden {})",
            f.extractors.len(),
            f.extractors,
            f.extractor.window,
            f.extractor.hidden
        );
    }
    Ok((m.model.clone(), m.input, m.classes.len()))
}

fn info(
    model: Option<String>,
    checkpoint: Option<PathBuf>,
    input: &str,
    classes: usize,
    width: f64,
    list: bool,
) -> Result<()> {
    if list {
        for (name, what) in ZOO {
            println!("{name:<20} {what}");
        }
        return Ok(());
    }
    let (cfg, [c, h, w], classes) = match checkpoint {
        Some(path) => checkpoint_info(&path)?,
        None => {
            let cfg = ModelConfig {
                width,
                ..ModelConfig::new(&model.context("give --model NAME or --checkpoint FILE")?)
            };
            (cfg, crate::models::parse_input(input)?, classes)
        }
    };
    let device = burn::tensor::Device::flex();
    let net = cfg.init(c, classes, &device)?;
    let s = summarize(&net, [1, c, h, w], &device);
    let (sample, frames) = match cfg.frames {
        1 => ("image", String::new()),
        f => ("clip", format!(" per frame + clip head, {f} frames")),
    };
    println!("model       {} (width {width}){frames}", cfg.name);
    println!("input       {c}x{h}x{w}, {classes} classes");
    println!("parameters  {}", s.params);
    println!(
        "forward     {:.2} MMAC = {:.2} MFLOP per {sample}",
        s.macs as f64 / 1e6,
        2.0 * s.macs as f64 / 1e6
    );
    println!("logits      {:?}", s.logits);
    for (i, t) in s.taps.iter().enumerate() {
        println!("tap {i}       [C={}, H={}, W={}]", t[1], t[2], t[3]);
    }
    Ok(())
}

fn data(config: &std::path::Path, overrides: &[String], quick: bool) -> Result<()> {
    let cfg = RunConfig::load(config, overrides)?;
    if !quick {
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
            let mut cfg = RunConfig::load(&dir.join(CONFIG_FILE), overrides)?;
            // The directory given on the command line wins over the saved out_dir, so a moved
            // run directory still resumes.
            cfg.train.out_dir = dir;
            Ok((cfg, true))
        }
        _ => bail!("give exactly one of --config FILE or --resume RUN_DIR"),
    }
}

pub fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Train {
            config,
            resume,
            overrides,
        } => {
            let (cfg, resuming) = run_config(config, resume, &overrides)?;
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
        Command::Distill {
            config,
            resume,
            overrides,
            list_losses,
        } => {
            if list_losses {
                for spec in crate::distill::losses::REGISTRY {
                    println!("{:<10} {}", spec.name, spec.about);
                }
                return Ok(());
            }
            let (cfg, resuming) = run_config(config, resume, &overrides)?;
            let run = crate::train::distill::distill(cfg, resuming)?;
            println!(
                "done: checkpoints in {}, deployed student {}",
                run.dir.display(),
                run.dir.join(crate::train::run::DEPLOYED).display()
            );
            Ok(())
        }
        Command::Experiment {
            suite,
            config,
            seeds,
            budget,
            out,
            ledger,
            no_ledger,
            dry_run,
            rows,
        } => {
            if seeds == 0 {
                bail!("--seeds: must be at least 1");
            }
            let ledger = (!no_ledger).then(|| {
                ledger.unwrap_or_else(|| {
                    PathBuf::from(format!("docs/reproducing/{suite}-{budget}-runs.json"))
                })
            });
            let opts = crate::experiment::Options {
                suite,
                config,
                seeds,
                budget,
                out,
                ledger,
                dry_run,
                rows,
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
        Command::Adapt { config, overrides } => {
            let cfg = RunConfig::load(&config, &overrides)?;
            let dir = crate::train::adapt::adapt(&cfg)?;
            println!("done: adapted teacher extractors in {}", dir.display());
            Ok(())
        }
        Command::Eval {
            checkpoint,
            data,
            format,
            device,
            batch_size,
            out,
        } => {
            let opts = crate::eval::EvalOptions {
                data,
                format,
                device,
                batch_size,
            };
            let (report, tally) = crate::eval::run(&checkpoint, &opts)?;
            let out = out.unwrap_or_else(|| {
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
        Command::Data {
            config,
            overrides,
            quick,
        } => data(&config, &overrides, quick),
        Command::MakeClips(args) => {
            let (train, test) = crate::data::motion::generate(&args)?;
            println!(
                "done: {train} training and {test} test clips in {} (data.format = \"clips\")",
                args.out.display()
            );
            Ok(())
        }
        Command::Bench(args) if args.checkpoint.is_some() => {
            let path = args.checkpoint.clone().expect("matched");
            let rows = crate::bench::checkpoint_inference(&args, &path)?;
            println!(
                "lstmkd bench: {} as deployed, device {}",
                path.display(),
                args.device
            );
            crate::bench::print_timings(&rows);
            if let Some(json) = &args.json {
                let text = serde_json::to_string_pretty(&rows)?;
                crate::train::checkpoint::write_atomic(json, text.as_bytes())?;
            }
            Ok(())
        }
        Command::Bench(args) => {
            let report = crate::bench::run(&args)?;
            crate::bench::print(&report);
            if let Some(path) = &args.json {
                let text = serde_json::to_string_pretty(&report)?;
                crate::train::checkpoint::write_atomic(&path, text.as_bytes())?;
            }
            Ok(())
        }
        Command::Import(args) => {
            let ckpt = crate::interop::import::run(&args)?;
            let m = &ckpt.meta;
            println!(
                "imported    {} as {} ({} classes, input {}x{}x{}, {} parameters)",
                args.weights.display(),
                m.model.name,
                m.classes.len(),
                m.input[0],
                m.input[1],
                m.input[2],
                crate::models::count_params(&ckpt.network(&burn::tensor::Device::flex())?)
            );
            println!("mean/std    {:?} / {:?}", m.mean, m.std);
            println!("wrote       {}", args.out.display());
            Ok(())
        }
        Command::Export(args) => {
            let done = crate::interop::export::run(&args)?;
            if let Some((diff, scale)) = done.check {
                println!(
                    "checked     tract runs the graph: max |logit difference| {diff:.2e} (logits up to {scale:.2})"
                );
            }
            println!("wrote       {} ({} bytes)", args.out.display(), done.bytes);
            Ok(())
        }
        Command::Predict(args) => {
            let predictions = crate::predict::run(&args)?;
            crate::predict::print(&predictions, args.json)
        }
        Command::Info {
            model,
            checkpoint,
            input,
            classes,
            width,
            list,
        } => info(model, checkpoint, &input, classes, width, list),
    }
}
