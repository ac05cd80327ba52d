//! Logit distillation (Hinton et al.): T^2 * KL(softmax(t/T) || softmax(s/T)), batch mean.
//! With `logit_standardization` both sides' logits are z-scored per sample first (Sun et al.,
//! CVPR 2024), so that the student matches the teacher's logit relations rather than their
//! scale.

use burn::tensor::Tensor;
use burn::tensor::activation::log_softmax;

/// Per sample (row): (z - mean(z)) / (std(z) + 1e-7), the standard deviation with Bessel's
/// correction as in the paper's code (`torch.std`).
pub(crate) fn standardize(logits: Tensor<2>) -> Tensor<2> {
    let [_, k] = logits.dims();
    let centred = logits.clone() - logits.mean_dim(1);
    let std = centred
        .clone()
        .powi_scalar(2)
        .sum_dim(1)
        .div_scalar((k.max(2) - 1) as f64)
        .sqrt();
    centred / std.add_scalar(1e-7)
}

/// The logits a logit loss compares, standardised when `distill.logit_standardization` says
/// so.
pub(crate) fn prepared(logits: &Tensor<2>, standardized: bool) -> Tensor<2> {
    if standardized {
        standardize(logits.clone())
    } else {
        logits.clone()
    }
}

pub(crate) fn kd_loss(student: Tensor<2>, teacher: Tensor<2>, temperature: f64) -> Tensor<1> {
    let [b, _] = student.dims();
    let log_ps = log_softmax(student.div_scalar(temperature), 1);
    let log_pt = log_softmax(teacher.div_scalar(temperature), 1);
    let pt = log_pt.clone().exp();
    (pt * (log_pt - log_ps))
        .sum()
        .mul_scalar(temperature * temperature / b as f64)
}

pub(crate) const SPEC: super::LossSpec = super::LossSpec {
    name: "kd",
    about: "logit KD: T^2 KL(teacher || student) at the current temperature",
    needs: super::Needs::NONE,
    options: None,
    init: None,
    compute: |i, _| {
        kd_loss(
            prepared(i.student_logits, i.standardize_logits),
            prepared(i.teacher_logits, i.standardize_logits),
            i.temperature,
        )
    },
};

#[cfg(test)]
mod tests;
