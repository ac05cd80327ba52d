use crate::distill::losses::ce;
use crate::distill::losses::tests::{S, scalar, softmax, t2};

#[test]
fn soft_cross_entropy_matches_hard_ce_on_one_hot_targets() {
    let onehot = t2(&[0., 1., 0., 0., 0., 1.], [2, 3]);
    let got = scalar(ce::soft_cross_entropy(t2(&S, [2, 3]), onehot));
    let p0 = softmax(&[1.0, 2.0, 0.5], 1.0)[1];
    let p1 = softmax(&[-1.0, 0.0, 3.0], 1.0)[2];
    let want = -(p0.ln() + p1.ln()) / 2.0;
    assert!((got - want).abs() < 1e-5, "{got} vs {want}");
}

#[test]
fn cross_entropy_counts_only_the_labelled_rows() {
    // Rows 0 and 2 labelled (classes 1 and 0), row 1 without a label (a zero row).
    let logits = [0.5f32, 1.5, -1.0, 2.0, 0.0, 0.0, 0.3, 0.3, 0.9];
    let soft = [0f32, 1., 0., 0., 0., 0., 1., 0., 0.];
    let lse = |r: &[f32]| r.iter().map(|&v| (v as f64).exp()).sum::<f64>().ln();
    let want = ((lse(&logits[0..3]) - 1.5) + (lse(&logits[6..9]) - 0.3)) / 2.0;
    let got = scalar(ce::soft_cross_entropy(
        t2(&logits, [3, 3]),
        t2(&soft, [3, 3]),
    ));
    assert!((got - want).abs() < 1e-5, "{got} vs {want}");
    // No label in the batch: nothing to learn from CE.
    let none = scalar(ce::soft_cross_entropy(
        t2(&logits, [3, 3]),
        t2(&[0.; 9], [3, 3]),
    ));
    assert_eq!(none, 0.0);
}
