//! Mixed precision (`train.precision`): the trained backbone (and a distillation's frozen
//! teacher) compute in f16 or bf16 while the weights the optimiser updates stay f32, as
//! PyTorch's autocast + GradScaler do. Batch norm, the extractors and every loss stay f32.

use anyhow::{Result, bail};
use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::{Device, FloatDType, Int, Tensor};
use serde::{Deserialize, Serialize};

/// The arithmetic of the trained backbone's forward and backward passes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    #[default]
    F32,
    /// Half precision with dynamic loss scaling (its gradients underflow without it).
    F16,
    /// bfloat16: f32's exponent range, so no loss scaling.
    Bf16,
}

impl Precision {
    pub(crate) fn is_f32(&self) -> bool {
        *self == Precision::F32
    }

    fn dtype(self) -> FloatDType {
        match self {
            Precision::F32 => FloatDType::F32,
            Precision::F16 => FloatDType::F16,
            Precision::Bf16 => FloatDType::BF16,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::F16 => "f16",
            Precision::Bf16 => "bf16",
        }
    }

    /// Refuses a precision `device` has no arithmetic for (e.g. bf16 on wgpu, f16 on an
    /// adapter without shader-f16).
    pub fn check(self, device: &Device, device_name: &str) -> Result<()> {
        if !device.supports_dtype(self.dtype()) {
            bail!(
                "train.precision = \"{}\": device {device_name} has no {} arithmetic \
                 (use \"f32\"{})",
                self.name(),
                self.name(),
                if self == Precision::Bf16 {
                    " or \"f16\""
                } else {
                    ""
                }
            );
        }
        if !self.is_f32() && crate::device::is_cpu(device_name) {
            eprintln!(
                "note: train.precision = \"{}\" on the CPU rounds every operation to {} but is \
                 no faster than f32 (flex computes through f32): useful to check a recipe \
                 before a GPU run",
                self.name(),
                self.name()
            );
        }
        Ok(())
    }

    /// `model` computing in this precision: every float parameter outside batch norm cast
    /// inside the autodiff graph, so the gradients reach the f32 weights as f32.
    pub fn view<M: Module>(self, model: M) -> M {
        if self.is_f32() {
            return model;
        }
        model.map(&mut CastView {
            dtype: self.dtype(),
            containers: Vec::new(),
        })
    }
}

/// Casts float parameters, leaving batch norm's: its statistics are f32 and shared between a
/// module and its clones, and the norm runs on f32 activations (`models::layers::norm`).
struct CastView {
    dtype: FloatDType,
    containers: Vec<String>,
}

impl ModuleMapper for CastView {
    fn enter_module(&mut self, _name: &str, container_type: &str) {
        self.containers.push(container_type.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.containers.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        if self
            .containers
            .last()
            .is_some_and(|c| c == "Struct:BatchNorm")
        {
            return param;
        }
        let dtype = self.dtype;
        param.map(|t| t.cast(dtype))
    }
}

/// The state of f16's dynamic loss scaling, saved with checkpoints so that a resumed run
/// scales as the uninterrupted one did.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LossScale {
    pub scale: f32,
    /// Consecutive steps with finite gradients since the scale last changed.
    pub good_steps: u32,
}

/// PyTorch GradScaler's defaults: start high, halve on overflow, double after a long run of
/// finite steps.
const INITIAL_SCALE: f32 = 65536.0;
const GROWTH_INTERVAL: u32 = 2000;

/// What a step of `optimise` needs to know of the run's precision.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MixedPrecision {
    pub precision: Precision,
    /// f16 only.
    pub loss_scale: Option<LossScale>,
}

impl MixedPrecision {
    pub fn f32() -> Self {
        Self::new(Precision::F32, None)
    }

    /// `saved`: the scaling state of the checkpoint a run resumes from.
    pub fn new(precision: Precision, saved: Option<LossScale>) -> Self {
        let loss_scale = (precision == Precision::F16).then(|| {
            saved.unwrap_or(LossScale {
                scale: INITIAL_SCALE,
                good_steps: 0,
            })
        });
        Self {
            precision,
            loss_scale,
        }
    }

    /// Divides the gradients of `model`'s parameters by the loss scale, and returns a [1]
    /// tensor that is 1 when all of them are finite (f16; None otherwise: nothing to check).
    pub(crate) fn unscale<M: Module>(
        &self,
        grads: &mut GradientsParams,
        model: &M,
    ) -> Option<Tensor<1, Int>> {
        let scale = self.loss_scale?.scale;
        let mut visitor = Unscale {
            grads,
            inverse: 1.0 / scale,
            finite: Vec::new(),
        };
        model.visit(&mut visitor);
        let flags = visitor.finite;
        (!flags.is_empty()).then(|| Tensor::cat(flags, 0).min())
    }

    /// Updates the scale after a step: `finite` false means the step was skipped.
    pub(crate) fn update(&mut self, finite: bool) {
        if let Some(s) = &mut self.loss_scale {
            if finite {
                s.good_steps += 1;
                if s.good_steps == GROWTH_INTERVAL {
                    s.scale *= 2.0;
                    s.good_steps = 0;
                }
            } else {
                s.scale *= 0.5;
                s.good_steps = 0;
            }
        }
    }
}

struct Unscale<'a> {
    grads: &'a mut GradientsParams,
    inverse: f32,
    finite: Vec<Tensor<1, Int>>,
}

impl ModuleVisitor for Unscale<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = self.grads.remove::<D>(param.id) {
            let g = g * self.inverse;
            self.finite.push(g.clone().is_finite().all().int());
            self.grads.register(param.id, g);
        }
    }
}
