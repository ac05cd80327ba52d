//! Distillation losses, one file each, and the registry that names them for configs. A new
//! method is one file here with a `SPEC` plus one line in `REGISTRY`, including a method that
//! trains parts of its own (its `init` builds them as `Parts`, which the student carries,
//! trains and checkpoints).

pub mod at;
pub mod aux_ce;
pub mod ce;
pub mod crd;
pub mod dkd;
pub mod fitnet;
pub mod kd;
pub mod ntxent;
pub mod temporal;

use std::collections::BTreeMap;

use burn::module::{Module, RunningState};
use burn::nn::Linear;
use burn::tensor::{Device, Int, Tensor};

use super::extractor::ExtractorOut;
use crate::models::layers::ConvBn;

/// Everything a loss may read for one batch. Teacher tensors carry no autodiff graph.
pub struct Inputs<'a> {
    pub student_logits: &'a Tensor<2>,
    pub teacher_logits: &'a Tensor<2>,
    /// Every tap of each model (one per stage), shallow to deep; `taps_of` picks a loss's.
    pub student_taps: &'a [Tensor<4>],
    pub teacher_taps: &'a [Tensor<4>],
    /// The teacher's taps on a second augmented view of the batch (empty unless a loss
    /// needs it).
    pub teacher_view_taps: &'a [Tensor<4>],
    /// How many of the deepest taps are distilled (`distill.taps`).
    pub taps: usize,
    /// Present when a loss that needs extractors is configured.
    pub student_extractors: &'a [ExtractorOut],
    pub teacher_extractors: &'a [ExtractorOut],
    pub targets: &'a Tensor<1, Int>,
    /// Targets as distributions (one-hot, or mixed by TMix), [B, K].
    pub soft_targets: &'a Tensor<2>,
    pub temperature: f64,
    /// The share of the run done by the end of the current step, in (0, 1].
    pub progress: f64,
    /// Each image's position in the training split (CRD's memory index).
    pub samples: &'a [usize],
    /// A seed for the loss's own sampling in this step (CRD's negatives).
    pub step_seed: u64,
    pub options: &'a LossOptions,
}

impl Inputs<'_> {
    /// The student's and the teacher's taps that `loss` compares, paired shallow to deep.
    pub fn taps_of(&self, loss: &str) -> (&[Tensor<4>], &[Tensor<4>]) {
        let n = tap_count(self.options, loss, self.taps);
        deepest_pair(self.student_taps, self.teacher_taps, n)
    }
}

/// The deepest `n` of each side's taps (as many as both have), so that they pair shallow to
/// deep.
fn deepest_pair<'a, T>(student: &'a [T], teacher: &'a [T], n: usize) -> (&'a [T], &'a [T]) {
    let n = n.min(student.len()).min(teacher.len());
    (&student[student.len() - n..], &teacher[teacher.len() - n..])
}

/// How many of the deepest taps `loss` compares: its `loss_taps` entry, else `taps`.
pub fn tap_count(options: &LossOptions, loss: &str, taps: usize) -> usize {
    options.loss_taps.get(loss).copied().unwrap_or(taps)
}

/// Trainable parts a loss owns (FitNet's regressors, CRD's embedding heads), built by its
/// spec's `init`: trained with the student, saved in its checkpoints, restored on resume.
#[derive(Module, Debug, Default)]
pub struct Parts {
    pub convs: Vec<ConvBn>,
    pub linears: Vec<Linear>,
    /// State the loss updates itself rather than the optimiser (CRD's memories).
    pub states: Vec<RunningState<Tensor<2>>>,
}

/// What a loss's `init` may build its parts from.
pub struct PartsContext<'a> {
    /// Shapes `[1, channels, h, w]` of every tap of each model, shallow to deep.
    pub student_taps: &'a [[usize; 4]],
    pub teacher_taps: &'a [[usize; 4]],
    pub taps: usize,
    pub classes: usize,
    /// Images in the training split (CRD keeps a memory row per image).
    pub samples: usize,
    pub options: &'a LossOptions,
}

impl PartsContext<'_> {
    /// The tap shapes `loss` compares, paired as `Inputs::taps_of` pairs the taps.
    pub fn taps_of(&self, loss: &str) -> Vec<([usize; 4], [usize; 4])> {
        let n = tap_count(self.options, loss, self.taps);
        let (s, t) = deepest_pair(self.student_taps, self.teacher_taps, n);
        s.iter().copied().zip(t.iter().copied()).collect()
    }
}

/// Per-loss settings from the `[distill]` table.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LossOptions {
    /// Attention transfer: L2-normalise the maps (Zagoruyko & Komodakis); false = the paper's
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
    /// DKD's linear warm-up, as a share of the run (mdistiller: 20 of 240 epochs, 0.083);
    /// 0 = none.
    #[serde(default)]
    pub dkd_warmup: f64,
    /// Logit standardisation (Sun et al., CVPR 2024) for `kd` and `dkd`: z-score each
    /// sample's logits, on both sides, before the temperature.
    #[serde(default)]
    pub logit_standardization: bool,
    /// `temporal`: divide each state distance by the teacher state's norm (a relative error).
    /// Left out of the saved config when off, so that the ledgers' keys of earlier runs hold.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub temporal_relative: bool,
    /// Per-loss tap counts for the losses that compare taps (`at`, `fitnet`): how many of the
    /// deepest taps each reads, e.g. `{ at = 3 }` for every stage of a CIFAR ResNet (a count
    /// above a model's taps means all of them). Default: `taps`, which the extractors keep.
    #[serde(default)]
    pub loss_taps: BTreeMap<String, usize>,
    /// CRD: embedding size, negatives per image, NCE temperature and memory momentum
    /// (RepDistiller's defaults but the negatives: 16,384 there, whose gathers would dominate
    /// a CPU step).
    #[serde(default = "crd_feat_dim")]
    pub crd_feat_dim: usize,
    #[serde(default = "crd_negatives")]
    pub crd_negatives: usize,
    #[serde(default = "crd_temperature")]
    pub crd_temperature: f64,
    #[serde(default = "crd_momentum")]
    pub crd_momentum: f64,
    /// NT-Xent: embedding size and temperature (SimCLR's 128 and 0.5).
    #[serde(default = "crd_feat_dim", skip_serializing_if = "is_default_feat_dim")]
    pub ntxent_feat_dim: usize,
    #[serde(default = "half", skip_serializing_if = "is_half")]
    pub ntxent_temperature: f64,
}

fn is_default_feat_dim(d: &usize) -> bool {
    *d == crd_feat_dim()
}
fn half() -> f64 {
    0.5
}
fn is_half(t: &f64) -> bool {
    *t == 0.5
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
        for (name, &n) in &self.loss_taps {
            match find(name) {
                Some(spec) if spec.tapped => {}
                _ => anyhow::bail!(
                    "distill.loss_taps: '{name}' is not a loss that compares taps; those are: {}",
                    REGISTRY
                        .iter()
                        .filter(|s| s.tapped)
                        .map(|s| s.name)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            }
            if n == 0 {
                anyhow::bail!("distill.loss_taps.{name}: must be at least 1");
            }
        }
        if self.ntxent_feat_dim == 0
            || !(self.ntxent_temperature > 0.0 && self.ntxent_temperature.is_finite())
        {
            anyhow::bail!(
                "distill.ntxent_feat_dim / ntxent_temperature: must be positive, got {} and {}",
                self.ntxent_feat_dim,
                self.ntxent_temperature
            );
        }
        // RepDistiller uses 128 and 16,384; the upper bounds only keep an absurd value from
        // aborting on allocation.
        for (name, v, max) in [
            ("crd_feat_dim", self.crd_feat_dim, 4096),
            ("crd_negatives", self.crd_negatives, 1 << 16),
        ] {
            if !(1..=max).contains(&v) {
                anyhow::bail!("distill.{name}: 1 to {max}, got {v}");
            }
        }
        if !(self.crd_temperature > 0.0 && self.crd_temperature.is_finite()) {
            anyhow::bail!(
                "distill.crd_temperature: must be a positive number, got {}",
                self.crd_temperature
            );
        }
        if !(0.0..1.0).contains(&self.crd_momentum) {
            anyhow::bail!("distill.crd_momentum: in [0, 1), got {}", self.crd_momentum);
        }
        if !(0.0..=1.0).contains(&self.dkd_warmup) {
            anyhow::bail!(
                "distill.dkd_warmup: a share of the run in [0, 1], got {}",
                self.dkd_warmup
            );
        }
        Ok(())
    }
}

fn crd_feat_dim() -> usize {
    128
}
fn crd_negatives() -> usize {
    4096
}
fn crd_temperature() -> f64 {
    0.07
}
fn crd_momentum() -> f64 {
    0.5
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
            dkd_warmup: 0.0,
            logit_standardization: false,
            temporal_relative: false,
            loss_taps: BTreeMap::new(),
            crd_feat_dim: crd_feat_dim(),
            crd_negatives: crd_negatives(),
            crd_temperature: crd_temperature(),
            crd_momentum: crd_momentum(),
            ntxent_feat_dim: crd_feat_dim(),
            ntxent_temperature: half(),
        }
    }
}

/// What a loss needs built around the student and teacher.
#[derive(Debug, Clone, Copy, Default)]
pub struct Needs {
    /// Spatio-temporal extractors on both sides.
    pub extractors: bool,
    /// The teacher's taps on a second augmented view of the batch (contrastive losses).
    pub second_view: bool,
    /// The true class of every image, labelled or not (refused under `data.label_fraction`).
    pub true_class: bool,
}

impl Needs {
    pub const NONE: Needs = Needs {
        extractors: false,
        second_view: false,
        true_class: false,
    };
    pub const EXTRACTORS: Needs = Needs {
        extractors: true,
        second_view: false,
        true_class: false,
    };
    pub const SECOND_VIEW: Needs = Needs {
        extractors: false,
        second_view: true,
        true_class: false,
    };
    pub const TRUE_CLASS: Needs = Needs {
        extractors: false,
        second_view: false,
        true_class: true,
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
    /// Compares taps, so `loss_taps` may say how many.
    pub tapped: bool,
    /// Builds the parts the loss trains (None: it has none).
    pub init: Option<fn(&PartsContext, &Device) -> Parts>,
    /// The loss for one batch, given its parts (empty without `init`).
    pub compute: fn(&Inputs, &Parts) -> Tensor<1>,
}

pub const REGISTRY: &[LossSpec] = &[
    ce::SPEC,
    kd::SPEC,
    at::SPEC,
    fitnet::SPEC,
    temporal::SPEC,
    aux_ce::SPEC,
    dkd::SPEC,
    crd::SPEC,
    ntxent::SPEC,
];

pub fn find(name: &str) -> Option<&'static LossSpec> {
    REGISTRY.iter().find(|s| s.name == name)
}

pub fn names() -> Vec<&'static str> {
    REGISTRY.iter().map(|s| s.name).collect()
}
