//! `lstmkd import`: PyTorch weights of a zoo architecture as an lstmkd checkpoint.

use std::path::PathBuf;

use anyhow::Result;

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// lstmkd's zoo name of the architecture (`lstmkd info --list`), e.g. `mobilenetv2` for
    /// torchvision's mobilenet_v2, `resnet8x4` for RepDistiller's.
    #[arg(long)]
    model: String,
    /// The PyTorch weights: a state_dict saved with torch.save (.pth/.pt), also nested under
    /// "model"/"state_dict" or prefixed "module.", or a .safetensors file.
    #[arg(long)]
    weights: PathBuf,
    /// Number of classes (default: the classifier's rows in the file).
    #[arg(long)]
    classes: Option<usize>,
    /// Input size CxHxW (default: 3x224x224 for the ImageNet families, 3x32x32 for the CIFAR
    /// ones; C from the first convolution).
    #[arg(long)]
    input: Option<String>,
    /// Per-channel mean of pixels in [0, 1], comma-separated (default: ImageNet's for the
    /// torchvision families, CIFAR-100's for RepDistiller's).
    #[arg(long, value_delimiter = ',')]
    mean: Option<Vec<f32>>,
    /// Per-channel std, comma-separated (defaults as --mean).
    #[arg(long, value_delimiter = ',')]
    std: Option<Vec<f32>>,
    /// Inference pre-processing: resize the shorter side to this many pixels, then centre-crop
    /// to the input size; 0 resizes images straight to the input size (default: torchvision's
    /// evaluation transform, H / 0.875 = 256 at 224, for the ImageNet families; 0 for the
    /// CIFAR ones).
    #[arg(long)]
    resize: Option<usize>,
    /// A text file with one class name per line (default: 0, 1, ...).
    #[arg(long)]
    class_names: Option<PathBuf>,
    /// Width multiplier (MobileNetV2 and the CIFAR ResNets), as the checkpoint was trained with.
    #[arg(long, default_value_t = 1.0)]
    width: f64,
    /// The lstmkd checkpoint to write.
    #[arg(long)]
    out: PathBuf,
    /// Replace --out if it exists.
    #[arg(long)]
    force: bool,
}

pub(crate) fn run(args: Args) -> Result<()> {
    let opts = crate::interop::import::ImportOptions {
        model: args.model,
        weights: args.weights,
        classes: args.classes,
        input: args.input,
        mean: args.mean,
        std: args.std,
        resize: args.resize,
        class_names: args.class_names,
        width: args.width,
        out: args.out,
        force: args.force,
    };
    let ckpt = crate::interop::import::run(&opts)?;
    let m = &ckpt.meta;
    println!(
        "imported    {} as {} ({} classes, input {}x{}x{}, {} parameters)",
        opts.weights.display(),
        m.model.name,
        m.classes.len(),
        m.input[0],
        m.input[1],
        m.input[2],
        crate::models::count_params(&ckpt.network(&burn::tensor::Device::flex())?)
    );
    println!("mean/std    {:?} / {:?}", m.mean, m.std);
    println!("wrote       {}", opts.out.display());
    Ok(())
}
