//! Clip models: a zoo backbone runs on every frame, its classifier resized into a per-frame
//! embedding (appearance), and a head over the clip adds motion. A frame's pooled embedding
//! cannot say where the item is, so a mean of embeddings cannot tell a direction of motion;
//! the motion stream therefore reads the deepest tap, still a map per frame, with 3-D
//! convolutions over (frame, row, column) before pooling. The clip's logits are a linear map of
//! the two pooled streams side by side.

use burn::module::Module;
use burn::nn::conv::{Conv3d, Conv3dConfig};
use burn::nn::{Linear, PaddingConfig3d};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use super::layers::{fc, linear};
use super::{Network, Output, flops};

/// The `model.temporal` table: the clip head's size.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TemporalConfig {
    /// Size of the per-frame embedding the backbone's classifier now produces.
    #[serde(default = "default_embed")]
    pub embed: usize,
    /// Channels of the motion stream's 3-D convolutions (kernel 3 over frame, row, column).
    #[serde(default = "default_embed")]
    pub motion: usize,
    /// How many of them.
    #[serde(default = "default_layers")]
    pub layers: usize,
}

fn default_embed() -> usize {
    64
}
fn default_layers() -> usize {
    1
}

impl Default for TemporalConfig {
    fn default() -> Self {
        Self {
            embed: default_embed(),
            motion: default_embed(),
            layers: default_layers(),
        }
    }
}

impl TemporalConfig {
    pub(crate) fn is_default(&self) -> bool {
        *self == Self::default()
    }

    pub(crate) fn validate(&self) -> anyhow::Result<()> {
        if self.embed == 0 || self.motion == 0 || self.layers == 0 {
            anyhow::bail!("model.temporal: embed, motion and layers must be at least 1");
        }
        Ok(())
    }
}

#[derive(Module, Debug)]
pub struct ClipNet {
    /// One network: burn's derive has no `Box`, and the backbone is itself a `Network`.
    pub backbone: Vec<Network>,
    pub motion: Vec<Conv3d>,
    /// From [appearance embedding, motion channels] to the classes.
    pub fc: Linear,
    pub(crate) frames: usize,
}

/// `deepest` is the channel count of the backbone's deepest tap.
pub(crate) fn clip_net(
    backbone: Network,
    deepest: usize,
    cfg: &TemporalConfig,
    frames: usize,
    num_classes: usize,
    device: &Device,
) -> ClipNet {
    let motion = (0..cfg.layers)
        .map(|l| {
            let cin = if l == 0 { deepest } else { cfg.motion };
            Conv3dConfig::new([cin, cfg.motion], [3, 3, 3])
                .with_padding(PaddingConfig3d::Explicit(1, 1, 1))
                .init(device)
        })
        .collect();
    ClipNet {
        backbone: vec![backbone],
        motion,
        fc: fc(cfg.embed + cfg.motion, num_classes, device),
        frames,
    }
}

impl ClipNet {
    /// `x` is [B x frames, C, H, W], a clip's frames consecutive; the taps stay per frame.
    pub fn forward(&self, x: Tensor<4>) -> Output {
        let before = flops::current();
        let out = self.backbone[0].forward(x);
        // Layers count per image; a clip is `frames` images through the backbone.
        flops::add((flops::current() - before) * (self.frames as u64 - 1));
        let [bf, e] = out.logits.dims();
        let (b, t) = (bf / self.frames, self.frames);
        let appearance = out.logits.reshape([b, t, e]).mean_dim(1).reshape([b, e]);
        let deepest = out.taps.last().expect("a model has taps").clone();
        let [_, c, h, w] = deepest.dims();
        let mut m = deepest.reshape([b, t, c, h, w]).swap_dims(1, 2);
        for layer in &self.motion {
            m = relu(layer.forward(m));
            if flops::is_counting() {
                let [cout, cin, ..] = layer.weight.dims();
                flops::add((cout * cin * 27 * t * h * w) as u64);
            }
        }
        let [_, mc, ..] = m.dims();
        let motion = m.reshape([b, mc, t * h * w]).mean_dim(2).reshape([b, mc]);
        Output {
            logits: linear(&self.fc, Tensor::cat(vec![appearance, motion], 1)),
            taps: out.taps,
        }
    }

    pub(crate) fn fold_bn(&mut self) {
        self.backbone = std::mem::take(&mut self.backbone)
            .into_iter()
            .map(Network::fold_bn)
            .collect();
    }
}
