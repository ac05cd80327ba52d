//! The adaptive window: windows from the teacher's entropy, grouped extraction, and a
//! distillation step reading each sample with its own window.

use burn::module::Module;
use burn::tensor::{Device, Distribution, Tensor, TensorData};
use lstmkd::distill::adaptive_window::AdaptiveWindow;
use lstmkd::distill::extractor::ExtractorConfig;

use crate::common::{lstmkd, values};

#[test]
fn windows_follow_the_entropy_of_the_teachers_softmax() {
    let a = AdaptiveWindow {
        table: vec![(0.05, 2), (0.5, 3)],
        top: 5,
    };
    // Entropies written out: softmax([8, 0, 0]) = (0.9993, 0.0003, 0.0003), H = 0.0060;
    // softmax([2, 0, 0]) = (0.7870, 0.1065, 0.1065), H = 0.6656; uniform, H = ln 3 = 1.0986;
    // softmax([3, 0, 0]) = (0.9094, 0.0453, 0.0453), H = 0.3666.
    let logits = Tensor::<2>::from_data(
        TensorData::new(
            vec![8f32, 0., 0., 2., 0., 0., 0., 0., 0., 3., 0., 0.],
            [4, 3],
        ),
        &Device::flex(),
    );
    assert_eq!(a.windows(&logits), [2, 5, 5, 3]);
    assert!(
        AdaptiveWindow {
            table: vec![(0.5, 2), (0.1, 3)],
            top: 4
        }
        .validate()
        .is_err()
    );
    assert!(
        AdaptiveWindow {
            table: vec![],
            top: 0
        }
        .validate()
        .is_err()
    );
}

#[test]
fn grouped_windows_equal_each_sample_read_alone() {
    let device = Device::flex();
    let cfg = ExtractorConfig {
        conv_channels: 4,
        hidden: 3,
        layers: 2,
        ..Default::default()
    };
    let e = cfg.init(2, 5, 1, &device).valid();
    let windows = [2, 4, 2, 1, 4];
    let f = Tensor::<4>::random([5, 2, 6, 3], Distribution::Default, &device);
    let all = e.forward_windows(f.clone(), &windows);
    let (hidden, cell) = (values(all.hidden), values(all.cell));
    let logits = values(all.aux_logits);
    for (i, &w) in windows.iter().enumerate() {
        let one = e.forward_window(f.clone().slice([i..i + 1, 0..2, 0..6, 0..3]), None, w);
        let (h1, c1) = (values(one.hidden), values(one.cell));
        let l1 = values(one.aux_logits);
        // States are [layers x 2, B, hidden]: sample i's slice of each row.
        for r in 0..4 {
            for k in 0..3 {
                assert!((hidden[(r * 5 + i) * 3 + k] - h1[r * 3 + k]).abs() < 1e-5);
                assert!((cell[(r * 5 + i) * 3 + k] - c1[r * 3 + k]).abs() < 1e-5);
            }
        }
        for k in 0..5 {
            assert!((logits[i * 5 + k] - l1[k]).abs() < 1e-5, "sample {i}");
        }
    }
}

#[test]
fn a_distillation_with_adaptive_windows_runs_and_rtc_is_refused_beside_it() {
    let d = tempfile::tempdir().unwrap();
    let (cfg, _, out) = crate::distill::tiny_distillation(
        d.path(),
        "weights = { ce = 1.0, kd = 1.0, temporal = 0.1, aux_ce = 0.5 }\nend_to_end = true\nadapt_epochs = 1\nadaptive_window = { table = [[0.5, 1], [1.0, 2]], top = 3 }\nextractor = { conv_channels = 4, hidden = 4 }\n",
    );
    assert!(out.contains("temporal "), "{out}");
    let bad = lstmkd(&[
        "distill",
        "--config",
        cfg.to_str().unwrap(),
        "--set",
        "distill.rtc=true",
    ]);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("distill.adaptive_window / rtc"));
}

#[test]
fn a_distillation_step_reads_each_sample_with_the_window_of_its_teachers_entropy() {
    use lstmkd::train::trainer::Task;
    let d = tempfile::tempdir().unwrap();
    let step = crate::distill::step_setup(
        d.path(),
        "weights = { ce = 1.0, temporal = 1.0 }\nend_to_end = true\nadapt_epochs = 1\nextractor = { conv_channels = 4, hidden = 4 }\n",
    );
    let (teacher, student, images) = (step.teacher, step.student, step.images);
    // Thresholds between this batch's entropies, so that all three windows occur.
    let t_logits = teacher
        .net
        .forward(images.clone().without_autodiff())
        .logits;
    let mut entropy: Vec<f64> = softmax_entropies(&t_logits);
    entropy.sort_by(f64::total_cmp);
    let table = vec![(entropy[3], 1), (entropy[6], 2)];
    let adaptive = AdaptiveWindow { table, top: 3 };
    let windows = adaptive.windows(&t_logits);
    assert_eq!(
        (1..=3).map(|w| windows.contains(&w)).collect::<Vec<_>>(),
        [true; 3],
        "{windows:?}"
    );
    // Temporal written out: each sample's states from the extractors' definition at its own
    // window, on the deepest two taps (the student's through its shared-lens adapters).
    let mut dcfg = step.cfg.distill.clone().unwrap();
    let taps = dcfg.taps;
    let s_taps = student.net.forward(images.clone()).taps;
    let t_taps = teacher.net.forward(images.clone().without_autodiff()).taps;
    let mut expected = 0.0;
    for i in 0..taps {
        let s_tap = student.head.adapters[i].forward(s_taps[s_taps.len() - taps + i].clone());
        let t_tap = t_taps[t_taps.len() - taps + i].clone();
        let [b, c, h, w] = s_tap.dims();
        let [_, tc, th, tw] = t_tap.dims();
        for (j, &window) in windows.iter().enumerate() {
            let (_, h_s, c_s) = crate::distill::reference_extractor(
                &student.head.extractors[i],
                s_tap.clone().slice([j..j + 1, 0..c, 0..h, 0..w]),
                None,
                window,
            );
            let (_, h_t, c_t) = crate::distill::reference_extractor(
                &teacher.head.as_ref().unwrap().extractors[i],
                t_tap.clone().slice([j..j + 1, 0..tc, 0..th, 0..tw]),
                None,
                window,
            );
            expected += crate::distill::state_distances(h_s, c_s, h_t, c_t)[0] / b as f64;
        }
    }
    dcfg.adaptive_window = Some(adaptive);
    let k = teacher.classes;
    let mut task = lstmkd::distill::step::Distill::new(teacher, dcfg, 1, 1, k, 0, None);
    let samples: Vec<usize> = (0..8).collect();
    let out = task.train_step(&student, images, step.targets, &samples, 0, 0);
    let (_, got) = out.parts.iter().find(|(n, _)| n == "temporal").unwrap();
    let got = got.clone().into_scalar::<f32>() as f64;
    assert!(
        (got - expected).abs() < 2e-5 * (1.0 + expected),
        "temporal {got} vs {expected}"
    );
}

/// The entropy (nats) of each row's softmax, on the host.
fn softmax_entropies(logits: &Tensor<2>) -> Vec<f64> {
    let [b, k] = logits.dims();
    let v = values(logits.clone());
    (0..b)
        .map(|r| {
            let row: Vec<f64> = v[r * k..(r + 1) * k].iter().map(|&x| x as f64).collect();
            let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let z: f64 = row.iter().map(|x| (x - m).exp()).sum();
            row.iter()
                .map(|x| {
                    let p = (x - m).exp() / z;
                    -p * p.ln()
                })
                .sum()
        })
        .collect()
}
