//! Decoupled KD (Zhao et al., CVPR 2022): the KD loss split into a target-class part (TCKD,
//! binary KL over target / non-target mass) and a non-target part (NCKD, KL among the
//! non-target classes), weighted alpha and beta, each scaled by T^2, batch mean. With
//! `[distill.dkd] warmup` the loss ramps up linearly over that share of the run (mdistiller: 20 of 240
//! epochs), and `logit_standardization` z-scores the logits first (see `kd`).

use burn::tensor::activation::{log_softmax, softmax};
use burn::tensor::{Int, Tensor};

/// One-hot mask of the targets, [B, K].
fn target_mask(targets: Tensor<1, Int>, classes: usize) -> Tensor<2> {
    targets.one_hot(classes).float()
}

pub(crate) struct DkdParts {
    pub(crate) tckd: Tensor<1>,
    pub(crate) nckd: Tensor<1>,
}

pub(crate) fn dkd_parts(
    student: Tensor<2>,
    teacher: Tensor<2>,
    targets: Tensor<1, Int>,
    temperature: f64,
) -> DkdParts {
    let [b, k] = student.dims();
    let gt = target_mask(targets, k);
    let scale = temperature * temperature / b as f64;
    let ps = softmax(student.clone().div_scalar(temperature), 1);
    let pt = softmax(teacher.clone().div_scalar(temperature), 1);
    // Binary distributions [p(target), p(non-target)].
    let binary = |p: Tensor<2>| {
        let target = (p * gt.clone()).sum_dim(1);
        Tensor::cat(vec![target.clone(), target.neg().add_scalar(1.0)], 1)
    };
    let (bs, bt) = (binary(ps), binary(pt));
    let tckd = (bt.clone() * (bt.clamp_min(1e-12).log() - bs.clamp_min(1e-12).log()))
        .sum()
        .mul_scalar(scale);
    // Masking the target logit with a large negative value removes it from both softmaxes.
    let mask = gt.mul_scalar(1000.0);
    let log_ps2 = log_softmax(student.div_scalar(temperature) - mask.clone(), 1);
    let log_pt2 = log_softmax(teacher.div_scalar(temperature) - mask, 1);
    let nckd = (log_pt2.clone().exp() * (log_pt2 - log_ps2))
        .sum()
        .mul_scalar(scale);
    DkdParts { tckd, nckd }
}

pub(crate) fn dkd_loss(
    student: Tensor<2>,
    teacher: Tensor<2>,
    targets: Tensor<1, Int>,
    temperature: f64,
    alpha: f64,
    beta: f64,
) -> Tensor<1> {
    let p = dkd_parts(student, teacher, targets, temperature);
    p.tckd.mul_scalar(alpha) + p.nckd.mul_scalar(beta)
}

/// The warm-up factor at `progress` (the share of the run done by the end of this step):
/// linear up to 1 at `share` of the run.
pub(crate) fn warmup(progress: f64, share: f64) -> f64 {
    if share > 0.0 {
        (progress / share).min(1.0)
    } else {
        1.0
    }
}

/// `[distill.dkd]`: DKD's weights and temperature (its paper's 1, 8 and 4, the temperature
/// whatever the temperature policy) and an optional warm-up.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Options {
    pub(crate) alpha: f64,
    pub(crate) beta: f64,
    pub(crate) temperature: f64,
    /// A linear warm-up, as a share of the run (mdistiller: 20 of 240 epochs, 0.083); 0: none.
    pub(crate) warmup: f64,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            alpha: 1.0,
            beta: 8.0,
            temperature: 4.0,
            warmup: 0.0,
        }
    }
}

impl super::Validate for Options {
    fn validate(&self) -> anyhow::Result<()> {
        super::at_least("alpha", self.alpha, 0.0, false)?;
        super::at_least("beta", self.beta, 0.0, false)?;
        super::at_least("temperature", self.temperature, 0.0, true)?;
        if !(0.0..=1.0).contains(&self.warmup) {
            anyhow::bail!("warmup: a share of the run in [0, 1], got {}", self.warmup);
        }
        Ok(())
    }
}

pub(crate) const SPEC: super::LossSpec = super::LossSpec {
    name: "dkd",
    about: "decoupled KD: alpha TCKD + beta NCKD at its own temperature ([distill.dkd])",
    needs: super::Needs::TRUE_CLASS,
    options: Some(super::check::<Options>),
    init: None,
    compute: |i, _| {
        let o = i.options.of::<Options>("dkd");
        // Under TMix the target class is the one holding most of the mixed label (the hard
        // label is the original image's, which may cover the smaller band).
        dkd_loss(
            super::kd::prepared(i.student_logits, i.standardize_logits),
            super::kd::prepared(i.teacher_logits, i.standardize_logits),
            i.soft_targets.clone().argmax(1).squeeze_dim(1),
            o.temperature,
            o.alpha,
            o.beta,
        )
        .mul_scalar(warmup(i.progress, o.warmup))
    },
};

#[cfg(test)]
mod tests;
