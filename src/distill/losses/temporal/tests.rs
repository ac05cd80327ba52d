use burn::tensor::{Device, Tensor, TensorData};

use crate::distill::losses::temporal;
use crate::distill::losses::tests::scalar;
use crate::test_util::values;

#[test]
fn temporal_loss_is_per_sample_l2_norm_of_h_and_c() {
    let device = Device::flex();
    // States [layers*dirs = 2, B = 2, hidden = 2].
    let hs = Tensor::<3>::from_data(
        TensorData::new(vec![3f32, 0., 1., 1., 4., 0., 1., 1.], [2, 2, 2]),
        &device,
    );
    let zeros = Tensor::<3>::zeros([2, 2, 2], &device);
    let cs = Tensor::<3>::ones([2, 2, 2], &device);
    // Sample 0: h entries (3,0) and (4,0) -> norm 5; sample 1: four ones -> 2. c: norm 2 each.
    let got = scalar(temporal::temporal_loss(
        hs.clone(),
        cs.clone(),
        zeros.clone(),
        zeros.clone(),
        false,
    ));
    assert!(
        (got - ((5.0 + 2.0) + (2.0 + 2.0)) / 2.0).abs() < 1e-5,
        "{got}"
    );
    // Relative to a teacher whose h is 2 everywhere (norm 4 per sample) and c 0.5 (norm 1).
    let h_t = zeros.clone().add_scalar(2.0);
    let c_t = zeros.add_scalar(0.5);
    // h_s - h_t per sample: sample 0 (1,-2) and (2,-2): norm sqrt(1+4+4+4) = sqrt(13);
    // sample 1: four -1s: norm 2. c_s - c_t: four 0.5s: norm 1 per sample.
    let want = ((13f64.sqrt() / 4.0 + 1.0 / 1.0) + (2.0 / 4.0 + 1.0 / 1.0)) / 2.0;
    let got = scalar(temporal::temporal_loss(hs, cs, h_t, c_t, true));
    assert!((got - want).abs() < 1e-5, "{got} vs {want}");
}

#[test]
fn temporal_loss_has_finite_gradients_when_the_states_already_match() {
    let device = Device::flex().autodiff();
    let h = Tensor::<3>::ones([2, 3, 4], &device).require_grad();
    let c = Tensor::<3>::ones([2, 3, 4], &device).require_grad();
    let target = Tensor::<3>::ones([2, 3, 4], &device);
    let loss = temporal::temporal_loss(h.clone(), c.clone(), target.clone(), target, false);
    let grads = loss.backward();
    // At a minimum of a smoothed norm the gradient is zero, not NaN (sqrt'(0)) or a sub-gradient.
    for g in [h.grad(&grads).unwrap(), c.grad(&grads).unwrap()] {
        let v = values(g);
        assert!(v.iter().all(|x| *x == 0.0), "{v:?}");
    }
}
