use burn::module::Module;

use crate::common::{lstmkd, ok, values};
use burn::tensor::{Device, Distribution, Int, Tensor, TensorData};
use lstmkd::distill::extractor::{Crop, ExtractorConfig, positions, windows};
use lstmkd::distill::mix::{random_crops, tmix};
use lstmkd::distill::phases::{Phase, active, paper_phases};
use lstmkd::distill::temperature::{Policy, TemperatureConfig};
use lstmkd::train::checkpoint::Checkpoint;
use rand::SeedableRng;
use rand::rngs::StdRng;

fn small() -> ExtractorConfig {
    ExtractorConfig {
        window: 3,
        conv_channels: 8,
        hidden: 6,
        layers: 2,
        ..Default::default()
    }
}

#[test]
fn windows_follow_the_definition() {
    let device = Device::flex();
    let f = Tensor::<4>::from_data(
        TensorData::new((0..20).map(|v| v as f32).collect::<Vec<_>>(), [1, 1, 5, 4]),
        &device,
    );
    let s = windows(f, 3);
    assert_eq!(s.dims(), [1, 1, 3, 3, 4]);
    let v = values(s);
    // S[0, 0, t, i, x] = F[0, 0, i + t, x] = 4 (i + t) + x
    for t in 0..3 {
        for i in 0..3 {
            for x in 0..4 {
                assert_eq!(v[(t * 3 + i) * 4 + x], (4 * (i + t) + x) as f32);
            }
        }
    }
}

/// Largest absolute difference between two tensors of the same shape.
fn max_diff<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> f32 {
    assert_eq!(a.dims(), b.dims());
    (a - b).abs().max().into_scalar::<f32>()
}

#[test]
fn row_wise_window_conv_equals_the_conv3d_over_the_stack() {
    let device = Device::flex().autodiff();
    for window in [1, 2, 3, 4] {
        let cfg = ExtractorConfig { window, ..small() };
        for (h, crop) in [
            (1, None),
            (2, None),
            (3, None),
            (4, None),
            (7, None),
            (9, Some((2, 3))),
        ] {
            device.seed(h as u64);
            let ext = cfg.init(5, 7, 1, &device);
            let f = Tensor::<4>::random([2, 5, h, 6], Distribution::Normal(0.0, 1.0), &device)
                .require_grad();
            let stack = windows(f.clone(), window);
            let (plain, rows) = match crop {
                Some((start, len)) if start + len <= positions(h, window) => {
                    let [b, c, t, _, w] = stack.dims();
                    let rows = f
                        .clone()
                        .slice([0..2, 0..5, start..start + len + window - 1, 0..6]);
                    (
                        stack.slice([0..b, 0..c, 0..t, start..start + len, 0..w]),
                        rows,
                    )
                }
                _ => (stack, f.clone()),
            };
            let plain = ext.conv.forward(plain);
            let fast = ext.window_conv(rows, window).swap_dims(1, 2);
            let what = format!("window {window}, h {h}, crop {crop:?}");
            assert!(
                max_diff(plain.clone(), fast.clone()) < 1e-4,
                "{what}: outputs"
            );
            // Same gradients for the input and the kernel under a non-uniform upstream gradient.
            let probe = Tensor::<5>::random(plain.dims(), Distribution::Normal(0.0, 1.0), &device);
            let g_plain = (plain * probe.clone()).sum().backward();
            let g_fast = (fast * probe).sum().backward();
            let (gx_p, gx_f) = (f.grad(&g_plain).unwrap(), f.grad(&g_fast).unwrap());
            assert!(max_diff(gx_p, gx_f) < 1e-3, "{what}: input gradient");
            let w = ext.conv.weight.val();
            let (gw_p, gw_f) = (w.grad(&g_plain).unwrap(), w.grad(&g_fast).unwrap());
            assert!(max_diff(gw_p, gw_f) < 1e-3, "{what}: kernel gradient");
        }
    }
}

/// x W + b with burn's [in, out] weight layout.
fn affine(l: &burn::nn::Linear, x: Tensor<2>) -> Tensor<2> {
    let y = x.matmul(l.weight.val());
    match &l.bias {
        Some(b) => y + b.val().unsqueeze_dim(0),
        None => y,
    }
}

/// One direction of an LSTM, its equations written out (i, f, o sigmoid gates, tanh candidate,
/// c = f c + i g, h = o tanh(c), zero initial state): the outputs [B, N, H] at their positions
/// and the final (h, c).
fn lstm_direction(
    l: &burn::nn::Lstm,
    x: &Tensor<3>,
    reverse: bool,
) -> (Tensor<3>, Tensor<2>, Tensor<2>) {
    use burn::tensor::activation::{sigmoid, tanh};
    let [b, n, d_in] = x.dims();
    let device = x.device();
    let mut h = Tensor::<2>::zeros([b, l.d_hidden], &device);
    let mut c = Tensor::<2>::zeros([b, l.d_hidden], &device);
    let mut outs: Vec<Option<Tensor<2>>> = vec![None; n];
    let order: Vec<usize> = if reverse {
        (0..n).rev().collect()
    } else {
        (0..n).collect()
    };
    for t in order {
        let xt = x
            .clone()
            .slice([0..b, t..t + 1, 0..d_in])
            .reshape([b, d_in]);
        let gate = |g: &burn::nn::GateController, h: &Tensor<2>| {
            affine(&g.input_transform, xt.clone()) + affine(&g.hidden_transform, h.clone())
        };
        let i = sigmoid(gate(&l.input_gate, &h));
        let f = sigmoid(gate(l.forget_gate.as_ref().unwrap(), &h));
        let o = sigmoid(gate(&l.output_gate, &h));
        let g = tanh(gate(&l.cell_gate, &h));
        c = f * c + i * g;
        h = o * tanh(c.clone());
        outs[t] = Some(h.clone());
    }
    let outs: Vec<Tensor<2>> = outs.into_iter().map(|o| o.unwrap()).collect();
    (Tensor::stack(outs, 1), h, c)
}

/// What the extractor's recurrent core reads, written out: the plain Conv3d over the (cropped)
/// window stack and its means, [B, window positions, conv channels].
pub fn reference_sequence(
    ext: &lstmkd::distill::extractor::Extractor,
    f: Tensor<4>,
    crop: Option<Crop>,
    window: usize,
) -> Tensor<3> {
    let s = windows(f, window);
    let [b, c, t, _, w] = s.dims();
    let s = match crop {
        Some(Crop { start, len }) => s.slice([0..b, 0..c, 0..t, start..start + len, 0..w]),
        None => s,
    };
    let y = burn::tensor::activation::relu(ext.conv.forward(s));
    let [_, d, _, n, _] = y.dims();
    y.mean_dim(4).mean_dim(2).reshape([b, d, n]).swap_dims(1, 2)
}

/// The extractor written out from docs/METHOD.md with a window of `window` rows: the plain
/// Conv3d over the (cropped) window stack, the means, the bidirectional LSTM layers from their
/// equations, the mean over time and the head as a product.
pub fn reference_extractor(
    ext: &lstmkd::distill::extractor::Extractor,
    f: Tensor<4>,
    crop: Option<Crop>,
    window: usize,
) -> (Tensor<2>, Tensor<3>, Tensor<3>) {
    let [b, ..] = f.dims();
    let mut x = reference_sequence(ext, f, crop, window);
    let (mut hs, mut cs) = (Vec::new(), Vec::new());
    for layer in &ext.lstm {
        let (out_f, h_f, c_f) = lstm_direction(&layer.forward, &x, false);
        let (out_r, h_r, c_r) = lstm_direction(&layer.reverse, &x, true);
        hs.push(Tensor::stack(vec![h_f, h_r], 0));
        cs.push(Tensor::stack(vec![c_f, c_r], 0));
        x = Tensor::cat(vec![out_f, out_r], 2);
    }
    let [_, _, o] = x.dims();
    let z = x.mean_dim(1).reshape([b, o]);
    (affine(&ext.head, z), Tensor::cat(hs, 0), Tensor::cat(cs, 0))
}

#[test]
fn extractor_matches_its_definition_with_and_without_crops() {
    let device = Device::flex();
    device.seed(5);
    let ext = small().init(5, 7, 1, &device);
    for (h, crop) in [
        (2, None),
        (7, None),
        (9, Some(Crop { start: 0, len: 4 })),
        (9, Some(Crop { start: 3, len: 4 })),
        (9, Some(Crop { start: 6, len: 1 })),
    ] {
        let f = Tensor::<4>::random([2, 5, h, 6], Distribution::Normal(0.0, 1.0), &device);
        let out = ext.forward(f.clone(), crop);
        let (logits, hidden, cell) = reference_extractor(&ext, f, crop, ext.window);
        let what = format!("h {h}, crop {crop:?}");
        assert!(
            max_diff(out.aux_logits, logits) < 1e-4,
            "{what}: aux logits"
        );
        assert!(max_diff(out.hidden, hidden) < 1e-4, "{what}: hidden");
        assert!(max_diff(out.cell, cell) < 1e-4, "{what}: cell");
    }
}

#[test]
fn extractor_shapes_for_short_equal_and_tall_taps() {
    let device = Device::flex();
    let ext = small().init(5, 7, 1, &device);
    for (h, n) in [(1, 1), (2, 1), (3, 1), (6, 4)] {
        assert_eq!(positions(h, 3), n);
        let out = ext.forward(Tensor::ones([2, 5, h, 4], &device), None);
        assert_eq!(out.descriptor.dims(), [2, 12], "h = {h}");
        assert_eq!(out.aux_logits.dims(), [2, 7]);
        assert_eq!(out.hidden.dims(), [4, 2, 6], "layers x directions = 4");
        assert_eq!(out.cell.dims(), [4, 2, 6]);
    }
    let cropped = ext.forward(
        Tensor::ones([2, 5, 8, 4], &device),
        Some(Crop { start: 2, len: 3 }),
    );
    assert_eq!(cropped.hidden.dims(), [4, 2, 6]);
}

#[test]
fn random_crops_keep_at_least_half_and_stay_inside() {
    let mut rng = StdRng::seed_from_u64(1);
    for _ in 0..100 {
        let crops = random_crops(&[8, 4], 3, &mut rng);
        for (c, h) in crops.iter().zip([8, 4]) {
            let n = positions(h, 3);
            assert!(c.len * 2 >= n && c.start + c.len <= n, "{c:?} of {n}");
        }
    }
}

#[test]
fn tmix_labels_sum_to_one_in_row_proportion() {
    let device = Device::flex();
    let images = Tensor::<4>::from_data(
        TensorData::new(
            (0..2 * 8 * 2)
                .map(|i| if i < 16 { 0.0f32 } else { 1.0 })
                .collect::<Vec<_>>(),
            [2, 1, 8, 2],
        ),
        &device,
    );
    let targets = Tensor::<1, Int>::from_data(TensorData::new(vec![0i64, 2], [2]), &device);
    let (mixed, soft) = tmix(images, targets, 3, 1.0, &mut StdRng::seed_from_u64(5));
    let soft = values(soft);
    let mixed = values(mixed);
    for r in 0..2 {
        let sum: f32 = soft[r * 3..r * 3 + 3].iter().sum();
        assert!((sum - 1.0).abs() < 1e-6);
    }
    // Image 0 (all zeros) received rows of image 1 (all ones): its label share is the row share.
    let rows_from_other = mixed[..16].iter().filter(|&&v| v == 1.0).count() / 2;
    assert!((1..=4).contains(&rows_from_other));
    assert!(
        (soft[2] - rows_from_other as f32 / 8.0).abs() < 1e-6,
        "{soft:?}"
    );
    assert!((soft[0] - (1.0 - rows_from_other as f32 / 8.0)).abs() < 1e-6);
    // Probability 0 leaves images and one-hot labels alone.
    let targets = Tensor::<1, Int>::from_data(TensorData::new(vec![1i64], [1]), &device);
    let (_, soft) = tmix(
        Tensor::zeros([1, 1, 4, 4], &device),
        targets,
        3,
        0.0,
        &mut StdRng::seed_from_u64(5),
    );
    assert_eq!(
        soft.into_data().iter::<f32>().collect::<Vec<_>>(),
        vec![0.0, 1.0, 0.0]
    );
}

#[test]
fn seed_temperature_table_and_fixed_policy() {
    let dynamic = TemperatureConfig::default();
    assert_eq!(dynamic.next(None), 1.0);
    assert_eq!(dynamic.next(Some(0.69)), 1.0);
    assert_eq!(dynamic.next(Some(0.70)), 3.0);
    assert_eq!(dynamic.next(Some(0.899)), 3.0);
    assert_eq!(dynamic.next(Some(0.95)), 5.0);
    let fixed = TemperatureConfig {
        policy: Policy::Fixed,
        value: 4.0,
        ..Default::default()
    };
    assert_eq!(fixed.next(Some(0.95)), 4.0);
    assert_eq!(fixed.resolve(0.5), fixed, "only a relative table scales");
    // Relative: the paper's table as fractions of a teacher at 80%: 56% and 72%.
    let relative = TemperatureConfig {
        policy: Policy::Relative,
        ..Default::default()
    }
    .resolve(0.8);
    assert_eq!(relative.policy, Policy::Dynamic);
    assert_eq!(relative.next(Some(0.559)), 1.0);
    assert_eq!(relative.next(Some(0.561)), 3.0);
    assert_eq!(relative.next(Some(0.719)), 3.0);
    assert_eq!(relative.next(Some(0.721)), 5.0);
}

#[test]
fn paper_phases_switch_at_a_fifth_and_a_half() {
    let all = ["ce", "kd", "at", "temporal", "aux_ce"];
    let phases = paper_phases(&all);
    let names = |e| active(&phases, e, 10).losses.clone();
    assert_eq!(names(0), vec!["at"]);
    assert_eq!(names(1), vec!["at"]);
    assert_eq!(names(2), vec!["at", "temporal", "aux_ce"]);
    assert_eq!(names(4), vec!["at", "temporal", "aux_ce"]);
    assert_eq!(names(5), all.to_vec());
    assert_eq!(names(9), all.to_vec());
    let by_epoch = vec![
        Phase {
            name: "a".into(),
            until_epoch: Some(3),
            until_fraction: None,
            losses: vec!["kd".into()],
        },
        Phase {
            name: "b".into(),
            until_epoch: None,
            until_fraction: None,
            losses: vec!["ce".into()],
        },
    ];
    assert_eq!(active(&by_epoch, 2, 100).name, "a");
    assert_eq!(active(&by_epoch, 3, 100).name, "b");
    assert!(
        lstmkd::distill::phases::validate(&by_epoch, &["ce"]).is_err(),
        "kd is not configured"
    );
}

pub use crate::reference::{dkd_reference, kd_reference, softmax_rows};

/// Per sample, ||h_s - h_t|| + ||c_s - c_t|| over states [layers x directions, B, hidden].
pub fn state_distances(h_s: Tensor<3>, c_s: Tensor<3>, h_t: Tensor<3>, c_t: Tensor<3>) -> Vec<f64> {
    let [layers, b, hidden] = h_s.dims();
    let norms = |s: Tensor<3>, t: Tensor<3>| -> Vec<f64> {
        let (s, t) = (values(s), values(t));
        (0..b)
            .map(|j| {
                let mut sq = 0.0;
                for l in 0..layers {
                    for u in 0..hidden {
                        let at = (l * b + j) * hidden + u;
                        sq += ((s[at] - t[at]) as f64).powi(2);
                    }
                }
                sq.sqrt()
            })
            .collect()
    };
    let (dh, dc) = (norms(h_s, h_t), norms(c_s, c_t));
    dh.iter().zip(&dc).map(|(a, c)| a + c).collect()
}

/// What a test of one distillation step starts from: a tiny teacher with adapted extractors,
/// a student for it (the [distill] table's body `distill`, plain SGD), 8 random images with
/// labels 0, 1, ... on the autodiff device.
pub struct StepSetup {
    pub cfg: lstmkd::config::RunConfig,
    pub teacher: lstmkd::distill::teacher::Teacher,
    pub student: lstmkd::distill::student::Student,
    pub images: Tensor<4>,
    pub labels: Vec<usize>,
    pub targets: Tensor<1, Int>,
}

pub fn step_setup(d: &std::path::Path, distill: &str) -> StepSetup {
    step_setup_of_side(d, distill, 8)
}

/// `step_setup` on `side` x `side` images.
fn step_setup_of_side(d: &std::path::Path, distill: &str, side: usize) -> StepSetup {
    let (data, teacher_dir) = tiny_teacher_of_side(d, 48, 16, side);
    let table = format!(
        "[teacher]\ncheckpoint = \"{}\"\n\n[distill]\n{distill}",
        teacher_dir.join("best.ckpt").display()
    );
    let text = crate::common::toml_config(&data, &d.join("student"), &table)
        .replace("momentum = 0.9", "momentum = 0.0");
    let path = d.join("step.toml");
    std::fs::write(&path, &text).unwrap();
    ok(lstmkd(&["adapt", "--config", path.to_str().unwrap()]));
    let cfg = lstmkd::config::RunConfig::parse(&text, "step.toml", &[]).unwrap();
    let (tcfg, dcfg) = cfg.distillation().unwrap();
    let plain = Device::flex();
    let ad = plain.clone().autodiff();
    let (teacher, _) = lstmkd::train::distill::load_teacher(tcfg, dcfg, &plain).unwrap();
    ad.seed(5);
    let student = lstmkd::train::distill::new_student(&cfg, &teacher, 8, &ad).unwrap();
    let [c, h, w] = teacher.input;
    let images = Tensor::<4>::random([8, c, h, w], Distribution::Default, &ad);
    let labels: Vec<usize> = (0..8).map(|i| i % teacher.classes).collect();
    let targets = Tensor::<1, Int>::from_data(
        TensorData::new(labels.iter().map(|&l| l as i64).collect(), [8]),
        &ad,
    );
    StepSetup {
        cfg,
        teacher,
        student,
        images,
        labels,
        targets,
    }
}

#[test]
fn a_distillation_step_follows_its_gradient_and_never_moves_the_teacher() {
    use burn::module::{ModuleVisitor, Param};
    use burn::optim::GradientsParams;
    let d = tempfile::tempdir().unwrap();
    let step = step_setup(
        d.path(),
        "weights = { ce = 1.0, kd = 1.5, dkd = 2.0, temporal = 0.5, aux_ce = 0.5 }\nend_to_end = true\nadapt_epochs = 1\ndkd = { temperature = 3.0, alpha = 0.5, beta = 6.0, warmup = 0.1 }\nextractor = { conv_channels = 4, hidden = 4 }\n",
    );
    let (cfg, teacher, student) = (step.cfg, step.teacher, step.student);
    let (images, labels, targets) = (step.images, step.labels, step.targets);
    let dcfg = cfg.distill.as_ref().unwrap();
    let k = teacher.classes;
    let teacher_before = (
        floats(&teacher.net),
        floats(teacher.head.as_ref().unwrap()),
        teacher
            .net
            .forward(images.clone().without_autodiff())
            .logits
            .into_data(),
    );
    let s_logits = values(student.net.forward(images.clone()).logits);
    let t_logits = values(
        teacher
            .net
            .forward(images.clone().without_autodiff())
            .logits,
    );
    // The extractor losses written out on the deepest two taps: the extractors' definition
    // (reference_extractor), the student's reading its taps through the shared-lens adapters;
    // temporal: batch mean of ||h_s - h_t|| + ||c_s - c_t||, aux CE: batch mean of the
    // student's aux heads' cross-entropy, each summed over taps.
    let (s_taps, t_taps) = (
        student.net.forward(images.clone()).taps,
        teacher.net.forward(images.clone().without_autodiff()).taps,
    );
    let (mut temporal, mut aux_ce) = (0.0, 0.0);
    for i in 0..dcfg.taps {
        let s_tap = s_taps[s_taps.len() - dcfg.taps + i].clone();
        let t_tap = t_taps[t_taps.len() - dcfg.taps + i].clone();
        let s_tap = student.head.adapters[i].forward(s_tap);
        let student_ext = &student.head.extractors[i];
        let (aux, h_s, c_s) = reference_extractor(student_ext, s_tap, None, student_ext.window);
        let teacher_ext = &teacher.head.as_ref().unwrap().extractors[i];
        let (_, h_t, c_t) = reference_extractor(teacher_ext, t_tap, None, teacher_ext.window);
        let b = labels.len();
        temporal += state_distances(h_s, c_s, h_t, c_t).iter().sum::<f64>() / b as f64;
        let probs = softmax_rows(&values(aux), k, 1.0);
        aux_ce -= labels
            .iter()
            .zip(&probs)
            .map(|(&y, p)| p[y].ln())
            .sum::<f64>()
            / b as f64;
    }
    // A last validation accuracy of 95% puts the paper's dynamic temperature at T = 5. A run
    // of 10 epochs of 4 steps: after its second step 1/20 of it is done, half of DKD's
    // warm-up over a tenth of the run.
    let mut task =
        lstmkd::distill::step::Distill::new(teacher, dcfg.clone(), 10, 4, k, 0, Some(0.95));
    assert_eq!(task.progress(3, 1), (3.0 + 2.0 / 4.0) / 10.0);
    assert_eq!(task.progress(9, 3), 1.0);

    // The logit losses inside the step, on this step's logits: KD at the dynamic T = 5, DKD
    // at its own temperature ([distill.dkd]) and half warmed up, each times its weight.
    use lstmkd::train::trainer::Task;
    let samples: Vec<usize> = (0..8).collect();
    let out = task.train_step(&student, images.clone(), targets.clone(), &samples, 0, 1);
    let part = |name: &str| {
        let (_, v) = out.parts.iter().find(|(n, _)| n == name).expect(name);
        v.clone().into_scalar::<f32>() as f64
    };
    for (name, expected) in [
        ("kd", 1.5 * kd_reference(&s_logits, &t_logits, k, 5.0)),
        (
            "dkd",
            2.0 * 0.5 * dkd_reference(&s_logits, &t_logits, &labels, k, 3.0, (0.5, 6.0)),
        ),
        ("temporal", 0.5 * temporal),
        ("aux_ce", 0.5 * aux_ce),
    ] {
        // f32 arithmetic against f64: T = 4 instead of 5 moves KD by 1e-3 of itself here.
        assert!(
            (part(name) - expected).abs() < 2e-5 * (1.0 + expected),
            "{name} {} vs {expected}",
            part(name)
        );
    }

    // The optimiser's step is w - lr * g for every parameter (plain SGD).
    let grads = GradientsParams::from_grads(out.total.backward(), &student);
    struct Expect<'a>(&'a GradientsParams, f64, Vec<f32>, usize);
    impl ModuleVisitor for Expect<'_> {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            let w = p.val().into_data().iter::<f32>().collect::<Vec<_>>();
            // Batch-norm running statistics are visited too; no optimiser target, they move
            // with every forward pass (NaN: not compared).
            if !p.val().is_require_grad() {
                self.2.extend(w.iter().map(|_| f32::NAN));
                return;
            }
            match self.0.get::<D>(p.id) {
                Some(g) => {
                    let g = values(g);
                    self.3 += g.iter().filter(|v| **v != 0.0).count();
                    self.2
                        .extend(w.iter().zip(g).map(|(w, g)| w - self.1 as f32 * g));
                }
                None => self.2.extend(w),
            }
        }
    }
    let lr = 0.05;
    let mut expect = Expect(&grads, lr, Vec::new(), 0);
    student.visit(&mut expect);
    assert!(expect.3 > 1000, "gradients reach the student: {}", expect.3);
    let mut optim = cfg.optim.init();
    let (moved, _) = lstmkd::train::trainer::optimise(
        &mut task,
        student,
        &mut optim,
        &mut lstmkd::precision::MixedPrecision::f32(),
        images.clone(),
        targets,
        &samples,
        lr,
        0,
        1,
    )
    .unwrap();
    let after = floats(&moved);
    assert_eq!(after.len(), expect.2.len());
    let trainable = expect.2.iter().filter(|e| !e.is_nan()).count();
    assert!(
        trainable > after.len() * 9 / 10,
        "{trainable} of {}",
        after.len()
    );
    for (i, (a, e)) in after
        .iter()
        .zip(&expect.2)
        .enumerate()
        .filter(|(_, (_, e))| !e.is_nan())
    {
        assert!(
            (a - e).abs() <= 1e-6 * (1.0 + e.abs()),
            "parameter {i}: {a} vs {e}"
        );
    }

    // The frozen teacher is what it was, weights and outputs.
    let teacher = &task.teacher;
    assert_eq!(floats(&teacher.net), teacher_before.0);
    assert_eq!(floats(teacher.head.as_ref().unwrap()), teacher_before.1);
    assert_eq!(
        teacher
            .net
            .forward(images.without_autodiff())
            .logits
            .into_data(),
        teacher_before.2
    );
}

#[test]
fn a_training_step_reads_the_device_once_for_its_progress_bar() {
    // The losses that look at the data on the host between kernels: CRD (its normaliser is set
    // at the first step) and the adaptive window (each sample's window from the teacher's
    // entropy, the one read a step cannot do without).
    let d = tempfile::tempdir().unwrap();
    for (table, reads_per_step) in [
        (
            "weights = { ce = 1.0, kd = 1.0, at = 10.0, temporal = 0.5, aux_ce = 0.5, crd = 0.8 }\ncrd = { negatives = 4, feat_dim = 4 }\n",
            1,
        ),
        (
            "weights = { ce = 1.0, kd = 1.0, temporal = 0.5 }\nadaptive_window = { table = [[0.5, 2]], top = 3 }\n",
            2,
        ),
    ] {
        let dir = d.path().join(reads_per_step.to_string());
        let step = step_setup(
            &dir,
            &format!(
                "{table}end_to_end = true\nadapt_epochs = 1\nextractor = {{ conv_channels = 4, hidden = 4 }}\n"
            ),
        );
        let dcfg = step.cfg.distill.clone().unwrap();
        let k = step.teacher.classes;
        let mut task = lstmkd::distill::step::Distill::new(step.teacher, dcfg, 1, 3, k, 0, None);
        let mut optim = step.cfg.optim.init();
        let samples: Vec<usize> = (0..8).collect();
        let mut student = step.student;
        let before = lstmkd::profile::host_reads();
        for s in 0..3 {
            (student, _) = lstmkd::train::trainer::optimise(
                &mut task,
                student,
                &mut optim,
                &mut lstmkd::precision::MixedPrecision::f32(),
                step.images.clone(),
                step.targets.clone(),
                &samples,
                0.05,
                0,
                s,
            )
            .unwrap();
        }
        assert_eq!(
            lstmkd::profile::host_reads() - before,
            3 * reads_per_step,
            "{table}"
        );
    }
}

/// Generated data and a one-epoch teacher trained on it; returns (data root, teacher run dir).
pub fn tiny_teacher(
    d: &std::path::Path,
    n_train: usize,
    n_test: usize,
) -> (std::path::PathBuf, std::path::PathBuf) {
    tiny_teacher_of_side(d, n_train, n_test, 8)
}

/// `tiny_teacher` on `side` x `side` images.
fn tiny_teacher_of_side(
    d: &std::path::Path,
    n_train: usize,
    n_test: usize,
    side: usize,
) -> (std::path::PathBuf, std::path::PathBuf) {
    let data = d.join("data");
    crate::common::write_idx_dataset(&data, n_train, n_test, side, false);
    let teacher_dir = d.join("teacher");
    let teacher_cfg =
        crate::common::toml_config(&data, &teacher_dir, "").replace("epochs = 3", "epochs = 1");
    std::fs::write(d.join("teacher.toml"), teacher_cfg).unwrap();
    ok(lstmkd(&[
        "train",
        "--config",
        d.join("teacher.toml").to_str().unwrap(),
    ]));
    (data, teacher_dir)
}

/// A one-epoch distillation from a tiny teacher under `d` with `distill` as the [distill]
/// table's body (adapted first): the config's path, the student's folder and the output.
pub fn tiny_distillation(
    d: &std::path::Path,
    distill: &str,
) -> (std::path::PathBuf, std::path::PathBuf, String) {
    let (data, teacher_dir) = tiny_teacher(d, 64, 16);
    let table = format!(
        "[teacher]\ncheckpoint = \"{}\"\n\n[distill]\n{distill}",
        teacher_dir.join("best.ckpt").display()
    );
    let cfg = d.join("distill.toml");
    let student = d.join("student");
    std::fs::write(
        &cfg,
        crate::common::toml_config(&data, &student, &table).replace("epochs = 3", "epochs = 1"),
    )
    .unwrap();
    ok(lstmkd(&["adapt", "--config", cfg.to_str().unwrap()]));
    let out = ok(lstmkd(&["distill", "--config", cfg.to_str().unwrap()]));
    (cfg, student, out)
}

#[test]
fn tiny_distillation_end_to_end_with_adaptation_resume_and_deployment() {
    let d = tempfile::tempdir().unwrap();
    let (data, teacher_dir) = tiny_teacher(d.path(), 96, 32);

    let student_dir = d.path().join("student");
    let distill = format!(
        r#"
[teacher]
checkpoint = "{}"

[distill]
weights = {{ ce = 1.0, kd = 1.0, at = 50.0, temporal = 0.1, aux_ce = 0.5, fitnet = 1.0 }}
rtc = true
tmix = 0.5
adapt_epochs = 1
extractor = {{ conv_channels = 8, hidden = 8 }}

[[distill.phases]]
name = "feature alignment"
until_epoch = 1
losses = ["at"]

[[distill.phases]]
name = "temporal fusion"
until_epoch = 2
losses = ["at", "temporal", "aux_ce"]

[[distill.phases]]
name = "joint"
losses = ["ce", "kd", "at", "fitnet", "temporal", "aux_ce"]
"#,
        teacher_dir.join("best.ckpt").display()
    );
    let cfg = crate::common::toml_config(&data, &student_dir, &distill)
        .replace("epochs = 3", "epochs = 2");
    let cfg_path = d.path().join("distill.toml");
    std::fs::write(&cfg_path, cfg).unwrap();

    // Without adapted extractors the error says what to run.
    let o = lstmkd(&["distill", "--config", cfg_path.to_str().unwrap()]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && e.contains("lstmkd adapt"), "{e}");

    ok(lstmkd(&["adapt", "--config", cfg_path.to_str().unwrap()]));
    assert!(teacher_dir.join("adapt/best.ckpt").is_file());
    // A window leaves the weights' shapes alone, so only the adaptation's record tells.
    let o = lstmkd(&[
        "distill",
        "--config",
        cfg_path.to_str().unwrap(),
        "--set",
        "distill.extractor.window=2",
    ]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && e.contains("distill.extractor.window 3 there, 2 here"),
        "{e}"
    );

    let out = ok(lstmkd(&["distill", "--config", cfg_path.to_str().unwrap()]));
    assert!(
        out.contains("epoch 1/2") && out.contains("temperature"),
        "{out}"
    );
    let after_two = d.path().join("after_two.ckpt");
    std::fs::copy(student_dir.join("last.ckpt"), &after_two).unwrap();
    let out = ok(lstmkd(&[
        "distill",
        "--resume",
        student_dir.to_str().unwrap(),
        "--set",
        "train.epochs=3",
    ]));
    assert!(
        out.contains("epoch 3/3") && !out.contains("epoch 1/3"),
        "{out}"
    );

    let m = lstmkd::train::metrics::read_jsonl(&student_dir.join("metrics.jsonl")).unwrap();
    assert_eq!(m.iter().map(|r| r.epoch).collect::<Vec<_>>(), vec![1, 2, 3]);
    // Phases: feature alignment (at) -> temporal fusion -> everything.
    let losses: Vec<Vec<&str>> = m
        .iter()
        .map(|r| r.losses.keys().map(|k| k.as_str()).collect())
        .collect();
    assert_eq!(losses[0], vec!["at"]);
    assert_eq!(losses[1], vec!["at", "aux_ce", "temporal"]);
    assert_eq!(
        losses[2],
        vec!["at", "aux_ce", "ce", "fitnet", "kd", "temporal"]
    );
    // The default table: T = 1 under 70% validation accuracy, 3 under 90%, else 5; each
    // epoch reads the one before it (the first reads 0).
    let default_t = |acc: f64| {
        if acc < 0.7 {
            1.0
        } else if acc < 0.9 {
            3.0
        } else {
            5.0
        }
    };
    assert_eq!(m[0].extra["temperature"], 1.0);
    for e in 1..3 {
        assert_eq!(m[e].extra["temperature"], default_t(m[e - 1].val_acc));
    }

    // The deployed student is the plain backbone: same parameters as the zoo model alone.
    let out = ok(lstmkd(&[
        "eval",
        "--checkpoint",
        student_dir.join("deployed.ckpt").to_str().unwrap(),
    ]));
    let params = lstmkd::models::count_params(
        &lstmkd::models::ModelConfig::new("resnet8")
            .init(1, 10, &Device::flex())
            .unwrap(),
    );
    assert!(out.contains(&format!("({params} parameters)")), "{out}");

    // The FitNet regressors: shaped from the student's taps to the teacher's, and moved by
    // the joint phase (epoch 3), the only one with FitNet.
    let run = lstmkd::config::RunConfig::load(&cfg_path, &[]).unwrap();
    let teacher = teacher_of(&run);
    let (before, end) = (
        student_at(&run, &teacher, 0, &after_two),
        student_at(&run, &teacher, 0, &student_dir.join("last.ckpt")),
    );
    assert_eq!(end.parts.len(), 1, "FitNet is the only loss with parts");
    let regressors = &end.parts[0].convs;
    assert_eq!(regressors.len(), 2);
    for (r, (s, t)) in regressors.iter().zip([(32, 32), (64, 64)]) {
        assert_eq!(r.conv.weight.dims(), [t, s, 1, 1]);
    }
    assert_ne!(floats(&end.parts), floats(&before.parts));
    assert_ne!(floats(&end.net), floats(&before.net));
}

/// A suite config under `d`: a tiny teacher (trained here) and its data, the `[experiment]`
/// tables `suites`, and a [distill] table with one-epoch adaptation of small extractors plus
/// `distill` (more keys).
fn suite_config(d: &std::path::Path, suites: &str, distill: &str) -> std::path::PathBuf {
    let (data, teacher_dir) = tiny_teacher(d, 64, 16);
    let cfg = d.join("suite.toml");
    let text = format!(
        "{suites}\n{}\n[teacher]\ncheckpoint = \"{}\"\n\n[distill]\nweights = {{ ce = 1.0 }}\nadapt_epochs = 1\nextractor = {{ conv_channels = 4, hidden = 4 }}\n{distill}",
        crate::common::toml_config(&data, &d.join("unused"), ""),
        teacher_dir.join("best.ckpt").display()
    );
    std::fs::write(&cfg, text).unwrap();
    cfg
}

/// `lstmkd experiment` over `seeds` seeds of `suite` in the suite config `cfg`, runs under
/// `out`, then `extra`.
fn experiment(
    suite: &str,
    seeds: usize,
    cfg: &std::path::Path,
    out: &std::path::Path,
    extra: &[&str],
) -> std::process::Output {
    let seeds = seeds.to_string();
    let mut args = vec![
        "experiment",
        "--suite",
        suite,
        "--seeds",
        &seeds,
        "--config",
        cfg.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend(extra);
    lstmkd(&args)
}

#[test]
fn experiment_suite_runs_rows_over_seeds_and_reuses_finished_runs() {
    let d = tempfile::tempdir().unwrap();
    let cfg = suite_config(
        d.path(),
        r#"
[experiment]
target_acc = 0.3
quick = ["train.epochs=2"]

[experiment.suites.again]
about = "paper-benchmark's LSTM KD under another name"
rows = [{ label = "same as LSTM KD", overrides = ['distill.weights={ce = 1.0, kd = 1.0, at = 100.0, temporal = 0.05, aux_ce = 0.5}', 'distill.temperature.policy="dynamic"'] }]

[experiment.suites.clash]
about = "two windows reading one adapted file"
rows = [
    { label = "window 3", overrides = ['distill.weights={ce = 1.0, temporal = 0.05}'] },
    { label = "window 2", overrides = ['distill.weights={ce = 1.0, temporal = 0.05}', 'distill.extractor={conv_channels = 4, hidden = 4, window = 2}'] },
]

[experiment.suites.clash-random]
about = "a randomly initialised student extractor: the teacher still reads the adapted file"
rows = [
    { label = "window 3", overrides = ['distill.weights={ce = 1.0, temporal = 0.05}'] },
    { label = "random, window 2", overrides = ['distill.weights={ce = 1.0, temporal = 0.05}', 'distill.temporal_init="random"', 'distill.extractor={conv_channels = 4, hidden = 4, window = 2}'] },
]

[experiment.suites.other-window]
about = "a window the adapted file was not fitted for"
rows = [{ label = "window 2", overrides = ['distill.weights={ce = 1.0, temporal = 0.05}', 'distill.extractor={conv_channels = 4, hidden = 4, window = 2}'] }]

"#,
        "",
    );
    let out = d.path().join("exp");
    let ledger = d
        .path()
        .join("ledger")
        .join("paper-benchmark-quick-runs.json");
    let benchmark = |extra: &[&str]| experiment("paper-benchmark", 2, &cfg, &out, extra);
    let with_ledger = ["--ledger", ledger.to_str().unwrap()];
    let first = ok(benchmark(&with_ledger));
    assert!(
        first.contains("adapting the teacher"),
        "LSTM KD needs adapted extractors: {first}"
    );
    let dir = out.join("paper-benchmark-quick");
    let results: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("results.json")).unwrap()).unwrap();
    let rows = results["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 3);
    let md = std::fs::read_to_string(dir.join("results.md")).unwrap();
    for row in rows {
        let seeds = row["seeds"].as_array().unwrap();
        assert_eq!(seeds.len(), 2);
        // Each seed's figure is the test accuracy `lstmkd eval` gives its deployed student
        // (printed to two decimals), the row's the mean and sample std of the two.
        let label = row["label"].as_str().unwrap();
        let kind = if label == "student alone" {
            "best.ckpt"
        } else {
            "deployed.ckpt"
        };
        let accs: Vec<f64> = seeds
            .iter()
            .map(|s| s["test_top1"].as_f64().unwrap())
            .collect();
        for (k, acc) in accs.iter().enumerate() {
            let ckpt = dir
                .join(lstmkd::experiment::suites::slug(label))
                .join(format!("seed{k}"))
                .join(kind);
            let report = ok(lstmkd(&["eval", "--checkpoint", ckpt.to_str().unwrap()]));
            let top1 = format!("top-1       {:.2}%", 100.0 * acc);
            assert!(
                report.contains(&top1),
                "{label} seed {k}: {top1} not in {report}"
            );
        }
        let mean = (accs[0] + accs[1]) / 2.0;
        let std = (accs[0] - accs[1]).abs() / 2f64.sqrt();
        assert!((row["test_top1_mean"].as_f64().unwrap() - mean).abs() < 1e-12);
        assert!((row["test_top1_std"].as_f64().unwrap() - std).abs() < 1e-12);
        let cell = format!("| {label} | {:.2} +- {:.2} |", 100.0 * mean, 100.0 * std);
        assert!(md.contains(&cell), "{cell} missing from\n{md}");
    }
    // Each row against the suite's reference (KD + FitNet), seed by seed.
    let acc = |r: &serde_json::Value, k: usize| r["seeds"][k]["test_top1"].as_f64().unwrap();
    let reference = &rows[1];
    assert!(reference["paired"].is_null(), "the reference row has none");
    for row in [&rows[0], &rows[2]] {
        let d: Vec<f64> = (0..2).map(|k| acc(row, k) - acc(reference, k)).collect();
        let p = &row["paired"];
        assert_eq!(p["reference"], "KD + FitNet");
        assert!((p["mean"].as_f64().unwrap() - (d[0] + d[1]) / 2.0).abs() < 1e-12);
        assert!((p["std"].as_f64().unwrap() - (d[0] - d[1]).abs() / 2f64.sqrt()).abs() < 1e-12);
        assert_eq!(p["wins"], d.iter().filter(|x| **x > 0.0).count());
        let cell = format!(
            "| {:+.2} +- {:.2} ({}/2) |",
            50.0 * (d[0] + d[1]),
            100.0 * (d[0] - d[1]).abs() / 2f64.sqrt(),
            p["wins"]
        );
        assert!(md.contains(&cell), "{cell} missing from\n{md}");
    }
    // Deployed students have the plain backbone's parameters, whatever the method.
    assert!(rows.iter().all(|r| r["params"] == rows[0]["params"]));
    for png in ["val_acc.png", "temperature.png"] {
        let bytes = std::fs::read(dir.join(png)).unwrap();
        assert_eq!(&bytes[1..4], b"PNG", "{png}");
    }
    // Without the ledger, a second call reuses every finished run from its folder.
    let second = ok(benchmark(&["--no-ledger"]));
    assert_eq!(second.matches("already finished").count(), 6, "{second}");
    // The ledger holds each run's result; with the run folders gone, a third call takes all
    // six from it and reports the same figures.
    let recorded: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&ledger).unwrap()).unwrap();
    let runs = recorded["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 6);
    assert!(
        runs.iter()
            .all(|r| r["config_sha256"].as_str().unwrap().len() == 64)
    );
    std::fs::remove_dir_all(&out).unwrap();
    let third = ok(benchmark(&with_ledger));
    assert_eq!(third.matches("recorded in").count(), 6, "{third}");
    assert!(
        !third.contains("already finished") && !third.contains("adapting"),
        "nothing is trained or adapted again: {third}"
    );
    let again: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("results.json")).unwrap()).unwrap();
    for (a, b) in rows.iter().zip(again["rows"].as_array().unwrap()) {
        assert_eq!(a["seeds"], b["seeds"]);
        assert_eq!(a["test_top1_mean"], b["test_top1_mean"]);
    }
    // Another suite's row with the same config is the same run: taken from the first suite's
    // ledger in the same folder and recorded in its own under its own name.
    let again_ledger = ledger.with_file_name("again-quick-runs.json");
    let again = |seeds: usize, extra: &[&str]| experiment("again", seeds, &cfg, &out, extra);
    let again_ledger_arg = again_ledger.to_str().unwrap();
    // A file beside the ledgers named like one but not one is an error naming it: passing
    // over it would train its runs again.
    let junk = ledger.with_file_name("junk-runs.json");
    std::fs::write(&junk, "[1, 2]").unwrap();
    let e = again(3, &["--ledger", again_ledger_arg, "--dry-run"]);
    let err = String::from_utf8_lossy(&e.stderr);
    assert!(
        !e.status.success()
            && err.contains("junk-runs.json: not a suite ledger")
            && err.contains("fix it or move it away"),
        "{err}"
    );
    std::fs::remove_file(&junk).unwrap();
    // A dry run finds both runs in the other ledger, and writes nothing.
    let plan = ok(again(3, &["--ledger", again_ledger_arg, "--dry-run"]));
    assert_eq!(plan.matches("as 'LSTM KD'").count(), 2, "{plan}");
    assert!(
        plan.contains("seed 3/3\n  to train\n")
            && plan.contains("2 of 3 runs recorded in a ledger, 1 to train"),
        "{plan}"
    );
    // The third seed is estimated from the two recorded ones.
    let secs: Vec<f64> = runs
        .iter()
        .filter(|r| r["row"] == "LSTM KD")
        .map(|r| r["result"]["train_seconds"].as_f64().unwrap())
        .collect();
    let mean = (secs[0] + secs[1]) / 2.0;
    let hours = format!(
        "about {:.1} h ({mean:.0} s) of training for the 1 run(s)",
        mean / 3600.0
    );
    assert!(
        plan.contains(&hours) && !plan.contains("not estimated"),
        "{hours}: {plan}"
    );
    assert!(!again_ledger.exists() && !out.join("again-quick").exists());
    let reused = ok(again(2, &["--ledger", again_ledger_arg]));
    assert_eq!(reused.matches("as 'LSTM KD'").count(), 2, "{reused}");
    assert!(!reused.contains("adapting"), "{reused}");
    let copied: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&again_ledger).unwrap()).unwrap();
    assert_eq!(copied["runs"].as_array().unwrap().len(), 2, "{copied}");
    for (k, entry) in copied["runs"].as_array().unwrap().iter().enumerate() {
        let original = runs
            .iter()
            .find(|r| r["row"] == "LSTM KD" && r["seed"] == k)
            .unwrap();
        assert_eq!(entry["row"], "same as LSTM KD");
        assert_eq!(entry["config_sha256"], original["config_sha256"]);
        assert_eq!(entry["result"], original["result"]);
    }
    // A run folder holding a run of another config is refused, not continued or taken as
    // finished, and left as it was.
    ok(again(1, &["--no-ledger"]));
    let run_dir = out
        .join("again-quick")
        .join(lstmkd::experiment::suites::slug("same as LSTM KD"))
        .join("seed0");
    let saved = std::fs::read_to_string(run_dir.join("config.toml")).unwrap();
    let plan = ok(again(1, &["--no-ledger", "--dry-run"]));
    assert!(plan.contains("finished in"), "{plan}");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, text.replace("train.epochs=2", "train.epochs=3")).unwrap();
    let plan = ok(again(1, &["--no-ledger", "--dry-run"]));
    assert!(
        plan.contains("refused") && plan.contains("train.epochs 2 there, 3 here"),
        "{plan}"
    );
    let e = again(1, &["--no-ledger"]);
    assert!(!e.status.success());
    let err = String::from_utf8_lossy(&e.stderr);
    assert!(
        err.contains("holds a run of another config")
            && err.contains("train.epochs 2 there, 3 here"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(run_dir.join("config.toml")).unwrap(),
        saved
    );
    std::fs::write(&cfg, text).unwrap();
    // Every run's folder is checked before any trains: with another seed's run in seed 1's
    // folder, seed 0 is not trained first.
    let seed1 = run_dir.with_file_name("seed1");
    std::fs::rename(&run_dir, &seed1).unwrap();
    let e = again(2, &["--no-ledger"]);
    let err = String::from_utf8_lossy(&e.stderr);
    assert!(
        !e.status.success() && err.contains("train.seed 0 there, 1 here"),
        "{err}"
    );
    assert!(!run_dir.exists(), "seed 0 trained before the refusal");
    assert_eq!(
        std::fs::read_to_string(seed1.join("config.toml")).unwrap(),
        saved
    );
    // Rows that would read teacher extractors fitted for another extractor are refused before
    // anything trains: two rows against each other (the student's extractors shared or
    // random), one row against the adapted file.
    for (suite, expected) in [
        (
            "clash",
            "rows 'window 3' (there) and 'window 2' (here) read the teacher's extractors",
        ),
        (
            "clash-random",
            "rows 'window 3' (there) and 'random, window 2' (here) read the teacher's extractors",
        ),
        ("other-window", "was adapted for another extractor"),
    ] {
        let e = experiment(suite, 3, &cfg, &out, &["--no-ledger"]);
        let err = String::from_utf8_lossy(&e.stderr);
        assert!(
            !e.status.success()
                && err.contains(expected)
                && err.contains("distill.extractor.window 3 there, 2 here"),
            "{suite}: {err}"
        );
        assert!(!out.join(format!("{suite}-quick")).exists(), "{suite}");
    }
    // A ledger that is not one is an error naming it, and is left as it was.
    std::fs::write(&ledger, "not json").unwrap();
    let e = benchmark(&with_ledger);
    assert!(!e.status.success());
    let err = String::from_utf8_lossy(&e.stderr);
    assert!(
        err.contains("runs.json") && err.contains("not a suite ledger"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&ledger).unwrap(), "not json");
}

#[test]
fn processes_given_other_rows_share_one_ledger_and_a_call_over_all_rows_reports() {
    let d = tempfile::tempdir().unwrap();
    let cfg = suite_config(
        d.path(),
        r#"
[experiment]
quick = ["train.epochs=1"]

[experiment.suites.split]
about = "three cheap rows, two reading the teacher's extractors"
reference = "KD"
rows = [
    { label = "KD", overrides = ['distill.weights={ce = 1.0, kd = 1.0, temporal = 0.05}'] },
    { label = "AT", overrides = ['distill.weights={ce = 1.0, at = 100.0, temporal = 0.05}'] },
    { label = "DKD", overrides = ['distill.weights={ce = 1.0, dkd = 1.0}'] },
]

"#,
        "end_to_end = true\n",
    );
    let out = d.path().join("exp");
    let ledger = d.path().join("ledger").join("split-quick-runs.json");
    let ledger_arg = ledger.to_str().unwrap();
    let rows = |rows: &str| {
        experiment(
            "split",
            2,
            &cfg,
            &out,
            &["--ledger", ledger_arg, "--rows", rows],
        )
    };
    for (spec, expected) in [
        ("0", "'0' is not a row"),
        ("4", "'4' is not a row"),
        ("3-1", "'3-1' is not a row or a rising range"),
        ("1,x", "'x' is not a row"),
    ] {
        let e = rows(spec);
        let err = String::from_utf8_lossy(&e.stderr);
        assert!(
            !e.status.success() && err.contains(expected) && err.contains("between 1 and 3"),
            "{spec}: {err}"
        );
    }
    assert!(!out.exists() && !ledger.exists());
    // Two processes at once, recording in the one ledger. Both start by distilling with the
    // teacher's extractors: one adapts them, the other waits. Both were given row 2: each of
    // its runs is trained by one and found recorded by the other.
    let (a, b) = std::thread::scope(|s| {
        let (a, b) = (s.spawn(|| rows("1-2")), s.spawn(|| rows("2-3")));
        (ok(a.join().unwrap()), ok(b.join().unwrap()))
    });
    let both = a.clone() + &b;
    assert_eq!(both.matches("adapting the teacher").count(), 1, "{both}");
    assert_eq!(both.matches("recorded in").count(), 2, "{both}");
    assert!(
        a.contains("row 1/3 'KD' seed 2/2") && !a.contains("'DKD'"),
        "{a}"
    );
    assert!(
        b.contains("row 3/3 'DKD' seed 1/2") && !b.contains("'KD'"),
        "{b}"
    );
    assert!(b.contains("the report needs every row"), "{b}");
    assert!(!out.join("split-quick").join("results.json").exists());
    let recorded: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&ledger).unwrap()).unwrap();
    let mut runs: Vec<(String, u64)> = recorded["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["row"].as_str().unwrap().into(),
                r["seed"].as_u64().unwrap(),
            )
        })
        .collect();
    runs.sort();
    let expected: Vec<(String, u64)> = ["AT", "DKD", "KD"]
        .iter()
        .flat_map(|r| [(r.to_string(), 0), (r.to_string(), 1)])
        .collect();
    assert_eq!(runs, expected);
    // Over every row, nothing is left to train: the report comes from the ledger.
    let all = ok(experiment(
        "split",
        2,
        &cfg,
        &out,
        &["--ledger", ledger_arg],
    ));
    assert_eq!(all.matches("recorded in").count(), 6, "{all}");
    let results: serde_json::Value = serde_json::from_slice(
        &std::fs::read(out.join("split-quick").join("results.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(results["rows"].as_array().unwrap().len(), 3);
}

#[test]
fn an_experiment_finishes_an_interrupted_adaptation_before_distilling() {
    let d = tempfile::tempdir().unwrap();
    let (data, teacher_dir) = tiny_teacher(d.path(), 64, 16);
    let distill = format!(
        "{}\n[teacher]\ncheckpoint = \"{}\"\n\n[distill]\nweights = {{ ce = 1.0, temporal = 0.05 }}\nend_to_end = true\nadapt_epochs = 2\nextractor = {{ conv_channels = 4, hidden = 4 }}\n",
        crate::common::toml_config(&data, &d.path().join("unused"), ""),
        teacher_dir.join("best.ckpt").display()
    );
    let adapt_cfg = d.path().join("distill.toml");
    std::fs::write(&adapt_cfg, &distill).unwrap();
    let suite = d.path().join("suite.toml");
    let rows = "[experiment]\nquick = [\"train.epochs=1\"]\n\n[experiment.suites.one]\nabout = \"one row\"\nrows = [{ label = \"temporal\", overrides = [] }]\n\n";
    std::fs::write(&suite, format!("{rows}{distill}")).unwrap();
    // Stopped in its second epoch: the first left best.ckpt, where distillation reads. (The
    // suite adapts with its first run's config, seed 0.)
    let o = crate::training::interrupted_after(
        5,
        &[
            "adapt",
            "--config",
            adapt_cfg.to_str().unwrap(),
            "--set",
            "train.seed=0",
        ],
    );
    assert_eq!(
        o.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let adapted = teacher_dir.join("adapt");
    let epochs = || {
        ok(lstmkd(&[
            "info",
            "--checkpoint",
            adapted.join("last.ckpt").to_str().unwrap(),
        ]))
    };
    assert!(
        adapted.join("best.ckpt").exists() && epochs().contains("run         1 epochs"),
        "{}",
        epochs()
    );
    let out = ok(experiment(
        "one",
        1,
        &suite,
        &d.path().join("exp"),
        &["--no-ledger"],
    ));
    assert!(out.contains("adapting the teacher's extractors"), "{out}");
    assert!(epochs().contains("run         2 epochs"), "{}", epochs());
}

#[test]
fn rtc_crops_fit_a_student_whose_taps_are_shorter_than_the_teachers() {
    let d = tempfile::tempdir().unwrap();
    // resnet8 teacher on 8x8 images: deepest taps 4 and 2 rows; vgg8 student: 1 and 1.
    let (data, teacher_dir) = tiny_teacher(d.path(), 64, 16);
    let distill = format!(
        "[teacher]\ncheckpoint = \"{}\"\n\n[distill]\nweights = {{ ce = 1.0, temporal = 0.1, aux_ce = 0.5 }}\nend_to_end = true\nrtc = true\nadapt_epochs = 1\ntemporal_init = \"random\"\nextractor = {{ conv_channels = 4, hidden = 4 }}\n",
        teacher_dir.join("best.ckpt").display()
    );
    let cfg = crate::common::toml_config(&data, &d.path().join("student"), &distill)
        .replace("name = \"resnet8\"", "name = \"vgg8\"")
        .replace("epochs = 3", "epochs = 1");
    let path = d.path().join("rtc.toml");
    std::fs::write(&path, &cfg).unwrap();
    ok(lstmkd(&["adapt", "--config", path.to_str().unwrap()]));
    ok(lstmkd(&["distill", "--config", path.to_str().unwrap()]));
    let m = lstmkd::train::metrics::read_jsonl(&d.path().join("student/metrics.jsonl")).unwrap();
    for loss in ["ce", "temporal", "aux_ce"] {
        let v = m[0].losses[loss];
        assert!(v.is_finite() && v > 0.0, "{loss} = {v}");
    }

    // `temporal_init = "random"`: no adapters, extractors on the student's own channels,
    // trained from a fresh start rather than from the teacher's.
    let run = lstmkd::config::RunConfig::parse(&cfg, "rtc.toml", &[]).unwrap();
    let teacher = teacher_of(&run);
    let fresh = lstmkd::train::distill::new_student(&run, &teacher, 0, &Device::flex()).unwrap();
    let fresh = floats(&fresh.head.extractors);
    let student = student_at(&run, &teacher, 0, &d.path().join("student/last.ckpt"));
    assert!(student.head.adapters.is_empty());
    let vgg8_taps = [512, 512];
    for (e, c) in student.head.extractors.iter().zip(vgg8_taps) {
        assert_eq!(e.conv.weight.dims()[1], c);
    }
    let trained = floats(&student.head.extractors);
    assert_ne!(trained, fresh, "trained");
}

#[test]
fn resume_restores_the_dynamic_temperature_from_the_checkpoint() {
    let d = tempfile::tempdir().unwrap();
    let (data, teacher_dir) = tiny_teacher(d.path(), 64, 16);
    let student = d.path().join("student");
    // A fine table, so that reading another epoch's accuracy (or none) gives another T.
    let distill = format!(
        "[teacher]\ncheckpoint = \"{}\"\n\n[distill]\nweights = {{ ce = 1.0, kd = 1.0 }}\ntemperature = {{ policy = \"dynamic\", table = [[0.2, 1.0], [0.3, 2.0], [0.4, 3.0], [0.5, 4.0], [0.6, 5.0], [0.7, 6.0], [0.8, 7.0], [0.9, 8.0]], top = 9.0 }}\n",
        teacher_dir.join("best.ckpt").display()
    );
    let expected = |acc: f64| match acc {
        a if a < 0.2 => 1.0,
        a if a < 0.3 => 2.0,
        a if a < 0.4 => 3.0,
        a if a < 0.5 => 4.0,
        a if a < 0.6 => 5.0,
        a if a < 0.7 => 6.0,
        a if a < 0.8 => 7.0,
        a if a < 0.9 => 8.0,
        _ => 9.0,
    };
    let cfg =
        crate::common::toml_config(&data, &student, &distill).replace("epochs = 3", "epochs = 1");
    let path = d.path().join("kd.toml");
    std::fs::write(&path, cfg).unwrap();
    // A plain KD config under the default phases needs no adaptation and no end_to_end.
    ok(lstmkd(&["distill", "--config", path.to_str().unwrap()]));
    let metrics = student.join("metrics.jsonl");
    let first = lstmkd::train::metrics::read_jsonl(&metrics).unwrap();
    assert_eq!(first[0].extra["temperature"], 1.0, "no accuracy yet");
    // Without metrics.jsonl the resumed epochs still follow the last accuracy, which only
    // the checkpoint holds now, and then each epoch the one before it.
    std::fs::remove_file(&metrics).unwrap();
    ok(lstmkd(&[
        "distill",
        "--resume",
        student.to_str().unwrap(),
        "--set",
        "train.epochs=4",
    ]));
    let m = lstmkd::train::metrics::read_jsonl(&metrics).unwrap();
    assert_eq!(m.iter().map(|r| r.epoch).collect::<Vec<_>>(), vec![2, 3, 4]);
    let previous: Vec<f64> = [first[0].val_acc]
        .into_iter()
        .chain(m.iter().map(|r| r.val_acc))
        .collect();
    for (r, acc) in m.iter().zip(previous) {
        assert_eq!(r.extra["temperature"], expected(acc), "epoch {}", r.epoch);
    }
}

#[test]
fn relative_temperature_scales_the_table_by_the_teachers_validation_accuracy() {
    let d = tempfile::tempdir().unwrap();
    let (data, teacher_dir) = tiny_teacher(d.path(), 64, 16);
    let student = d.path().join("student");
    let distill = format!(
        "[teacher]\ncheckpoint = \"{}\"\n\n[distill]\nweights = {{ ce = 1.0, kd = 1.0 }}\ntemperature = {{ policy = \"relative\", table = [[0.25, 1.0], [0.5, 2.0], [0.75, 3.0], [1.0, 4.0]], top = 5.0 }}\n",
        teacher_dir.join("best.ckpt").display()
    );
    let path = d.path().join("kd.toml");
    std::fs::write(&path, crate::common::toml_config(&data, &student, &distill)).unwrap();
    let out = ok(lstmkd(&["distill", "--config", path.to_str().unwrap()]));
    // The teacher validated on the same split while it trained: its best epoch's accuracy.
    let teacher = lstmkd::train::checkpoint::Checkpoint::load(&teacher_dir.join("best.ckpt"))
        .unwrap()
        .meta
        .run
        .unwrap()
        .best_val_acc;
    let line = format!(
        "relative to the teacher's {:.2}% validation top-1: < {:.2}% -> 1",
        100.0 * teacher,
        25.0 * teacher
    );
    assert!(out.contains(&line), "{line} not in {out}");
    let expected = |acc: f64| match acc / teacher {
        r if r < 0.25 => 1.0,
        r if r < 0.5 => 2.0,
        r if r < 0.75 => 3.0,
        r if r < 1.0 => 4.0,
        _ => 5.0,
    };
    let m = lstmkd::train::metrics::read_jsonl(&student.join("metrics.jsonl")).unwrap();
    assert_eq!(m[0].extra["temperature"], 1.0, "no accuracy yet");
    for e in 1..m.len() {
        assert_eq!(
            m[e].extra["temperature"],
            expected(m[e - 1].val_acc),
            "epoch {e}"
        );
    }
}

#[test]
fn adapt_reads_the_distillation_data_and_writes_where_teacher_extractors_says() {
    let d = tempfile::tempdir().unwrap();
    let (data, teacher_dir) = tiny_teacher(d.path(), 64, 16);
    let custom = d.path().join("elsewhere/extractors.ckpt");
    let distill = format!(
        "[teacher]\ncheckpoint = \"{}\"\nextractors = \"{}\"\n\n[distill]\nweights = {{ ce = 1.0, temporal = 0.1 }}\nend_to_end = true\nadapt_epochs = 1\nextractor = {{ conv_channels = 4, hidden = 4 }}\n",
        teacher_dir.join("best.ckpt").display(),
        custom.display()
    );
    let cfg = crate::common::toml_config(&data, &d.path().join("student"), &distill)
        .replace("epochs = 3", "epochs = 1");
    let path = d.path().join("a.toml");
    std::fs::write(&path, cfg).unwrap();
    let o = lstmkd(&[
        "adapt",
        "--config",
        path.to_str().unwrap(),
        "--set",
        "data.root=/no/such/data",
    ]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && e.contains("/no/such/data"), "{e}");
    let teacher_before = std::fs::read(teacher_dir.join("best.ckpt")).unwrap();
    // Data the teacher cannot read, and extractors to be written into the teacher's own
    // folder, are refused before anything is written.
    let other = d.path().join("other");
    crate::common::write_idx_dataset(&other, 20, 8, 6, false);
    let in_teacher = teacher_dir.join("extractors.ckpt");
    for (set, expected) in [
        (
            format!("data.root=\"{}\"", other.display()),
            "images [1, 6, 6] (C, H, W) with 10 classes, 1 frame(s) per sample do not fit the teacher",
        ),
        (
            format!("teacher.extractors=\"{}\"", in_teacher.display()),
            "is in the teacher's own folder",
        ),
    ] {
        let o = lstmkd(&["adapt", "--config", path.to_str().unwrap(), "--set", &set]);
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && e.contains(expected), "{e}");
    }
    assert!(!custom.parent().unwrap().exists() && !in_teacher.exists());
    ok(lstmkd(&["adapt", "--config", path.to_str().unwrap()]));
    assert!(custom.is_file() && !teacher_dir.join("adapt").exists());
    let info = ok(lstmkd(&["info", "--checkpoint", custom.to_str().unwrap()]));
    assert!(info.contains("origin      lstmkd adapt\n"), "{info}");
    // Adaptation trains the extractors only: the teacher's checkpoint is the file it was.
    assert_eq!(
        std::fs::read(teacher_dir.join("best.ckpt")).unwrap(),
        teacher_before
    );
    ok(lstmkd(&["distill", "--config", path.to_str().unwrap()]));
    // Adapting again continues that adaptation only where it is the same one: other student
    // losses are welcome, other adaptation settings are refused, as is a folder that holds
    // another kind of run.
    let adapt = |set: &str| lstmkd(&["adapt", "--config", path.to_str().unwrap(), "--set", set]);
    let saved = std::fs::read(&custom).unwrap();
    ok(adapt(
        "distill.weights={ ce = 1.0, temporal = 0.5, aux_ce = 1.0 }",
    ));
    let student = d.path().join("student");
    for (set, expected) in [
        (
            "distill.adapt_epochs=2".to_string(),
            "holds an adaptation of another config (train.epochs 1 there, 2 here)",
        ),
        (
            format!(
                "teacher.extractors=\"{}\"",
                student.join("best.ckpt").display()
            ),
            "holds a run that is not an adaptation",
        ),
    ] {
        let o = adapt(&set);
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && e.contains(expected), "{set}: {e}");
    }
    assert_eq!(std::fs::read(&custom).unwrap(), saved);
    // Two teachers in one folder get adapted extractors of their own by default.
    use lstmkd::distill::adapt_dir;
    assert_eq!(
        adapt_dir(&teacher_dir.join("best.ckpt")),
        teacher_dir.join("adapt")
    );
    assert_eq!(
        adapt_dir(&teacher_dir.join("last.ckpt")),
        teacher_dir.join("adapt-last")
    );
}

#[test]
fn a_distillation_stopped_mid_epoch_resumes_weight_for_weight() {
    let d = tempfile::tempdir().unwrap();
    let (data, teacher_dir) = tiny_teacher(d.path(), 64, 16);
    // The temperature moves from 1 to 4 after the first epoch; the run stops in the second.
    let distill = format!(
        "[teacher]\ncheckpoint = \"{}\"\n\n[distill]\nweights = {{ ce = 1.0, kd = 1.0, at = 10.0, crd = 0.8 }}\ncrd = {{ negatives = 16, feat_dim = 8 }}\ntmix = 0.5\ntemperature = {{ policy = \"dynamic\", table = [[0.0001, 1.0]], top = 4.0 }}\n",
        teacher_dir.join("best.ckpt").display()
    );
    let cfg = |out: &str| {
        crate::common::toml_config(&data, &d.path().join(out), &distill)
            .replace("epochs = 3", "epochs = 2")
    };
    std::fs::write(d.path().join("a.toml"), cfg("straight")).unwrap();
    std::fs::write(d.path().join("b.toml"), cfg("parts")).unwrap();
    ok(lstmkd(&[
        "distill",
        "--config",
        d.path().join("a.toml").to_str().unwrap(),
    ]));
    let o = crate::training::interrupted_after(
        5,
        &[
            "distill",
            "--config",
            d.path().join("b.toml").to_str().unwrap(),
        ],
    );
    assert_eq!(
        o.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // 51 training images in batches of 16: 4 steps an epoch, so step 2 of epoch 2.
    let mid = Checkpoint::load(&d.path().join("parts/last.ckpt")).unwrap();
    let state = mid.meta.run.unwrap();
    assert_eq!((state.epoch, state.partial.unwrap().steps), (1, 1));
    ok(lstmkd(&[
        "distill",
        "--resume",
        d.path().join("parts").to_str().unwrap(),
    ]));
    let m = lstmkd::train::metrics::read_jsonl(&d.path().join("parts/metrics.jsonl")).unwrap();
    assert_eq!(m[1].extra["temperature"], 4.0);
    // The whole student (backbone, head, CRD's embeddings, memories and Z), not only the
    // deployed backbone of the best epoch, which may be the first.
    let text = std::fs::read_to_string(d.path().join("a.toml")).unwrap();
    let run = lstmkd::config::RunConfig::parse(&text, "a.toml", &[]).unwrap();
    let teacher = teacher_of(&run);
    let student = |dir: &str| {
        floats(&student_at(
            &run,
            &teacher,
            51,
            &d.path().join(dir).join("last.ckpt"),
        ))
    };
    assert_eq!(student("straight"), student("parts"));
    // CRD's state is in the checkpoint: Z was set by the first step (it starts at -1).
    let crd = student_at(&run, &teacher, 51, &d.path().join("parts/last.ckpt"));
    let z: Vec<f32> = crd.parts[0].states[2].value().into_data().iter().collect();
    assert!(z.iter().all(|&z| z > 0.0), "{z:?}");
    assert_eq!(crd.parts[0].states[0].value().dims(), [51, 8]);
    assert_eq!(
        m,
        lstmkd::train::metrics::read_jsonl(&d.path().join("straight/metrics.jsonl"))
            .unwrap()
            .into_iter()
            .zip(&m)
            .map(|(mut s, p)| {
                // Timings are the only fields allowed to differ.
                (s.img_per_s, s.val_seconds, s.seconds) = (p.img_per_s, p.val_seconds, p.seconds);
                s
            })
            .collect::<Vec<_>>()
    );
}

/// A run config's teacher, loaded on flex as distillation loads it.
fn teacher_of(run: &lstmkd::config::RunConfig) -> lstmkd::distill::teacher::Teacher {
    let (tcfg, dcfg) = run.distillation().unwrap();
    lstmkd::train::distill::load_teacher(tcfg, dcfg, &Device::flex())
        .unwrap()
        .0
}

/// The student in checkpoint `path`; `samples`: the run's training images (CRD's memories).
fn student_at(
    run: &lstmkd::config::RunConfig,
    teacher: &lstmkd::distill::teacher::Teacher,
    samples: usize,
    path: &std::path::Path,
) -> lstmkd::distill::student::Student {
    let dcfg = run.distillation().unwrap().1;
    let template = lstmkd::distill::student::Student::init(
        &run.model,
        dcfg,
        teacher,
        samples,
        &Device::flex(),
    )
    .unwrap();
    Checkpoint::load(path).unwrap().apply(template).unwrap()
}

/// Every float of a module, in visiting order.
fn floats<M: Module>(m: &M) -> Vec<f32> {
    struct Collect(Vec<f32>);
    impl burn::module::ModuleVisitor for Collect {
        fn visit_float<const D: usize>(&mut self, p: &burn::module::Param<Tensor<D>>) {
            self.0.extend(p.val().into_data().iter::<f32>());
        }
    }
    let mut c = Collect(Vec::new());
    m.visit(&mut c);
    c.0
}

#[test]
fn shared_lens_extractor_starts_as_the_teachers_and_stays_frozen_across_resume() {
    let d = tempfile::tempdir().unwrap();
    let (data, teacher_dir) = tiny_teacher(d.path(), 64, 16);
    let student_dir = d.path().join("student");
    let distill = format!(
        "[teacher]\ncheckpoint = \"{}\"\n\n[distill]\nweights = {{ ce = 1.0, dkd = 1.0, temporal = 0.5, aux_ce = 0.5 }}\nend_to_end = true\nfreeze_student_extractor = true\nadapt_epochs = 1\nextractor = {{ conv_channels = 4, hidden = 4 }}\n",
        teacher_dir.join("best.ckpt").display()
    );
    let text = crate::common::toml_config(&data, &student_dir, &distill)
        .replace("epochs = 3", "epochs = 1");
    let path = d.path().join("lens.toml");
    std::fs::write(&path, &text).unwrap();
    ok(lstmkd(&["adapt", "--config", path.to_str().unwrap()]));

    let cfg = lstmkd::config::RunConfig::parse(&text, "lens.toml", &[]).unwrap();
    let teacher = teacher_of(&cfg);
    let device = Device::flex();
    let adapted = floats(&teacher.head.as_ref().unwrap().extractors);
    let student = lstmkd::train::distill::new_student(&cfg, &teacher, 0, &device).unwrap();
    assert_eq!(
        floats(&student.head.extractors),
        adapted,
        "an exact copy at the start"
    );

    // Trained (DKD and the temporal loss in the step), then resumed for a second epoch: the
    // frozen copy never moves, while the backbone and the adapters do.
    ok(lstmkd(&["distill", "--config", path.to_str().unwrap()]));
    let load = || student_at(&cfg, &teacher, 0, &student_dir.join("last.ckpt"));
    let after_one = load();
    let m = lstmkd::train::metrics::read_jsonl(&student_dir.join("metrics.jsonl")).unwrap();
    for loss in ["ce", "dkd", "temporal", "aux_ce"] {
        assert!(m[0].losses[loss] > 0.0, "{loss} in the step");
    }
    assert_eq!(floats(&after_one.head.extractors), adapted);
    assert_ne!(
        floats(&after_one.head.adapters),
        floats(&student.head.adapters)
    );
    ok(lstmkd(&[
        "distill",
        "--resume",
        student_dir.to_str().unwrap(),
        "--set",
        "train.epochs=2",
    ]));
    let after_two = load();
    assert_eq!(
        floats(&after_two.head.extractors),
        adapted,
        "still frozen after resume"
    );
    assert_ne!(floats(&after_two.net), floats(&after_one.net));
}

#[test]
fn default_phases_switch_at_a_fifth_and_half_of_a_real_run() {
    let d = tempfile::tempdir().unwrap();
    let (data, teacher_dir) = tiny_teacher(d.path(), 48, 16);
    let student = d.path().join("phased");
    let distill = format!(
        "[teacher]\ncheckpoint = \"{}\"\n\n[distill]\nweights = {{ ce = 1.0, kd = 1.0, at = 10.0, temporal = 0.1, aux_ce = 0.5, fitnet = 1.0 }}\nadapt_epochs = 1\nextractor = {{ conv_channels = 4, hidden = 4 }}\n",
        teacher_dir.join("best.ckpt").display()
    );
    let cfg =
        crate::common::toml_config(&data, &student, &distill).replace("epochs = 3", "epochs = 5");
    let path = d.path().join("phased.toml");
    std::fs::write(&path, cfg).unwrap();
    ok(lstmkd(&["adapt", "--config", path.to_str().unwrap()]));
    ok(lstmkd(&["distill", "--config", path.to_str().unwrap()]));
    let m = lstmkd::train::metrics::read_jsonl(&student.join("metrics.jsonl")).unwrap();
    let losses: Vec<Vec<&str>> = m
        .iter()
        .map(|r| r.losses.keys().map(|k| k.as_str()).collect())
        .collect();
    // 5 epochs: phase 1 until 0.2 x 5 = 1 epoch, phase 2 until 2.5, then everything.
    let phase2 = vec!["at", "aux_ce", "temporal"];
    let all = vec!["at", "aux_ce", "ce", "fitnet", "kd", "temporal"];
    assert_eq!(
        losses,
        vec![vec!["at"], phase2.clone(), phase2, all.clone(), all]
    );
    let phases: Vec<f64> = m.iter().map(|r| r.extra["phase"]).collect();
    assert_eq!(phases, [1.0, 2.0, 2.0, 3.0, 3.0]);
}

#[test]
fn an_experiment_keeps_quotes_in_its_out_path_and_names_a_bad_target_acc() {
    let d = tempfile::tempdir().unwrap();
    let cfg = suite_config(
        d.path(),
        r#"
[experiment]
target_acc = 0.3
quick = ["train.epochs=1"]

[experiment.suites.kd]
about = "KD alone"
rows = [{ label = "KD", overrides = ['distill.weights={ce = 1.0, kd = 1.0}', 'distill.end_to_end=true'] }]
"#,
        "",
    );
    let out = d.path().join("runs \"quoted\" \\ here");
    ok(experiment("kd", 1, &cfg, &out, &["--no-ledger"]));
    assert!(
        out.join("kd-quick")
            .join("kd")
            .join("seed0")
            .join("best.ckpt")
            .exists()
    );

    let text = std::fs::read_to_string(&cfg).unwrap();
    for bad in ["1.5", "0", "\"high\""] {
        std::fs::write(
            &cfg,
            text.replace("target_acc = 0.3", &format!("target_acc = {bad}")),
        )
        .unwrap();
        let e = experiment("kd", 1, &cfg, &d.path().join("other"), &["--no-ledger"]);
        assert!(!e.status.success());
        let err = String::from_utf8_lossy(&e.stderr);
        assert!(
            err.contains(&format!(
                "suite.toml: experiment.target_acc: a validation accuracy in (0, 1], got {bad}"
            )),
            "{err}"
        );
        assert!(!d.path().join("other").exists());
    }
}

#[test]
fn fitnet_on_every_stage_gets_a_regressor_per_stage_while_the_extractors_stay_on_two() {
    let d = tempfile::tempdir().unwrap();
    let s = step_setup(
        d.path(),
        "weights = { ce = 1.0, fitnet = 1.0, temporal = 0.05 }\nend_to_end = true\nadapt_epochs = 1\nfitnet = { taps = 3 }\nextractor = { conv_channels = 4, hidden = 4 }\n",
    );
    assert_eq!(s.student.head.extractors.len(), 2);
    let student_taps = s.student.net.forward(s.images.clone()).taps;
    let teacher_taps = s.teacher.net.forward(s.images.without_autodiff()).taps;
    assert_eq!(student_taps.len(), 3);
    // FitNet is the one loss here that owns parts: a 1x1 regressor from each student stage
    // to the teacher's stage at the same depth.
    assert_eq!(s.student.parts.len(), 1);
    let convs = &s.student.parts[0].convs;
    assert_eq!(convs.len(), 3);
    for (i, conv) in convs.iter().enumerate() {
        let [out, inp, kh, kw] = conv.conv.weight.val().dims();
        let (sc, tc) = (student_taps[i].dims()[1], teacher_taps[i].dims()[1]);
        assert_eq!([out, inp, kh, kw], [tc, sc, 1, 1], "stage {i}");
    }
}

#[test]
fn rtc_reads_one_crop_of_the_window_positions_on_both_sides() {
    let d = tempfile::tempdir().unwrap();
    // 16x16 images: resnet8's deepest two taps are 8 and 4 rows, 6 and 2 window positions.
    let step = step_setup_of_side(
        d.path(),
        "weights = { ce = 1.0, temporal = 1.0 }\nend_to_end = true\nadapt_epochs = 1\nrtc = true\nextractor = { conv_channels = 4, hidden = 4 }\n",
        16,
    );
    let (teacher, student, images) = (step.teacher, step.student, step.images);
    let dcfg = step.cfg.distill.clone().unwrap();
    let taps = dcfg.taps;
    let s_all = student.net.forward(images.clone()).taps;
    let t_all = teacher.net.forward(images.clone().without_autodiff()).taps;
    let pair = |i: usize| {
        let s = student.head.adapters[i].forward(s_all[s_all.len() - taps + i].clone());
        (s, t_all[t_all.len() - taps + i].clone())
    };
    let b = images.dims()[0] as f64;
    // The temporal loss written out for a crop of each tap's window positions (None: all).
    let temporal = |crops: [Option<Crop>; 2]| -> f64 {
        (0..taps)
            .map(|i| {
                let (s, t) = pair(i);
                let (_, h_s, c_s) =
                    reference_extractor(&student.head.extractors[i], s, crops[i], 3);
                let head = teacher.head.as_ref().unwrap();
                let (_, h_t, c_t) = reference_extractor(&head.extractors[i], t, crops[i], 3);
                state_distances(h_s, c_s, h_t, c_t).iter().sum::<f64>() / b
            })
            .sum()
    };
    // RTC's crops: a run of at least half of the positions, anywhere.
    let crops_of = |n: usize| -> Vec<Crop> {
        (n.div_ceil(2)..=n)
            .flat_map(|len| (0..=n - len).map(move |start| Crop { start, len }))
            .collect()
    };
    let mut candidates = Vec::new();
    for c0 in crops_of(6) {
        for c1 in crops_of(2) {
            let whole = c0.len == 6 && c1.len == 2;
            candidates.push((temporal([Some(c0), Some(c1)]), whole, (c0, c1)));
        }
    }
    let k = teacher.classes;
    let task = lstmkd::distill::step::Distill::new(teacher, dcfg, 1, 4, k, 0, None);
    let samples: Vec<usize> = (0..8).collect();
    let mut cropped = 0;
    for s in 0..4 {
        let out = task.step(
            &student,
            images.clone(),
            step.targets.clone(),
            &samples,
            0,
            s,
        );
        let (_, got) = out.parts.iter().find(|(n, _)| n == "temporal").unwrap();
        let got = got.clone().into_scalar::<f32>() as f64;
        let matched = candidates
            .iter()
            .find(|(v, _, _)| (v - got).abs() < 2e-5 * (1.0 + v.abs()));
        let Some((_, whole, _)) = matched else {
            panic!("step {s}: temporal {got} is no crop's: {candidates:?}");
        };
        cropped += usize::from(!whole);
    }
    assert!(cropped > 0, "no step read a crop shorter than the whole");
}
