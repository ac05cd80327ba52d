//! Attention transfer (Zagoruyko & Komodakis): A(f) = sum over channels of f^2.
//! Normalised (default): flatten, L2-normalise per sample, mean squared difference. Raw (the
//! paper's reading): mean squared difference of the unnormalised maps. A student map of another
//! size is resized (bilinear, half-pixel centres as PyTorch's default) to the teacher's.

use burn::tensor::Tensor;
use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};

/// A(f): [B, H, W] from [B, C, H, W].
pub(crate) fn attention_map(f: Tensor<4>) -> Tensor<3> {
    let [b, _, h, w] = f.dims();
    f.powi_scalar(2).sum_dim(1).reshape([b, h, w])
}

pub(crate) fn at_loss(student: Tensor<4>, teacher: Tensor<4>, normalize: bool) -> Tensor<1> {
    let [b, _, ht, wt] = teacher.dims();
    let [_, _, hs, ws] = student.dims();
    let mut a_s = attention_map(student);
    if (hs, ws) != (ht, wt) {
        a_s = interpolate(
            a_s.reshape([b, 1, hs, ws]),
            // Half-pixel centres, PyTorch's default: burn's default (corner-aligned) would
            // shrink a map by sampling its corner pixels only.
            InterpolateOptions::new(InterpolateMode::Bilinear)
                .with_align_corners(false)
                .with_output_size([ht, wt]),
        )
        .reshape([b, ht, wt]);
    }
    let a_t = attention_map(teacher);
    let (mut a_s, mut a_t) = (a_s.reshape([b, ht * wt]), a_t.reshape([b, ht * wt]));
    if normalize {
        a_s = l2_normalize(a_s);
        a_t = l2_normalize(a_t);
    }
    (a_s - a_t).powi_scalar(2).mean()
}

/// Each row divided by its L2 norm (floored at 1e-12); CRD normalises its embeddings with it.
pub(crate) fn l2_normalize(x: Tensor<2>) -> Tensor<2> {
    let norm = x.clone().powi_scalar(2).sum_dim(1).sqrt().clamp_min(1e-12);
    x / norm
}

/// `[distill.at]`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Options {
    /// L2-normalise the maps (Zagoruyko & Komodakis); false: the paper's raw MSE.
    pub(crate) normalize: bool,
    /// How many of the deepest taps it compares (e.g. 3: every stage of a CIFAR ResNet; a
    /// count above a model's taps means all of them); default: `distill.taps`.
    pub(crate) taps: Option<usize>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            normalize: true,
            taps: None,
        }
    }
}

impl super::Validate for Options {
    fn validate(&self) -> anyhow::Result<()> {
        super::check_taps(self.taps)
    }
}

pub(crate) const SPEC: super::LossSpec = super::LossSpec {
    name: "at",
    about: "attention transfer on each distilled tap (summed; [distill.at] taps for more)",
    needs: super::Needs::NONE,
    options: Some(super::check::<Options>),
    init: None,
    compute: |i, _| {
        let normalize = i.options.of::<Options>("at").normalize;
        let (student, teacher) = i.taps_of("at");
        super::sum_over_taps(
            student
                .iter()
                .zip(teacher)
                .map(|(s, t)| at_loss(s.clone(), t.clone(), normalize)),
        )
    },
};

#[cfg(test)]
mod tests;
