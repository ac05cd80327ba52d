//! flex's fused batch norm (training mode forward and backward through burn's autodiff, and
//! inference with given statistics) against the normalisation written out on the host in f64.

use burn::tensor::module::{batch_norm, batch_norm_train};
use burn::tensor::{DType, Device, Tensor, TensorData};

use crate::common::uniform;

const EPS: f64 = 1e-5;

/// Per channel of `[n, c, rest]` data: every flat index belonging to it.
fn channel_indices(shape: &[usize], c: usize) -> Vec<usize> {
    let channels = shape[1];
    let run: usize = shape[2..].iter().product();
    (0..shape[0])
        .flat_map(|n| {
            let start = (n * channels + c) * run;
            start..start + run
        })
        .collect()
}

struct Reference {
    y: Vec<f64>,
    mean: Vec<f64>,
    var: Vec<f64>,
    dx: Vec<f64>,
    dgamma: Vec<f64>,
    dbeta: Vec<f64>,
}

/// y = (x - mean) / sqrt(var + eps) * gamma + beta with the batch's biased statistics, and the
/// gradients of sum(y * r).
fn reference(shape: &[usize], x: &[f32], gamma: &[f32], beta: &[f32], r: &[f32]) -> Reference {
    let channels = shape[1];
    let mut out = Reference {
        y: vec![0.0; x.len()],
        mean: vec![0.0; channels],
        var: vec![0.0; channels],
        dx: vec![0.0; x.len()],
        dgamma: vec![0.0; channels],
        dbeta: vec![0.0; channels],
    };
    for c in 0..channels {
        let idx = channel_indices(shape, c);
        let m = idx.len() as f64;
        let mean = idx.iter().map(|&i| x[i] as f64).sum::<f64>() / m;
        let var = idx
            .iter()
            .map(|&i| (x[i] as f64 - mean).powi(2))
            .sum::<f64>()
            / m;
        let inv_std = 1.0 / (var + EPS).sqrt();
        let xhat = |i: usize| (x[i] as f64 - mean) * inv_std;
        let sum_r: f64 = idx.iter().map(|&i| r[i] as f64).sum();
        let sum_r_xhat: f64 = idx.iter().map(|&i| r[i] as f64 * xhat(i)).sum();
        for &i in &idx {
            out.y[i] = xhat(i) * gamma[c] as f64 + beta[c] as f64;
            out.dx[i] =
                gamma[c] as f64 * inv_std / m * (m * r[i] as f64 - sum_r - xhat(i) * sum_r_xhat);
        }
        out.mean[c] = mean;
        out.var[c] = var;
        out.dgamma[c] = sum_r_xhat;
        out.dbeta[c] = sum_r;
    }
    out
}

fn close(got: Vec<f64>, want: &[f64], tolerance: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}");
    let scale = want.iter().fold(1f64, |m, v| m.max(v.abs()));
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tolerance * scale,
            "{what}[{i}]: {g} vs {w} (scale {scale})"
        );
    }
}

fn host<const D: usize>(t: Tensor<D>) -> Vec<f64> {
    match t.dtype() {
        DType::F64 => t.into_data().iter::<f64>().collect(),
        _ => t.into_data().iter::<f32>().map(|v| v as f64).collect(),
    }
}

/// Training mode on `shape` (rank 2 to 4), optionally from a non-contiguous view and in f64.
fn check<const D: usize>(shape: [usize; D], transposed: bool, dtype: DType) {
    let device = Device::flex().autodiff();
    let channels = shape[1];
    let n: usize = shape.iter().product();
    let (xv, rv) = (uniform(n, 11), uniform(n, 12));
    // Not centred on 0, so that the mean and the centring are exercised.
    let xv: Vec<f32> = xv.iter().map(|v| 3.0 * v + 0.5).collect();
    let gv: Vec<f32> = uniform(channels, 13).iter().map(|v| v + 1.5).collect();
    let bv = uniform(channels, 14);
    let tensor = |values: &[f32], shape: [usize; D]| {
        Tensor::<D>::from_data(TensorData::new(values.to_vec(), shape), (&device, dtype))
    };
    let x = if transposed {
        // The same values, stored with the batch and channel axes swapped.
        let mut swapped_shape = shape;
        swapped_shape.swap(0, 1);
        let run: usize = shape[2..].iter().product();
        let mut swapped = vec![0f32; n];
        for (i, v) in xv.iter().enumerate() {
            let (b, c, s) = (i / (channels * run), i / run % channels, i % run);
            swapped[(c * shape[0] + b) * run + s] = *v;
        }
        let t = tensor(&swapped, swapped_shape).require_grad();
        (t.clone(), t.swap_dims(0, 1))
    } else {
        let t = tensor(&xv, shape).require_grad();
        (t.clone(), t)
    };
    let vector = |values: &[f32]| {
        Tensor::<1>::from_data(
            TensorData::new(values.to_vec(), [channels]),
            (&device, dtype),
        )
    };
    let (gamma, beta) = (vector(&gv).require_grad(), vector(&bv).require_grad());
    let out = batch_norm_train(x.1, gamma.clone(), beta.clone(), EPS);
    assert_eq!(out.output.dtype(), dtype);
    let grads = (out.output.clone() * tensor(&rv, shape)).sum().backward();
    let want = reference(&shape, &xv, &gv, &bv, &rv);
    let tolerance = if dtype == DType::F64 { 1e-12 } else { 2e-5 };
    let what = format!("{shape:?} transposed {transposed} {dtype:?}");
    close(
        host(out.output),
        &want.y,
        tolerance,
        &format!("{what}: output"),
    );
    close(
        host(out.mean),
        &want.mean,
        tolerance,
        &format!("{what}: mean"),
    );
    close(
        host(out.variance),
        &want.var,
        tolerance,
        &format!("{what}: variance"),
    );
    let mut dx = host(x.0.grad(&grads).unwrap());
    if transposed {
        let run: usize = shape[2..].iter().product();
        let stored = dx.clone();
        for (i, d) in dx.iter_mut().enumerate() {
            let (b, c, s) = (i / (channels * run), i / run % channels, i % run);
            *d = stored[(c * shape[0] + b) * run + s];
        }
    }
    close(dx, &want.dx, tolerance, &format!("{what}: input gradient"));
    close(
        host(gamma.grad(&grads).unwrap()),
        &want.dgamma,
        tolerance,
        &format!("{what}: gamma gradient"),
    );
    close(
        host(beta.grad(&grads).unwrap()),
        &want.dbeta,
        tolerance,
        &format!("{what}: beta gradient"),
    );
}

#[test]
fn training_mode_batch_norm_and_its_gradients_match_the_written_out_formula() {
    // Runs that are not a multiple of the eight accumulator lanes.
    check([4, 3, 5, 7], false, DType::F32);
    // BatchNorm1d on [batch, features]: runs of one element.
    check([6, 5], false, DType::F32);
    check([3, 4, 9], false, DType::F32);
    // Over the size at which both passes go to the thread pool.
    check([8, 16, 33, 33], false, DType::F32);
    // A channel-major view (swap_dims) is read through its strides.
    check([5, 3, 4, 6], true, DType::F32);
    check([4, 3, 5, 7], false, DType::F64);
}

#[test]
fn inference_batch_norm_uses_the_given_statistics() {
    let device = Device::flex();
    let shape = [3, 4, 5, 5];
    let n: usize = shape.iter().product();
    let xv = uniform(n, 21);
    let [gv, bv, mv] = [22, 23, 24].map(|s| uniform(4, s));
    let vv: Vec<f32> = uniform(4, 25).iter().map(|v| v + 1.2).collect();
    let vector = |v: &[f32]| Tensor::<1>::from_data(TensorData::new(v.to_vec(), [4]), &device);
    let y = batch_norm(
        Tensor::<4>::from_data(TensorData::new(xv.clone(), shape), &device),
        vector(&gv),
        vector(&bv),
        vector(&mv),
        vector(&vv),
        EPS,
    );
    let want: Vec<f64> = (0..n)
        .map(|i| {
            let c = i / 25 % 4;
            (xv[i] as f64 - mv[c] as f64) / (vv[c] as f64 + EPS).sqrt() * gv[c] as f64
                + bv[c] as f64
        })
        .collect();
    close(host(y), &want, 2e-6, "inference batch norm");
}
