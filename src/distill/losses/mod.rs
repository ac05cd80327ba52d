//! Distillation losses, one file each, and the registry that names them for configs. A new
//! method is one file here with a `SPEC` plus one line in `REGISTRY`.

pub mod at;
pub mod aux_ce;
pub mod ce;
pub mod dkd;
pub mod fitnet;
pub mod kd;
pub mod temporal;

use burn::tensor::{Int, Tensor};

use super::extractor::ExtractorOut;

/// Everything a loss may read for one batch. Teacher tensors carry no autodiff graph.
pub struct Inputs<'a> {
    pub student_logits: &'a Tensor<2>,
    pub teacher_logits: &'a Tensor<2>,
    /// The distilled taps (the last two by default), shallow to deep.
    pub student_taps: &'a [Tensor<4>],
    pub teacher_taps: &'a [Tensor<4>],
    /// Present when a loss that needs extractors is configured.
    pub student_extractors: &'a [ExtractorOut],
    pub teacher_extractors: &'a [ExtractorOut],
    /// FitNet regressor outputs, one per distilled tap (when configured).
    pub regressed: &'a [Tensor<4>],
    pub targets: &'a Tensor<1, Int>,
    /// Targets as distributions (one-hot, or mixed by TMix), [B, K].
    pub soft_targets: &'a Tensor<2>,
    pub temperature: f64,
    pub options: &'a LossOptions,
}

/// Per-loss settings from the `[distill]` table.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LossOptions {
    /// Attention transfer: L2-normalise the maps (Zagoruyko & Komodakis); false = the seed's
    /// raw MSE.
    #[serde(default = "yes")]
    pub at_normalize: bool,
    #[serde(default = "one")]
    pub dkd_alpha: f64,
    #[serde(default = "eight")]
    pub dkd_beta: f64,
    /// DKD's temperature (its paper uses 4 whatever the policy).
    #[serde(default = "four")]
    pub dkd_temperature: f64,
}

impl LossOptions {
    pub fn validate(&self) -> anyhow::Result<()> {
        for (name, v) in [("dkd_alpha", self.dkd_alpha), ("dkd_beta", self.dkd_beta)] {
            if !(v >= 0.0 && v.is_finite()) {
                anyhow::bail!("distill.{name}: must be a finite number >= 0, got {v}");
            }
        }
        let t = self.dkd_temperature;
        if !(t > 0.0 && t.is_finite()) {
            anyhow::bail!("distill.dkd_temperature: must be a positive number, got {t}");
        }
        Ok(())
    }
}

fn yes() -> bool {
    true
}
fn one() -> f64 {
    1.0
}
fn four() -> f64 {
    4.0
}
fn eight() -> f64 {
    8.0
}

impl Default for LossOptions {
    fn default() -> Self {
        Self {
            at_normalize: true,
            dkd_alpha: 1.0,
            dkd_beta: 8.0,
            dkd_temperature: 4.0,
        }
    }
}

/// What a loss needs built around the student and teacher.
#[derive(Debug, Clone, Copy, Default)]
pub struct Needs {
    /// Spatio-temporal extractors on both sides.
    pub extractors: bool,
    /// FitNet regressors on the student's taps.
    pub regressors: bool,
}

impl Needs {
    pub const NONE: Needs = Needs {
        extractors: false,
        regressors: false,
    };
    pub const EXTRACTORS: Needs = Needs {
        extractors: true,
        regressors: false,
    };
}

/// Sums a loss over the distilled taps.
pub fn sum_over_taps(terms: impl Iterator<Item = Tensor<1>>) -> Tensor<1> {
    terms
        .reduce(|a, b| a + b)
        .expect("every distilled tap has its term")
}

pub struct LossSpec {
    pub name: &'static str,
    pub about: &'static str,
    pub needs: Needs,
    pub compute: fn(&Inputs) -> Tensor<1>,
}

pub const REGISTRY: &[LossSpec] = &[
    ce::SPEC,
    kd::SPEC,
    at::SPEC,
    fitnet::SPEC,
    temporal::SPEC,
    aux_ce::SPEC,
    dkd::SPEC,
];

pub fn find(name: &str) -> Option<&'static LossSpec> {
    REGISTRY.iter().find(|s| s.name == name)
}

pub fn names() -> Vec<&'static str> {
    REGISTRY.iter().map(|s| s.name).collect()
}
