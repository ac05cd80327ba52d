//! `lstmkd import`: a PyTorch state_dict of a zoo architecture as a self-describing lstmkd
//! checkpoint, usable as a teacher, by `eval`, `info`-style inspection, `predict` and `export`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::tensor::Device;
use clap::Args;

use super::state_dict::{self, StateDict};
use crate::models::ModelConfig;
use crate::train::checkpoint::{Checkpoint, Meta};

#[derive(Args, Debug, Clone)]
pub struct ImportArgs {
    /// lstmkd's zoo name of the architecture (`lstmkd info --list`), e.g. `mobilenetv2` for
    /// torchvision's mobilenet_v2, `resnet8x4` for RepDistiller's.
    #[arg(long)]
    pub model: String,
    /// The PyTorch weights: a state_dict saved with torch.save (.pth/.pt), also nested under
    /// "model"/"state_dict" or prefixed "module.", or a .safetensors file.
    #[arg(long)]
    pub weights: PathBuf,
    /// Number of classes (default: the classifier's rows in the file).
    #[arg(long)]
    pub classes: Option<usize>,
    /// Input size CxHxW (default: 3x224x224 for the ImageNet families, 3x32x32 for the CIFAR
    /// ones; C from the first convolution).
    #[arg(long)]
    pub input: Option<String>,
    /// Per-channel mean of pixels in [0, 1], comma-separated (default: ImageNet's for the
    /// torchvision families, CIFAR-100's for RepDistiller's).
    #[arg(long, value_delimiter = ',')]
    pub mean: Option<Vec<f32>>,
    /// Per-channel std, comma-separated (defaults as --mean).
    #[arg(long, value_delimiter = ',')]
    pub std: Option<Vec<f32>>,
    /// Inference pre-processing: resize the shorter side to this many pixels, then centre-crop
    /// to the input size; 0 resizes images straight to the input size (default: torchvision's
    /// evaluation transform, H / 0.875 = 256 at 224, for the ImageNet families; 0 for the
    /// CIFAR ones).
    #[arg(long)]
    pub resize: Option<usize>,
    /// A text file with one class name per line (default: 0, 1, ...).
    #[arg(long)]
    pub class_names: Option<PathBuf>,
    /// Width multiplier (MobileNetV2 and the CIFAR ResNets), as the checkpoint was trained with.
    #[arg(long, default_value_t = 1.0)]
    pub width: f64,
    /// The lstmkd checkpoint to write.
    #[arg(long)]
    pub out: PathBuf,
    /// Replace --out if it exists.
    #[arg(long)]
    pub force: bool,
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

/// Builds the checkpoint `args` describe, its weights from the file.
pub fn import(args: &ImportArgs, device: &Device) -> Result<Checkpoint> {
    let model = ModelConfig {
        width: args.width,
        ..ModelConfig::new(&args.model)
    };
    model.validate().context("--model")?;
    let sd = state_dict::read(&args.weights)?;
    let name = model.name.as_str();
    let classes = match args.classes {
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
    let input = match &args.input {
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
    let (mean, std) = match (&args.mean, &args.std) {
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
    let origin = format!("imported from {}", args.weights.display());
    let meta = Meta {
        model: model.clone(),
        input,
        classes: class_names(args.class_names.as_deref(), classes)?,
        mean,
        std,
        // torchvision's evaluation transform: resize to 256 (= 224 / 0.875), centre crop.
        resize: match args.resize {
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
    let net = state_dict::load(net, &sd, &args.weights.display().to_string())?;
    let ckpt = Checkpoint::new(meta, &net, None)?;
    // Round-trips the header through the same checks a load applies (e.g. the statistics'
    // length against the channels), so a bad option fails here, not in a later command.
    Checkpoint::from_bytes(&ckpt.to_bytes()?, &args.out)
        .map_err(|e| anyhow::anyhow!("{e:#}").context("--mean/--std/--input"))?;
    Ok(ckpt)
}

pub fn run(args: &ImportArgs) -> Result<Checkpoint> {
    if args.out.exists() && !args.force {
        bail!(
            "--out {}: already exists; choose another path or pass --force",
            args.out.display()
        );
    }
    let ckpt = import(args, &Device::flex())?;
    if let Some(dir) = args.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("{}: cannot create", dir.display()))?;
    }
    ckpt.save(&args.out)?;
    Ok(ckpt)
}
