use burn::module::Module;

use crate::common::{lstmkd, ok};
use burn::tensor::{Device, Distribution, Int, Tensor, TensorData};
use lstmkd::distill::extractor::{Crop, ExtractorConfig, positions, windows};
use lstmkd::distill::mix::{random_crops, tmix};
use lstmkd::distill::phases::{Phase, active, seed_phases};
use lstmkd::distill::temperature::TemperatureConfig;
use rand::SeedableRng;
use rand::rngs::StdRng;

fn small() -> ExtractorConfig {
    ExtractorConfig {
        window: 3,
        conv_channels: 8,
        hidden: 6,
        layers: 2,
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
    let v: Vec<f32> = s.into_data().iter::<f32>().collect();
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
            let ext = cfg.init(5, 7, &device);
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
            let fast = ext.window_conv(rows).swap_dims(1, 2);
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

/// The extractor written out from docs/METHOD.md: the plain Conv3d over the (cropped) window
/// stack, the means, the bidirectional LSTM layers from their equations, the mean over time
/// and the head as a product.
fn reference_extractor(
    ext: &lstmkd::distill::extractor::Extractor,
    f: Tensor<4>,
    crop: Option<Crop>,
) -> (Tensor<2>, Tensor<3>, Tensor<3>) {
    let s = windows(f, ext.window);
    let [b, c, t, _, w] = s.dims();
    let s = match crop {
        Some(Crop { start, len }) => s.slice([0..b, 0..c, 0..t, start..start + len, 0..w]),
        None => s,
    };
    let y = burn::tensor::activation::relu(ext.conv.forward(s));
    let [_, d, _, n, _] = y.dims();
    let mut x = y.mean_dim(4).mean_dim(2).reshape([b, d, n]).swap_dims(1, 2);
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
    let ext = small().init(5, 7, &device);
    for (h, crop) in [
        (2, None),
        (7, None),
        (9, Some(Crop { start: 0, len: 4 })),
        (9, Some(Crop { start: 3, len: 4 })),
        (9, Some(Crop { start: 6, len: 1 })),
    ] {
        let f = Tensor::<4>::random([2, 5, h, 6], Distribution::Normal(0.0, 1.0), &device);
        let out = ext.forward(f.clone(), crop);
        let (logits, hidden, cell) = reference_extractor(&ext, f, crop);
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
    let ext = small().init(5, 7, &device);
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
    let soft: Vec<f32> = soft.into_data().iter::<f32>().collect();
    let mixed: Vec<f32> = mixed.into_data().iter::<f32>().collect();
    for r in 0..2 {
        let sum: f32 = soft[r * 3..r * 3 + 3].iter().sum();
        assert!((sum - 1.0).abs() < 1e-6);
    }
    // Image 0 (all zeros) received rows of image 1 (all ones): its label share is the row share.
    let rows_from_other = mixed[..16].iter().filter(|&&v| v == 1.0).count() / 2;
    assert!(rows_from_other >= 1 && rows_from_other <= 4);
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
        policy: "fixed".into(),
        value: 4.0,
        ..Default::default()
    };
    assert_eq!(fixed.next(Some(0.95)), 4.0);
    assert!(
        TemperatureConfig {
            policy: "warm".into(),
            ..Default::default()
        }
        .validate()
        .is_err()
    );
}

#[test]
fn seed_phases_switch_at_a_fifth_and_a_half() {
    let all = ["ce", "kd", "at", "temporal", "aux_ce"];
    let phases = seed_phases(&all);
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

#[test]
fn a_distillation_step_moves_the_student_and_never_the_teacher() {
    use burn::optim::GradientsParams;
    let plain = Device::flex();
    let ad = plain.clone().autodiff();
    plain.seed(1);
    let teacher = small().init(4, 3, &plain).valid();
    ad.seed(2);
    let student = small().init(4, 3, &ad);
    let x = Tensor::<4>::random([2, 4, 5, 3], burn::tensor::Distribution::Default, &ad);
    let t = teacher.forward(x.clone().without_autodiff(), None);
    let before: Vec<f32> = t.hidden.clone().into_data().try_to_vec().unwrap();
    let s = student.forward(x.clone(), None);
    let loss = lstmkd::distill::losses::temporal::temporal_loss(s.hidden, s.cell, t.hidden, t.cell);
    let mut grads = loss.backward();
    // The teacher's parameters are not in the graph at all; every student parameter is.
    assert!(GradientsParams::from_module(&mut grads, &teacher).is_empty());
    let student_grads = GradientsParams::from_grads(grads, &student);
    let trainable = student.num_params();
    assert!(!student_grads.is_empty() && student_grads.len() <= trainable);
    let optim: lstmkd::optim::OptimConfig =
        toml::from_str("name = \"sgd\"\nlr = 0.5\nmomentum = 0.0").unwrap();
    let moved = optim.init().step(0.5, student.clone(), student_grads);
    let w0: Vec<f32> = student.conv.weight.val().into_data().try_to_vec().unwrap();
    let w1: Vec<f32> = moved.conv.weight.val().into_data().try_to_vec().unwrap();
    assert_ne!(w0, w1, "the step moved the student");
    let after: Vec<f32> = teacher
        .forward(x.without_autodiff(), None)
        .hidden
        .into_data()
        .try_to_vec()
        .unwrap();
    assert_eq!(
        before, after,
        "the teacher computes what it did before the step"
    );
}

/// Generated data and a one-epoch teacher trained on it; returns (data root, teacher run dir).
pub fn tiny_teacher(
    d: &std::path::Path,
    n_train: usize,
    n_test: usize,
) -> (std::path::PathBuf, std::path::PathBuf) {
    let data = d.join("data");
    crate::common::write_idx_dataset(&data, n_train, n_test, 8, false);
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

    let out = ok(lstmkd(&["distill", "--config", cfg_path.to_str().unwrap()]));
    assert!(
        out.contains("epoch 1/2") && out.contains("temperature"),
        "{out}"
    );
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
    assert!(m.iter().all(|r| r.extra.contains_key("temperature")));

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
}

#[test]
fn experiment_suite_runs_rows_over_seeds_and_reuses_finished_runs() {
    let d = tempfile::tempdir().unwrap();
    let (data, teacher_dir) = tiny_teacher(d.path(), 64, 16);
    let suite = format!(
        r#"
[experiment]
target_acc = 0.3
quick = ["train.epochs=2"]

{}
[teacher]
checkpoint = "{}"

[distill]
weights = {{ ce = 1.0 }}
adapt_epochs = 1
extractor = {{ conv_channels = 4, hidden = 4 }}
"#,
        crate::common::toml_config(&data, &d.path().join("unused"), ""),
        teacher_dir.join("best.ckpt").display()
    );
    let cfg = d.path().join("suite.toml");
    std::fs::write(&cfg, suite).unwrap();
    let out = d.path().join("exp");
    let args = [
        "experiment",
        "--suite",
        "seed-benchmark",
        "--seeds",
        "2",
        "--config",
        cfg.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    let first = ok(lstmkd(&args));
    assert!(
        first.contains("adapting the teacher"),
        "LSTM KD needs adapted extractors: {first}"
    );
    let dir = out.join("seed-benchmark");
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
    // Deployed students have the plain backbone's parameters, whatever the method.
    assert!(rows.iter().all(|r| r["params"] == rows[0]["params"]));
    for png in ["val_acc.png", "temperature.png"] {
        let bytes = std::fs::read(dir.join(png)).unwrap();
        assert_eq!(&bytes[1..4], b"PNG", "{png}");
    }
    // A second call reuses every finished run.
    let second = ok(lstmkd(&args));
    assert_eq!(second.matches("already finished").count(), 6, "{second}");
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
    std::fs::write(&path, cfg).unwrap();
    ok(lstmkd(&["adapt", "--config", path.to_str().unwrap()]));
    ok(lstmkd(&["distill", "--config", path.to_str().unwrap()]));
}

#[test]
fn resume_restores_the_dynamic_temperature_from_the_checkpoint() {
    let d = tempfile::tempdir().unwrap();
    let (data, teacher_dir) = tiny_teacher(d.path(), 64, 16);
    let student = d.path().join("student");
    // T = 1 before any validation, 4 once an epoch reached any accuracy.
    let distill = format!(
        "[teacher]\ncheckpoint = \"{}\"\n\n[distill]\nweights = {{ ce = 1.0, kd = 1.0 }}\ntemperature = {{ policy = \"dynamic\", table = [[0.0001, 1.0]], top = 4.0 }}\n",
        teacher_dir.join("best.ckpt").display()
    );
    let cfg =
        crate::common::toml_config(&data, &student, &distill).replace("epochs = 3", "epochs = 1");
    let path = d.path().join("kd.toml");
    std::fs::write(&path, cfg).unwrap();
    // A plain KD config under the default phases needs no adaptation and no end_to_end.
    ok(lstmkd(&["distill", "--config", path.to_str().unwrap()]));
    let metrics = student.join("metrics.jsonl");
    let first = lstmkd::train::metrics::read_jsonl(&metrics).unwrap();
    assert_eq!(first[0].extra["temperature"], 1.0);
    assert!(first[0].val_acc > 0.0001);
    std::fs::remove_file(&metrics).unwrap();
    ok(lstmkd(&[
        "distill",
        "--resume",
        student.to_str().unwrap(),
        "--set",
        "train.epochs=2",
    ]));
    let m = lstmkd::train::metrics::read_jsonl(&metrics).unwrap();
    assert_eq!(m.len(), 1);
    assert_eq!((m[0].epoch, m[0].extra["temperature"]), (2, 4.0));
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
    ok(lstmkd(&["adapt", "--config", path.to_str().unwrap()]));
    assert!(custom.is_file() && !teacher_dir.join("adapt").exists());
    // Adaptation trains the extractors only: the teacher's checkpoint is the file it was.
    assert_eq!(
        std::fs::read(teacher_dir.join("best.ckpt")).unwrap(),
        teacher_before
    );
    ok(lstmkd(&["distill", "--config", path.to_str().unwrap()]));
}

#[test]
fn a_distillation_stopped_mid_epoch_resumes_weight_for_weight() {
    let d = tempfile::tempdir().unwrap();
    let (data, teacher_dir) = tiny_teacher(d.path(), 64, 16);
    // The temperature moves from 1 to 4 after the first epoch; the run stops in the second.
    let distill = format!(
        "[teacher]\ncheckpoint = \"{}\"\n\n[distill]\nweights = {{ ce = 1.0, kd = 1.0, at = 10.0 }}\ntmix = 0.5\ntemperature = {{ policy = \"dynamic\", table = [[0.0001, 1.0]], top = 4.0 }}\n",
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
    ok(lstmkd(&[
        "distill",
        "--resume",
        d.path().join("parts").to_str().unwrap(),
    ]));
    let m = lstmkd::train::metrics::read_jsonl(&d.path().join("parts/metrics.jsonl")).unwrap();
    assert_eq!(m[1].extra["temperature"], 4.0);
    assert_eq!(
        crate::training::weights(&d.path().join("straight/deployed.ckpt")),
        crate::training::weights(&d.path().join("parts/deployed.ckpt"))
    );
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
    let (tcfg, dcfg) = cfg.distillation().unwrap();
    let device = Device::flex();
    let (teacher, _) = lstmkd::train::distill::load_teacher(tcfg, dcfg, &device).unwrap();
    let adapted = floats(&teacher.head.as_ref().unwrap().extractors);
    let student = lstmkd::train::distill::new_student(&cfg, &teacher, &device).unwrap();
    assert_eq!(
        floats(&student.head.extractors),
        adapted,
        "an exact copy at the start"
    );

    // Trained (DKD and the temporal loss in the step), then resumed for a second epoch: the
    // frozen copy never moves, while the backbone and the adapters do.
    ok(lstmkd(&["distill", "--config", path.to_str().unwrap()]));
    let load = || {
        let template =
            lstmkd::distill::student::Student::init(&cfg.model, dcfg, &teacher, &device).unwrap();
        lstmkd::train::checkpoint::Checkpoint::load(&student_dir.join("last.ckpt"))
            .unwrap()
            .apply(template)
            .unwrap()
    };
    let after_one = load();
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
