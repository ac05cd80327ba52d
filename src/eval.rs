//! Evaluation of a checkpoint on a test set: top-1/top-5, per-class accuracy, confusion
//! matrix, parameter count and latency.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use burn::module::Module;
use burn::tensor::{Device, Tensor};
use serde::Serialize;

use crate::data::Split;
use crate::data::augment::Normalize;
use crate::data::loader::Loader;
use crate::models::Network;
use crate::train::checkpoint::{Checkpoint, write_atomic};
use crate::train::classify::Classify;
use crate::train::metrics::Tally;
use crate::train::trainer::evaluate;

#[derive(Debug, Serialize)]
pub struct Report {
    pub checkpoint: PathBuf,
    pub model: String,
    pub images: u64,
    pub top1: f64,
    pub top5: f64,
    pub loss: f64,
    pub per_class: Vec<(String, f64)>,
    pub params: usize,
    /// Milliseconds per image at batch size 1.
    pub latency_ms_b1: f64,
    /// Images per second at batch size 64.
    pub throughput_b64: f64,
    pub device: String,
}

/// Mean seconds per call of `f` after warm-up, over at least `min_secs` and 3 calls.
pub fn time_per_call(mut f: impl FnMut(), min_secs: f64) -> f64 {
    f();
    let t0 = Instant::now();
    let mut n = 0u32;
    while n < 3 || t0.elapsed().as_secs_f64() < min_secs {
        f();
        n += 1;
    }
    t0.elapsed().as_secs_f64() / n as f64
}

/// (ms per image at batch 1, images/s at batch 64) of an inference forward pass.
pub fn latency(net: &Network, input: [usize; 3], device: &Device) -> (f64, f64) {
    let net = net.valid();
    let run = |b: usize| {
        let x = Tensor::<4>::zeros([b, input[0], input[1], input[2]], device);
        time_per_call(
            || {
                // Reading one value forces the lazy backend to finish the pass.
                let _ = net.forward(x.clone()).logits.sum().into_scalar::<f32>();
            },
            1.0,
        )
    };
    (1e3 * run(1), 64.0 / run(64))
}

/// Evaluates `ckpt` on its dataset's test split (or the dataset at `data_root`).
pub fn run(
    ckpt_path: &Path,
    data_root: Option<PathBuf>,
    device_spec: Option<&str>,
    batch: Option<usize>,
) -> Result<(Report, Tally)> {
    let ckpt = Checkpoint::load(ckpt_path)?;
    let mut cfg = ckpt.meta.config.clone();
    if let Some(root) = data_root {
        cfg.data.root = root;
    }
    let device = crate::device::parse(device_spec.unwrap_or(&cfg.train.device))?;
    let net = ckpt.network(&device)?;
    let dataset = cfg.data.open()?;
    if dataset.shape() != ckpt.meta.input || dataset.num_classes() != ckpt.meta.classes.len() {
        anyhow::bail!(
            "{}: images {:?} with {} classes do not fit the checkpoint's {:?} with {} classes",
            cfg.data.root.display(),
            dataset.shape(),
            dataset.num_classes(),
            ckpt.meta.input,
            ckpt.meta.classes.len()
        );
    }
    let (mean, std) = (cfg.data.mean.clone(), cfg.data.std.clone());
    let loader = Loader {
        split: Split::all(dataset.test.clone()),
        batch_size: batch.unwrap_or(cfg.train.eval_batch_size()),
        normalize: Normalize::new(
            &mean.context("checkpoint config has no data.mean")?,
            &std.context("checkpoint config has no data.std")?,
        ),
        augment: None,
        seed: 0,
        prefetch: cfg.data.prefetch,
    };
    let params = crate::models::count_params(&net);
    // Evaluated and timed as deployed: batch norm folded into the convolutions.
    let deployed = net.valid().fold_bn();
    let tally = evaluate(
        &Classify,
        &deployed,
        &loader,
        &device,
        dataset.num_classes(),
    )?;
    let (latency_ms_b1, throughput_b64) = latency(&deployed, ckpt.meta.input, &device);
    let report = Report {
        checkpoint: ckpt_path.to_path_buf(),
        model: cfg.model.name.clone(),
        images: tally.count,
        top1: tally.top1(),
        top5: tally.top5(),
        loss: tally.loss(),
        per_class: dataset
            .classes
            .iter()
            .cloned()
            .zip(tally.per_class())
            .collect(),
        params,
        latency_ms_b1,
        throughput_b64,
        device: cfg.train.device.clone(),
    };
    Ok((report, tally))
}

/// Writes `eval.json` and `confusion.csv` (rows = true class, columns = predicted) to `dir`.
pub fn write(report: &Report, tally: &Tally, classes: &[String], dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create", dir.display()))?;
    write_atomic(
        &dir.join("eval.json"),
        serde_json::to_string_pretty(report)?.as_bytes(),
    )?;
    let mut csv = String::from("true\\pred");
    for c in classes {
        csv.push(',');
        csv.push_str(c);
    }
    csv.push('\n');
    for (c, row) in classes.iter().zip(&tally.confusion) {
        csv.push_str(c);
        for v in row {
            csv.push_str(&format!(",{v}"));
        }
        csv.push('\n');
    }
    write_atomic(&dir.join("confusion.csv"), csv.as_bytes())
}
