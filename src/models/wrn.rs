//! Wide ResNets as in RepDistiller (`wrn_16_2`, `wrn_40_2`): pre-activation basic blocks in
//! three groups of widths 16k, 32k, 64k.

// `convShortcut` keeps the reference implementation's parameter name so its checkpoints map
// one to one.
#![allow(non_snake_case)]

use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::nn::{BatchNorm, Linear};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};

use super::Output;
use super::layers::{
    batch_norm, batch_norm_forward, conv, conv2d, fc, fold, foldable_norm, global_pool, linear,
    norm,
};
use super::resnet_cifar::run_stage;

#[derive(Module, Debug)]
pub(crate) struct WrnBlock {
    pub(crate) bn1: BatchNorm,
    pub(crate) conv1: Conv2d,
    /// Follows conv1, so it folds; bn1 pre-activates the block input and does not.
    pub(crate) bn2: Option<BatchNorm>,
    pub(crate) conv2: Conv2d,
    pub convShortcut: Option<Conv2d>,
}

impl WrnBlock {
    fn new(cin: usize, cout: usize, stride: usize, device: &Device) -> Self {
        Self {
            bn1: batch_norm(cin, device),
            conv1: conv2d(cin, cout, 3, stride, 1, false, device),
            bn2: foldable_norm(cout, device),
            conv2: conv2d(cout, cout, 3, 1, 1, false, device),
            convShortcut: (cin != cout).then(|| conv2d(cin, cout, 1, stride, 1, false, device)),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let pre = relu(batch_norm_forward(&self.bn1, x.clone()));
        // With a projection the shortcut starts from the pre-activated input (as in the
        // reference implementation); otherwise from the raw input.
        let shortcut = match &self.convShortcut {
            Some(proj) => conv(proj, pre.clone()),
            None => x,
        };
        let y = relu(norm(&self.bn2, conv(&self.conv1, pre)));
        conv(&self.conv2, y) + shortcut
    }

    fn fold_bn(&mut self) {
        fold(&mut self.conv1, &mut self.bn2);
    }
}

#[derive(Module, Debug)]
pub(crate) struct NetworkBlock {
    pub(crate) layer: Vec<WrnBlock>,
}

#[derive(Module, Debug)]
pub struct WideResNet {
    pub(crate) conv1: Conv2d,
    pub(crate) block1: NetworkBlock,
    pub(crate) block2: NetworkBlock,
    pub(crate) block3: NetworkBlock,
    pub(crate) bn1: BatchNorm,
    pub(crate) fc: Linear,
}

/// `depth` = 6n + 4, `widen` = k.
pub(crate) fn wide_resnet(
    depth: usize,
    widen: usize,
    in_channels: usize,
    num_classes: usize,
    device: &Device,
) -> WideResNet {
    assert!((depth - 4).is_multiple_of(6), "WRN depth must be 6n+4");
    let n = (depth - 4) / 6;
    let widths = [16, 16 * widen, 32 * widen, 64 * widen];
    let group = |cin: usize, cout: usize, stride: usize| NetworkBlock {
        layer: (0..n)
            .map(|i| {
                if i == 0 {
                    WrnBlock::new(cin, cout, stride, device)
                } else {
                    WrnBlock::new(cout, cout, 1, device)
                }
            })
            .collect(),
    };
    WideResNet {
        conv1: conv2d(in_channels, widths[0], 3, 1, 1, false, device),
        block1: group(widths[0], widths[1], 1),
        block2: group(widths[1], widths[2], 2),
        block3: group(widths[2], widths[3], 2),
        bn1: batch_norm(widths[3], device),
        fc: fc(widths[3], num_classes, device),
    }
}

impl WideResNet {
    pub(crate) fn fold_bn(&mut self) {
        for block in [&mut self.block1, &mut self.block2, &mut self.block3] {
            block.layer.iter_mut().for_each(WrnBlock::fold_bn);
        }
    }

    pub(crate) fn forward(&self, x: Tensor<4>) -> Output {
        let x = conv(&self.conv1, x);
        let f1 = run_stage(&self.block1.layer, x, WrnBlock::forward);
        let f2 = run_stage(&self.block2.layer, f1.clone(), WrnBlock::forward);
        let f3 = run_stage(&self.block3.layer, f2.clone(), WrnBlock::forward);
        let f3 = relu(batch_norm_forward(&self.bn1, f3));
        let logits = linear(&self.fc, global_pool(f3.clone()));
        Output {
            logits,
            taps: vec![f1, f2, f3],
        }
    }
}
