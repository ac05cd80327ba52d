//! NT-Xent (SimCLR's normalised temperature-scaled cross-entropy) between the student's
//! embedding of each image and the teacher's embedding of a second augmented view of it
//! (`views.rs`): of the 2B embeddings, each one's positive is its partner from the other side,
//! and the other 2B - 2 are its negatives. Labels play no part, so it distils without them
//! (`data.label_fraction`). Each side's deepest tap, average-pooled (over a clip's frames too),
//! is embedded by its own linear head and L2-normalised, as CRD embeds them.

use burn::nn::LinearConfig;
use burn::tensor::activation::log_softmax;
use burn::tensor::{Tensor, TensorData};

use super::at::l2_normalize;
use super::crd::pooled;
use super::{Parts, PartsContext};

/// The loss for L2-normalised embeddings `z_s` and `z_t` [B, D], row i of each the same image.
pub(crate) fn nt_xent(z_s: Tensor<2>, z_t: Tensor<2>, temperature: f64) -> Tensor<1> {
    let [b, _] = z_s.dims();
    let device = z_s.device();
    let z = Tensor::cat(vec![z_s, z_t], 0);
    let n = 2 * b;
    // An embedding is not its own negative: its similarity is pushed out of the softmax.
    let mut own = vec![0f32; n * n];
    let mut positive = vec![0f32; n * n];
    for i in 0..n {
        own[i * n + i] = 1e9;
        positive[i * n + (i + b) % n] = 1.0;
    }
    let matrix = |v: Vec<f32>| Tensor::<2>::from_data(TensorData::new(v, [n, n]), &device);
    let sim = z.clone().matmul(z.transpose()).div_scalar(temperature) - matrix(own);
    (log_softmax(sim, 1) * matrix(positive))
        .sum()
        .neg()
        .div_scalar(n as f64)
}

/// `[distill.ntxent]`: the embedding size and temperature (SimCLR's 128 and 0.5).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Options {
    pub(crate) feat_dim: usize,
    pub(crate) temperature: f64,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            feat_dim: 128,
            temperature: 0.5,
        }
    }
}

impl super::Validate for Options {
    fn validate(&self) -> anyhow::Result<()> {
        if self.feat_dim == 0 {
            anyhow::bail!("feat_dim: must be at least 1");
        }
        super::at_least("temperature", self.temperature, 0.0, true)
    }
}

pub(crate) const SPEC: super::LossSpec = super::LossSpec {
    name: "ntxent",
    about: "NT-Xent between the student's and the teacher's embeddings of two views (label-free)",
    needs: super::Needs::SECOND_VIEW,
    options: Some(super::check::<Options>),
    init: Some(|cx: &PartsContext, device| {
        let d = cx.options.of::<Options>("ntxent").feat_dim;
        let (s, t) = (
            cx.student_taps.last().map_or(1, |s| s[1]),
            cx.teacher_taps.last().map_or(1, |t| t[1]),
        );
        Parts {
            linears: vec![
                LinearConfig::new(s, d).init(device),
                LinearConfig::new(t, d).init(device),
            ],
            ..Default::default()
        }
    }),
    compute: |i, parts| {
        let b = i.samples.len();
        let student = i.student_taps.last().expect("a model has taps");
        let teacher = i
            .teacher_view_taps
            .last()
            .expect("the second view is computed when ntxent is on");
        let z_s = l2_normalize(parts.linears[0].forward(pooled(student, b)));
        let z_t = l2_normalize(parts.linears[1].forward(pooled(teacher, b)));
        nt_xent(z_s, z_t, i.options.of::<Options>("ntxent").temperature)
    },
};

#[cfg(test)]
mod tests;
