//! A QRNN core in a distillation: end to end, and a step's temporal loss against the
//! extractors' states (the recurrence itself: `src/distill/qrnn/tests.rs`).

use burn::tensor::Tensor;

#[test]
fn a_qrnn_core_distils_and_its_fused_student_refuses_onnx() {
    use crate::common::{lstmkd, ok};
    let d = tempfile::tempdir().unwrap();
    let (cfg, student, out) = crate::distill::tiny_distillation(
        d.path(),
        "weights = { ce = 1.0, kd = 1.0, temporal = 0.1, aux_ce = 0.5 }\nend_to_end = true\nfused = true\nadapt_epochs = 1\nextractor = { conv_channels = 4, hidden = 4, core = \"qrnn\" }\n",
    );
    assert!(out.contains("temporal "), "{out}");
    let deployed = student.join("deployed.ckpt");
    ok(lstmkd(&[
        "eval",
        "--checkpoint",
        deployed.to_str().unwrap(),
    ]));
    let onnx = d.path().join("q.onnx");
    let bad = lstmkd(&[
        "export",
        "--checkpoint",
        deployed.to_str().unwrap(),
        "--format",
        "onnx",
        "--out",
        onnx.to_str().unwrap(),
    ]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("no QRNN operator"));
    assert!(!onnx.exists());
    let wrong = lstmkd(&[
        "distill",
        "--config",
        cfg.to_str().unwrap(),
        "--set",
        "distill.extractor.core=\"gru\"",
    ]);
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("distill.extractor.core"));
}

#[test]
fn a_distillation_step_matches_the_qrnn_extractors_states() {
    let d = tempfile::tempdir().unwrap();
    let step = crate::distill::step_setup(
        d.path(),
        "weights = { ce = 1.0, temporal = 1.0 }\nend_to_end = true\nadapt_epochs = 1\nextractor = { conv_channels = 4, hidden = 4, core = \"qrnn\" }\n",
    );
    let (teacher, student, images) = (step.teacher, step.student, step.images);
    let dcfg = step.cfg.distill.clone().unwrap();
    let taps = dcfg.taps;
    // Stacked QRNN layers on the extractor's sequence (the recurrence itself is checked
    // against its equations in src/distill/qrnn/tests.rs): every layer's final states,
    // forward then reverse.
    let states = |ext: &lstmkd::distill::extractor::Extractor, f: Tensor<4>| {
        let mut x = crate::distill::reference_sequence(ext, f, None, ext.window);
        assert!(ext.lstm.is_empty() && !ext.qrnn.is_empty());
        let (mut hs, mut cs) = (Vec::new(), Vec::new());
        for layer in &ext.qrnn {
            let (out, h, c) = layer.run(x);
            hs.push(h);
            cs.push(c);
            x = out;
        }
        (Tensor::cat(hs, 0), Tensor::cat(cs, 0))
    };
    let s_all = student.net.forward(images.clone()).taps;
    let t_all = teacher.net.forward(images.clone().without_autodiff()).taps;
    let b = images.dims()[0] as f64;
    let expected: f64 = (0..taps)
        .map(|i| {
            let s = student.head.adapters[i].forward(s_all[s_all.len() - taps + i].clone());
            let t = t_all[t_all.len() - taps + i].clone();
            let (h_s, c_s) = states(&student.head.extractors[i], s);
            let (h_t, c_t) = states(&teacher.head.as_ref().unwrap().extractors[i], t);
            let d = crate::distill::state_distances(h_s, c_s, h_t, c_t);
            d.iter().sum::<f64>() / b
        })
        .sum();
    let k = teacher.classes;
    let task = lstmkd::distill::step::Distill::new(teacher, dcfg, 1, 1, k, 0, None);
    let samples: Vec<usize> = (0..8).collect();
    let out = task.step(&student, images, step.targets, &samples, 0, 0);
    let (_, got) = out.parts.iter().find(|(n, _)| n == "temporal").unwrap();
    let got = got.clone().into_scalar::<f32>() as f64;
    assert!(
        expected > 1e-6 && (got - expected).abs() < 2e-5 * (1.0 + expected),
        "temporal {got} vs {expected}"
    );
}
