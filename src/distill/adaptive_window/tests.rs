//! The adaptive window: windows from the teacher's entropy, and grouped extraction against
//! each sample read alone.

use burn::module::Module;
use burn::tensor::{Device, Distribution, Tensor, TensorData};

use super::AdaptiveWindow;
use crate::distill::extractor::ExtractorConfig;
use crate::test_util::values;

#[test]
fn windows_follow_the_entropy_of_the_teachers_softmax() {
    let a = AdaptiveWindow {
        table: vec![(0.05, 2), (0.5, 3)],
        top: 5,
    };
    // Entropies written out: softmax([8, 0, 0]) = (0.9993, 0.0003, 0.0003), H = 0.0060;
    // softmax([2, 0, 0]) = (0.7870, 0.1065, 0.1065), H = 0.6656; uniform, H = ln 3 = 1.0986;
    // softmax([3, 0, 0]) = (0.9094, 0.0453, 0.0453), H = 0.3666.
    let logits = Tensor::<2>::from_data(
        TensorData::new(
            vec![8f32, 0., 0., 2., 0., 0., 0., 0., 0., 3., 0., 0.],
            [4, 3],
        ),
        &Device::flex(),
    );
    assert_eq!(a.windows(&logits), [2, 5, 5, 3]);
    assert!(
        AdaptiveWindow {
            table: vec![(0.5, 2), (0.1, 3)],
            top: 4
        }
        .validate()
        .is_err()
    );
    assert!(
        AdaptiveWindow {
            table: vec![],
            top: 0
        }
        .validate()
        .is_err()
    );
}

#[test]
fn grouped_windows_equal_each_sample_read_alone() {
    let device = Device::flex();
    let cfg = ExtractorConfig {
        conv_channels: 4,
        hidden: 3,
        layers: 2,
        ..Default::default()
    };
    let e = cfg.init(2, 5, 1, &device).valid();
    let windows = [2, 4, 2, 1, 4];
    let f = Tensor::<4>::random([5, 2, 6, 3], Distribution::Default, &device);
    let all = e.forward_windows(f.clone(), &windows);
    let (hidden, cell) = (values(all.hidden), values(all.cell));
    let logits = values(all.aux_logits);
    for (i, &w) in windows.iter().enumerate() {
        let one = e.forward_window(f.clone().slice([i..i + 1, 0..2, 0..6, 0..3]), None, w);
        let (h1, c1) = (values(one.hidden), values(one.cell));
        let l1 = values(one.aux_logits);
        // States are [layers x 2, B, hidden]: sample i's slice of each row.
        for r in 0..4 {
            for k in 0..3 {
                assert!((hidden[(r * 5 + i) * 3 + k] - h1[r * 3 + k]).abs() < 1e-5);
                assert!((cell[(r * 5 + i) * 3 + k] - c1[r * 3 + k]).abs() < 1e-5);
            }
        }
        for k in 0..5 {
            assert!((logits[i * 5 + k] - l1[k]).abs() < 1e-5, "sample {i}");
        }
    }
}
