//! Cross-entropy against (possibly soft) targets, mean over the labelled samples. One-hot
//! targets give the usual CE; TMix gives row-proportional soft targets; a sample whose label
//! may not be used (`data.label_fraction`) has a zero row and counts for nothing.

use burn::tensor::Tensor;
use burn::tensor::activation::log_softmax;

pub(crate) fn soft_cross_entropy(logits: Tensor<2>, targets: Tensor<2>) -> Tensor<1> {
    // Each labelled row sums to 1: the total is the number of labelled samples (at least 1,
    // so that a batch without labels gives 0).
    let labelled = targets.clone().sum().clamp_min(1.0);
    (targets * log_softmax(logits, 1)).sum().neg() / labelled
}

pub(crate) const SPEC: super::LossSpec = super::LossSpec {
    name: "ce",
    about: "cross-entropy of the student's logits against the (TMix-mixed) labels",
    needs: super::Needs::NONE,
    options: None,
    init: None,
    compute: |i, _| soft_cross_entropy(i.student_logits.clone(), i.soft_targets.clone()),
};

#[cfg(test)]
mod tests;
