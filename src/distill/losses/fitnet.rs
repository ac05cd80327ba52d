//! FitNet hints (Romero et al.): a 1x1 conv (+BN) regressor maps the student's tap to the
//! teacher's channels; the loss is the mean squared difference. A student tap of another size
//! is resized (bilinear) to the teacher's.

use burn::tensor::Tensor;
use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};

use crate::models::layers::ConvBn;

/// The student's tap in the teacher's channels and spatial size, through `regressor`.
pub(crate) fn regress(regressor: &ConvBn, student: Tensor<4>, size: [usize; 2]) -> Tensor<4> {
    let [_, _, h, w] = student.dims();
    let student = if [h, w] != size {
        interpolate(
            student,
            // Half-pixel centres as PyTorch's default (see the attention maps in `at`).
            InterpolateOptions::new(InterpolateMode::Bilinear)
                .with_align_corners(false)
                .with_output_size(size),
        )
    } else {
        student
    };
    regressor.forward(student)
}

pub(crate) fn hint_loss(regressed: Tensor<4>, teacher: Tensor<4>) -> Tensor<1> {
    (regressed - teacher).powi_scalar(2).mean()
}

/// `[distill.fitnet]`.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Options {
    /// How many of the deepest taps it compares (e.g. 3: every stage of a CIFAR ResNet; a
    /// count above a model's taps means all of them); default: `distill.taps`.
    pub(crate) taps: Option<usize>,
}

impl super::Validate for Options {
    fn validate(&self) -> anyhow::Result<()> {
        super::check_taps(self.taps)
    }
}

pub(crate) const SPEC: super::LossSpec = super::LossSpec {
    name: "fitnet",
    about: "FitNet hints: 1x1-conv regressed student taps vs teacher taps, MSE (summed)",
    needs: super::Needs::NONE,
    options: Some(super::check::<Options>),
    // One regressor per compared tap, from the student's channels to the teacher's.
    init: Some(|cx, device| super::Parts {
        convs: cx
            .taps_of("fitnet")
            .iter()
            .map(|(s, t)| ConvBn::new(s[1], t[1], 1, 1, 1, device))
            .collect(),
        ..Default::default()
    }),
    compute: |i, parts| {
        let (student, teacher) = i.taps_of("fitnet");
        super::sum_over_taps(
            parts
                .convs
                .iter()
                .zip(student)
                .zip(teacher)
                .map(|((r, s), t)| {
                    let [_, _, h, w] = t.dims();
                    hint_loss(regress(r, s.clone(), [h, w]), t.clone())
                }),
        )
    },
};

#[cfg(test)]
mod tests;
