//! Cross-entropy of the student extractors' auxiliary heads (summed over taps): keeps the
//! student's descriptors discriminative.

use super::ce::soft_cross_entropy;

pub(crate) const SPEC: super::LossSpec = super::LossSpec {
    name: "aux_ce",
    about: "cross-entropy of the student extractors' auxiliary heads (summed over taps)",
    needs: super::Needs::EXTRACTORS,
    options: None,
    init: None,
    compute: |i, _| {
        super::sum_over_taps(
            i.student_extractors
                .iter()
                .map(|s| soft_cross_entropy(s.aux_logits.clone(), i.soft_targets.clone())),
        )
    },
};
