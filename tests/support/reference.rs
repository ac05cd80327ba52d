//! Reference helpers shared by the unit tests (`crate::test_util` in src/lib.rs) and the
//! integration suite (`crate::reference`): host values, deterministic inputs, and KD / DKD
//! written out in f64. One file included by both, so the formulas exist once.

// Each side uses a part of these.
#![allow(dead_code)]

/// A tensor's values on the host, in row-major order.
pub fn values<const D: usize>(t: burn::tensor::Tensor<D>) -> Vec<f32> {
    t.into_data().iter::<f32>().collect()
}

/// `n` deterministic floats in [-1, 1) (xorshift64) for numeric tests.
pub fn uniform(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

/// Row-wise softmax of `x / temp` in f64.
pub fn softmax_rows(x: &[f32], k: usize, temp: f64) -> Vec<Vec<f64>> {
    x.chunks(k)
        .map(|row| {
            let m = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64;
            let e: Vec<f64> = row.iter().map(|&v| ((v as f64 - m) / temp).exp()).collect();
            let z: f64 = e.iter().sum();
            e.iter().map(|v| v / z).collect()
        })
        .collect()
}

/// KL(p || q) of two distributions.
fn kl(p: &[f64], q: &[f64]) -> f64 {
    p.iter().zip(q).map(|(a, b)| a * (a / b).ln()).sum()
}

/// KD written out (Hinton et al.): T^2 x batch mean of KL(softmax(t/T) || softmax(s/T)).
pub fn kd_reference(s: &[f32], t: &[f32], k: usize, temp: f64) -> f64 {
    let (ps, pt) = (softmax_rows(s, k, temp), softmax_rows(t, k, temp));
    let total: f64 = pt.iter().zip(&ps).map(|(p, q)| kl(p, q)).sum();
    temp * temp * total / ps.len() as f64
}

/// The DKD loss written out (Zhao et al. 2022): T^2 x batch mean of alpha x KL on the
/// (target, rest) split plus beta x KL among the non-target classes.
pub fn dkd_reference(
    s: &[f32],
    t: &[f32],
    y: &[usize],
    k: usize,
    temp: f64,
    (alpha, beta): (f64, f64),
) -> f64 {
    let (ps, pt) = (softmax_rows(s, k, temp), softmax_rows(t, k, temp));
    let mut total = 0.0;
    for (r, &c) in y.iter().enumerate() {
        let (ps, pt) = (&ps[r], &pt[r]);
        let tckd = kl(&[pt[c], 1.0 - pt[c]], &[ps[c], 1.0 - ps[c]]);
        let rest = |p: &[f64]| -> Vec<f64> {
            let z = 1.0 - p[c];
            (0..k).filter(|&j| j != c).map(|j| p[j] / z).collect()
        };
        total += alpha * tckd + beta * kl(&rest(pt), &rest(ps));
    }
    temp * temp * total / y.len() as f64
}
