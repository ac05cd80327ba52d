//! The QRNN core against its recurrence written out on the host.

use burn::tensor::{Device, Distribution, Tensor};

use super::{BiQrnn, Qrnn};
use crate::test_util::values;

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
