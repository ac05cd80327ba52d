//! MobileNetV2 (torchvision layout) with a width multiplier. The CIFAR stem keeps the first
//! conv and the 24-channel stage at stride 1, so 32x32 inputs end on a 4x4 map.

use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, Linear};
use burn::tensor::{Device, Tensor};

use super::Output;
use super::layers::{ConvBn, fc, global_pool, linear};

fn relu6(x: Tensor<4>) -> Tensor<4> {
    x.clamp(0.0, 6.0)
}

/// torchvision's `_make_divisible`: round to a multiple of 8, never below 90% of `v`.
fn make_divisible(v: f64, divisor: usize) -> usize {
    let d = divisor as f64;
    let mut new_v = ((v + d / 2.0) / d).floor() as usize * divisor;
    new_v = new_v.max(divisor);
    if (new_v as f64) < 0.9 * v {
        new_v += divisor;
    }
    new_v
}

#[derive(Module, Debug)]
pub(crate) struct InvertedResidual {
    pub(crate) expand: Option<ConvBn>,
    pub(crate) depthwise: ConvBn,
    pub(crate) project: ConvBn,
    pub(crate) use_residual: bool,
}

impl InvertedResidual {
    fn new(cin: usize, cout: usize, stride: usize, expand_ratio: usize, device: &Device) -> Self {
        let hidden = cin * expand_ratio;
        Self {
            expand: (expand_ratio != 1).then(|| ConvBn::new(cin, hidden, 1, 1, 1, device)),
            depthwise: ConvBn::new(hidden, hidden, 3, stride, hidden, device),
            project: ConvBn::new(hidden, cout, 1, 1, 1, device),
            use_residual: stride == 1 && cin == cout,
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let y = match &self.expand {
            Some(e) => relu6(e.forward(x.clone())),
            None => x.clone(),
        };
        let y = self.project.forward(relu6(self.depthwise.forward(y)));
        if self.use_residual { y + x } else { y }
    }
}

#[derive(Module, Debug)]
pub struct MobileNetV2 {
    pub(crate) stem: ConvBn,
    pub(crate) blocks: Vec<InvertedResidual>,
    pub(crate) last: ConvBn,
    pub(crate) dropout: Dropout,
    pub(crate) classifier: Linear,
    /// Index into `blocks` after which each stage (a new resolution) ends: the taps.
    pub(crate) tap_after: Vec<usize>,
}

/// (expansion t, channels c, repeats n, stride s), as in the paper's table 2.
const SETTINGS: [(usize, usize, usize, usize); 7] = [
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
];

pub(crate) fn mobilenet_v2(
    width: f64,
    cifar_stem: bool,
    in_channels: usize,
    num_classes: usize,
    device: &Device,
) -> MobileNetV2 {
    let mut cin = make_divisible(32.0 * width, 8);
    let last_channels = make_divisible(1280.0 * width.max(1.0), 8);
    let stem = ConvBn::new(
        in_channels,
        cin,
        3,
        if cifar_stem { 1 } else { 2 },
        1,
        device,
    );
    let mut blocks = Vec::new();
    let mut tap_after = Vec::new();
    for (i, &(t, c, n, s)) in SETTINGS.iter().enumerate() {
        let cout = make_divisible(c as f64 * width, 8);
        let s = if cifar_stem && i == 1 { 1 } else { s };
        // A stage with stride 2 starts a new resolution: the previous one's output is a tap.
        if s == 2 && !blocks.is_empty() {
            tap_after.push(blocks.len() - 1);
        }
        for j in 0..n {
            blocks.push(InvertedResidual::new(
                cin,
                cout,
                if j == 0 { s } else { 1 },
                t,
                device,
            ));
            cin = cout;
        }
    }
    tap_after.push(blocks.len() - 1);
    MobileNetV2 {
        stem,
        blocks,
        last: ConvBn::new(cin, last_channels, 1, 1, 1, device),
        dropout: DropoutConfig::new(0.2).init(),
        classifier: fc(last_channels, num_classes, device),
        tap_after,
    }
}

impl MobileNetV2 {
    pub(crate) fn fold_bn(&mut self) {
        self.stem.fold_bn();
        for block in &mut self.blocks {
            if let Some(e) = &mut block.expand {
                e.fold_bn();
            }
            block.depthwise.fold_bn();
            block.project.fold_bn();
        }
        self.last.fold_bn();
    }

    pub(crate) fn forward(&self, x: Tensor<4>) -> Output {
        let mut x = relu6(self.stem.forward(x));
        let mut taps = Vec::with_capacity(self.tap_after.len());
        for (i, block) in self.blocks.iter().enumerate() {
            x = block.forward(x);
            if self.tap_after.contains(&i) {
                taps.push(x.clone());
            }
        }
        let x = relu6(self.last.forward(x));
        let logits = linear(&self.classifier, self.dropout.forward(global_pool(x)));
        Output { logits, taps }
    }
}
