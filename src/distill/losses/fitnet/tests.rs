use burn::tensor::{Device, Tensor, TensorData};

use crate::distill::losses::tests::scalar;
use crate::test_util::values;

#[test]
fn fitnet_regressor_resizes_like_pytorch_then_projects_and_is_trained() {
    use crate::distill::losses::fitnet::{hint_loss, regress};
    use burn::module::Module;
    let device = Device::flex().autodiff();
    device.seed(3);
    let reg = crate::models::layers::ConvBn::new(2, 3, 1, 1, 1, &device);
    // A 4x4 student tap and a 2x2 teacher tap: the student is resized by 2x2 block means
    // (bilinear with half-pixel centres at scale 1/2), then projected to 3 channels.
    let x = Tensor::<4>::from_data(
        TensorData::new((0..32).map(|v| v as f32).collect::<Vec<_>>(), [1, 2, 4, 4]),
        &device,
    );
    let means: Vec<f32> = (0..2)
        .flat_map(|c| {
            [(0, 0), (0, 2), (2, 0), (2, 2)].map(|(y, x)| {
                let at = |dy: usize, dx: usize| (c * 16 + (y + dy) * 4 + x + dx) as f32;
                (at(0, 0) + at(0, 1) + at(1, 0) + at(1, 1)) / 4.0
            })
        })
        .collect();
    // Then the 1x1 projection (no bias) and an untrained batch norm in inference mode
    // (mean 0, variance 1, gamma 1, beta 0): W . pooled / sqrt(1 + 1e-5).
    let valid = reg.valid();
    let w = values(valid.conv.weight.val());
    let want: Vec<f32> = (0..3)
        .flat_map(|o| {
            let (w, means) = (&w, &means);
            (0..4).map(move |p| {
                (w[o * 2] * means[p] + w[o * 2 + 1] * means[4 + p]) / (1.0f32 + 1e-5).sqrt()
            })
        })
        .collect();
    let got: Vec<f32> = regress(&valid, x.clone().without_autodiff(), [2, 2])
        .into_data()
        .try_to_vec()
        .unwrap();
    assert_eq!(got.len(), 12);
    for (g, w) in got.iter().zip(&want) {
        assert!(
            (g - w).abs() < 1e-4 * (1.0 + w.abs()),
            "{got:?} vs {want:?}"
        );
    }
    // The hint loss is the mean squared difference, and it trains the projection.
    let teacher: Vec<f32> = (0..12).map(|v| (v as f32 * 0.7).sin()).collect();
    let regressed = regress(&reg, x, [2, 2]);
    let r = values(regressed.clone());
    let mse = r
        .iter()
        .zip(&teacher)
        .map(|(a, b)| ((a - b) as f64).powi(2))
        .sum::<f64>()
        / 12.0;
    let loss = hint_loss(
        regressed,
        Tensor::<4>::from_data(TensorData::new(teacher, [1, 3, 2, 2]), &device),
    );
    assert!((scalar(loss.clone()) - mse).abs() < 1e-5 * (1.0 + mse));
    let grads = loss.backward();
    let g = reg.conv.weight.val().grad(&grads).expect("a gradient");
    assert!(g.abs().sum().into_scalar::<f32>() > 0.0);
}
