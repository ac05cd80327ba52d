//! The adaptive window in a distillation: end to end, and a step reading each sample with its
//! own window (the windows and grouped extraction: `src/distill/adaptive_window/tests.rs`).

use burn::tensor::Tensor;
use lstmkd::distill::adaptive_window::AdaptiveWindow;

use crate::common::{lstmkd, values};

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
