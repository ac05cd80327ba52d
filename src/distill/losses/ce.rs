//! Cross-entropy against (possibly soft) targets, batch mean. One-hot targets give the usual
//! CE; TMix gives row-proportional soft targets.

use burn::tensor::Tensor;
use burn::tensor::activation::log_softmax;

pub fn soft_cross_entropy(logits: Tensor<2>, targets: Tensor<2>) -> Tensor<1> {
    let [b, _] = logits.dims();
    (targets * log_softmax(logits, 1))
        .sum()
        .div_scalar(-(b as f64))
}

pub const SPEC: super::LossSpec = super::LossSpec {
    name: "ce",
    about: "cross-entropy of the student's logits against the (TMix-mixed) labels",
    needs: super::Needs::NONE,
    tapped: false,
    init: None,
    compute: |i, _| soft_cross_entropy(i.student_logits.clone(), i.soft_targets.clone()),
};
