//! flex's element-wise arithmetic on tensors large enough to run on the thread pool
//! (vendor/burn-flex: dense and broadcast operands, written in place on either side or into a
//! new buffer), against the same f32 operation done element by element on the host: exact
//! equality.

use burn::tensor::{Device, Tensor, TensorData};

use crate::common::uniform;

const SHAPE: [usize; 4] = [64, 16, 28, 28];

/// Values in [0.5, 2.5): no division by zero, so every result is an ordinary float.
fn values(n: usize, seed: u64) -> Vec<f32> {
    uniform(n, seed).into_iter().map(|v| v + 1.5).collect()
}

fn tensor(v: &[f32], shape: [usize; 4], device: &Device) -> Tensor<4> {
    Tensor::from_data(TensorData::new(v.to_vec(), shape), device)
}

/// Host result of `op` over `x` (dense, SHAPE) and `b` broadcast from `bshape`.
fn host(x: &[f32], b: &[f32], bshape: [usize; 4], op: impl Fn(f32, f32) -> f32) -> Vec<f32> {
    let [n, c, h, w] = SHAPE;
    let mut out = Vec::with_capacity(x.len());
    for i in 0..n {
        for j in 0..c {
            for k in 0..h * w {
                let bi = (if bshape[0] == 1 { 0 } else { i }) * bshape[1]
                    + if bshape[1] == 1 { 0 } else { j };
                let bv = if bshape[2] == 1 {
                    b[bi]
                } else {
                    b[bi * h * w + k]
                };
                out.push(op(x[(i * c + j) * h * w + k], bv));
            }
        }
    }
    out
}

fn assert_same(got: Tensor<4>, want: &[f32], what: &str) {
    let got: Vec<f32> = got.into_data().iter::<f32>().collect();
    assert_eq!(got.len(), want.len(), "{what}: length");
    let bad = got
        .iter()
        .zip(want)
        .position(|(a, b)| a.to_bits() != b.to_bits());
    assert!(
        bad.is_none(),
        "{what}: element {:?} differs",
        bad.map(|i| (i, got[i], want[i]))
    );
}

#[test]
fn large_elementwise_arithmetic_equals_the_host_element_by_element() {
    let device = Device::flex();
    let numel: usize = SHAPE.iter().product();
    let xv = values(numel, 1);
    let yv = values(numel, 2);
    for bshape in [[1, 16, 1, 1], [64, 1, 1, 1], [64, 16, 1, 1]] {
        let bv = values(bshape.iter().product(), 3);
        let what = format!("broadcast {bshape:?}");
        // The dense operand is unique: written in place as the left operand ...
        let got = tensor(&xv, SHAPE, &device) / tensor(&bv, bshape, &device);
        assert_same(
            got,
            &host(&xv, &bv, bshape, |a, b| a / b),
            &format!("x / b, {what}"),
        );
        // ... and as the right one (the operation flipped back).
        let got = tensor(&bv, bshape, &device) - tensor(&xv, SHAPE, &device);
        assert_same(
            got,
            &host(&xv, &bv, bshape, |a, b| b - a),
            &format!("b - x, {what}"),
        );
        let got = tensor(&xv, SHAPE, &device) * tensor(&bv, bshape, &device);
        assert_same(
            got,
            &host(&xv, &bv, bshape, |a, b| a * b),
            &format!("x * b, {what}"),
        );
        // Both operands shared (kept for later use): the result goes to a new buffer.
        let (x, b) = (tensor(&xv, SHAPE, &device), tensor(&bv, bshape, &device));
        let got = x.clone() - b.clone();
        assert_same(
            got,
            &host(&xv, &bv, bshape, |a, b| a - b),
            &format!("x - b, {what}, shared"),
        );
        let got = b.clone() / x.clone();
        assert_same(
            got,
            &host(&xv, &bv, bshape, |a, b| b / a),
            &format!("b / x, {what}, shared"),
        );
        drop((x, b));
    }
    // Dense and dense: in place on the left, then on the right while the left is shared.
    let x = tensor(&xv, SHAPE, &device);
    let y = tensor(&yv, SHAPE, &device);
    let want = |op: fn(f32, f32) -> f32| -> Vec<f32> {
        xv.iter().zip(&yv).map(|(&a, &b)| op(a, b)).collect()
    };
    assert_same(
        x.clone() - y.clone(),
        &want(|a, b| a - b),
        "x - y, x shared",
    );
    assert_same(
        x.clone() / y.clone(),
        &want(|a, b| a / b),
        "x / y, x shared",
    );
    assert_same(x.clone() + y.clone(), &want(|a, b| a + b), "x + y");
    assert_same(x * y, &want(|a, b| a * b), "x * y, both unique");
}

/// Unary functions on the pool (vendor/burn-flex's `unary_op`): ReLU in place on a unique
/// tensor and into a new buffer from a shared one, a transposed view in storage order, and a
/// negation, each against the host, bit for bit. The values straddle zero so that ReLU
/// clears about half of them.
#[test]
fn large_unary_functions_equal_the_host_element_by_element() {
    let device = Device::flex();
    let numel: usize = SHAPE.iter().product();
    let xv: Vec<f32> = uniform(numel, 4);
    let relu =
        |v: &[f32]| -> Vec<f32> { v.iter().map(|&a| if a > 0.0 { a } else { 0.0 }).collect() };
    let act = burn::tensor::activation::relu;
    assert_same(
        act(tensor(&xv, SHAPE, &device)),
        &relu(&xv),
        "relu in place",
    );
    let x = tensor(&xv, SHAPE, &device);
    assert_same(act(x.clone()), &relu(&xv), "relu of a shared tensor");
    // [64, 16, 28, 28] viewed as [64, 16, 28, 28] with the last two axes swapped: the function
    // runs in storage order and the view keeps its strides.
    let swapped = act(x.clone().swap_dims(2, 3)).swap_dims(2, 3);
    assert_same(swapped, &relu(&xv), "relu of a transposed view");
    let neg: Vec<f32> = xv.iter().map(|a| -a).collect();
    assert_same(x.neg(), &neg, "negation of a shared tensor");
}

/// `mask_fill` on the pool (vendor/burn-flex; ReLU6's clamp masks through it), in place on a
/// dense tensor with a dense mask and with a mask broadcast over the channels, against the host.
#[test]
fn large_mask_fill_equals_the_host_element_by_element() {
    let device = Device::flex();
    let numel: usize = SHAPE.iter().product();
    let xv: Vec<f32> = uniform(numel, 5);
    let x = tensor(&xv, SHAPE, &device);
    let mask = x.clone().lower_elem(0.25);
    let want: Vec<f32> = xv
        .iter()
        .map(|&a| if a < 0.25 { -7.0 } else { a })
        .collect();
    assert_same(x.mask_fill(mask, -7.0), &want, "dense mask");
    let [n, c, h, w] = SHAPE;
    let mv: Vec<f32> = uniform(n * h * w, 6);
    let mask = Tensor::<4>::from_data(TensorData::new(mv.clone(), [n, 1, h, w]), &device)
        .greater_elem(0.0);
    let want: Vec<f32> = (0..numel)
        .map(|k| {
            let (i, p) = (k / (c * h * w), k % (h * w));
            if mv[i * h * w + p] > 0.0 { 3.5 } else { xv[k] }
        })
        .collect();
    assert_same(
        tensor(&xv, SHAPE, &device).mask_fill(mask, 3.5),
        &want,
        "mask broadcast over channels",
    );
}
