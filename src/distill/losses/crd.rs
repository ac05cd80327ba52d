//! Contrastive representation distillation (Tian et al., ICLR 2020), computed as RepDistiller
//! computes it. Each side's deepest tap, average-pooled, is embedded by its own linear layer
//! and L2-normalised. Two memories hold an embedding per training image (the student's and the
//! teacher's), updated with momentum from each batch. For each image, its own row of the other
//! side's memory is the positive and `[distill.crd] negatives` random rows the negatives; the scores
//! exp(v . m / T) are normalised by a constant Z fixed at the first step, and the loss is the
//! NCE objective of both directions (student as anchor against the teacher's memory, and the
//! teacher against the student's).
//!
//! Negatives are drawn uniformly from the other images of the training split; RepDistiller's
//! CIFAR loader draws them from the other classes only.

use burn::module::RunningState;
use burn::nn::LinearConfig;
use burn::tensor::{Distribution, Int, Tensor, TensorData};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::at::l2_normalize;
use super::{Parts, PartsContext};

/// Numerical guard of RepDistiller's NCE terms.
const EPS: f64 = 1e-7;

/// [B x frames, C, H, W] -> [B, C]: the global average pool in front of a ResNet's
/// classifier, over a clip's frames too, so that each sample has one embedding as the memory
/// holds one row per sample.
pub(super) fn pooled(tap: &Tensor<4>, samples: usize) -> Tensor<2> {
    let [bf, c, _, _] = tap.dims();
    tap.clone()
        .mean_dim(3)
        .mean_dim(2)
        .reshape([samples, bf / samples, c])
        .mean_dim(1)
        .reshape([samples, c])
}

/// Row indices into a memory of `n` images, [B, K + 1]: each image's own row first, then `k`
/// others drawn uniformly with `seed`.
pub(crate) fn contrast_indices(samples: &[usize], n: usize, k: usize, seed: u64) -> Vec<usize> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut out = Vec::with_capacity(samples.len() * (k + 1));
    for &s in samples {
        out.push(s);
        for _ in 0..k {
            // Uniform over the n - 1 other rows.
            let j = rng.random_range(0..n.max(2) - 1);
            out.push(if j >= s { j + 1 } else { j });
        }
    }
    out
}

/// The NCE loss of scores `x` ([B, K + 1], positive first) against the uniform noise of a
/// memory of `n` rows: -(log P(pos) + sum log(1 - P(neg))) per anchor, batch mean.
pub(crate) fn nce_loss(x: Tensor<2>, n: usize) -> Tensor<1> {
    let [b, k1] = x.dims();
    let m_pn = (k1 - 1) as f64 / n as f64;
    let pos = x.clone().slice([0..b, 0..1]);
    let neg = x.slice([0..b, 1..k1]);
    let log_d1 = (pos.clone() / pos.add_scalar(m_pn + EPS)).log();
    let log_d0 = (neg.add_scalar(m_pn + EPS).recip().mul_scalar(m_pn)).log();
    (log_d1.sum() + log_d0.sum()).neg().div_scalar(b as f64)
}

/// Replaces a state's value now: burn's `RunningState` averages updates from several threads
/// at its next synchronisation, and a checkpoint written before one would miss this update.
fn store(state: &RunningState<Tensor<2>>, value: Tensor<2>) {
    state.update(value);
    state.value_sync();
}

/// exp(rows of `memory` at `idx` . `v` / T), [B, K + 1]; the memory carries no gradient.
fn scores(memory: &Tensor<2>, idx: &Tensor<1, Int>, v: &Tensor<2>, t: f64) -> Tensor<2> {
    let [b, d] = v.dims();
    let k1 = idx.dims()[0] / b;
    let rows = memory
        .clone()
        .detach()
        .select(0, idx.clone())
        .reshape([b, k1, d]);
    rows.matmul(v.clone().reshape([b, d, 1]))
        .reshape([b, k1])
        .div_scalar(t)
        .exp()
}

/// Memory rows `samples` moved towards `v` with `momentum`, renormalised.
pub(crate) fn updated_memory(
    memory: Tensor<2>,
    samples: Tensor<1, Int>,
    v: Tensor<2>,
    momentum: f64,
) -> Tensor<2> {
    let old = memory.clone().select(0, samples.clone());
    let new = l2_normalize(old.mul_scalar(momentum) + v.detach().mul_scalar(1.0 - momentum));
    memory.select_assign(0, samples, new, burn::tensor::IndexingUpdateOp::Assign)
}

/// `[distill.crd]`: embedding size, negatives per image, NCE temperature and memory momentum
/// (RepDistiller's defaults but the negatives: 16,384 there, whose gathers would dominate a
/// CPU step).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Options {
    pub(crate) feat_dim: usize,
    pub(crate) negatives: usize,
    pub(crate) temperature: f64,
    pub(crate) momentum: f64,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            feat_dim: 128,
            negatives: 4096,
            temperature: 0.07,
            momentum: 0.5,
        }
    }
}

impl super::Validate for Options {
    fn validate(&self) -> anyhow::Result<()> {
        // RepDistiller uses 128 and 16,384; the upper bounds only keep an absurd value from
        // aborting on allocation.
        for (name, v, max) in [
            ("feat_dim", self.feat_dim, 4096),
            ("negatives", self.negatives, 1 << 16),
        ] {
            if !(1..=max).contains(&v) {
                anyhow::bail!("{name}: 1 to {max}, got {v}");
            }
        }
        super::at_least("temperature", self.temperature, 0.0, true)?;
        if !(0.0..1.0).contains(&self.momentum) {
            anyhow::bail!("momentum: in [0, 1), got {}", self.momentum);
        }
        Ok(())
    }
}

pub(crate) const SPEC: super::LossSpec = super::LossSpec {
    name: "crd",
    about: "contrastive representation distillation (NCE against memories of every image)",
    needs: super::Needs::NONE,
    options: Some(super::check::<Options>),
    // Embeddings of the deepest taps, and the two memories plus the two Z constants.
    init: Some(|cx: &PartsContext, device| {
        let d = cx.options.of::<Options>("crd").feat_dim;
        let (s, t) = (
            cx.student_taps.last().map_or(1, |s| s[1]),
            cx.teacher_taps.last().map_or(1, |t| t[1]),
        );
        let stdv = 1.0 / (d as f64 / 3.0).sqrt();
        let memory = || {
            RunningState::new(Tensor::random(
                [cx.samples.max(2), d],
                Distribution::Uniform(-stdv, stdv),
                device,
            ))
        };
        Parts {
            linears: vec![
                LinearConfig::new(s, d).init(device),
                LinearConfig::new(t, d).init(device),
            ],
            states: vec![
                memory(),
                memory(),
                // Z of each direction; negative until the first step sets it.
                RunningState::new(Tensor::from_data(
                    TensorData::new(vec![-1f32, -1.0], [1, 2]),
                    device,
                )),
            ],
            ..Default::default()
        }
    }),
    compute: |i, parts| {
        let o = i.options.of::<Options>("crd");
        let device = i.student_logits.device();
        let (student, teacher) = (
            i.student_taps.last().expect("a model has taps"),
            i.teacher_taps.last().expect("a model has taps"),
        );
        let b = i.samples.len();
        let v_s = l2_normalize(parts.linears[0].forward(pooled(student, b)));
        let v_t = l2_normalize(parts.linears[1].forward(pooled(teacher, b)));
        let (memory_s, memory_t) = (parts.states[0].value_sync(), parts.states[1].value_sync());
        let n = memory_s.dims()[0];
        let idx: Vec<i64> = contrast_indices(i.samples, n, o.negatives, i.step_seed)
            .into_iter()
            .map(|v| v as i64)
            .collect();
        let idx = Tensor::<1, Int>::from_data(TensorData::new(idx.clone(), [idx.len()]), &device);
        // The student's embedding against the teacher's memory, and the other way round.
        let out_s = scores(&memory_t, &idx, &v_s, o.temperature);
        let out_t = scores(&memory_s, &idx, &v_t, o.temperature);
        // RepDistiller: Z = mean score x the memory's size, set at the first step. Chosen on
        // the device (Z is negative until set) rather than read back each step.
        let first = Tensor::cat(
            vec![
                out_s.clone().detach().mean().reshape([1, 1]),
                out_t.clone().detach().mean().reshape([1, 1]),
            ],
            1,
        )
        .mul_scalar(n as f64);
        let z = parts.states[2].value_sync();
        let z = z.clone().mask_where(z.lower_elem(0.0), first);
        store(&parts.states[2], z.clone());
        let z_s = z.clone().slice([0..1, 0..1]);
        let z_t = z.slice([0..1, 1..2]);
        let loss = nce_loss(out_s / z_s, n) + nce_loss(out_t / z_t, n);
        let positions: Vec<i64> = i.samples.iter().map(|&s| s as i64).collect();
        let positions =
            Tensor::<1, Int>::from_data(TensorData::new(positions, [i.samples.len()]), &device);
        store(
            &parts.states[0],
            updated_memory(memory_s, positions.clone(), v_s, o.momentum),
        );
        store(
            &parts.states[1],
            updated_memory(memory_t, positions, v_t, o.momentum),
        );
        loss
    },
};

#[cfg(test)]
mod tests;
