//! Evaluation of a checkpoint on a test set: top-1/top-5, per-class accuracy, confusion
//! matrix, parameter count and latency.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::tensor::{Device, Tensor};
use serde::Serialize;

use crate::data::augment::Normalize;
use crate::data::loader::Loader;
use crate::data::{DataConfig, Format, Split};
use crate::deploy::Deployed;
use crate::train::checkpoint::{Checkpoint, Meta, write_atomic};
use crate::train::metrics::Tally;
use crate::train::trainer::tally;

#[derive(Debug, Serialize)]
pub(crate) struct Report {
    pub(crate) checkpoint: PathBuf,
    pub(crate) model: String,
    /// Test samples: images, or clips for a clip model.
    pub(crate) images: u64,
    /// Frames per sample (1: images).
    pub(crate) frames: usize,
    pub(crate) top1: f64,
    pub(crate) top5: f64,
    pub(crate) loss: f64,
    pub(crate) per_class: Vec<(String, f64)>,
    pub(crate) params: usize,
    /// Milliseconds per image at batch size 1.
    pub(crate) latency_ms_b1: f64,
    /// Images per second at batch size 64.
    pub(crate) throughput_b64: f64,
    pub(crate) device: String,
}

/// Mean seconds per call of `f` after warm-up, over at least `min_secs` and 3 calls.
pub(crate) fn time_per_call(mut f: impl FnMut(), min_secs: f64) -> f64 {
    f();
    let t0 = Instant::now();
    let mut n = 0u32;
    while n < 3 || t0.elapsed().as_secs_f64() < min_secs {
        f();
        n += 1;
    }
    t0.elapsed().as_secs_f64() / n as f64
}

/// (ms per sample at batch 1, samples/s at batch 64) of an inference forward pass; a sample
/// is an image, or a clip of `frames` images.
pub(crate) fn latency(net: &Deployed, input: [usize; 3], device: &Device) -> (f64, f64) {
    let frames = net.frames();
    let run = |b: usize| {
        let x = Tensor::<4>::zeros([b * frames, input[0], input[1], input[2]], device);
        time_per_call(
            || {
                // Reading one value forces the lazy backend to finish the pass.
                let _ = net.forward(x.clone()).sum().into_scalar::<f32>();
            },
            1.0,
        )
    };
    (1e3 * run(1), 64.0 / run(64))
}

/// Where and how `eval` runs: the checkpoint's own run settings unless overridden.
#[derive(Debug, Default, Clone)]
pub(crate) struct EvalOptions {
    /// Dataset root instead of the run's (required for a checkpoint without a run).
    pub(crate) data: Option<PathBuf>,
    /// Dataset format at `data` (default: the run's, or image-folder).
    pub(crate) format: Option<Format>,
    pub(crate) device: Option<String>,
    pub(crate) batch_size: Option<usize>,
}

/// The dataset a checkpoint is evaluated on: its run's, or (imported weights) the one given,
/// read as the checkpoint's header says (ImageFolder resized and centre-cropped to its input).
fn data_config(meta: &Meta, opts: &EvalOptions) -> Result<DataConfig> {
    let mut data = match (&meta.run, &opts.data) {
        (Some(state), _) => state.config.data.clone(),
        (None, Some(root)) => DataConfig::new(opts.format.unwrap_or(Format::ImageFolder), root),
        (None, None) => bail!(
            "this checkpoint was {} and has no dataset of its own: give --data DIR (and --format)",
            meta.origin
        ),
    };
    if let Some(root) = &opts.data {
        data.root = root.clone();
    }
    if let Some(format) = opts.format {
        data.format = format;
    }
    if data.format.decodes_files() && meta.run.is_none() {
        data.resize = if meta.resize > 0 {
            meta.resize
        } else {
            meta.input[1]
        };
        data.crop = meta.input[1];
    }
    Ok(data)
}

/// Evaluates `ckpt` on its dataset's test split (or the dataset given in `opts`).
pub(crate) fn run(ckpt_path: &Path, opts: &EvalOptions) -> Result<(Report, Tally)> {
    if opts.batch_size == Some(0) {
        bail!("--batch-size: must be at least 1");
    }
    let ckpt = Checkpoint::load(ckpt_path)?;
    let meta = &ckpt.meta;
    let data = data_config(meta, opts)?;
    let run_device = meta.run.as_ref().map(|s| s.config.train.device.clone());
    let device_name = opts
        .device
        .clone()
        .or(run_device)
        .unwrap_or_else(|| "flex".into());
    let device = crate::device::parse(&device_name)?;
    let net = Deployed::load(&ckpt, &device)?;
    let dataset = data.open()?;
    meta.check_data(&dataset, &format!("the checkpoint {}", ckpt_path.display()))
        .with_context(|| format!("{}", data.root.display()))?;
    let batch_size = opts.batch_size.unwrap_or_else(|| {
        meta.run
            .as_ref()
            .map_or(64, |s| s.config.train.eval_batch_size())
    });
    let loader = Loader::evaluation(
        Split::all(dataset.test.clone()),
        batch_size,
        Normalize::new(&meta.mean, &meta.std),
        data.prefetch,
    );
    let params = net.params();
    // Evaluated and timed as deployed: batch norm folded into the convolutions.
    let deployed = net.fold_bn();
    let tally = tally(&loader, &device, dataset.num_classes(), |x| {
        deployed.forward(x)
    })?;
    let (latency_ms_b1, throughput_b64) = latency(&deployed, meta.input, &device);
    let report = Report {
        checkpoint: ckpt_path.to_path_buf(),
        model: match meta.model.frames {
            1 => meta.model.name.clone(),
            f => format!("{} per frame + temporal head, {f} frames", meta.model.name),
        },
        images: tally.count,
        frames: meta.model.frames,
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
        device: device_name,
    };
    Ok((report, tally))
}

/// Writes `eval.json` and `confusion.csv` (rows = true class, columns = predicted) to `dir`.
pub(crate) fn write(report: &Report, tally: &Tally, classes: &[String], dir: &Path) -> Result<()> {
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
