//! Clip models: a zoo backbone runs on every frame, its classifier resized into a per-frame
//! embedding; a small temporal head then reads the frame sequence. No single frame need tell
//! the class (a direction of motion is only in the frames' order), so the head's temporal
//! convolutions compare neighbouring frames before a mean over time and a linear classifier.
//! Convolutions over (frames x 1) keep the head inside what the ONNX writer and every backend
//! already run.

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Linear, PaddingConfig2d};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use super::layers::{conv, fc, linear};
use super::{Network, Output};

/// The `model.temporal` table: the clip head's size.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TemporalConfig {
    /// Size of the per-frame embedding the backbone's classifier now produces.
    #[serde(default = "default_embed")]
    pub embed: usize,
    /// Temporal convolutions (each kernel 3 over frames, ReLU).
    #[serde(default = "default_layers")]
    pub layers: usize,
}

fn default_embed() -> usize {
    64
}
fn default_layers() -> usize {
    2
}

impl Default for TemporalConfig {
    fn default() -> Self {
        Self {
            embed: default_embed(),
            layers: default_layers(),
        }
    }
}

impl TemporalConfig {
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        if self.embed == 0 {
            anyhow::bail!("model.temporal.embed: must be at least 1");
        }
        Ok(())
    }
}

#[derive(Module, Debug)]
pub struct ClipNet {
    /// One network: burn's derive has no `Box`, and the backbone is itself a `Network`.
    pub backbone: Vec<Network>,
    pub temporal: Vec<Conv2d>,
    pub fc: Linear,
    pub frames: usize,
}

pub fn clip_net(
    backbone: Network,
    cfg: &TemporalConfig,
    frames: usize,
    num_classes: usize,
    device: &Device,
) -> ClipNet {
    let e = cfg.embed;
    let temporal = (0..cfg.layers)
        .map(|_| {
            Conv2dConfig::new([e, e], [3, 1])
                .with_padding(PaddingConfig2d::Explicit(1, 0, 1, 0))
                .init(device)
        })
        .collect();
    ClipNet {
        backbone: vec![backbone],
        temporal,
        fc: fc(e, num_classes, device),
        frames,
    }
}

impl ClipNet {
    /// `x` is [B x frames, C, H, W], a clip's frames consecutive; the taps stay per frame.
    pub fn forward(&self, x: Tensor<4>) -> Output {
        let out = self.backbone[0].forward(x);
        let [bf, e] = out.logits.dims();
        let b = bf / self.frames;
        // [B, E, frames, 1]: the frames as the height of a one-pixel-wide map. The embedding
        // enters linearly: a ReLU on it can silence every frame of a clip early in training.
        let mut h = out
            .logits
            .reshape([b, self.frames, e])
            .swap_dims(1, 2)
            .reshape([b, e, self.frames, 1]);
        for layer in &self.temporal {
            h = relu(conv(layer, h));
        }
        let pooled = h.mean_dim(2).reshape([b, e]);
        Output {
            logits: linear(&self.fc, pooled),
            taps: out.taps,
        }
    }

    pub fn fold_bn(&mut self) {
        self.backbone = std::mem::take(&mut self.backbone)
            .into_iter()
            .map(Network::fold_bn)
            .collect();
    }
}
