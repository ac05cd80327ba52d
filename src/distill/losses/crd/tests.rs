use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::distill::losses::tests::{
    Step, embed, host, one_tap_parts, registry_loss_on, scalar, t2, tap,
};

#[test]
fn crd_nce_loss_matches_repdistillers_formula() {
    // Scores of 2 anchors, the positive first and 3 negatives, against a memory of 50 rows.
    let x = [0.9f32, 0.1, 0.3, 0.05, 0.4, 0.2, 0.7, 0.01];
    let n = 50.0;
    let m_pn = 3.0 / n;
    let eps = 1e-7;
    let mut want = 0.0;
    for r in 0..2 {
        let row: Vec<f64> = x[r * 4..r * 4 + 4].iter().map(|&v| v as f64).collect();
        want += (row[0] / (row[0] + m_pn + eps)).ln();
        for &neg in &row[1..] {
            want += (m_pn / (neg + m_pn + eps)).ln();
        }
    }
    want = -want / 2.0;
    let got = scalar(crate::distill::losses::crd::nce_loss(t2(&x, [2, 4]), 50));
    assert!(
        (got - want).abs() < 1e-5 * (1.0 + want.abs()),
        "{got} vs {want}"
    );
}

#[test]
fn crd_contrasts_each_image_with_uniform_others_drawn_from_its_seed() {
    use crate::distill::losses::crd::contrast_indices;
    let samples = [3, 0, 9];
    let idx = contrast_indices(&samples, 10, 200, 7);
    assert_eq!(idx.len(), 3 * 201);
    let mut counts = [0usize; 10];
    for (r, &s) in samples.iter().enumerate() {
        let row = &idx[r * 201..(r + 1) * 201];
        assert_eq!(row[0], s, "the positive is the image's own row");
        for &j in &row[1..] {
            assert!(j < 10 && j != s, "row {r}: {j}");
            counts[j] += 1;
        }
    }
    // 600 draws over 10 rows, each row excluded from its own image's 200: about 60-67 each.
    assert!(counts.iter().all(|&c| (35..100).contains(&c)), "{counts:?}");
    assert_eq!(idx, contrast_indices(&samples, 10, 200, 7));
    assert_ne!(idx, contrast_indices(&samples, 10, 200, 8));
}

#[test]
fn crd_memory_moves_its_rows_towards_the_batch_and_renormalises() {
    let device = Device::flex();
    let memory = t2(&[1.0, 0.0, 0.0, 1.0, 0.6, 0.8], [3, 2]);
    let rows = Tensor::<1, Int>::from_data(TensorData::new(vec![2i64, 0], [2]), &device);
    let v = t2(&[0.0, 1.0, 0.0, -1.0], [2, 2]);
    let got: Vec<f32> = crate::distill::losses::crd::updated_memory(memory, rows, v, 0.5)
        .into_data()
        .iter::<f32>()
        .collect();
    // Row 2: 0.5 [0.6, 0.8] + 0.5 [0, 1] = [0.3, 0.9], normalised; row 0: [0.5, -0.5].
    let n2 = (0.3f32 * 0.3 + 0.9 * 0.9).sqrt();
    let n0 = 0.5f32.sqrt();
    let want = [0.5 / n0, -0.5 / n0, 0.0, 1.0, 0.3 / n2, 0.9 / n2];
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() < 1e-6, "{got:?} vs {want:?}");
    }
}

#[test]
fn crd_through_the_registry_scores_each_side_against_the_others_memory() {
    use crate::distill::losses::crd::contrast_indices;
    let device = Device::flex();
    let parts = one_tap_parts("crd", "crd = { feat_dim = 3, negatives = 4 }");
    let (student, teacher) = ([tap(1, 2)], [tap(2, 4)]);
    // Host copies before the step moves the memories.
    let (mem_s, mem_t) = (host(parts.states[0].value()), host(parts.states[1].value()));
    let (v_s, v_t) = (
        embed(&parts.linears[0], &student[0]),
        embed(&parts.linears[1], &teacher[0]),
    );
    let samples = [3usize, 7];
    let idx = contrast_indices(&samples, 10, 4, 5);
    let scores = |memory: &[Vec<f64>], v: &[Vec<f64>]| -> Vec<Vec<f64>> {
        (0..2)
            .map(|r| {
                (0..5)
                    .map(|j| {
                        let row = &memory[idx[r * 5 + j]];
                        ((0..3).map(|d| row[d] * v[r][d]).sum::<f64>() / 0.07).exp()
                    })
                    .collect()
            })
            .collect()
    };
    let nce = |x: &[Vec<f64>]| -> f64 {
        // RepDistiller: the mean score over the B x (K + 1) entries times the memory size.
        let z = x.iter().flatten().sum::<f64>() / (2.0 * 5.0) * 10.0;
        let m_pn = 4.0 / 10.0;
        let mut total = 0.0;
        for row in x {
            let p = row[0] / z;
            total += (p / (p + m_pn + 1e-7)).ln();
            for &neg in &row[1..] {
                total += (m_pn / (neg / z + m_pn + 1e-7)).ln();
            }
        }
        -total / 2.0
    };
    let want = nce(&scores(&mem_t, &v_s)) + nce(&scores(&mem_s, &v_t));
    let targets = Tensor::<1, Int>::from_data(TensorData::new(vec![1i64, 2], [2]), &device);
    let soft = targets.clone().one_hot(3).float();
    let step = Step {
        student_taps: &student,
        teacher_taps: &teacher,
        taps: 1,
        samples: &samples,
        step_seed: 5,
        ..Step::new("crd = { feat_dim = 3, negatives = 4 }")
    };
    let got = registry_loss_on("crd", &step, &targets, &soft, &parts);
    assert!(
        (got - want).abs() < 1e-4 * (1.0 + want.abs()),
        "{got} vs {want}"
    );
    // The step moved each image's own memory rows towards its embedding (momentum 0.5).
    let after = host(parts.states[0].value());
    for (r, &s) in samples.iter().enumerate() {
        let mixed: Vec<f64> = (0..3)
            .map(|d| 0.5 * mem_s[s][d] + 0.5 * v_s[r][d])
            .collect();
        let norm = mixed.iter().map(|v| v * v).sum::<f64>().sqrt();
        for d in 0..3 {
            assert!((after[s][d] - mixed[d] / norm).abs() < 1e-5, "row {s}");
        }
    }
    assert_eq!(after[0], mem_s[0], "rows of other images stay");
    // Z was fixed by the first step and is not set again.
    let z = host(parts.states[2].value())[0].clone();
    let again = registry_loss_on("crd", &step, &targets, &soft, &parts);
    assert_eq!(host(parts.states[2].value())[0], z);
    assert!(again.is_finite());
}
