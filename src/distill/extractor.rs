//! The spatio-temporal extractor (METHOD.md section 2): height windows of a tap, a Conv3d over
//! (window, position, width), a mean over window and width, a stacked BiLSTM over window
//! positions, a mean over time and an auxiliary linear head.

use burn::module::Module;
use burn::nn::conv::{Conv3d, Conv3dConfig};
use burn::nn::{BiLstm, BiLstmConfig, Linear, LinearConfig, PaddingConfig3d};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::models::flops;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ExtractorConfig {
    /// Rows per window (T).
    #[serde(default = "default_window")]
    pub window: usize,
    /// Conv3d output channels.
    #[serde(default = "default_conv_channels")]
    pub conv_channels: usize,
    /// LSTM hidden size per direction.
    #[serde(default = "default_hidden")]
    pub hidden: usize,
    /// Stacked bidirectional layers.
    #[serde(default = "default_layers")]
    pub layers: usize,
}

fn default_window() -> usize {
    3
}
fn default_conv_channels() -> usize {
    256
}
fn default_hidden() -> usize {
    512
}
fn default_layers() -> usize {
    2
}

impl Default for ExtractorConfig {
    fn default() -> Self {
        Self {
            window: default_window(),
            conv_channels: default_conv_channels(),
            hidden: default_hidden(),
            layers: default_layers(),
        }
    }
}

impl ExtractorConfig {
    pub fn validate(&self) -> anyhow::Result<()> {
        for (name, v) in [
            ("window", self.window),
            ("conv_channels", self.conv_channels),
            ("hidden", self.hidden),
            ("layers", self.layers),
        ] {
            if v == 0 {
                anyhow::bail!("distill.extractor.{name}: must be at least 1");
            }
        }
        Ok(())
    }

    /// An extractor for a tap of `channels` channels with an aux head over `num_classes`.
    pub fn init(&self, channels: usize, num_classes: usize, device: &Device) -> Extractor {
        let conv = Conv3dConfig::new([channels, self.conv_channels], [3, 3, 3])
            .with_padding(PaddingConfig3d::Explicit(1, 1, 1))
            .init(device);
        let lstm = (0..self.layers)
            .map(|l| {
                let d_in = if l == 0 {
                    self.conv_channels
                } else {
                    2 * self.hidden
                };
                BiLstmConfig::new(d_in, self.hidden, true).init(device)
            })
            .collect();
        Extractor {
            conv,
            lstm,
            head: LinearConfig::new(2 * self.hidden, num_classes).init(device),
            window: self.window,
        }
    }
}

#[derive(Module, Debug)]
pub struct Extractor {
    pub conv: Conv3d,
    /// Stacked BiLSTMs, batch-first.
    pub lstm: Vec<BiLstm>,
    pub head: Linear,
    pub window: usize,
}

pub struct ExtractorOut {
    /// z: mean over time of the last layer's outputs, [B, 2 * hidden].
    pub descriptor: Tensor<2>,
    pub aux_logits: Tensor<2>,
    /// Final hidden and cell states of every layer and direction, [layers * 2, B, hidden]
    /// (layer-major, forward before reverse).
    pub hidden: Tensor<3>,
    pub cell: Tensor<3>,
}

/// A contiguous run of window positions (random temporal crop).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Crop {
    pub start: usize,
    pub len: usize,
}

/// Number of window positions N for a tap of height `h` (after padding to the window).
pub fn positions(h: usize, window: usize) -> usize {
    h.max(window) - window + 1
}

/// Height windows S[B, C, T, N, W] with S[:, :, t, i, :] = F[:, :, i + t, :]; rows are
/// zero-padded up to T when the tap is shorter than a window.
pub fn windows(f: Tensor<4>, window: usize) -> Tensor<5> {
    let [b, c, h, w] = f.dims();
    let f = if h < window {
        let pad = Tensor::zeros([b, c, window - h, w], &f.device());
        Tensor::cat(vec![f, pad], 2)
    } else {
        f
    };
    let n = positions(h, window);
    let slices = (0..window)
        .map(|t| f.clone().slice([0..b, 0..c, t..t + n, 0..w]))
        .collect();
    Tensor::stack(slices, 2)
}

impl Extractor {
    /// Runs the extractor on tap `f` ([B, C, H, W]); `crop` restricts it to a sub-sequence of
    /// window positions.
    pub fn forward(&self, f: Tensor<4>, crop: Option<Crop>) -> ExtractorOut {
        let s = windows(f, self.window);
        let [b, c, t, n, w] = s.dims();
        let s = match crop {
            Some(Crop { start, len }) => {
                assert!(
                    start + len <= n && len > 0,
                    "crop {start}+{len} outside {n} windows"
                );
                s.slice([0..b, 0..c, 0..t, start..start + len, 0..w])
            }
            None => s,
        };
        let y = relu(self.conv.forward(s));
        let [_, d, _, n, _] = y.dims();
        if flops::is_counting() {
            flops::add((d * c * 27 * t * n * w) as u64);
        }
        // Mean over the window axis and the width: one feature vector per window position.
        let x = y.mean_dim(4).mean_dim(2).reshape([b, d, n]).swap_dims(1, 2);
        let (mut hs, mut cs) = (Vec::new(), Vec::new());
        let mut x = x;
        for layer in &self.lstm {
            if flops::is_counting() {
                let [_, _, d_in] = x.dims();
                flops::add((2 * 4 * (d_in + layer.d_hidden) * layer.d_hidden * n) as u64);
            }
            let (out, state) = layer.forward(x, None);
            hs.push(state.hidden);
            cs.push(state.cell);
            x = out;
        }
        let [_, _, o] = x.dims();
        let descriptor = x.mean_dim(1).reshape([b, o]);
        if flops::is_counting() {
            let [din, dout] = self.head.weight.shape().dims();
            flops::add((din * dout) as u64);
        }
        ExtractorOut {
            aux_logits: self.head.forward(descriptor.clone()),
            descriptor,
            hidden: Tensor::cat(hs, 0),
            cell: Tensor::cat(cs, 0),
        }
    }
}
