//! Building blocks shared by the zoo. Every convolution and linear layer of a zoo model goes
//! through `conv` / `linear` here, so that `flops::count` sees all of the arithmetic.

use burn::module::{Module, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Initializer, Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::activation::relu;
use burn::tensor::{Device, FloatDType, Tensor};

use super::flops;

/// torchvision and RepDistiller initialise convolutions with Kaiming normal (fan out, ReLU gain).
fn conv_init() -> Initializer {
    Initializer::KaimingNormal {
        gain: 2f64.sqrt(),
        fan_out_only: true,
    }
}

/// A 2-D convolution with the zoo's initialisation; `groups` > 1 gives depthwise/grouped convs.
pub(crate) fn conv2d(
    cin: usize,
    cout: usize,
    kernel: usize,
    stride: usize,
    groups: usize,
    bias: bool,
    device: &Device,
) -> Conv2d {
    let pad = kernel / 2;
    Conv2dConfig::new([cin, cout], [kernel, kernel])
        .with_stride([stride, stride])
        .with_groups(groups)
        .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
        .with_bias(bias)
        .with_initializer(conv_init())
        .init(device)
}

pub(crate) fn batch_norm(channels: usize, device: &Device) -> BatchNorm {
    BatchNormConfig::new(channels).init(device)
}

/// A batch norm that follows a convolution: `None` once `fold` has moved it into the
/// convolution's weights (deployment).
pub(crate) fn foldable_norm(channels: usize, device: &Device) -> Option<BatchNorm> {
    Some(batch_norm(channels, device))
}

/// Applies a foldable batch norm (nothing when it has been folded).
pub(crate) fn norm(layer: &Option<BatchNorm>, x: Tensor<4>) -> Tensor<4> {
    match layer {
        Some(bn) => batch_norm_forward(bn, x),
        None => x,
    }
}

/// Batch norm in f32 whatever the activations' precision: under `train.precision` its
/// statistics and affine parameters stay f32, and no backend mixes dtypes in one operation.
pub(crate) fn batch_norm_forward(bn: &BatchNorm, x: Tensor<4>) -> Tensor<4> {
    let dtype = x.dtype();
    bn.forward(x.cast(FloatDType::F32)).cast(dtype)
}

/// Folds the inference-mode batch norm into the convolution that feeds it, removing a pass
/// over the activation: w' = w s and b' = (b - mean) s + beta with s = gamma / sqrt(var + eps).
/// Only valid at inference, with the running statistics the norm has now.
pub(crate) fn fold(conv: &mut Conv2d, bn: &mut Option<BatchNorm>) {
    let Some(b) = bn.take() else {
        return;
    };
    let scale = b.gamma.val() / b.running_var.value().add_scalar(b.epsilon).sqrt();
    let [cout, ..] = conv.weight.dims();
    let weight = conv.weight.val() * scale.clone().reshape([cout, 1, 1, 1]);
    let bias = match conv.bias.take() {
        Some(p) => p.val(),
        None => Tensor::zeros([cout], &scale.device()),
    };
    let bias = (bias - b.running_mean.value()) * scale + b.beta.val();
    conv.weight = Param::from_tensor(weight);
    conv.bias = Some(Param::from_tensor(bias));
}

pub(crate) fn fc(cin: usize, cout: usize, device: &Device) -> Linear {
    LinearConfig::new(cin, cout).init(device)
}

/// Runs a convolution and records its multiply-accumulates when FLOP counting is on.
pub(crate) fn conv(layer: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    let y = layer.forward(x);
    if flops::is_counting() {
        let [cout, cin_per_group, kh, kw] = layer.weight.shape().dims();
        let [_, _, h, w] = y.dims();
        flops::add((cout * cin_per_group * kh * kw * h * w) as u64);
    }
    y
}

pub(crate) fn linear(layer: &Linear, x: Tensor<2>) -> Tensor<2> {
    if flops::is_counting() {
        let [din, dout] = layer.weight.shape().dims();
        flops::add((din * dout) as u64);
    }
    layer.forward(x)
}

/// Global average pooling to a [B, C] feature vector.
pub(crate) fn global_pool(x: Tensor<4>) -> Tensor<2> {
    let [b, c, h, w] = x.dims();
    x.reshape([b, c, h * w]).mean_dim(2).reshape([b, c])
}

/// Convolution followed by batch normalisation, with names as torchvision's (`conv`, `bn`).
#[derive(Module, Debug)]
pub struct ConvBn {
    pub conv: Conv2d,
    pub(crate) bn: Option<BatchNorm>,
}

impl ConvBn {
    pub(crate) fn new(
        cin: usize,
        cout: usize,
        kernel: usize,
        stride: usize,
        groups: usize,
        device: &Device,
    ) -> Self {
        Self {
            conv: conv2d(cin, cout, kernel, stride, groups, false, device),
            bn: foldable_norm(cout, device),
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        norm(&self.bn, conv(&self.conv, x))
    }

    pub(crate) fn fold_bn(&mut self) {
        fold(&mut self.conv, &mut self.bn);
    }

    pub(crate) fn forward_relu(&self, x: Tensor<4>) -> Tensor<4> {
        relu(self.forward(x))
    }
}
