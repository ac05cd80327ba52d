use crate::distill::losses::kd;
use crate::distill::losses::tests::{S, T, kl, scalar, softmax, t2};

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
