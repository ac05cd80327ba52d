//! The model zoo. Every model returns its logits and the outputs of its stages ("taps"); the
//! distillation methods attach to the taps.

pub mod clip;
pub mod flops;
pub mod layers;
pub mod mobilenetv2;
pub mod resnet;
pub mod resnet_cifar;
pub mod vgg;
pub mod wrn;

use anyhow::{Context, Result, bail};
use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::{DType, Device, FloatDType, Tensor};
use serde::{Deserialize, Serialize};

pub struct Output {
    pub logits: Tensor<2>,
    /// Stage outputs, shallow to deep, each [B, C, H, W].
    pub taps: Vec<Tensor<4>>,
}

// One Network per model, built once and used by reference: the size of the enum costs
// nothing, while boxing a variant would change its record's layout.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum Network {
    CifarResNet(resnet_cifar::CifarResNet),
    WideResNet(wrn::WideResNet),
    Vgg(vgg::Vgg),
    MobileNetV2(mobilenetv2::MobileNetV2),
    ResNet(resnet::ResNet),
    /// A backbone per frame with a temporal head (clips).
    Clip(clip::ClipNet),
}

impl Network {
    /// Runs in the precision of the network's weights (`train.precision` casts them); the
    /// outputs are f32, as the losses and extractors expect.
    pub fn forward(&self, x: Tensor<4>) -> Output {
        let x = x.cast(self.dtype());
        let out = match self {
            Network::CifarResNet(m) => m.forward(x),
            Network::WideResNet(m) => m.forward(x),
            Network::Vgg(m) => m.forward(x),
            Network::MobileNetV2(m) => m.forward(x),
            Network::ResNet(m) => m.forward(x),
            Network::Clip(m) => m.forward(x),
        };
        Output {
            logits: out.logits.cast(FloatDType::F32),
            taps: out
                .taps
                .into_iter()
                .map(|t| t.cast(FloatDType::F32))
                .collect(),
        }
    }

    /// The dtype of the first weight (a convolution's: batch norm never comes first).
    fn dtype(&self) -> DType {
        struct First(Option<DType>);
        impl ModuleVisitor for First {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
                self.0.get_or_insert_with(|| param.val().dtype());
            }
        }
        let mut first = First(None);
        self.visit(&mut first);
        first.0.unwrap_or(DType::F32)
    }

    /// Frames per sample: a clip model reads [B x frames, C, H, W] and gives B rows of logits.
    pub(crate) fn frames(&self) -> usize {
        match self {
            Network::Clip(m) => m.frames,
            _ => 1,
        }
    }

    /// The network for deployment: every batch norm that directly follows a convolution
    /// folded into it (inference only; WRN's pre-activation norms stay).
    pub fn fold_bn(mut self) -> Self {
        match &mut self {
            Network::CifarResNet(m) => m.fold_bn(),
            Network::WideResNet(m) => m.fold_bn(),
            Network::Vgg(m) => m.fold_bn(),
            Network::MobileNetV2(m) => m.fold_bn(),
            Network::ResNet(m) => m.fold_bn(),
            Network::Clip(m) => m.fold_bn(),
        }
        self
    }
}

/// The `[model]` table of a run config.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// A zoo name, see `lstmkd info --list`.
    pub name: String,
    /// Channel width multiplier (MobileNetV2 and the CIFAR ResNets).
    #[serde(default = "one")]
    pub width: f64,
    /// Frames per sample, set from the data: above 1 the network is a clip model, the zoo
    /// model on every frame followed by a temporal head.
    #[serde(default = "one_frame", skip_serializing_if = "is_one_frame")]
    pub frames: usize,
    /// Clip models: the temporal head.
    #[serde(default, skip_serializing_if = "clip::TemporalConfig::is_default")]
    pub temporal: clip::TemporalConfig,
}

fn one_frame() -> usize {
    1
}
fn is_one_frame(f: &usize) -> bool {
    *f == 1
}

fn one() -> f64 {
    1.0
}

/// Zoo names with a one-line description, in the order `info --list` prints them.
pub const ZOO: &[(&str, &str)] = &[
    ("resnet8", "CIFAR ResNet, depth 8, widths 16/32/64"),
    ("resnet14", "CIFAR ResNet, depth 14"),
    ("resnet20", "CIFAR ResNet, depth 20"),
    ("resnet32", "CIFAR ResNet, depth 32"),
    ("resnet44", "CIFAR ResNet, depth 44"),
    ("resnet56", "CIFAR ResNet, depth 56"),
    ("resnet110", "CIFAR ResNet, depth 110"),
    ("resnet8x4", "CIFAR ResNet, depth 8, widths 64/128/256"),
    ("resnet32x4", "CIFAR ResNet, depth 32, widths 64/128/256"),
    ("wrn_16_2", "Wide ResNet 16-2"),
    ("wrn_40_2", "Wide ResNet 40-2"),
    ("vgg8", "VGG-8 with batch norm"),
    ("vgg11", "VGG-11 with batch norm"),
    ("vgg13", "VGG-13 with batch norm"),
    ("mobilenetv2", "MobileNetV2, ImageNet stem (stride 32)"),
    ("mobilenetv2_cifar", "MobileNetV2, CIFAR stem (stride 8)"),
    ("resnet18", "ImageNet ResNet-18 (torchvision)"),
    ("resnet34", "ImageNet ResNet-34 (torchvision)"),
    ("resnet50", "ImageNet ResNet-50 (torchvision)"),
];

impl ModelConfig {
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_string(),
            width: 1.0,
            frames: 1,
            temporal: clip::TemporalConfig::default(),
        }
    }

    /// Checks the name and options without building anything.
    pub fn validate(&self) -> Result<()> {
        if !ZOO.iter().any(|(n, _)| *n == self.name) {
            let names: Vec<&str> = ZOO.iter().map(|(n, _)| *n).collect();
            bail!(
                "model.name: unknown model '{}'; the zoo has: {}",
                self.name,
                names.join(", ")
            );
        }
        if self.frames == 0 {
            bail!("model.frames: must be at least 1");
        }
        self.temporal.validate()?;
        // Parameters grow with the square of the multiplier: at 16x a ResNet-110 has about
        // 440 million, and larger values only fail on allocation.
        if !(self.width > 0.0 && self.width <= 16.0) {
            bail!("model.width: a multiplier in (0, 16], got {}", self.width);
        }
        let imagenet_resnet = matches!(self.name.as_str(), "resnet18" | "resnet34" | "resnet50");
        let scalable = self.name.starts_with("mobilenetv2")
            || self.name.starts_with("resnet") && !imagenet_resnet;
        if self.width != 1.0 && !scalable {
            bail!(
                "model.width: the width multiplier applies to MobileNetV2 and the CIFAR ResNets only, not '{}'",
                self.name
            );
        }
        Ok(())
    }

    pub fn init(&self, in_channels: usize, num_classes: usize, device: &Device) -> Result<Network> {
        self.validate()?;
        if self.frames > 1 {
            let frame = Self {
                frames: 1,
                ..self.clone()
            };
            let backbone = frame.init(in_channels, self.temporal.embed, device)?;
            let deepest = summarize(&backbone, [1, in_channels, 32, 32], device)
                .taps
                .last()
                .map_or(1, |t| t[1]);
            return Ok(Network::Clip(clip::clip_net(
                backbone,
                deepest,
                &self.temporal,
                self.frames,
                num_classes,
                device,
            )));
        }
        let (c, k) = (in_channels, num_classes);
        // The nearest channel count, at least one (MobileNetV2 keeps torchvision's own rounding).
        let scaled = |w: usize| ((w as f64 * self.width).round() as usize).max(1);
        let cifar = |depth, widths: [usize; 4]| {
            let widths = widths.map(scaled);
            Network::CifarResNet(resnet_cifar::cifar_resnet(depth, widths, c, k, device))
        };
        const NARROW: [usize; 4] = [16, 16, 32, 64];
        const WIDE: [usize; 4] = [32, 64, 128, 256];
        Ok(match self.name.as_str() {
            "resnet8" => cifar(8, NARROW),
            "resnet14" => cifar(14, NARROW),
            "resnet20" => cifar(20, NARROW),
            "resnet32" => cifar(32, NARROW),
            "resnet44" => cifar(44, NARROW),
            "resnet56" => cifar(56, NARROW),
            "resnet110" => cifar(110, NARROW),
            "resnet8x4" => cifar(8, WIDE),
            "resnet32x4" => cifar(32, WIDE),
            "wrn_16_2" => Network::WideResNet(wrn::wide_resnet(16, 2, c, k, device)),
            "wrn_40_2" => Network::WideResNet(wrn::wide_resnet(40, 2, c, k, device)),
            "vgg8" => Network::Vgg(vgg::vgg([1; 5], c, k, device)),
            "vgg11" => Network::Vgg(vgg::vgg([1, 1, 2, 2, 2], c, k, device)),
            "vgg13" => Network::Vgg(vgg::vgg([2; 5], c, k, device)),
            "mobilenetv2" => {
                Network::MobileNetV2(mobilenetv2::mobilenet_v2(self.width, false, c, k, device))
            }
            "mobilenetv2_cifar" => {
                Network::MobileNetV2(mobilenetv2::mobilenet_v2(self.width, true, c, k, device))
            }
            "resnet18" => Network::ResNet(resnet::resnet([2, 2, 2, 2], false, c, k, device)),
            "resnet34" => Network::ResNet(resnet::resnet([3, 4, 6, 3], false, c, k, device)),
            "resnet50" => Network::ResNet(resnet::resnet([3, 4, 6, 3], true, c, k, device)),
            other => unreachable!("validated above: {other}"),
        })
    }
}

/// An input size written as CxHxW (`--input 3x32x32`).
pub(crate) fn parse_input(s: &str) -> Result<[usize; 3]> {
    let v: Vec<usize> = s
        .split('x')
        .map(|p| p.trim().parse::<usize>())
        .collect::<std::result::Result<_, _>>()
        .with_context(|| format!("--input '{s}': expected CxHxW, e.g. 3x32x32"))?;
    match v.as_slice() {
        [c, h, w] if *c > 0 && *h > 0 && *w > 0 => Ok([*c, *h, *w]),
        _ => bail!("--input '{s}': expected three positive sizes CxHxW, e.g. 3x32x32"),
    }
}

/// Learnable parameters, counted as PyTorch's `parameters()` does: burn's `num_params` also
/// counts batch-norm running statistics, which PyTorch keeps as buffers.
pub fn count_params<M: Module>(module: &M) -> usize {
    struct Counter {
        path: Vec<String>,
        total: usize,
    }
    impl ModuleVisitor for Counter {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.path.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let buffer = matches!(
                self.path.last().map(String::as_str),
                Some("running_mean" | "running_var")
            );
            if !buffer {
                self.total += param.lazy_shape().num_elements();
            }
        }
    }
    let mut c = Counter {
        path: Vec::new(),
        total: 0,
    };
    module.visit(&mut c);
    c.total
}

/// What `lstmkd info` reports about a model at a given input size.
pub struct Summary {
    pub(crate) params: usize,
    pub macs: u64,
    pub(crate) taps: Vec<[usize; 4]>,
    pub logits: [usize; 2],
}

/// Refuses an input size at which a tap of `net` (model `name`) would be empty: a VGG's
/// unpadded poolings take 4x4 images to 0x0, and the loss would only show it as NaN.
pub(crate) fn check_input(
    net: &Network,
    name: &str,
    input: [usize; 3],
    device: &Device,
) -> Result<()> {
    let [c, h, w] = input;
    let taps = summarize(net, [1, c, h, w], device).taps;
    if let Some((k, t)) = taps
        .iter()
        .enumerate()
        .find(|(_, t)| t[2] == 0 || t[3] == 0)
    {
        bail!(
            "images of {h}x{w} are too small for '{name}': its tap {k} comes out {}x{}",
            t[2],
            t[3]
        );
    }
    Ok(())
}

/// `input` is [B, C, H, W] with B samples: a clip model gets B x frames images.
pub fn summarize(net: &Network, input: [usize; 4], device: &Device) -> Summary {
    let [b, c, h, w] = input;
    let x = Tensor::<4>::zeros([b * net.frames(), c, h, w], device);
    let (out, macs) = flops::count(|| net.valid().forward(x));
    Summary {
        params: count_params(net),
        macs,
        taps: out.taps.iter().map(|t| t.dims()).collect(),
        logits: out.logits.dims(),
    }
}
