//! The student during distillation: its zoo backbone plus what the configured losses train with
//! it (extractors, shared-lens adapters, FitNet regressors). Deployment keeps the backbone only
//! (or, `fused`, the extractors too).

use anyhow::{Context, Result};
use burn::module::Module;
use burn::tensor::{Device, Tensor};

use super::adapt::{TeacherHead, tap_shapes};
use super::extractor::{Extractor, ExtractorOut};
use super::losses::fitnet::Regressor;
use super::teacher::Teacher;
use super::{DistillConfig, TemporalInit};
use crate::models::layers::ConvBn;
use crate::models::{ModelConfig, Network};
use crate::train::checkpoint::Checkpoint;

#[derive(Module, Debug)]
pub struct Student {
    pub net: Network,
    /// Shared lens: 1x1 conv + BN from the student's tap channels to the teacher's.
    pub adapters: Vec<ConvBn>,
    pub extractors: Vec<Extractor>,
    pub regressors: Vec<Regressor>,
}

impl Student {
    pub fn init(
        model: &ModelConfig,
        cfg: &DistillConfig,
        teacher: &Teacher,
        device: &Device,
    ) -> Result<Self> {
        let meta = &teacher.checkpoint.meta;
        let classes = meta.classes.len();
        let net = model.init(meta.input[0], classes, device)?;
        let s_shapes = tap_shapes(&net, meta.input, cfg.taps, device);
        let t_shapes = tap_shapes(&teacher.net, meta.input, cfg.taps, device);
        if s_shapes.len() != cfg.taps || t_shapes.len() != cfg.taps {
            anyhow::bail!(
                "distill.taps = {}: the student has {} taps and the teacher {}",
                cfg.taps,
                s_shapes.len(),
                t_shapes.len()
            );
        }
        let needs = cfg.needs();
        let (mut adapters, mut extractors) = (Vec::new(), Vec::new());
        if needs.extractors {
            match cfg.temporal_init {
                TemporalInit::SharedLens => {
                    adapters = s_shapes
                        .iter()
                        .zip(&t_shapes)
                        .map(|(s, t)| ConvBn::new(s[1], t[1], 1, 1, 1, device))
                        .collect();
                    let path = teacher.extractors_path.as_ref().context(
                        "the shared-lens student extractor copies the teacher's adapted extractors",
                    )?;
                    let adapted = Checkpoint::load(path)?;
                    let head = TeacherHead::init(
                        &teacher.net,
                        &teacher.checkpoint,
                        &cfg.extractor,
                        cfg.taps,
                        device,
                    );
                    extractors = adapted
                        .apply(head)
                        .context("teacher.extractors")?
                        .extractors;
                    if cfg.freeze_student_extractor {
                        extractors = extractors.into_iter().map(|e| e.no_grad()).collect();
                    }
                }
                TemporalInit::Random => {
                    extractors = s_shapes
                        .iter()
                        .map(|s| cfg.extractor.init(s[1], classes, device))
                        .collect();
                }
            }
        }
        let regressors = if needs.regressors {
            s_shapes
                .iter()
                .zip(&t_shapes)
                .map(|(s, t)| Regressor::new(s[1], t[1], device))
                .collect()
        } else {
            Vec::new()
        };
        Ok(Self {
            net,
            adapters,
            extractors,
            regressors,
        })
    }

    /// Runs the student's extractors on its distilled taps (through the adapters if any).
    pub fn extract(
        &self,
        taps: &[Tensor<4>],
        crops: Option<&[super::extractor::Crop]>,
    ) -> Vec<ExtractorOut> {
        self.extractors
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let tap = match self.adapters.get(i) {
                    Some(a) => a.forward(taps[i].clone()),
                    None => taps[i].clone(),
                };
                e.forward(tap, crops.map(|c| c[i]))
            })
            .collect()
    }

    /// Inference logits: the backbone's, or with `fused` averaged with the aux heads'.
    pub fn logits(&self, images: Tensor<4>, taps: usize, fused: bool) -> Tensor<2> {
        let out = self.net.forward(images);
        if !fused {
            return out.logits;
        }
        let aux: Vec<Tensor<2>> = self
            .extract(&super::deepest(out.taps, taps), None)
            .into_iter()
            .map(|o| o.aux_logits)
            .collect();
        let n = 1.0 + aux.len() as f64;
        aux.into_iter().fold(out.logits, |a, b| a + b).div_scalar(n)
    }
}
