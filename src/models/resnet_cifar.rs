//! CIFAR ResNets as in RepDistiller (`resnet8` ... `resnet110`, `resnet8x4`, `resnet32x4`):
//! a 3x3 stem, three stages of basic blocks, global pooling and `fc`.

use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::nn::{BatchNorm, Linear};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};

use super::Output;
use super::layers::{ConvBn, conv, conv2d, fc, fold, foldable_norm, global_pool, linear, norm};

#[derive(Module, Debug)]
pub(crate) struct BasicBlock {
    pub(crate) conv1: Conv2d,
    pub(crate) bn1: Option<BatchNorm>,
    pub(crate) conv2: Conv2d,
    pub(crate) bn2: Option<BatchNorm>,
    pub(crate) downsample: Option<ConvBn>,
}

impl BasicBlock {
    pub(crate) fn new(cin: usize, cout: usize, stride: usize, device: &Device) -> Self {
        let downsample =
            (stride != 1 || cin != cout).then(|| ConvBn::new(cin, cout, 1, stride, 1, device));
        Self {
            conv1: conv2d(cin, cout, 3, stride, 1, false, device),
            bn1: foldable_norm(cout, device),
            conv2: conv2d(cout, cout, 3, 1, 1, false, device),
            bn2: foldable_norm(cout, device),
            downsample,
        }
    }

    pub(crate) fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let identity = match &self.downsample {
            Some(d) => d.forward(x.clone()),
            None => x.clone(),
        };
        let y = relu(norm(&self.bn1, conv(&self.conv1, x)));
        let y = norm(&self.bn2, conv(&self.conv2, y));
        relu(y + identity)
    }

    pub(crate) fn fold_bn(&mut self) {
        fold(&mut self.conv1, &mut self.bn1);
        fold(&mut self.conv2, &mut self.bn2);
        if let Some(d) = &mut self.downsample {
            d.fold_bn();
        }
    }
}

#[derive(Module, Debug)]
pub struct CifarResNet {
    pub(crate) conv1: Conv2d,
    pub(crate) bn1: Option<BatchNorm>,
    pub(crate) layer1: Vec<BasicBlock>,
    pub(crate) layer2: Vec<BasicBlock>,
    pub(crate) layer3: Vec<BasicBlock>,
    pub(crate) fc: Linear,
}

/// `depth` = 6n + 2; `widths` = stem, stage 1, 2, 3 channels.
pub(crate) fn cifar_resnet(
    depth: usize,
    widths: [usize; 4],
    in_channels: usize,
    num_classes: usize,
    device: &Device,
) -> CifarResNet {
    assert!(
        (depth - 2).is_multiple_of(6),
        "CIFAR ResNet depth must be 6n+2"
    );
    let n = (depth - 2) / 6;
    let stage = |cin: usize, cout: usize, stride: usize| -> Vec<BasicBlock> {
        (0..n)
            .map(|i| {
                let (cin, stride) = if i == 0 { (cin, stride) } else { (cout, 1) };
                BasicBlock::new(cin, cout, stride, device)
            })
            .collect()
    };
    CifarResNet {
        conv1: conv2d(in_channels, widths[0], 3, 1, 1, false, device),
        bn1: foldable_norm(widths[0], device),
        layer1: stage(widths[0], widths[1], 1),
        layer2: stage(widths[1], widths[2], 2),
        layer3: stage(widths[2], widths[3], 2),
        fc: fc(widths[3], num_classes, device),
    }
}

pub(crate) fn run_stage<B>(
    blocks: &[B],
    x: Tensor<4>,
    f: impl Fn(&B, Tensor<4>) -> Tensor<4>,
) -> Tensor<4> {
    blocks.iter().fold(x, |x, b| f(b, x))
}

impl CifarResNet {
    pub(crate) fn fold_bn(&mut self) {
        fold(&mut self.conv1, &mut self.bn1);
        for block in self
            .layer1
            .iter_mut()
            .chain(&mut self.layer2)
            .chain(&mut self.layer3)
        {
            block.fold_bn();
        }
    }

    pub(crate) fn forward(&self, x: Tensor<4>) -> Output {
        let x = relu(norm(&self.bn1, conv(&self.conv1, x)));
        let f1 = run_stage(&self.layer1, x, BasicBlock::forward);
        let f2 = run_stage(&self.layer2, f1.clone(), BasicBlock::forward);
        let f3 = run_stage(&self.layer3, f2.clone(), BasicBlock::forward);
        let logits = linear(&self.fc, global_pool(f3.clone()));
        Output {
            logits,
            taps: vec![f1, f2, f3],
        }
    }
}
