//! Temporal state loss: ||h_s - h_t||_2 + ||c_s - c_t||_2 per sample, the norm over the
//! flattened (layers x directions x hidden) states, averaged over the batch. With
//! `[distill.temporal] relative` each distance is divided by the teacher state's norm, so that the loss
//! no longer scales with the extractor's size and its weight carries over between settings.

use burn::tensor::Tensor;

/// The square root's gradient is infinite at zero; a student whose states already equal the
/// teacher's would get NaN gradients without this (1e-12 moves a norm of 1e-3 by 5e-7).
const EPS: f64 = 1e-12;

fn per_sample_norm(diff: Tensor<3>) -> Tensor<1> {
    let [l, b, h] = diff.dims();
    diff.swap_dims(0, 1)
        .reshape([b, l * h])
        .powi_scalar(2)
        .sum_dim(1)
        .add_scalar(EPS)
        .sqrt()
        .reshape([b])
}

/// States are [layers * directions, B, hidden].
pub(crate) fn temporal_loss(
    h_s: Tensor<3>,
    c_s: Tensor<3>,
    h_t: Tensor<3>,
    c_t: Tensor<3>,
    relative: bool,
) -> Tensor<1> {
    let distance = |s: Tensor<3>, t: Tensor<3>| {
        let d = per_sample_norm(s - t.clone());
        if relative { d / per_sample_norm(t) } else { d }
    };
    (distance(h_s, h_t) + distance(c_s, c_t)).mean()
}

/// `[distill.temporal]`.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Options {
    /// Divide each state distance by the teacher state's norm (a relative error).
    pub(crate) relative: bool,
}

impl super::Validate for Options {
    fn validate(&self) -> anyhow::Result<()> {
        Ok(())
    }
}

pub(crate) const SPEC: super::LossSpec = super::LossSpec {
    name: "temporal",
    about: "BiLSTM state matching (h and c) between student and teacher extractors (summed over taps)",
    needs: super::Needs::EXTRACTORS,
    options: Some(super::check::<Options>),
    init: None,
    compute: |i, _| {
        let relative = i.options.of::<Options>("temporal").relative;
        super::sum_over_taps(
            i.student_extractors
                .iter()
                .zip(i.teacher_extractors)
                .map(|(s, t)| {
                    temporal_loss(
                        s.hidden.clone(),
                        s.cell.clone(),
                        t.hidden.clone(),
                        t.cell.clone(),
                        relative,
                    )
                }),
        )
    },
};

#[cfg(test)]
mod tests;
