//! The student during distillation: its zoo backbone plus what the configured losses train with
//! it (extractors, shared-lens adapters, the parts its losses own). Deployment keeps the backbone only
//! (or, `fused`, the extractors too).

use anyhow::Result;
use burn::module::Module;
use burn::tensor::{Device, Tensor};

use super::extractor::{Extractor, ExtractorOut, Reading, mean_logits};
use super::losses::{Parts, PartsContext};
use super::teacher::{Teacher, TeacherHead, tap_shapes};
use super::{DistillConfig, FusedSpec, TemporalInit};
use crate::models::layers::ConvBn;
use crate::models::{ModelConfig, Network};

/// What the student's extractors read its taps through: the shared-lens adapters (none with
/// `temporal_init = "random"`) and the extractors. In `fused` mode it is deployed with the
/// backbone.
#[derive(Module, Debug)]
pub struct StudentHead {
    /// Shared lens: 1x1 conv + BN from the student's tap channels to the teacher's.
    pub adapters: Vec<ConvBn>,
    pub extractors: Vec<Extractor>,
}

impl StudentHead {
    /// Runs the extractors on the distilled taps (through the adapters if any).
    pub(crate) fn extract(&self, taps: &[Tensor<4>], reading: Reading) -> Vec<ExtractorOut> {
        self.extractors
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let tap = match self.adapters.get(i) {
                    Some(a) => a.forward(taps[i].clone()),
                    None => taps[i].clone(),
                };
                e.read(tap, reading, i)
            })
            .collect()
    }

    /// The fused prediction: the backbone's logits averaged with the aux heads' on its
    /// deepest taps.
    pub(crate) fn fuse(&self, out: crate::models::Output) -> Tensor<2> {
        let taps = super::deepest(out.taps, self.extractors.len());
        let aux = self
            .extract(&taps, Reading::Whole)
            .into_iter()
            .map(|o| o.aux_logits);
        mean_logits(std::iter::once(out.logits).chain(aux))
    }

    pub(crate) fn fold_bn(&mut self) {
        self.adapters.iter_mut().for_each(ConvBn::fold_bn);
    }
}

#[derive(Module, Debug)]
pub struct Student {
    pub net: Network,
    pub head: StudentHead,
    /// The parts of the losses that own some (`DistillConfig::owning_losses`), in that order.
    pub parts: Vec<Parts>,
}

/// The deployed student of a `fused` run: backbone plus extractors, predicting with both.
#[derive(Module, Debug)]
pub struct FusedStudent {
    pub(crate) net: Network,
    pub(crate) head: StudentHead,
}

impl FusedStudent {
    /// An untrained fused student of the shape `spec` describes (the template a checkpoint
    /// loads into).
    pub fn init(
        model: &ModelConfig,
        input: [usize; 3],
        classes: usize,
        spec: &FusedSpec,
        device: &Device,
    ) -> Result<Self> {
        let net = model.init(input[0], classes, device)?;
        let shapes = tap_shapes(&net, input, spec.extractors.len(), device);
        if shapes.len() != spec.extractors.len() {
            anyhow::bail!(
                "fused: {} extractors for a model with {} taps",
                spec.extractors.len(),
                shapes.len()
            );
        }
        let adapters = if spec.adapters {
            shapes
                .iter()
                .zip(&spec.extractors)
                .map(|(s, &c)| ConvBn::new(s[1], c, 1, 1, 1, device))
                .collect()
        } else {
            Vec::new()
        };
        let extractors = spec
            .extractors
            .iter()
            .map(|&c| spec.extractor.init(c, classes, net.frames(), device))
            .collect();
        Ok(Self {
            net,
            head: StudentHead {
                adapters,
                extractors,
            },
        })
    }

    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        self.head.fuse(self.net.forward(images))
    }

    pub(crate) fn fold_bn(mut self) -> Self {
        self.net = self.net.fold_bn();
        self.head.fold_bn();
        self
    }

    /// What a checkpoint header records to rebuild it.
    pub(crate) fn spec(&self, extractor: &super::extractor::ExtractorConfig) -> FusedSpec {
        FusedSpec {
            extractor: extractor.clone(),
            extractors: self
                .head
                .extractors
                .iter()
                .map(|e| e.conv.weight.dims()[1])
                .collect(),
            adapters: !self.head.adapters.is_empty(),
        }
    }
}

impl Student {
    /// An untrained student for `teacher`. With a shared lens its extractors have the
    /// teacher's shapes; `share_lens` then gives them the teacher's adapted weights.
    /// `samples`: the training split's size, for losses that keep a memory per image (CRD).
    pub fn init(
        model: &ModelConfig,
        cfg: &DistillConfig,
        teacher: &Teacher,
        samples: usize,
        device: &Device,
    ) -> Result<Self> {
        let (input, classes) = (teacher.input, teacher.classes);
        let net = model.init(input[0], classes, device)?;
        let s_shapes = tap_shapes(&net, input, cfg.taps, device);
        let t_shapes = tap_shapes(&teacher.net, input, cfg.taps, device);
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
                    extractors = TeacherHead::init(
                        &teacher.net,
                        input,
                        classes,
                        &cfg.extractor,
                        cfg.taps,
                        device,
                    )
                    .extractors;
                }
                TemporalInit::Random => {
                    extractors = s_shapes
                        .iter()
                        .map(|s| cfg.extractor.init(s[1], classes, net.frames(), device))
                        .collect();
                }
            }
        }
        let (s_all, t_all) = (
            tap_shapes(&net, input, usize::MAX, device),
            tap_shapes(&teacher.net, input, usize::MAX, device),
        );
        let context = PartsContext {
            student_taps: &s_all,
            teacher_taps: &t_all,
            taps: cfg.taps,
            classes,
            samples,
            options: &cfg.options,
        };
        let parts = cfg
            .owning_losses()
            .iter()
            .map(|spec| {
                spec.init
                    .map_or_else(Parts::default, |init| init(&context, device))
            })
            .collect();
        Ok(Self {
            net,
            head: StudentHead {
                adapters,
                extractors,
            },
            parts,
        })
    }

    /// The shared lens: the extractors become the teacher's adapted ones (`adapted`, loaded on
    /// the training device), kept frozen with `freeze`.
    pub(crate) fn share_lens(mut self, adapted: TeacherHead, freeze: bool) -> Self {
        self.head.extractors = if freeze {
            adapted
                .extractors
                .into_iter()
                .map(|e| e.no_grad())
                .collect()
        } else {
            adapted.extractors
        };
        self
    }

    /// Inference logits: the backbone's, or with `fused` averaged with the aux heads'.
    pub(crate) fn logits(&self, images: Tensor<4>, fused: bool) -> Tensor<2> {
        let out = self.net.forward(images);
        if fused {
            self.head.fuse(out)
        } else {
            out.logits
        }
    }
}
