//! `lstmkd bench`: the measured speed of a teacher/student pair on synthetic images. It times
//! the same step code that training runs (`trainer::optimise`, the `Distill` task), broken
//! down by the parts that code marks (`profile::part`), next to the machine's matrix-product
//! peak, so that a slow part shows as a low share of the peak rather than as a guess.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use burn::module::Module;
use burn::tensor::{Device, Distribution, Tensor};
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::config::RunConfig;
use crate::data::augment::{AugmentConfig, Normalize};
use crate::data::loader::Loader;
use crate::data::{InMemory, Split};
use crate::deploy::Deployed;
use crate::distill::extractor::ExtractorConfig;
use crate::distill::step::Distill;
use crate::distill::teacher::TeacherHead;
use crate::distill::{DistillConfig, TeacherConfig};
use crate::models::{ModelConfig, flops};
use crate::precision::MixedPrecision;
use crate::profile::{self, Part};
use crate::stats::mean_std;
use crate::train::checkpoint::{Checkpoint, Meta, RunState};
use crate::train::classify::Classify;
use crate::train::distill::{load_teacher, new_student};
use crate::train::trainer::{Task, optimise};

/// What `lstmkd bench` measures. `validate` names the flags of `lstmkd bench`, where these
/// come from.
#[derive(Debug, Clone)]
pub(crate) struct BenchOptions {
    /// Zoo models; the teacher's weights are random.
    pub(crate) teacher: String,
    pub(crate) student: String,
    /// CxHxW.
    pub(crate) input: [usize; 3],
    pub(crate) classes: usize,
    /// Training batch size, and the larger inference batch.
    pub(crate) batch: usize,
    /// Untimed steps first (thread pools, allocator, caches).
    pub(crate) warmup: usize,
    /// Timed steps per case.
    pub(crate) steps: usize,
    pub(crate) device: String,
    /// The extractors' conv channels and LSTM hidden size per direction.
    pub(crate) conv_channels: usize,
    pub(crate) hidden: usize,
    /// `KEY=VALUE` overrides of the benched distillation config.
    pub(crate) overrides: Vec<String>,
}

impl BenchOptions {
    fn validate(&self) -> Result<()> {
        for (name, v) in [
            ("--batch", self.batch),
            ("--steps", self.steps),
            ("--classes", self.classes),
        ] {
            if v == 0 {
                anyhow::bail!("{name}: must be at least 1");
            }
        }
        for (flag, name) in [("--teacher", &self.teacher), ("--student", &self.student)] {
            ModelConfig::new(name)
                .validate()
                .with_context(|| flag.to_string())?;
        }
        Ok(())
    }
}

/// Per-step wall time over the measured steps.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Timing {
    pub(crate) name: String,
    pub(crate) batch: usize,
    pub(crate) ms_mean: f64,
    pub(crate) ms_std: f64,
    pub(crate) img_per_s: f64,
    /// Peak resident memory of the process from the start of this case (Linux, when the peak
    /// could be reset), MiB. Memory the allocator kept from earlier cases counts.
    pub(crate) peak_rss_mib: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct PartRow {
    pub(crate) name: String,
    pub(crate) ms: f64,
    pub(crate) share: f64,
    /// Forward multiply-accumulates of the part per step; for backward an estimate (see
    /// `breakdown`).
    pub(crate) gmac: f64,
    /// Achieved GFLOP/s (2 x MAC / time) as a share of the matrix-product peak.
    pub(crate) peak_share: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Report {
    pub(crate) teacher: String,
    pub(crate) student: String,
    pub(crate) input: [usize; 3],
    pub(crate) classes: usize,
    pub(crate) device: String,
    pub(crate) threads: usize,
    pub(crate) extractor: ExtractorConfig,
    /// The active losses of the distillation step.
    pub(crate) losses: Vec<String>,
    /// f32 matrix product (2048^3), best of three, GFLOP/s (on flex for CPU devices).
    pub(crate) peak_gflops: f64,
    pub(crate) student_step: Timing,
    pub(crate) distill_step: Timing,
    pub(crate) infer_b1: Timing,
    pub(crate) infer_batch: Timing,
    /// One student training step, by part.
    pub(crate) student_breakdown: Vec<PartRow>,
    /// One distillation step, by part.
    pub(crate) breakdown: Vec<PartRow>,
    /// Of the distillation step, the share spent in the four extractor passes.
    pub(crate) extractor_share: f64,
}

/// Peak resident set size since the last reset, MiB (Linux only).
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

/// Starts a new peak-RSS window (Linux: writing 5 to clear_refs resets VmHWM); false where
/// that is not possible, and then the process-wide peak would say nothing about the case.
fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

fn timing(name: &str, batch: usize, step_seconds: &[f64], peak_reset: bool) -> Timing {
    let ms: Vec<f64> = step_seconds.iter().map(|s| s * 1e3).collect();
    let (ms_mean, ms_std) = mean_std(&ms);
    Timing {
        name: name.into(),
        batch,
        ms_mean,
        ms_std,
        img_per_s: batch as f64 * 1e3 / ms_mean,
        peak_rss_mib: peak_reset.then(peak_rss_mib).flatten(),
    }
}

/// GFLOP/s of a 2048 x 2048 f32 matrix product on `device`, best of three: the ceiling the
/// parts' achieved rates are compared with.
pub(crate) fn matmul_peak(device: &Device) -> f64 {
    let n = 2048;
    let a = Tensor::<2>::random([n, n], Distribution::Default, device);
    let b = Tensor::<2>::random([n, n], Distribution::Default, device);
    (0..4)
        .map(|i| {
            let t0 = Instant::now();
            let c = a.clone().matmul(b.clone());
            let _ = c.slice([0..1, 0..1]).into_data();
            let s = t0.elapsed().as_secs_f64();
            // The first product warms the thread pool and the allocator.
            if i == 0 {
                0.0
            } else {
                2.0 * (n as f64).powi(3) / s / 1e9
            }
        })
        .fold(0.0, f64::max)
}

/// `batches` batches of random images of the bench's shape, augmented and normalised by the
/// real loader.
fn synthetic_loader(opts: &BenchOptions, batches: usize) -> Loader {
    let n = opts.batch * batches;
    let chw: usize = opts.input.iter().product();
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let source = InMemory {
        images: (0..n * chw).map(|_| rng.random()).collect(),
        labels: (0..n).map(|i| i % opts.classes).collect(),
        shape: opts.input,
    };
    let c = opts.input[0];
    Loader {
        split: Split::all(Arc::new(source)),
        batch_size: opts.batch,
        normalize: Normalize::new(&vec![0.5; c], &vec![0.25; c]),
        augment: Some(AugmentConfig {
            pad_crop: 4,
            hflip: true,
        }),
        seed: 0,
        prefetch: 4,
    }
}

/// Runs `warmup + steps` optimisation steps on the loader's batches; returns the measured
/// steps' wall times, the parts of the measured steps and the multiply-accumulates of one
/// counted step by part.
fn train_steps<T: Task>(
    task: &mut T,
    mut model: T::Model,
    cfg: &RunConfig,
    opts: &BenchOptions,
    device: &Device,
) -> Result<(Vec<f64>, Vec<Part>, Vec<Part>)> {
    // On the CPU every operation has finished when it returns, so the timed steps can be the
    // recorded ones. Backends that queue work (GPUs) would be slowed by the wait at the end
    // of each part, so there the parts come from as many extra steps.
    let eager = crate::device::is_cpu(&opts.device);
    let recorded = if eager { 0 } else { opts.steps };
    let loader = synthetic_loader(opts, opts.warmup + opts.steps + recorded + 1);
    let mut batches = loader.epoch(0)?;
    let train_device = device.clone().autodiff();
    let mut optim = cfg.optim.init();
    let mut amp = MixedPrecision::new(cfg.train.precision, None);
    let lr = cfg.optim.lr;
    let mut step = |model: T::Model, i: usize| -> Result<T::Model> {
        let batch =
            profile::part("data wait", || batches.next()).context("the loader stopped early")??;
        let samples = batch.samples.clone();
        let (images, targets) = batch.into_tensors(&train_device);
        let (model, _) = optimise(
            task, model, &mut optim, &mut amp, images, targets, &samples, lr, 0, i,
        )?;
        Ok(model)
    };
    for i in 0..opts.warmup {
        model = step(model, i)?;
    }
    let mut steps = |mut model: T::Model, first: usize, seconds: &mut Vec<f64>| {
        for i in first..first + opts.steps {
            let t0 = Instant::now();
            model = step(model, i)?;
            seconds.push(t0.elapsed().as_secs_f64());
        }
        anyhow::Ok(model)
    };
    let mut seconds = Vec::new();
    let first = opts.warmup;
    let (model, parts) = if eager {
        let (model, parts) = profile::record(device, || steps(model, first, &mut seconds));
        (model?, parts)
    } else {
        let model = steps(model, first, &mut seconds)?;
        let (model, parts) =
            profile::record(device, || steps(model, first + opts.steps, &mut Vec::new()));
        (model?, parts)
    };
    let last = first + opts.steps + recorded;
    let ((counted_step, counted), _) =
        flops::count(|| profile::record(device, || step(model, last)));
    counted_step?;
    Ok((seconds, parts, counted))
}

/// Batches through the deployed network in inference mode, reading the logits back each time.
fn inference(
    net: &Deployed,
    opts: &BenchOptions,
    input: [usize; 3],
    batch: usize,
    device: &Device,
    peak_reset: bool,
) -> Timing {
    let [c, h, w] = input;
    let x = Tensor::<4>::random([batch, c, h, w], Distribution::Default, device);
    let reps = (opts.steps * opts.batch / batch).max(opts.steps).min(200);
    let mut seconds = Vec::new();
    for i in 0..opts.warmup + reps {
        let t0 = Instant::now();
        let _ = net.forward(x.clone()).into_data();
        if i >= opts.warmup {
            seconds.push(t0.elapsed().as_secs_f64());
        }
    }
    timing(&format!("inference b{batch}"), batch, &seconds, peak_reset)
}

/// The distillation config the bench runs: the paper's losses, all active from the first step
/// (its joint phase, the costliest), shared-lens student extractors.
const TEMPLATE: &str = r#"
[data]
format = "cifar100"
root = "synthetic"
[model]
name = "resnet8"
[optim]
name = "sgd"
lr = 0.05
momentum = 0.9
weight_decay = 5e-4
nesterov = true
[train]
epochs = 1
batch_size = 64
out_dir = "bench"
[distill]
weights = { ce = 1.0, kd = 1.0, at = 100.0, temporal = 0.05, aux_ce = 0.5 }
end_to_end = true
"#;

/// Random-weight teacher and adapted extractors written where `load_teacher` reads them, so
/// the bench goes through the same loading and student construction as `lstmkd distill`.
fn write_teacher(
    opts: &BenchOptions,
    cfg: &RunConfig,
    dcfg: &DistillConfig,
    dir: &Path,
    device: &Device,
) -> Result<TeacherConfig> {
    let net = ModelConfig::new(&opts.teacher).init(opts.input[0], opts.classes, device)?;
    let mut tcfg = cfg.clone();
    tcfg.model = ModelConfig::new(&opts.teacher);
    tcfg.teacher = None;
    tcfg.distill = None;
    // Random images need no statistics of their own; a checkpoint header needs some.
    let c = opts.input[0];
    tcfg.data.mean.get_or_insert_with(|| vec![0.5; c]);
    tcfg.data.std.get_or_insert_with(|| vec![0.25; c]);
    let state = RunState {
        config: tcfg,
        epoch: 0,
        best_val_acc: 0.0,
        val_acc: 0.0,
        partial: None,
        loss_scale: None,
    };
    let classes = (0..opts.classes).map(|k| k.to_string()).collect();
    let meta = Meta::of_run(state, opts.input, classes);
    let ckpt = Checkpoint::new(meta, &net, None)?;
    let teacher = TeacherConfig {
        checkpoint: dir.join("teacher.ckpt"),
        extractors: Some(dir.join("extractors.ckpt")),
    };
    let head = TeacherHead::init(
        &net,
        opts.input,
        opts.classes,
        &dcfg.extractor,
        dcfg.taps,
        device,
    );
    Checkpoint::new(ckpt.meta.clone(), &head, None)?.save(&teacher.extractors_path())?;
    ckpt.save(&teacher.checkpoint)?;
    Ok(teacher)
}

/// Removes the bench's scratch directory however the bench ends.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub(crate) fn run(opts: &BenchOptions) -> Result<Report> {
    opts.validate()?;
    let device = crate::device::parse(&opts.device)?;
    let train_device = device.clone().autodiff();
    let mut overrides = vec![
        format!("model.name={}", opts.student),
        format!("train.batch_size={}", opts.batch),
        format!("distill.extractor.conv_channels={}", opts.conv_channels),
        format!("distill.extractor.hidden={}", opts.hidden),
    ];
    overrides.extend(opts.overrides.iter().cloned());
    let cfg = RunConfig::parse(TEMPLATE, "bench", &overrides)?;
    let dcfg = cfg.distill.clone().expect("the template has [distill]");
    cfg.train.precision.check(&device, &opts.device)?;

    eprintln!("measuring the matrix-product peak ...");
    // The CPU's peak is a property of the machine: measured with flex's gemm whichever CPU
    // backend runs the steps, so that backends are compared against the same ceiling.
    let cpu = crate::device::is_cpu(&opts.device);
    let peak_gflops = matmul_peak(&if cpu { Device::flex() } else { device.clone() });

    eprintln!("deployed student inference ...");
    let reset = reset_peak_rss();
    // Random weights run at the speed of trained ones; the deployed student is the backbone
    // with its batch norms folded.
    let net = Deployed::Plain(
        cfg.model
            .init(opts.input[0], opts.classes, &device)?
            .valid(),
    )
    .fold_bn();
    let infer_b1 = inference(&net, opts, opts.input, 1, &device, reset);
    let infer_batch = inference(&net, opts, opts.input, opts.batch, &device, reset);

    eprintln!("student training step ({}) ...", opts.student);
    let reset = reset_peak_rss();
    train_device.seed(0);
    let student = cfg.model.init(opts.input[0], opts.classes, &train_device)?;
    let (seconds, parts, counted) = train_steps(&mut Classify, student, &cfg, opts, &device)?;
    let student_step = timing("student step", opts.batch, &seconds, reset);
    let student_breakdown = breakdown(
        &parts,
        &counted,
        opts.steps,
        opts.batch,
        student_step.ms_mean,
        peak_gflops,
    );

    eprintln!(
        "distillation step ({} -> {}) ...",
        opts.teacher, opts.student
    );
    let scratch =
        Scratch(std::env::temp_dir().join(format!("lstmkd-bench-{}", std::process::id())));
    std::fs::create_dir_all(&scratch.0)
        .with_context(|| format!("{}: cannot create", scratch.0.display()))?;
    let tcfg = write_teacher(opts, &cfg, &dcfg, &scratch.0, &device)?;
    let reset = reset_peak_rss();
    let (teacher, _) = load_teacher(&tcfg, &dcfg, &device)?;
    let cfg = RunConfig {
        teacher: Some(tcfg),
        ..cfg
    };
    // As many memory rows (CRD) as `train_steps`' loader can have images.
    let samples = opts.batch * (opts.warmup + 2 * opts.steps + 1);
    let student = new_student(&cfg, &teacher, samples, &train_device)?;
    let task_losses: Vec<String> = dcfg.active_losses().iter().map(|s| s.to_string()).collect();
    let teacher = teacher.in_precision(cfg.train.precision);
    let mut task = Distill::new(teacher, dcfg, 1, 1, opts.classes, 0, None);
    let (seconds, parts, counted) = train_steps(&mut task, student, &cfg, opts, &device)?;
    let distill_step = timing("distillation step", opts.batch, &seconds, reset);

    let breakdown = breakdown(
        &parts,
        &counted,
        opts.steps,
        opts.batch,
        distill_step.ms_mean,
        peak_gflops,
    );
    let extractor_share = breakdown
        .iter()
        .filter(|p| p.name.ends_with("extractors"))
        .map(|p| p.share)
        .sum();
    Ok(Report {
        teacher: opts.teacher.clone(),
        student: opts.student.clone(),
        input: opts.input,
        classes: opts.classes,
        device: opts.device.clone(),
        threads: rayon::current_num_threads(),
        extractor: task.cfg.extractor.clone(),
        losses: task_losses,
        peak_gflops,
        student_step,
        distill_step,
        infer_b1,
        infer_batch,
        student_breakdown,
        breakdown,
        extractor_share,
    })
}

/// Per-step time and arithmetic of each part. Backward has no counter of its own: it is
/// taken as twice the forward arithmetic of the student's parts (input and weight gradients),
/// the usual estimate for convolutions and matrix products; with frozen student extractors it
/// overstates, since those need input gradients only.
fn breakdown(
    parts: &[Part],
    counted: &[Part],
    steps: usize,
    batch: usize,
    step_ms: f64,
    peak_gflops: f64,
) -> Vec<PartRow> {
    // The counter counts per image.
    let macs = |name: &str| {
        counted
            .iter()
            .find(|p| p.name == name)
            .map_or(0, |p| p.macs * batch as u64)
    };
    let trained: u64 = ["student forward", "student extractors"]
        .iter()
        .map(|n| macs(n))
        .sum();
    let other = step_ms
        - parts
            .iter()
            .map(|p| p.seconds * 1e3 / steps as f64)
            .sum::<f64>();
    let rest = Part {
        name: "other",
        seconds: other.max(0.0) * steps as f64 / 1e3,
        macs: 0,
    };
    parts
        .iter()
        .chain([&rest])
        .map(|p| {
            let ms = p.seconds * 1e3 / steps as f64;
            let m = if p.name == "backward" {
                2 * trained
            } else {
                macs(p.name)
            };
            PartRow {
                name: p.name.to_string(),
                ms,
                share: ms / step_ms,
                gmac: m as f64 / 1e9,
                peak_share: (m > 0).then(|| 2.0 * m as f64 / (ms / 1e3) / 1e9 / peak_gflops),
            }
        })
        .collect()
}

/// `bench --checkpoint`: the checkpoint's deployed inference at batch 1 and `--batch`.
pub(crate) fn checkpoint_inference(
    opts: &BenchOptions,
    path: &std::path::Path,
) -> Result<Vec<Timing>> {
    opts.validate()?;
    let device = crate::device::parse(&opts.device)?;
    let ckpt = Checkpoint::load(path)?;
    let input = ckpt.meta.input;
    let net = Deployed::load(&ckpt, &device)?.fold_bn();
    let reset = reset_peak_rss();
    Ok(vec![
        inference(&net, opts, input, 1, &device, reset),
        inference(&net, opts, input, opts.batch, &device, reset),
    ])
}

pub(crate) fn print_timings(rows: &[Timing]) {
    println!(
        "{:<22} {:>6} {:>16} {:>10} {:>13}",
        "case", "batch", "ms/step", "img/s", "peak RSS MiB"
    );
    for t in rows {
        println!(
            "{:<22} {:>6} {:>9.2} +- {:<4.2} {:>10.1} {:>13}",
            t.name,
            t.batch,
            t.ms_mean,
            t.ms_std,
            t.img_per_s,
            t.peak_rss_mib.map_or("-".into(), |m| format!("{m:.0}"))
        );
    }
}

pub(crate) fn print(r: &Report) {
    println!(
        "lstmkd bench: {} -> {}, input {}x{}x{}, {} classes, device {}, {} threads",
        r.teacher, r.student, r.input[0], r.input[1], r.input[2], r.classes, r.device, r.threads
    );
    println!(
        "extractor: window {}, conv {} channels, LSTM hidden {} x {} layers (bidirectional)",
        r.extractor.window, r.extractor.conv_channels, r.extractor.hidden, r.extractor.layers
    );
    println!("distillation losses: {}", r.losses.join(", "));
    println!("matrix-product peak: {:.1} GFLOP/s", r.peak_gflops);
    println!();
    print_timings(&[
        r.student_step.clone(),
        r.distill_step.clone(),
        r.infer_b1.clone(),
        r.infer_batch.clone(),
    ]);
    println!(
        "distillation step / student step: {:.2}x",
        r.distill_step.ms_mean / r.student_step.ms_mean
    );
    for (what, rows) in [
        ("one student training step", &r.student_breakdown),
        ("one distillation step", &r.breakdown),
    ] {
        println!();
        println!("{what}, by part:");
        println!(
            "{:<20} {:>9} {:>7} {:>10} {:>11}",
            "part", "ms", "share", "GMAC", "% of peak"
        );
        for p in rows {
            println!(
                "{:<20} {:>9.2} {:>6.1}% {:>10.3} {:>11}",
                p.name,
                p.ms,
                100.0 * p.share,
                p.gmac,
                p.peak_share
                    .map_or("-".into(), |s| format!("{:.1}%", 100.0 * s))
            );
        }
    }
    println!(
        "extractors (teacher + student, forward): {:.1}% of the step; backward GMAC estimated as 2x the student's forward",
        100.0 * r.extractor_share
    );
}
