use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::distill::losses::dkd;
use crate::distill::losses::tests::{
    S, Step, T, kl, registry_loss, registry_loss_on, scalar, softmax, t2,
};

#[test]
fn dkd_warms_up_linearly_over_its_share_of_the_run() {
    let full = registry_loss("dkd", "", 1.0, 0.5);
    for (progress, factor) in [(0.025, 0.25), (0.05, 0.5), (0.1, 1.0), (0.8, 1.0)] {
        let got = registry_loss("dkd", "dkd = { warmup = 0.1 }", 1.0, progress);
        assert!(
            (got - factor * full).abs() < 1e-6,
            "progress {progress}: {got} vs {factor} x {full}"
        );
    }
    assert!(full > 1e-3);
}

#[test]
fn dkd_splits_into_target_and_non_target_parts() {
    let temp = 2.0;
    let targets = Tensor::<1, Int>::from_data(TensorData::new(vec![1i64, 2], [2]), &Device::flex());
    let parts = dkd::dkd_parts(t2(&S, [2, 3]), t2(&T, [2, 3]), targets.clone(), temp);
    let (mut tckd, mut nckd) = (0.0, 0.0);
    for (r, y) in [(0usize, 1usize), (1, 2)] {
        let s: Vec<f64> = S[r * 3..r * 3 + 3].iter().map(|&v| v as f64).collect();
        let t: Vec<f64> = T[r * 3..r * 3 + 3].iter().map(|&v| v as f64).collect();
        let (ps, pt) = (softmax(&s, temp), softmax(&t, temp));
        tckd += kl(&[pt[y], 1.0 - pt[y]], &[ps[y], 1.0 - ps[y]]);
        let rest = |p: &[f64]| -> Vec<f64> {
            let o: Vec<f64> = (0..3).filter(|&k| k != y).map(|k| p[k]).collect();
            let z: f64 = o.iter().sum();
            o.iter().map(|v| v / z).collect()
        };
        nckd += kl(&rest(&pt), &rest(&ps));
    }
    let scale = temp * temp / 2.0;
    let (gt, gn) = (scalar(parts.tckd), scalar(parts.nckd));
    assert!(
        (gt - tckd * scale).abs() < 1e-5,
        "tckd {gt} vs {}",
        tckd * scale
    );
    assert!(
        (gn - nckd * scale).abs() < 1e-5,
        "nckd {gn} vs {}",
        nckd * scale
    );
    let total = scalar(dkd::dkd_loss(
        t2(&S, [2, 3]),
        t2(&T, [2, 3]),
        targets,
        temp,
        2.0,
        8.0,
    ));
    assert!((total - scale * (2.0 * tckd + 8.0 * nckd)).abs() < 1e-4);
}

#[test]
fn dkd_under_tmix_splits_on_the_class_holding_most_of_the_mixed_label() {
    let device = Device::flex();
    let (s, t) = (t2(&S, [2, 3]), t2(&T, [2, 3]));
    // Sample 0 is mostly class 2 after mixing although its image was labelled 1.
    let hard = Tensor::<1, Int>::from_data(TensorData::new(vec![1i64, 0], [2]), &device);
    let soft = t2(&[0.0, 0.3, 0.7, 1.0, 0.0, 0.0], [2, 3]);
    let mixed = Tensor::<1, Int>::from_data(TensorData::new(vec![2i64, 0], [2]), &device);
    let got = registry_loss_on("dkd", &Step::new(""), &hard, &soft, &Default::default());
    // DKD's paper's weights and temperature, its defaults.
    let (a, b, temp) = (1.0, 8.0, 4.0);
    let want = scalar(dkd::dkd_loss(s.clone(), t.clone(), mixed, temp, a, b));
    let with_hard = scalar(dkd::dkd_loss(s, t, hard, temp, a, b));
    assert!(
        (got - want).abs() < 1e-6 && (got - with_hard).abs() > 1e-4,
        "{got} {want} {with_hard}"
    );
}
