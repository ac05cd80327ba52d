//! The network a checkpoint deploys: a zoo backbone, or a `fused` student (backbone plus
//! extractors, logits averaged), batch norm folded. `eval`, `predict` and `export` run this.

use anyhow::Result;
use burn::module::Module;
use burn::tensor::{Device, Tensor};

use crate::distill::student::FusedStudent;
use crate::models::{Network, count_params};
use crate::train::checkpoint::Checkpoint;

pub enum Deployed {
    Plain(Network),
    Fused(FusedStudent),
}

impl Deployed {
    /// The checkpoint's network with its weights, in inference mode.
    pub fn load(ckpt: &Checkpoint, device: &Device) -> Result<Self> {
        let m = &ckpt.meta;
        Ok(match &m.fused {
            None => Deployed::Plain(ckpt.network(device)?.valid()),
            Some(spec) => {
                let template =
                    FusedStudent::init(&m.model, m.input, m.classes.len(), spec, device)?;
                Deployed::Fused(ckpt.apply(template)?.valid())
            }
        })
    }

    /// Batch norm folded into the convolutions before it (inference only).
    pub(crate) fn fold_bn(self) -> Self {
        match self {
            Deployed::Plain(net) => Deployed::Plain(net.fold_bn()),
            Deployed::Fused(f) => Deployed::Fused(f.fold_bn()),
        }
    }

    pub(crate) fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        match self {
            Deployed::Plain(net) => net.forward(images).logits,
            Deployed::Fused(f) => f.forward(images),
        }
    }

    /// Frames per sample (1 for images).
    pub(crate) fn frames(&self) -> usize {
        match self {
            Deployed::Plain(net) => net.frames(),
            Deployed::Fused(f) => f.net.frames(),
        }
    }

    /// Learnable parameters, counted as PyTorch does.
    pub(crate) fn params(&self) -> usize {
        match self {
            Deployed::Plain(net) => count_params(net),
            Deployed::Fused(f) => count_params(f),
        }
    }
}
