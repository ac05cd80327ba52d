//! The QRNN core against its recurrence written out on the host.

use crate::common::values;
use burn::tensor::{Device, Distribution, Tensor};
use lstmkd::distill::qrnn::{BiQrnn, Qrnn};

fn sigmoid(v: f32) -> f32 {
    1.0 / (1.0 + (-v).exp())
}

/// fo-pooling over `x` ([T][D] for one sample) with gates from [x_{t-1}, x_t]: ([T][H], c_T).
fn reference(q: &Qrnn, x: &[Vec<f32>]) -> (Vec<Vec<f32>>, Vec<f32>) {
    let w = values(q.gates.weight.val()); // [2D, 3H]
    let b = values(q.gates.bias.as_ref().unwrap().val());
    let (d, h) = (x[0].len(), q.d_hidden);
    let mut c = vec![0f32; h];
    let mut out = Vec::new();
    for t in 0..x.len() {
        let prev = if t == 0 {
            vec![0.0; d]
        } else {
            x[t - 1].clone()
        };
        let input: Vec<f32> = prev.into_iter().chain(x[t].iter().copied()).collect();
        let gate = |j: usize| b[j] + (0..2 * d).map(|i| input[i] * w[i * 3 * h + j]).sum::<f32>();
        let mut ht = vec![0f32; h];
        for k in 0..h {
            let (z, f, o) = (
                gate(k).tanh(),
                sigmoid(gate(h + k)),
                sigmoid(gate(2 * h + k)),
            );
            c[k] = f * c[k] + (1.0 - f) * z;
            ht[k] = o * c[k];
        }
        out.push(ht);
    }
    (out, c)
}

#[test]
fn qrnn_is_fo_pooling_over_width_two_convolution_gates() {
    let device = Device::flex();
    let (b, t, d, h) = (2, 4, 3, 2);
    let q = BiQrnn::new(d, h, &device);
    let x = Tensor::<3>::random([b, t, d], Distribution::Default, &device);
    let (out, hidden, cell) = q.run(x.clone());
    let (out, hidden, cell) = (values(out), values(hidden), values(cell));
    let xv = values(x);
    for n in 0..b {
        let seq: Vec<Vec<f32>> = (0..t)
            .map(|s| xv[(n * t + s) * d..][..d].to_vec())
            .collect();
        let (fwd, c_fwd) = reference(&q.forward, &seq);
        let backwards: Vec<Vec<f32>> = seq.iter().rev().cloned().collect();
        let (mut rev, c_rev) = reference(&q.reverse, &backwards);
        let h_rev_last = rev[t - 1].clone();
        rev.reverse();
        for s in 0..t {
            let want: Vec<f32> = fwd[s].iter().chain(&rev[s]).copied().collect();
            let got = &out[(n * t + s) * 2 * h..][..2 * h];
            for (g, w) in got.iter().zip(&want) {
                assert!(
                    (g - w).abs() < 1e-5,
                    "sample {n} step {s}: {got:?} vs {want:?}"
                );
            }
        }
        // States [2, B, H]: forward, then reverse (whose last step is the sequence's first).
        for (dir, (h_want, c_want)) in [(&fwd[t - 1], &c_fwd), (&h_rev_last, &c_rev)]
            .into_iter()
            .enumerate()
        {
            for k in 0..h {
                let at = (dir * b + n) * h + k;
                assert!((hidden[at] - h_want[k]).abs() < 1e-5);
                assert!((cell[at] - c_want[k]).abs() < 1e-5);
            }
        }
    }
}

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
    // against its equations above): every layer's final states, forward then reverse.
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
