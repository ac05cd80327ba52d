//! Each loss against an independent computation done here on host values.

use crate::common::values;
use burn::tensor::{Device, Int, Tensor, TensorData};
use lstmkd::distill::losses::{at, ce, dkd, kd, ntxent, temporal};

fn t2(v: &[f32], shape: [usize; 2]) -> Tensor<2> {
    Tensor::from_data(TensorData::new(v.to_vec(), shape), &Device::flex())
}
fn scalar(t: Tensor<1>) -> f64 {
    t.into_scalar::<f32>() as f64
}
fn softmax(row: &[f64], t: f64) -> Vec<f64> {
    let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = row.iter().map(|v| ((v - m) / t).exp()).collect();
    let s: f64 = e.iter().sum();
    e.iter().map(|v| v / s).collect()
}
fn kl(p: &[f64], q: &[f64]) -> f64 {
    p.iter()
        .zip(q)
        .map(|(a, b)| if *a > 0.0 { a * (a / b).ln() } else { 0.0 })
        .sum()
}

const S: [f32; 6] = [1.0, 2.0, 0.5, -1.0, 0.0, 3.0];
const T: [f32; 6] = [2.0, 1.0, 0.0, 0.5, 0.5, 1.0];

#[test]
fn kd_is_t_squared_kl_batch_mean() {
    let temp = 4.0;
    let mut want = 0.0;
    for r in 0..2 {
        let s: Vec<f64> = S[r * 3..r * 3 + 3].iter().map(|&v| v as f64).collect();
        let t: Vec<f64> = T[r * 3..r * 3 + 3].iter().map(|&v| v as f64).collect();
        want += kl(&softmax(&t, temp), &softmax(&s, temp));
    }
    want *= temp * temp / 2.0;
    let got = scalar(kd::kd_loss(t2(&S, [2, 3]), t2(&T, [2, 3]), temp));
    assert!((got - want).abs() < 1e-5, "{got} vs {want}");
    // Identical logits: nothing to learn.
    assert!(scalar(kd::kd_loss(t2(&S, [2, 3]), t2(&S, [2, 3]), 2.0)).abs() < 1e-6);
}

/// What a registry loss reads besides the S/T logits and the labels.
struct Step<'a> {
    options: &'a str,
    temperature: f64,
    progress: f64,
    student_taps: &'a [Tensor<4>],
    teacher_taps: &'a [Tensor<4>],
    teacher_view_taps: &'a [Tensor<4>],
    taps: usize,
    samples: &'a [usize],
    step_seed: u64,
}

impl Step<'_> {
    fn new(options: &str) -> Step<'_> {
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
fn registry_loss(name: &str, options: &str, temperature: f64, progress: f64) -> f64 {
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
fn registry_loss_on(
    name: &str,
    step: &Step,
    targets: &Tensor<1, Int>,
    soft: &Tensor<2>,
    parts: &lstmkd::distill::losses::Parts,
) -> f64 {
    let (s, t) = (t2(&S, [2, 3]), t2(&T, [2, 3]));
    // `logit_standardization` is a [distill] key; the rest are the losses' own tables.
    let mut table: toml::Table = toml::from_str(step.options).unwrap();
    let standardize_logits = table
        .remove("logit_standardization")
        .is_some_and(|v| v.as_bool().unwrap());
    let options: lstmkd::distill::losses::LossOptions = table.try_into().unwrap();
    let inputs = lstmkd::distill::losses::Inputs {
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
    let spec = lstmkd::distill::losses::find(name).unwrap();
    scalar((spec.compute)(&inputs, parts))
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
    let want = crate::distill::dkd_reference(&zs(&S), &zs(&T), &[1, 2], 3, 4.0, (1.0, 8.0));
    let got = registry_loss("dkd", "logit_standardization = true", temp, 1.0);
    assert!((got - want).abs() < 1e-5 * (1.0 + want), "{got} vs {want}");
    let plain = registry_loss("dkd", "", temp, 1.0);
    assert!((got - plain).abs() > 1e-3, "{got} {plain}");
}

#[test]
fn dkd_warms_up_linearly_over_its_share_of_the_run() {
    let full = registry_loss("dkd", "", 1.0, 0.5);
    for (progress, factor) in [(0.025, 0.25), (0.05, 0.5), (0.1, 1.0), (0.8, 1.0)] {
        let got = registry_loss("dkd", "dkd = { warmup = 0.1 }", 1.0, progress);
        assert!(
            (got - factor * full).abs() < 1e-6,
            "progress {progress}: {got} vs {factor} x {full}"
        );
    }
    assert!(full > 1e-3);
}

#[test]
fn attention_transfer_reads_the_taps_its_table_gives_it() {
    let device = Device::flex();
    let tap = |seed: u64, c: usize, hw: usize| {
        let v = crate::common::uniform(2 * c * hw * hw, seed);
        Tensor::<4>::from_data(TensorData::new(v, [2, c, hw, hw]), &device)
    };
    // Three stages on each side; the teacher wider, as a teacher is.
    let student = [tap(1, 4, 8), tap(2, 8, 4), tap(3, 16, 2)];
    let teacher = [tap(4, 8, 8), tap(5, 16, 4), tap(6, 32, 2)];
    let at_with = |options: &str| {
        let step = Step {
            student_taps: &student,
            teacher_taps: &teacher,
            ..Step::new(options)
        };
        let targets = Tensor::<1, Int>::from_data(TensorData::new(vec![1i64, 2], [2]), &device);
        let soft = targets.clone().one_hot(3).float();
        registry_loss_on("at", &step, &targets, &soft, &Default::default())
    };
    let per_stage: Vec<f64> = (0..3)
        .map(|k| scalar(at::at_loss(student[k].clone(), teacher[k].clone(), true)))
        .collect();
    let close = |a: f64, b: f64| (a - b).abs() < 1e-6 * (1.0 + b.abs());
    // Default: the distilled taps, the deepest two.
    assert!(close(at_with(""), per_stage[1] + per_stage[2]));
    assert!(close(at_with("at = { taps = 1 }"), per_stage[2]));
    // Every stage, and a count beyond the models' taps means all of them.
    let all: f64 = per_stage.iter().sum();
    assert!(close(at_with("at = { taps = 3 }"), all));
    assert!(close(at_with("at = { taps = 9 }"), all));
}

#[test]
fn soft_cross_entropy_matches_hard_ce_on_one_hot_targets() {
    let onehot = t2(&[0., 1., 0., 0., 0., 1.], [2, 3]);
    let got = scalar(ce::soft_cross_entropy(t2(&S, [2, 3]), onehot));
    let p0 = softmax(&[1.0, 2.0, 0.5], 1.0)[1];
    let p1 = softmax(&[-1.0, 0.0, 3.0], 1.0)[2];
    let want = -(p0.ln() + p1.ln()) / 2.0;
    assert!((got - want).abs() < 1e-5, "{got} vs {want}");
}

#[test]
fn attention_transfer_normalised_and_raw() {
    let device = Device::flex();
    // One sample, 2 channels, 1x2 maps: A_s = [1+4, 0+9] = [5, 9], A_t = [4+0, 1+1] = [4, 2].
    let s = Tensor::<4>::from_data(
        TensorData::new(vec![1f32, 0., 2., 3.], [1, 2, 1, 2]),
        &device,
    );
    let t = Tensor::<4>::from_data(
        TensorData::new(vec![2f32, 1., 0., 1.], [1, 2, 1, 2]),
        &device,
    );
    let raw = scalar(at::at_loss(s.clone(), t.clone(), false));
    assert!(
        (raw - ((5.0f64 - 4.0).powi(2) + (9.0f64 - 2.0).powi(2)) / 2.0).abs() < 1e-4,
        "{raw}"
    );
    let (ns, nt) = ((25.0f64 + 81.0).sqrt(), (16.0f64 + 4.0).sqrt());
    let want = ((5.0 / ns - 4.0 / nt).powi(2) + (9.0 / ns - 2.0 / nt).powi(2)) / 2.0;
    let got = scalar(at::at_loss(s, t, true));
    assert!((got - want).abs() < 1e-6, "{got} vs {want}");
    // A student map of another size is resized to the teacher's, bilinearly with half-pixel
    // centres (PyTorch's align_corners=False): 4x4 -> 2x2 samples between the pixels, i.e. the
    // mean of each 2x2 block. The student's map is 1..16 (row-major), the teacher's zero.
    let s4 = Tensor::<4>::from_data(
        TensorData::new(
            (1..=16).map(|k| (k as f32).sqrt()).collect::<Vec<_>>(),
            [1, 1, 4, 4],
        ),
        &device,
    );
    let t2 = Tensor::<4>::zeros([1, 3, 2, 2], &device);
    // torch 2.9 F.interpolate(arange(1, 17).view(1, 1, 4, 4), (2, 2), mode="bilinear",
    // align_corners=False) gives these.
    let blocks = [3.5f64, 5.5, 11.5, 13.5];
    let want = blocks.iter().map(|v| v * v).sum::<f64>() / 4.0;
    let got = scalar(at::at_loss(s4, t2, false));
    assert!((got - want).abs() < 1e-3 * want, "{got} vs {want}");
}

#[test]
fn temporal_loss_is_per_sample_l2_norm_of_h_and_c() {
    let device = Device::flex();
    // States [layers*dirs = 2, B = 2, hidden = 2].
    let hs = Tensor::<3>::from_data(
        TensorData::new(vec![3f32, 0., 1., 1., 4., 0., 1., 1.], [2, 2, 2]),
        &device,
    );
    let zeros = Tensor::<3>::zeros([2, 2, 2], &device);
    let cs = Tensor::<3>::ones([2, 2, 2], &device);
    // Sample 0: h entries (3,0) and (4,0) -> norm 5; sample 1: four ones -> 2. c: norm 2 each.
    let got = scalar(temporal::temporal_loss(
        hs.clone(),
        cs.clone(),
        zeros.clone(),
        zeros.clone(),
        false,
    ));
    assert!(
        (got - ((5.0 + 2.0) + (2.0 + 2.0)) / 2.0).abs() < 1e-5,
        "{got}"
    );
    // Relative to a teacher whose h is 2 everywhere (norm 4 per sample) and c 0.5 (norm 1).
    let h_t = zeros.clone().add_scalar(2.0);
    let c_t = zeros.add_scalar(0.5);
    // h_s - h_t per sample: sample 0 (1,-2) and (2,-2): norm sqrt(1+4+4+4) = sqrt(13);
    // sample 1: four -1s: norm 2. c_s - c_t: four 0.5s: norm 1 per sample.
    let want = ((13f64.sqrt() / 4.0 + 1.0 / 1.0) + (2.0 / 4.0 + 1.0 / 1.0)) / 2.0;
    let got = scalar(temporal::temporal_loss(hs, cs, h_t, c_t, true));
    assert!((got - want).abs() < 1e-5, "{got} vs {want}");
}

#[test]
fn temporal_loss_has_finite_gradients_when_the_states_already_match() {
    let device = Device::flex().autodiff();
    let h = Tensor::<3>::ones([2, 3, 4], &device).require_grad();
    let c = Tensor::<3>::ones([2, 3, 4], &device).require_grad();
    let target = Tensor::<3>::ones([2, 3, 4], &device);
    let loss = temporal::temporal_loss(h.clone(), c.clone(), target.clone(), target, false);
    let grads = loss.backward();
    // At a minimum of a smoothed norm the gradient is zero, not NaN (sqrt'(0)) or a sub-gradient.
    for g in [h.grad(&grads).unwrap(), c.grad(&grads).unwrap()] {
        let v = values(g);
        assert!(v.iter().all(|x| *x == 0.0), "{v:?}");
    }
}

#[test]
fn dkd_splits_into_target_and_non_target_parts() {
    let temp = 2.0;
    let targets = Tensor::<1, Int>::from_data(TensorData::new(vec![1i64, 2], [2]), &Device::flex());
    let parts = dkd::dkd_parts(t2(&S, [2, 3]), t2(&T, [2, 3]), targets.clone(), temp);
    let (mut tckd, mut nckd) = (0.0, 0.0);
    for (r, y) in [(0usize, 1usize), (1, 2)] {
        let s: Vec<f64> = S[r * 3..r * 3 + 3].iter().map(|&v| v as f64).collect();
        let t: Vec<f64> = T[r * 3..r * 3 + 3].iter().map(|&v| v as f64).collect();
        let (ps, pt) = (softmax(&s, temp), softmax(&t, temp));
        tckd += kl(&[pt[y], 1.0 - pt[y]], &[ps[y], 1.0 - ps[y]]);
        let rest = |p: &[f64]| -> Vec<f64> {
            let o: Vec<f64> = (0..3).filter(|&k| k != y).map(|k| p[k]).collect();
            let z: f64 = o.iter().sum();
            o.iter().map(|v| v / z).collect()
        };
        nckd += kl(&rest(&pt), &rest(&ps));
    }
    let scale = temp * temp / 2.0;
    let (gt, gn) = (scalar(parts.tckd), scalar(parts.nckd));
    assert!(
        (gt - tckd * scale).abs() < 1e-5,
        "tckd {gt} vs {}",
        tckd * scale
    );
    assert!(
        (gn - nckd * scale).abs() < 1e-5,
        "nckd {gn} vs {}",
        nckd * scale
    );
    let total = scalar(dkd::dkd_loss(
        t2(&S, [2, 3]),
        t2(&T, [2, 3]),
        targets,
        temp,
        2.0,
        8.0,
    ));
    assert!((total - scale * (2.0 * tckd + 8.0 * nckd)).abs() < 1e-4);
}

#[test]
fn dkd_under_tmix_splits_on_the_class_holding_most_of_the_mixed_label() {
    let device = Device::flex();
    let (s, t) = (t2(&S, [2, 3]), t2(&T, [2, 3]));
    // Sample 0 is mostly class 2 after mixing although its image was labelled 1.
    let hard = Tensor::<1, Int>::from_data(TensorData::new(vec![1i64, 0], [2]), &device);
    let soft = t2(&[0.0, 0.3, 0.7, 1.0, 0.0, 0.0], [2, 3]);
    let mixed = Tensor::<1, Int>::from_data(TensorData::new(vec![2i64, 0], [2]), &device);
    let got = registry_loss_on("dkd", &Step::new(""), &hard, &soft, &Default::default());
    // DKD's paper's weights and temperature, its defaults.
    let (a, b, temp) = (1.0, 8.0, 4.0);
    let want = scalar(dkd::dkd_loss(s.clone(), t.clone(), mixed, temp, a, b));
    let with_hard = scalar(dkd::dkd_loss(s, t, hard, temp, a, b));
    assert!(
        (got - want).abs() < 1e-6 && (got - with_hard).abs() > 1e-4,
        "{got} {want} {with_hard}"
    );
}

#[test]
fn fitnet_regressor_resizes_like_pytorch_then_projects_and_is_trained() {
    use burn::module::Module;
    use lstmkd::distill::losses::fitnet::{hint_loss, regress};
    let device = Device::flex().autodiff();
    device.seed(3);
    let reg = lstmkd::models::layers::ConvBn::new(2, 3, 1, 1, 1, &device);
    // A 4x4 student tap and a 2x2 teacher tap: the student is resized by 2x2 block means
    // (bilinear with half-pixel centres at scale 1/2), then projected to 3 channels.
    let x = Tensor::<4>::from_data(
        TensorData::new((0..32).map(|v| v as f32).collect::<Vec<_>>(), [1, 2, 4, 4]),
        &device,
    );
    let means: Vec<f32> = (0..2)
        .flat_map(|c| {
            [(0, 0), (0, 2), (2, 0), (2, 2)].map(|(y, x)| {
                let at = |dy: usize, dx: usize| (c * 16 + (y + dy) * 4 + x + dx) as f32;
                (at(0, 0) + at(0, 1) + at(1, 0) + at(1, 1)) / 4.0
            })
        })
        .collect();
    // Then the 1x1 projection (no bias) and an untrained batch norm in inference mode
    // (mean 0, variance 1, gamma 1, beta 0): W . pooled / sqrt(1 + 1e-5).
    let valid = reg.valid();
    let w = values(valid.conv.weight.val());
    let want: Vec<f32> = (0..3)
        .flat_map(|o| {
            let (w, means) = (&w, &means);
            (0..4).map(move |p| {
                (w[o * 2] * means[p] + w[o * 2 + 1] * means[4 + p]) / (1.0f32 + 1e-5).sqrt()
            })
        })
        .collect();
    let got: Vec<f32> = regress(&valid, x.clone().without_autodiff(), [2, 2])
        .into_data()
        .try_to_vec()
        .unwrap();
    assert_eq!(got.len(), 12);
    for (g, w) in got.iter().zip(&want) {
        assert!(
            (g - w).abs() < 1e-4 * (1.0 + w.abs()),
            "{got:?} vs {want:?}"
        );
    }
    // The hint loss is the mean squared difference, and it trains the projection.
    let teacher: Vec<f32> = (0..12).map(|v| (v as f32 * 0.7).sin()).collect();
    let regressed = regress(&reg, x, [2, 2]);
    let r = values(regressed.clone());
    let mse = r
        .iter()
        .zip(&teacher)
        .map(|(a, b)| ((a - b) as f64).powi(2))
        .sum::<f64>()
        / 12.0;
    let loss = hint_loss(
        regressed,
        Tensor::<4>::from_data(TensorData::new(teacher, [1, 3, 2, 2]), &device),
    );
    assert!((scalar(loss.clone()) - mse).abs() < 1e-5 * (1.0 + mse));
    let grads = loss.backward();
    let g = reg.conv.weight.val().grad(&grads).expect("a gradient");
    assert!(g.abs().sum().into_scalar::<f32>() > 0.0);
}

#[test]
fn crd_nce_loss_matches_repdistillers_formula() {
    // Scores of 2 anchors, the positive first and 3 negatives, against a memory of 50 rows.
    let x = [0.9f32, 0.1, 0.3, 0.05, 0.4, 0.2, 0.7, 0.01];
    let n = 50.0;
    let m_pn = 3.0 / n;
    let eps = 1e-7;
    let mut want = 0.0;
    for r in 0..2 {
        let row: Vec<f64> = x[r * 4..r * 4 + 4].iter().map(|&v| v as f64).collect();
        want += (row[0] / (row[0] + m_pn + eps)).ln();
        for &neg in &row[1..] {
            want += (m_pn / (neg + m_pn + eps)).ln();
        }
    }
    want = -want / 2.0;
    let got = scalar(lstmkd::distill::losses::crd::nce_loss(t2(&x, [2, 4]), 50));
    assert!(
        (got - want).abs() < 1e-5 * (1.0 + want.abs()),
        "{got} vs {want}"
    );
}

#[test]
fn crd_contrasts_each_image_with_uniform_others_drawn_from_its_seed() {
    use lstmkd::distill::losses::crd::contrast_indices;
    let samples = [3, 0, 9];
    let idx = contrast_indices(&samples, 10, 200, 7);
    assert_eq!(idx.len(), 3 * 201);
    let mut counts = [0usize; 10];
    for (r, &s) in samples.iter().enumerate() {
        let row = &idx[r * 201..(r + 1) * 201];
        assert_eq!(row[0], s, "the positive is the image's own row");
        for &j in &row[1..] {
            assert!(j < 10 && j != s, "row {r}: {j}");
            counts[j] += 1;
        }
    }
    // 600 draws over 10 rows, each row excluded from its own image's 200: about 60-67 each.
    assert!(counts.iter().all(|&c| (35..100).contains(&c)), "{counts:?}");
    assert_eq!(idx, contrast_indices(&samples, 10, 200, 7));
    assert_ne!(idx, contrast_indices(&samples, 10, 200, 8));
}

#[test]
fn crd_memory_moves_its_rows_towards_the_batch_and_renormalises() {
    let device = Device::flex();
    let memory = t2(&[1.0, 0.0, 0.0, 1.0, 0.6, 0.8], [3, 2]);
    let rows = Tensor::<1, Int>::from_data(TensorData::new(vec![2i64, 0], [2]), &device);
    let v = t2(&[0.0, 1.0, 0.0, -1.0], [2, 2]);
    let got: Vec<f32> = lstmkd::distill::losses::crd::updated_memory(memory, rows, v, 0.5)
        .into_data()
        .iter::<f32>()
        .collect();
    // Row 2: 0.5 [0.6, 0.8] + 0.5 [0, 1] = [0.3, 0.9], normalised; row 0: [0.5, -0.5].
    let n2 = (0.3f32 * 0.3 + 0.9 * 0.9).sqrt();
    let n0 = 0.5f32.sqrt();
    let want = [0.5 / n0, -0.5 / n0, 0.0, 1.0, 0.3 / n2, 0.9 / n2];
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() < 1e-6, "{got:?} vs {want:?}");
    }
}

/// A [R, C] tensor's rows on the host.
fn host(t: Tensor<2>) -> Vec<Vec<f64>> {
    let [r, c] = t.dims();
    let v: Vec<f64> = t.into_data().iter::<f32>().map(|x| x as f64).collect();
    (0..r).map(|i| v[i * c..(i + 1) * c].to_vec()).collect()
}

/// CRD's and NT-Xent's embedding written out: a tap [B, C, H, W] average-pooled, through
/// `linear` (x W + b, burn's [in, out] weight), L2-normalised.
fn embed(linear: &burn::nn::Linear, tap: &Tensor<4>) -> Vec<Vec<f64>> {
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
fn one_tap_parts(name: &str, options: &str) -> lstmkd::distill::losses::Parts {
    use lstmkd::distill::losses::{LossOptions, PartsContext, find};
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
fn tap(seed: u64, c: usize) -> Tensor<4> {
    let v = crate::common::uniform(2 * c * 4, seed);
    Tensor::<4>::from_data(TensorData::new(v, [2, c, 2, 2]), &Device::flex())
}

#[test]
fn crd_through_the_registry_scores_each_side_against_the_others_memory() {
    use lstmkd::distill::losses::crd::contrast_indices;
    let device = Device::flex();
    let parts = one_tap_parts("crd", "crd = { feat_dim = 3, negatives = 4 }");
    let (student, teacher) = ([tap(1, 2)], [tap(2, 4)]);
    // Host copies before the step moves the memories.
    let (mem_s, mem_t) = (host(parts.states[0].value()), host(parts.states[1].value()));
    let (v_s, v_t) = (
        embed(&parts.linears[0], &student[0]),
        embed(&parts.linears[1], &teacher[0]),
    );
    let samples = [3usize, 7];
    let idx = contrast_indices(&samples, 10, 4, 5);
    let scores = |memory: &[Vec<f64>], v: &[Vec<f64>]| -> Vec<Vec<f64>> {
        (0..2)
            .map(|r| {
                (0..5)
                    .map(|j| {
                        let row = &memory[idx[r * 5 + j]];
                        ((0..3).map(|d| row[d] * v[r][d]).sum::<f64>() / 0.07).exp()
                    })
                    .collect()
            })
            .collect()
    };
    let nce = |x: &[Vec<f64>]| -> f64 {
        // RepDistiller: the mean score over the B x (K + 1) entries times the memory size.
        let z = x.iter().flatten().sum::<f64>() / (2.0 * 5.0) * 10.0;
        let m_pn = 4.0 / 10.0;
        let mut total = 0.0;
        for row in x {
            let p = row[0] / z;
            total += (p / (p + m_pn + 1e-7)).ln();
            for &neg in &row[1..] {
                total += (m_pn / (neg / z + m_pn + 1e-7)).ln();
            }
        }
        -total / 2.0
    };
    let want = nce(&scores(&mem_t, &v_s)) + nce(&scores(&mem_s, &v_t));
    let targets = Tensor::<1, Int>::from_data(TensorData::new(vec![1i64, 2], [2]), &device);
    let soft = targets.clone().one_hot(3).float();
    let step = Step {
        student_taps: &student,
        teacher_taps: &teacher,
        taps: 1,
        samples: &samples,
        step_seed: 5,
        ..Step::new("crd = { feat_dim = 3, negatives = 4 }")
    };
    let got = registry_loss_on("crd", &step, &targets, &soft, &parts);
    assert!(
        (got - want).abs() < 1e-4 * (1.0 + want.abs()),
        "{got} vs {want}"
    );
    // The step moved each image's own memory rows towards its embedding (momentum 0.5).
    let after = host(parts.states[0].value());
    for (r, &s) in samples.iter().enumerate() {
        let mixed: Vec<f64> = (0..3)
            .map(|d| 0.5 * mem_s[s][d] + 0.5 * v_s[r][d])
            .collect();
        let norm = mixed.iter().map(|v| v * v).sum::<f64>().sqrt();
        for d in 0..3 {
            assert!((after[s][d] - mixed[d] / norm).abs() < 1e-5, "row {s}");
        }
    }
    assert_eq!(after[0], mem_s[0], "rows of other images stay");
    // Z was fixed by the first step and is not set again.
    let z = host(parts.states[2].value())[0].clone();
    let again = registry_loss_on("crd", &step, &targets, &soft, &parts);
    assert_eq!(host(parts.states[2].value())[0], z);
    assert!(again.is_finite());
}

#[test]
fn cross_entropy_counts_only_the_labelled_rows() {
    // Rows 0 and 2 labelled (classes 1 and 0), row 1 without a label (a zero row).
    let logits = [0.5f32, 1.5, -1.0, 2.0, 0.0, 0.0, 0.3, 0.3, 0.9];
    let soft = [0f32, 1., 0., 0., 0., 0., 1., 0., 0.];
    let lse = |r: &[f32]| r.iter().map(|&v| (v as f64).exp()).sum::<f64>().ln();
    let want = ((lse(&logits[0..3]) - 1.5) + (lse(&logits[6..9]) - 0.3)) / 2.0;
    let got = scalar(ce::soft_cross_entropy(
        t2(&logits, [3, 3]),
        t2(&soft, [3, 3]),
    ));
    assert!((got - want).abs() < 1e-5, "{got} vs {want}");
    // No label in the batch: nothing to learn from CE.
    let none = scalar(ce::soft_cross_entropy(
        t2(&logits, [3, 3]),
        t2(&[0.; 9], [3, 3]),
    ));
    assert_eq!(none, 0.0);
}

#[test]
fn nt_xent_is_simclrs_loss_over_both_sides() {
    // SimCLR's NT-Xent written out: 2B embeddings, each one's positive its partner, the
    // denominator every other embedding; mean over the 2B anchors.
    let zs = [0.6f32, 0.8, 1.0, 0.0];
    let zt = [0.0f32, 1.0, 0.8, -0.6];
    let tau = 0.5;
    let z: Vec<[f64; 2]> = zs
        .chunks(2)
        .chain(zt.chunks(2))
        .map(|c| [c[0] as f64, c[1] as f64])
        .collect();
    let sim = |a: usize, b: usize| (z[a][0] * z[b][0] + z[a][1] * z[b][1]) / tau;
    let mut want = 0.0;
    for i in 0..4 {
        let pos = (i + 2) % 4;
        let denom: f64 = (0..4).filter(|&k| k != i).map(|k| sim(i, k).exp()).sum();
        want += -(sim(i, pos).exp() / denom).ln();
    }
    want /= 4.0;
    let got = scalar(ntxent::nt_xent(t2(&zs, [2, 2]), t2(&zt, [2, 2]), tau));
    assert!((got - want).abs() < 1e-5, "{got} vs {want}");
}

#[test]
fn ntxent_through_the_registry_embeds_the_student_and_the_teachers_second_view() {
    let device = Device::flex();
    let text = "ntxent = { feat_dim = 3, temperature = 0.5 }";
    let parts = one_tap_parts("ntxent", text);
    // The teacher's taps of the first view are not what it reads: they differ from the second.
    let (student, first, second) = ([tap(1, 2)], [tap(2, 4)], [tap(3, 4)]);
    let mut z = embed(&parts.linears[0], &student[0]);
    z.extend(embed(&parts.linears[1], &second[0]));
    // SimCLR over the 4 embeddings: each one's positive is its partner on the other side, the
    // softmax over every other embedding.
    let sim = |i: usize, j: usize| (0..3).map(|d| z[i][d] * z[j][d]).sum::<f64>() / 0.5;
    let want = (0..4)
        .map(|i| {
            let others: f64 = (0..4).filter(|&j| j != i).map(|j| sim(i, j).exp()).sum();
            -(sim(i, (i + 2) % 4).exp() / others).ln()
        })
        .sum::<f64>()
        / 4.0;
    let targets = Tensor::<1, Int>::from_data(TensorData::new(vec![1i64, 2], [2]), &device);
    let soft = targets.clone().one_hot(3).float();
    let step = Step {
        student_taps: &student,
        teacher_taps: &first,
        teacher_view_taps: &second,
        taps: 1,
        samples: &[3, 7],
        ..Step::new(text)
    };
    let got = registry_loss_on("ntxent", &step, &targets, &soft, &parts);
    assert!(
        (got - want).abs() < 1e-5 * (1.0 + want.abs()),
        "{got} vs {want}"
    );
}
