//! Each loss against an independent computation done here on host values: the helpers the
//! losses' tests share (each loss's own tests sit next to it, in `<loss>/tests.rs`), and the
//! logit standardisation that KD and DKD read through the registry.

use burn::tensor::{Device, Int, Tensor, TensorData};

pub(super) fn t2(v: &[f32], shape: [usize; 2]) -> Tensor<2> {
    Tensor::from_data(TensorData::new(v.to_vec(), shape), &Device::flex())
}

pub(super) fn scalar(t: Tensor<1>) -> f64 {
    t.into_scalar::<f32>() as f64
}

pub(super) fn softmax(row: &[f64], t: f64) -> Vec<f64> {
    let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = row.iter().map(|v| ((v - m) / t).exp()).collect();
    let s: f64 = e.iter().sum();
    e.iter().map(|v| v / s).collect()
}

pub(super) fn kl(p: &[f64], q: &[f64]) -> f64 {
    p.iter()
        .zip(q)
        .map(|(a, b)| if *a > 0.0 { a * (a / b).ln() } else { 0.0 })
        .sum()
}

pub(super) const S: [f32; 6] = [1.0, 2.0, 0.5, -1.0, 0.0, 3.0];

pub(super) const T: [f32; 6] = [2.0, 1.0, 0.0, 0.5, 0.5, 1.0];

/// What a registry loss reads besides the S/T logits and the labels.
pub(super) struct Step<'a> {
    pub(super) options: &'a str,
    pub(super) temperature: f64,
    pub(super) progress: f64,
    pub(super) student_taps: &'a [Tensor<4>],
    pub(super) teacher_taps: &'a [Tensor<4>],
    pub(super) teacher_view_taps: &'a [Tensor<4>],
    pub(super) taps: usize,
    pub(super) samples: &'a [usize],
    pub(super) step_seed: u64,
}

impl Step<'_> {
    pub(super) fn new(options: &str) -> Step<'_> {
        Step {
            options,
            temperature: 1.0,
            progress: 1.0,
            student_taps: &[],
            teacher_taps: &[],
            teacher_view_taps: &[],
            taps: 2,
            samples: &[],
            step_seed: 0,
        }
    }
}

/// A registry loss on the S/T logits (labels 1 and 2).
pub(super) fn registry_loss(name: &str, options: &str, temperature: f64, progress: f64) -> f64 {
    let targets = Tensor::<1, Int>::from_data(TensorData::new(vec![1i64, 2], [2]), &Device::flex());
    let soft = targets.clone().one_hot(3).float();
    let step = Step {
        temperature,
        progress,
        ..Step::new(options)
    };
    registry_loss_on(name, &step, &targets, &soft, &Default::default())
}

/// A registry loss on the S/T logits with these labels, step and parts.
pub(super) fn registry_loss_on(
    name: &str,
    step: &Step,
    targets: &Tensor<1, Int>,
    soft: &Tensor<2>,
    parts: &crate::distill::losses::Parts,
) -> f64 {
    let (s, t) = (t2(&S, [2, 3]), t2(&T, [2, 3]));
    // `logit_standardization` is a [distill] key; the rest are the losses' own tables.
    let mut table: toml::Table = toml::from_str(step.options).unwrap();
    let standardize_logits = table
        .remove("logit_standardization")
        .is_some_and(|v| v.as_bool().unwrap());
    let options: crate::distill::losses::LossOptions = table.try_into().unwrap();
    let inputs = crate::distill::losses::Inputs {
        student_logits: &s,
        teacher_logits: &t,
        student_taps: step.student_taps,
        teacher_taps: step.teacher_taps,
        teacher_view_taps: step.teacher_view_taps,
        taps: step.taps,
        student_extractors: &[],
        teacher_extractors: &[],
        targets,
        soft_targets: soft,
        temperature: step.temperature,
        progress: step.progress,
        samples: step.samples,
        step_seed: step.step_seed,
        standardize_logits,
        options: &options,
    };
    let spec = crate::distill::losses::find(name).unwrap();
    scalar((spec.compute)(&inputs, parts))
}

/// A [R, C] tensor's rows on the host.
pub(super) fn host(t: Tensor<2>) -> Vec<Vec<f64>> {
    let [r, c] = t.dims();
    let v: Vec<f64> = t.into_data().iter::<f32>().map(|x| x as f64).collect();
    (0..r).map(|i| v[i * c..(i + 1) * c].to_vec()).collect()
}

/// CRD's and NT-Xent's embedding written out: a tap [B, C, H, W] average-pooled, through
/// `linear` (x W + b, burn's [in, out] weight), L2-normalised.
pub(super) fn embed(linear: &burn::nn::Linear, tap: &Tensor<4>) -> Vec<Vec<f64>> {
    let [b, c, h, w] = tap.dims();
    let x: Vec<f64> = tap
        .clone()
        .into_data()
        .iter::<f32>()
        .map(|v| v as f64)
        .collect();
    let weight = host(linear.weight.val());
    let bias: Vec<f64> = linear
        .bias
        .as_ref()
        .unwrap()
        .val()
        .into_data()
        .iter::<f32>()
        .map(|v| v as f64)
        .collect();
    let plane = h * w;
    (0..b)
        .map(|i| {
            let pooled: Vec<f64> = (0..c)
                .map(|ch| {
                    let at = (i * c + ch) * plane;
                    x[at..at + plane].iter().sum::<f64>() / plane as f64
                })
                .collect();
            let y: Vec<f64> = (0..bias.len())
                .map(|o| bias[o] + (0..c).map(|ch| pooled[ch] * weight[ch][o]).sum::<f64>())
                .collect();
            let norm = y.iter().map(|v| v * v).sum::<f64>().sqrt();
            y.iter().map(|v| v / norm).collect()
        })
        .collect()
}

/// The parts loss `name` owns for one tap: the student's [1, 2, 2, 2], the teacher's
/// [1, 4, 2, 2], 3 classes, 10 training images.
pub(super) fn one_tap_parts(name: &str, options: &str) -> crate::distill::losses::Parts {
    use crate::distill::losses::{LossOptions, PartsContext, find};
    let options: LossOptions = toml::from_str(options).unwrap();
    let cx = PartsContext {
        student_taps: &[[1, 2, 2, 2]],
        teacher_taps: &[[1, 4, 2, 2]],
        taps: 1,
        classes: 3,
        samples: 10,
        options: &options,
    };
    (find(name).unwrap().init.unwrap())(&cx, &Device::flex())
}

/// A tap [2, c, 2, 2] of seeded uniform values.
pub(super) fn tap(seed: u64, c: usize) -> Tensor<4> {
    let v = crate::test_util::uniform(2 * c * 4, seed);
    Tensor::<4>::from_data(TensorData::new(v, [2, c, 2, 2]), &Device::flex())
}

#[test]
fn logit_standardization_z_scores_each_sample_before_kd_and_dkd() {
    // Sun et al.: z = (v - mean) / std with torch.std's n - 1, per row, on both sides.
    let z = |row: &[f32]| -> Vec<f64> {
        let v: Vec<f64> = row.iter().map(|&x| x as f64).collect();
        let mean = v.iter().sum::<f64>() / 3.0;
        let std = (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / 2.0).sqrt();
        v.iter().map(|x| (x - mean) / (std + 1e-7)).collect()
    };
    let temp = 2.0;
    let want: f64 = (0..2)
        .map(|r| {
            let (s, t) = (z(&S[r * 3..r * 3 + 3]), z(&T[r * 3..r * 3 + 3]));
            kl(&softmax(&t, temp), &softmax(&s, temp))
        })
        .sum::<f64>()
        * temp
        * temp
        / 2.0;
    let got = registry_loss("kd", "logit_standardization = true", temp, 1.0);
    assert!((got - want).abs() < 1e-5, "{got} vs {want}");
    // Not plain KD on the raw logits.
    let plain = registry_loss("kd", "", temp, 1.0);
    assert!((got - plain).abs() > 1e-3, "{got} {plain}");

    // DKD reads the same standardised logits, at its own temperature (default 4, alpha 1,
    // beta 8).
    let zs = |l: &[f32]| -> Vec<f32> {
        (0..2)
            .flat_map(|r| z(&l[r * 3..r * 3 + 3]))
            .map(|x| x as f32)
            .collect()
    };
    let want = crate::test_util::dkd_reference(&zs(&S), &zs(&T), &[1, 2], 3, 4.0, (1.0, 8.0));
    let got = registry_loss("dkd", "logit_standardization = true", temp, 1.0);
    assert!((got - want).abs() < 1e-5 * (1.0 + want), "{got} vs {want}");
    let plain = registry_loss("dkd", "", temp, 1.0);
    assert!((got - plain).abs() > 1e-3, "{got} {plain}");
}
