use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::distill::losses::at;
use crate::distill::losses::tests::{Step, registry_loss_on, scalar};

#[test]
fn attention_transfer_reads_the_taps_its_table_gives_it() {
    let device = Device::flex();
    let tap = |seed: u64, c: usize, hw: usize| {
        let v = crate::test_util::uniform(2 * c * hw * hw, seed);
        Tensor::<4>::from_data(TensorData::new(v, [2, c, hw, hw]), &device)
    };
    // Three stages on each side; the teacher wider, as a teacher is.
    let student = [tap(1, 4, 8), tap(2, 8, 4), tap(3, 16, 2)];
    let teacher = [tap(4, 8, 8), tap(5, 16, 4), tap(6, 32, 2)];
    let at_with = |options: &str| {
        let step = Step {
            student_taps: &student,
            teacher_taps: &teacher,
            ..Step::new(options)
        };
        let targets = Tensor::<1, Int>::from_data(TensorData::new(vec![1i64, 2], [2]), &device);
        let soft = targets.clone().one_hot(3).float();
        registry_loss_on("at", &step, &targets, &soft, &Default::default())
    };
    let per_stage: Vec<f64> = (0..3)
        .map(|k| scalar(at::at_loss(student[k].clone(), teacher[k].clone(), true)))
        .collect();
    let close = |a: f64, b: f64| (a - b).abs() < 1e-6 * (1.0 + b.abs());
    // Default: the distilled taps, the deepest two.
    assert!(close(at_with(""), per_stage[1] + per_stage[2]));
    assert!(close(at_with("at = { taps = 1 }"), per_stage[2]));
    // Every stage, and a count beyond the models' taps means all of them.
    let all: f64 = per_stage.iter().sum();
    assert!(close(at_with("at = { taps = 3 }"), all));
    assert!(close(at_with("at = { taps = 9 }"), all));
}

#[test]
fn attention_transfer_normalised_and_raw() {
    let device = Device::flex();
    // One sample, 2 channels, 1x2 maps: A_s = [1+4, 0+9] = [5, 9], A_t = [4+0, 1+1] = [4, 2].
    let s = Tensor::<4>::from_data(
        TensorData::new(vec![1f32, 0., 2., 3.], [1, 2, 1, 2]),
        &device,
    );
    let t = Tensor::<4>::from_data(
        TensorData::new(vec![2f32, 1., 0., 1.], [1, 2, 1, 2]),
        &device,
    );
    let raw = scalar(at::at_loss(s.clone(), t.clone(), false));
    assert!(
        (raw - ((5.0f64 - 4.0).powi(2) + (9.0f64 - 2.0).powi(2)) / 2.0).abs() < 1e-4,
        "{raw}"
    );
    let (ns, nt) = ((25.0f64 + 81.0).sqrt(), (16.0f64 + 4.0).sqrt());
    let want = ((5.0 / ns - 4.0 / nt).powi(2) + (9.0 / ns - 2.0 / nt).powi(2)) / 2.0;
    let got = scalar(at::at_loss(s, t, true));
    assert!((got - want).abs() < 1e-6, "{got} vs {want}");
    // A student map of another size is resized to the teacher's, bilinearly with half-pixel
    // centres (PyTorch's align_corners=False): 4x4 -> 2x2 samples between the pixels, i.e. the
    // mean of each 2x2 block. The student's map is 1..16 (row-major), the teacher's zero.
    let s4 = Tensor::<4>::from_data(
        TensorData::new(
            (1..=16).map(|k| (k as f32).sqrt()).collect::<Vec<_>>(),
            [1, 1, 4, 4],
        ),
        &device,
    );
    let t2 = Tensor::<4>::zeros([1, 3, 2, 2], &device);
    // torch 2.9 F.interpolate(arange(1, 17).view(1, 1, 4, 4), (2, 2), mode="bilinear",
    // align_corners=False) gives these.
    let blocks = [3.5f64, 5.5, 11.5, 13.5];
    let want = blocks.iter().map(|v| v * v).sum::<f64>() / 4.0;
    let got = scalar(at::at_loss(s4, t2, false));
    assert!((got - want).abs() < 1e-3 * want, "{got} vs {want}");
}
