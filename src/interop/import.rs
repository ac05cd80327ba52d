//! `lstmkd import`: a PyTorch state_dict of a zoo architecture as a self-describing lstmkd
//! checkpoint, usable as a teacher, by `eval`, `info`-style inspection, `predict` and `export`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::tensor::Device;

use super::state_dict::{self, StateDict};
use crate::models::ModelConfig;
use crate::train::checkpoint::{Checkpoint, Meta};

/// What `import` reads and writes; `None` takes the architecture family's default (see
/// `import`). The errors name the flags of `lstmkd import`, where these come from.
#[derive(Debug, Clone)]
pub(crate) struct ImportOptions {
    /// lstmkd's zoo name of the architecture.
    pub(crate) model: String,
    /// A PyTorch state_dict (.pth/.pt) or a .safetensors file.
    pub(crate) weights: PathBuf,
    pub(crate) classes: Option<usize>,
    /// CxHxW.
    pub(crate) input: Option<String>,
    /// Per-channel statistics of pixels in [0, 1].
    pub(crate) mean: Option<Vec<f32>>,
    pub(crate) std: Option<Vec<f32>>,
    /// Shorter side resized to this, then centre-cropped; 0 resizes straight to the input.
    pub(crate) resize: Option<usize>,
    /// One class name per line.
    pub(crate) class_names: Option<PathBuf>,
    pub(crate) width: f64,
    pub(crate) out: PathBuf,
    /// Replace `out` if it exists.
    pub(crate) force: bool,
}

/// torchvision's layout and defaults (ImageNet), or RepDistiller's (CIFAR).
fn is_imagenet_family(model: &str) -> bool {
    matches!(model, "resnet18" | "resnet34" | "resnet50" | "mobilenetv2")
}

const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];
/// RepDistiller's CIFAR-100 statistics.
const CIFAR100_MEAN: [f32; 3] = [0.5071, 0.4867, 0.4408];
const CIFAR100_STD: [f32; 3] = [0.2675, 0.2565, 0.2761];

fn dim(sd: &StateDict, key: &str, axis: usize, what: &str, flag: &str) -> Result<usize> {
    let t = sd.get(key).with_context(|| {
        let first: Vec<&str> = sd.keys().take(4).map(String::as_str).collect();
        format!(
            "the file has no '{key}' to read the {what} from (its keys start {}): is --model right? (or give {flag})",
            first.join(", ")
        )
    })?;
    t.shape()
        .get(axis)
        .copied()
        .with_context(|| format!("'{key}' has shape {:?}", t.shape()))
}

fn class_names(path: Option<&Path>, classes: usize) -> Result<Vec<String>> {
    let Some(path) = path else {
        return Ok((0..classes).map(|k| k.to_string()).collect());
    };
    crate::data::read_class_names(path, classes).context("--class-names")
}

/// Builds the checkpoint `opts` describe, its weights from the file.
pub(crate) fn import(opts: &ImportOptions, device: &Device) -> Result<Checkpoint> {
    let model = ModelConfig {
        width: opts.width,
        ..ModelConfig::new(&opts.model)
    };
    model.validate().context("--model")?;
    let sd = state_dict::read(&opts.weights)?;
    let name = model.name.as_str();
    let classes = match opts.classes {
        Some(0) => bail!("--classes: must be at least 1"),
        Some(k) => k,
        None => dim(
            &sd,
            state_dict::classifier_key(name),
            0,
            "class count",
            "--classes",
        )?,
    };
    let imagenet = is_imagenet_family(name);
    let input = match &opts.input {
        Some(s) => crate::models::parse_input(s)?,
        None => {
            let c = dim(
                &sd,
                state_dict::stem_key(name),
                1,
                "input channels",
                "--input",
            )?;
            if imagenet { [c, 224, 224] } else { [c, 32, 32] }
        }
    };
    let (mean, std) = match (&opts.mean, &opts.std) {
        (Some(m), Some(s)) => (m.clone(), s.clone()),
        (None, None) if input[0] == 3 => {
            let (m, s) = if imagenet {
                (IMAGENET_MEAN, IMAGENET_STD)
            } else {
                (CIFAR100_MEAN, CIFAR100_STD)
            };
            (m.to_vec(), s.to_vec())
        }
        (None, None) => bail!(
            "--mean/--std: no default statistics for {} input channels; give one value per channel",
            input[0]
        ),
        _ => bail!("--mean and --std: give both or neither"),
    };
    let origin = format!("imported from {}", opts.weights.display());
    let meta = Meta {
        model: model.clone(),
        input,
        classes: class_names(opts.class_names.as_deref(), classes)?,
        mean,
        std,
        // torchvision's evaluation transform: resize to 256 (= 224 / 0.875), centre crop.
        resize: match opts.resize {
            Some(r) if r > 0 && r < input[1].min(input[2]) => bail!(
                "--resize {r}: smaller than the {}x{} input it is cropped to",
                input[1],
                input[2]
            ),
            Some(r) => r,
            None if imagenet => (input[1] as f64 / 0.875).round() as usize,
            None => 0,
        },
        origin: origin.clone(),
        run: None,
        fused: None,
    };
    let net = model.init(input[0], classes, device)?;
    crate::models::check_input(&net, &model.name, input, device).context("--input")?;
    let net = state_dict::load(net, &sd, &opts.weights.display().to_string())?;
    let ckpt = Checkpoint::new(meta, &net, None)?;
    // Round-trips the header through the same checks a load applies (e.g. the statistics'
    // length against the channels), so a bad option fails here, not in a later command.
    Checkpoint::from_bytes(&ckpt.to_bytes()?, &opts.out)
        .map_err(|e| anyhow::anyhow!("{e:#}").context("--mean/--std/--input"))?;
    Ok(ckpt)
}

pub(crate) fn run(opts: &ImportOptions) -> Result<Checkpoint> {
    if opts.out.exists() && !opts.force {
        bail!(
            "--out {}: already exists; choose another path or pass --force",
            opts.out.display()
        );
    }
    let ckpt = import(opts, &Device::flex())?;
    if let Some(dir) = opts.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("{}: cannot create", dir.display()))?;
    }
    ckpt.save(&opts.out)?;
    Ok(ckpt)
}
