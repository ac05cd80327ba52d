//! The optimisers against PyTorch's update rules written out (the algorithms in the docs of
//! torch.optim.SGD and torch.optim.AdamW): burn's own defaults differ (SGD dampening 0.1).

use burn::module::{Module, Param};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor, TensorData};

use super::{OptimConfig, OptimName};
use crate::test_util::values;

#[derive(Module, Debug)]
struct Weights {
    w: Param<Tensor<2>>,
}

const W0: [f32; 6] = [0.5, -1.25, 2.0, 0.0, 0.75, -0.3];

/// Per step, the gradient: the loss is sum(w * G), so its gradient is exactly G.
const GRADS: [[f32; 6]; 3] = [
    [0.1, -0.2, 0.3, 1.0, -0.5, 0.05],
    [0.4, 0.1, -0.6, 0.2, 0.2, -0.1],
    [-0.3, 0.5, 0.1, -0.7, 0.0, 0.3],
];

const LR: f64 = 0.1;

/// The weights after each step of lstmkd's optimiser for `cfg`.
fn stepped(cfg: &OptimConfig) -> Vec<Vec<f32>> {
    let device = Device::flex().autodiff();
    let tensor = |v: &[f32]| Tensor::<2>::from_data(TensorData::new(v.to_vec(), [2, 3]), &device);
    let mut m = Weights {
        w: Param::from_tensor(tensor(&W0)),
    };
    let mut optim = cfg.init();
    GRADS
        .iter()
        .map(|g| {
            let loss = (m.w.val() * tensor(g)).sum();
            let grads = GradientsParams::from_grads(loss.backward(), &m);
            m = optim.step(LR, m.clone(), grads);
            values(m.w.val())
        })
        .collect()
}

/// torch.optim.SGD: g += wd w; with momentum, b = g on the first step, else mu b + g
/// (dampening 0); the step is b, or g + mu b with Nesterov.
fn sgd_reference(cfg: &OptimConfig) -> Vec<Vec<f64>> {
    let mut w: Vec<f64> = W0.iter().map(|&v| v as f64).collect();
    let mut buf: Option<Vec<f64>> = None;
    let mu = cfg.momentum;
    GRADS
        .iter()
        .map(|g| {
            let d: Vec<f64> = g
                .iter()
                .zip(&w)
                .map(|(&g, w)| g as f64 + cfg.weight_decay * w)
                .collect();
            let step: Vec<f64> = if mu > 0.0 {
                let b: Vec<f64> = match &buf {
                    None => d.clone(),
                    Some(b) => b.iter().zip(&d).map(|(b, d)| mu * b + d).collect(),
                };
                let step = if cfg.nesterov {
                    d.iter().zip(&b).map(|(d, b)| d + mu * b).collect()
                } else {
                    b.clone()
                };
                buf = Some(b);
                step
            } else {
                d
            };
            w.iter_mut().zip(&step).for_each(|(w, s)| *w -= LR * s);
            w.clone()
        })
        .collect()
}

/// torch.optim.AdamW: w *= 1 - lr wd; m, v moving averages of g and g^2; the step is
/// lr m^ / (sqrt(v^) + eps) with the bias corrections m^ = m / (1 - b1^t), v^ = v / (1 - b2^t).
fn adamw_reference(cfg: &OptimConfig) -> Vec<Vec<f64>> {
    let mut w: Vec<f64> = W0.iter().map(|&v| v as f64).collect();
    let (mut m, mut v) = (vec![0.0; 6], vec![0.0; 6]);
    let [b1, b2] = cfg.betas;
    GRADS
        .iter()
        .enumerate()
        .map(|(t, g)| {
            let t = (t + 1) as i32;
            for i in 0..6 {
                let g = g[i] as f64;
                w[i] *= 1.0 - LR * cfg.weight_decay;
                m[i] = b1 * m[i] + (1.0 - b1) * g;
                v[i] = b2 * v[i] + (1.0 - b2) * g * g;
                let (mh, vh) = (m[i] / (1.0 - b1.powi(t)), v[i] / (1.0 - b2.powi(t)));
                w[i] -= LR * mh / (vh.sqrt() + cfg.eps);
            }
            w.clone()
        })
        .collect()
}

#[test]
fn sgd_and_adamw_step_as_pytorch_does() {
    let sgd = |momentum: f64, nesterov: bool, weight_decay: f64| OptimConfig {
        name: OptimName::Sgd,
        lr: LR,
        momentum,
        nesterov,
        weight_decay,
        betas: [0.9, 0.999],
        eps: 1e-8,
    };
    let cases = [
        (
            "sgd",
            sgd(0.0, false, 0.0),
            sgd_reference as fn(&OptimConfig) -> _,
        ),
        ("sgd, momentum, decay", sgd(0.9, false, 5e-4), sgd_reference),
        ("sgd, nesterov, decay", sgd(0.9, true, 5e-4), sgd_reference),
        (
            "adamw",
            OptimConfig {
                name: OptimName::Adamw,
                betas: [0.8, 0.99],
                eps: 1e-6,
                ..sgd(0.0, false, 0.05)
            },
            adamw_reference,
        ),
    ];
    for (what, cfg, reference) in cases {
        let (ours, theirs) = (stepped(&cfg), reference(&cfg));
        assert_eq!(ours.len(), 3);
        for (step, (a, b)) in ours.iter().zip(&theirs).enumerate() {
            assert_eq!(a.len(), 6);
            for (x, y) in a.iter().zip(b) {
                assert!(
                    (*x as f64 - y).abs() < 1e-6 * (1.0 + y.abs()),
                    "{what}, step {}: {a:?} vs {b:?}",
                    step + 1
                );
            }
        }
    }
}
