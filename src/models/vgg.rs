//! VGG with batch norm as in RepDistiller (`vgg8`, `vgg13`): five conv blocks separated by
//! 2x2 max-pooling, global pooling, one linear classifier.

use burn::module::Module;
use burn::nn::Linear;
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::tensor::{Device, Tensor};

use super::Output;
use super::layers::{ConvBn, conv2d, fc, foldable_norm, global_pool, linear};

#[derive(Module, Debug)]
pub struct Vgg {
    pub(crate) block0: Vec<ConvBn>,
    pub(crate) block1: Vec<ConvBn>,
    pub(crate) block2: Vec<ConvBn>,
    pub(crate) block3: Vec<ConvBn>,
    pub(crate) block4: Vec<ConvBn>,
    pub(crate) pool: MaxPool2d,
    pub(crate) classifier: Linear,
}

/// `layers` = convs per block: vgg8 [1,1,1,1,1], vgg11 [1,1,2,2,2], vgg13 [2,2,2,2,2].
pub(crate) fn vgg(
    layers: [usize; 5],
    in_channels: usize,
    num_classes: usize,
    device: &Device,
) -> Vgg {
    let widths = [64, 128, 256, 512, 512];
    let mut cin = in_channels;
    let mut block = |i: usize| -> Vec<ConvBn> {
        (0..layers[i])
            .map(|_| {
                let b = ConvBn {
                    conv: conv2d(cin, widths[i], 3, 1, 1, true, device),
                    bn: foldable_norm(widths[i], device),
                };
                cin = widths[i];
                b
            })
            .collect()
    };
    Vgg {
        block0: block(0),
        block1: block(1),
        block2: block(2),
        block3: block(3),
        block4: block(4),
        pool: MaxPool2dConfig::new([2, 2]).with_strides([2, 2]).init(),
        classifier: fc(512, num_classes, device),
    }
}

fn run_block(block: &[ConvBn], x: Tensor<4>) -> Tensor<4> {
    block.iter().fold(x, |x, l| l.forward_relu(x))
}

impl Vgg {
    pub(crate) fn fold_bn(&mut self) {
        for block in [
            &mut self.block0,
            &mut self.block1,
            &mut self.block2,
            &mut self.block3,
            &mut self.block4,
        ] {
            block.iter_mut().for_each(ConvBn::fold_bn);
        }
    }

    pub(crate) fn forward(&self, x: Tensor<4>) -> Output {
        let [_, _, h, _] = x.dims();
        let f0 = run_block(&self.block0, x);
        let f1 = run_block(&self.block1, self.pool.forward(f0.clone()));
        let f2 = run_block(&self.block2, self.pool.forward(f1.clone()));
        let f3 = run_block(&self.block3, self.pool.forward(f2.clone()));
        // As in the reference: the fourth pooling only when the input is large enough
        // (64 px and up), so 32x32 inputs end on a 4x4 map.
        let x = if h >= 64 {
            self.pool.forward(f3.clone())
        } else {
            f3.clone()
        };
        let f4 = run_block(&self.block4, x);
        let logits = linear(&self.classifier, global_pool(f4.clone()));
        Output {
            logits,
            taps: vec![f0, f1, f2, f3, f4],
        }
    }
}
