use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::distill::losses::ntxent;
use crate::distill::losses::tests::{
    Step, embed, one_tap_parts, registry_loss_on, scalar, t2, tap,
};

#[test]
fn nt_xent_is_simclrs_loss_over_both_sides() {
    // SimCLR's NT-Xent written out: 2B embeddings, each one's positive its partner, the
    // denominator every other embedding; mean over the 2B anchors.
    let zs = [0.6f32, 0.8, 1.0, 0.0];
    let zt = [0.0f32, 1.0, 0.8, -0.6];
    let tau = 0.5;
    let z: Vec<[f64; 2]> = zs
        .chunks(2)
        .chain(zt.chunks(2))
        .map(|c| [c[0] as f64, c[1] as f64])
        .collect();
    let sim = |a: usize, b: usize| (z[a][0] * z[b][0] + z[a][1] * z[b][1]) / tau;
    let mut want = 0.0;
    for i in 0..4 {
        let pos = (i + 2) % 4;
        let denom: f64 = (0..4).filter(|&k| k != i).map(|k| sim(i, k).exp()).sum();
        want += -(sim(i, pos).exp() / denom).ln();
    }
    want /= 4.0;
    let got = scalar(ntxent::nt_xent(t2(&zs, [2, 2]), t2(&zt, [2, 2]), tau));
    assert!((got - want).abs() < 1e-5, "{got} vs {want}");
}

#[test]
fn ntxent_through_the_registry_embeds_the_student_and_the_teachers_second_view() {
    let device = Device::flex();
    let text = "ntxent = { feat_dim = 3, temperature = 0.5 }";
    let parts = one_tap_parts("ntxent", text);
    // The teacher's taps of the first view are not what it reads: they differ from the second.
    let (student, first, second) = ([tap(1, 2)], [tap(2, 4)], [tap(3, 4)]);
    let mut z = embed(&parts.linears[0], &student[0]);
    z.extend(embed(&parts.linears[1], &second[0]));
    // SimCLR over the 4 embeddings: each one's positive is its partner on the other side, the
    // softmax over every other embedding.
    let sim = |i: usize, j: usize| (0..3).map(|d| z[i][d] * z[j][d]).sum::<f64>() / 0.5;
    let want = (0..4)
        .map(|i| {
            let others: f64 = (0..4).filter(|&j| j != i).map(|j| sim(i, j).exp()).sum();
            -(sim(i, (i + 2) % 4).exp() / others).ln()
        })
        .sum::<f64>()
        / 4.0;
    let targets = Tensor::<1, Int>::from_data(TensorData::new(vec![1i64, 2], [2]), &device);
    let soft = targets.clone().one_hot(3).float();
    let step = Step {
        student_taps: &student,
        teacher_taps: &first,
        teacher_view_taps: &second,
        taps: 1,
        samples: &[3, 7],
        ..Step::new(text)
    };
    let got = registry_loss_on("ntxent", &step, &targets, &soft, &parts);
    assert!(
        (got - want).abs() < 1e-5 * (1.0 + want.abs()),
        "{got} vs {want}"
    );
}
