//! ImageNet ResNets (torchvision layout and parameter names): ResNet-18/34 with basic blocks,
//! ResNet-50 with bottlenecks (stride on the 3x3 conv, "v1.5").

use burn::module::Module;
use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2d;
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{BatchNorm, Linear};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};

use super::Output;
use super::layers::{ConvBn, conv, conv2d, fc, fold, foldable_norm, global_pool, linear, norm};
use super::resnet_cifar::{BasicBlock, run_stage};

#[derive(Module, Debug)]
pub(crate) struct Bottleneck {
    pub(crate) conv1: Conv2d,
    pub(crate) bn1: Option<BatchNorm>,
    pub(crate) conv2: Conv2d,
    pub(crate) bn2: Option<BatchNorm>,
    pub(crate) conv3: Conv2d,
    pub(crate) bn3: Option<BatchNorm>,
    pub(crate) downsample: Option<ConvBn>,
}

impl Bottleneck {
    const EXPANSION: usize = 4;

    fn new(cin: usize, planes: usize, stride: usize, device: &Device) -> Self {
        let cout = planes * Self::EXPANSION;
        let downsample =
            (stride != 1 || cin != cout).then(|| ConvBn::new(cin, cout, 1, stride, 1, device));
        Self {
            conv1: conv2d(cin, planes, 1, 1, 1, false, device),
            bn1: foldable_norm(planes, device),
            conv2: conv2d(planes, planes, 3, stride, 1, false, device),
            bn2: foldable_norm(planes, device),
            conv3: conv2d(planes, cout, 1, 1, 1, false, device),
            bn3: foldable_norm(cout, device),
            downsample,
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let identity = match &self.downsample {
            Some(d) => d.forward(x.clone()),
            None => x.clone(),
        };
        let y = relu(norm(&self.bn1, conv(&self.conv1, x)));
        let y = relu(norm(&self.bn2, conv(&self.conv2, y)));
        relu(norm(&self.bn3, conv(&self.conv3, y)) + identity)
    }

    fn fold_bn(&mut self) {
        fold(&mut self.conv1, &mut self.bn1);
        fold(&mut self.conv2, &mut self.bn2);
        fold(&mut self.conv3, &mut self.bn3);
        if let Some(d) = &mut self.downsample {
            d.fold_bn();
        }
    }
}

#[derive(Module, Debug)]
pub(crate) enum Stage {
    Basic(Vec<BasicBlock>),
    Bottleneck(Vec<Bottleneck>),
}

impl Stage {
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        match self {
            Stage::Basic(blocks) => run_stage(blocks, x, BasicBlock::forward),
            Stage::Bottleneck(blocks) => run_stage(blocks, x, Bottleneck::forward),
        }
    }

    fn fold_bn(&mut self) {
        match self {
            Stage::Basic(blocks) => blocks.iter_mut().for_each(BasicBlock::fold_bn),
            Stage::Bottleneck(blocks) => blocks.iter_mut().for_each(Bottleneck::fold_bn),
        }
    }
}

#[derive(Module, Debug)]
pub struct ResNet {
    pub(crate) conv1: Conv2d,
    pub(crate) bn1: Option<BatchNorm>,
    pub(crate) maxpool: MaxPool2d,
    pub(crate) layer1: Stage,
    pub(crate) layer2: Stage,
    pub(crate) layer3: Stage,
    pub(crate) layer4: Stage,
    pub(crate) fc: Linear,
}

/// `blocks` per stage; `bottleneck` selects ResNet-50-style blocks.
pub(crate) fn resnet(
    blocks: [usize; 4],
    bottleneck: bool,
    in_channels: usize,
    num_classes: usize,
    device: &Device,
) -> ResNet {
    let mut cin = 64;
    let mut stage = |planes: usize, n: usize, stride: usize| -> Stage {
        let strides = (0..n).map(|i| if i == 0 { stride } else { 1 });
        if bottleneck {
            Stage::Bottleneck(
                strides
                    .map(|s| {
                        let b = Bottleneck::new(cin, planes, s, device);
                        cin = planes * Bottleneck::EXPANSION;
                        b
                    })
                    .collect(),
            )
        } else {
            Stage::Basic(
                strides
                    .map(|s| {
                        let b = BasicBlock::new(cin, planes, s, device);
                        cin = planes;
                        b
                    })
                    .collect(),
            )
        }
    };
    let layer1 = stage(64, blocks[0], 1);
    let layer2 = stage(128, blocks[1], 2);
    let layer3 = stage(256, blocks[2], 2);
    let layer4 = stage(512, blocks[3], 2);
    let feat = if bottleneck { 2048 } else { 512 };
    ResNet {
        conv1: conv2d(in_channels, 64, 7, 2, 1, false, device),
        bn1: foldable_norm(64, device),
        maxpool: MaxPool2dConfig::new([3, 3])
            .with_strides([2, 2])
            .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
            .init(),
        layer1,
        layer2,
        layer3,
        layer4,
        fc: fc(feat, num_classes, device),
    }
}

impl ResNet {
    pub(crate) fn fold_bn(&mut self) {
        fold(&mut self.conv1, &mut self.bn1);
        for stage in [
            &mut self.layer1,
            &mut self.layer2,
            &mut self.layer3,
            &mut self.layer4,
        ] {
            stage.fold_bn();
        }
    }

    pub(crate) fn forward(&self, x: Tensor<4>) -> Output {
        let x = self
            .maxpool
            .forward(relu(norm(&self.bn1, conv(&self.conv1, x))));
        let f1 = self.layer1.forward(x);
        let f2 = self.layer2.forward(f1.clone());
        let f3 = self.layer3.forward(f2.clone());
        let f4 = self.layer4.forward(f3.clone());
        let logits = linear(&self.fc, global_pool(f4.clone()));
        Output {
            logits,
            taps: vec![f1, f2, f3, f4],
        }
    }
}
