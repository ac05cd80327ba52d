//! Fused batch normalisation (lstmkd's patch).
//!
//! burn-backend's default decomposes training-mode batch norm into a channel-major layout copy,
//! two mean reductions and five broadcast element-wise passes forward, and more backward; in a
//! small network's training step that was the largest serial share. Here each direction is one
//! per-channel reduction over the NCHW runs (f64 accumulators, as PyTorch's CPU kernel uses)
//! and one element-wise pass, both on the thread pool. Each channel is reduced by one task in a
//! fixed order, so results do not depend on the thread count.

use alloc::vec::Vec;
use burn_backend::{DType, Element};
use burn_std::{Bytes, Shape, bf16, f16};
use bytemuck::Pod;

use crate::ops::module::{cast_from_f32, cast_to_f32};
use crate::{FlexTensor, Layout};

/// Element types with a native kernel; f16 and bf16 go through f32.
trait Real: Element + Pod + Copy + Send + Sync {
    fn to_f64(self) -> f64;
    fn from_f64(v: f64) -> Self;
    fn mul(self, o: Self) -> Self;
    fn add(self, o: Self) -> Self;
    fn sub(self, o: Self) -> Self;
}

macro_rules! real {
    ($t:ty) => {
        impl Real for $t {
            fn to_f64(self) -> f64 {
                self as f64
            }
            fn from_f64(v: f64) -> Self {
                v as $t
            }
            fn mul(self, o: Self) -> Self {
                self * o
            }
            fn add(self, o: Self) -> Self {
                self + o
            }
            fn sub(self, o: Self) -> Self {
                self - o
            }
        }
    };
}
real!(f32);
real!(f64);

/// `[batch, channels, ...]` as (channels, elements per channel and image).
fn geometry(shape: &Shape) -> (usize, usize) {
    assert!(
        shape.num_dims() >= 2,
        "batch_norm: input must be [batch, channels, ...], got {:?}",
        shape
    );
    (shape[1], shape.iter().skip(2).product())
}

fn data<T: Real>(t: &FlexTensor) -> Vec<f64> {
    t.storage::<T>().iter().map(|v| v.to_f64()).collect()
}

fn vector<T: Real>(values: impl Iterator<Item = f64>, dtype: DType) -> FlexTensor {
    let v: Vec<T> = values.map(T::from_f64).collect();
    let n = v.len();
    FlexTensor::new(
        Bytes::from_elems(v),
        Layout::contiguous(Shape::from(alloc::vec![n])),
        dtype,
    )
}

/// Sum of `f(a, b)` over the elements of channel `c` in `a` and `b` (run `n * channels + c`,
/// `run` long, of each), in a fixed order of eight interleaved lanes so that it vectorises.
fn channel_sum<T: Real>(
    a: &[T],
    b: &[T],
    run: usize,
    channels: usize,
    c: usize,
    f: impl Fn(T, T) -> f64,
) -> f64 {
    let mut lanes = [0.0f64; 8];
    let mut tail = 0.0f64;
    if run == 0 {
        return 0.0;
    }
    for start in (c * run..a.len()).step_by(channels * run) {
        let (a, b) = (&a[start..start + run], &b[start..start + run]);
        let (a8, b8) = (a.chunks_exact(8), b.chunks_exact(8));
        for (&x, &y) in a8.remainder().iter().zip(b8.remainder()) {
            tail += f(x, y);
        }
        for (x, y) in a8.zip(b8) {
            for l in 0..8 {
                lanes[l] += f(x[l], y[l]);
            }
        }
    }
    lanes.iter().sum::<f64>() + tail
}

/// One value per channel, channels on the thread pool.
fn per_channel(channels: usize, f: impl Fn(usize) -> [f64; 2] + Send + Sync) -> Vec<[f64; 2]> {
    #[cfg(feature = "rayon")]
    {
        use rayon::prelude::*;
        (0..channels).into_par_iter().map(f).collect()
    }
    #[cfg(not(feature = "rayon"))]
    (0..channels).map(f).collect()
}

/// A new buffer the size of `len`, each run (of `run` elements, channel `index % channels`)
/// written by `f(run index, run)`; on the thread pool from `ELEMENTWISE_PARALLEL` elements.
fn map_runs<T: Real>(
    len: usize,
    run: usize,
    f: impl Fn(usize, &mut [core::mem::MaybeUninit<T>]) + Send + Sync,
) -> Vec<T> {
    let mut out: Vec<T> = Vec::with_capacity(len);
    let dst = &mut out.spare_capacity_mut()[..len];
    if run > 0 {
        // Tasks of whole runs, at least 16 Ki elements each.
        let task = run * (16384 / run).max(1);
        let body = |(t, chunk): (usize, &mut [core::mem::MaybeUninit<T>])| {
            for (j, r) in chunk.chunks_mut(run).enumerate() {
                f(t * task / run + j, r);
            }
        };
        #[cfg(feature = "rayon")]
        if len >= super::ELEMENTWISE_PARALLEL {
            use rayon::prelude::*;
            dst.par_chunks_mut(task).enumerate().for_each(body);
        } else {
            dst.chunks_mut(task).enumerate().for_each(body);
        }
        #[cfg(not(feature = "rayon"))]
        dst.chunks_mut(task).enumerate().for_each(body);
    }
    // SAFETY: every run, hence all `len` elements, was written above.
    unsafe { out.set_len(len) };
    out
}

fn with_data<T: Real>(data: Vec<T>, shape: Shape, dtype: DType) -> FlexTensor {
    FlexTensor::new(Bytes::from_elems(data), Layout::contiguous(shape), dtype)
}

/// `x * scale[c] + shift[c]` per channel (PyTorch's form of the normalisation).
fn affine<T: Real>(x: &FlexTensor, scale: &[f64], shift: &[f64]) -> FlexTensor {
    let shape = x.layout().shape().clone();
    let (channels, run) = geometry(&shape);
    let xs = x.storage::<T>();
    let scale: Vec<T> = scale.iter().map(|&v| T::from_f64(v)).collect();
    let shift: Vec<T> = shift.iter().map(|&v| T::from_f64(v)).collect();
    let out = map_runs::<T>(xs.len(), run, |r, dst| {
        let (a, b) = (scale[r % channels], shift[r % channels]);
        for (d, &v) in dst.iter_mut().zip(&xs[r * run..(r + 1) * run]) {
            d.write(v.mul(a).add(b));
        }
    });
    with_data(out, shape, x.dtype())
}

fn scale_shift(
    gamma: &[f64],
    beta: &[f64],
    mean: &[f64],
    var: &[f64],
    epsilon: f64,
) -> (Vec<f64>, Vec<f64>) {
    let scale: Vec<f64> = (0..gamma.len())
        .map(|c| gamma[c] / (var[c] + epsilon).sqrt())
        .collect();
    let shift = (0..gamma.len())
        .map(|c| beta[c] - mean[c] * scale[c])
        .collect();
    (scale, shift)
}

fn inference<T: Real>(
    x: FlexTensor,
    gamma: FlexTensor,
    beta: FlexTensor,
    mean: FlexTensor,
    var: FlexTensor,
    epsilon: f64,
) -> FlexTensor {
    let (scale, shift) = scale_shift(
        &data::<T>(&gamma),
        &data::<T>(&beta),
        &data::<T>(&mean),
        &data::<T>(&var),
        epsilon,
    );
    affine::<T>(&x, &scale, &shift)
}

fn train<T: Real>(
    x: FlexTensor,
    gamma: FlexTensor,
    beta: FlexTensor,
    epsilon: f64,
) -> [FlexTensor; 3] {
    let (channels, run) = geometry(x.layout().shape());
    let xs = x.storage::<T>();
    let count = (xs.len() / channels.max(1)) as f64;
    let stats = per_channel(channels, |c| {
        let mean = channel_sum(xs, xs, run, channels, c, |v, _| v.to_f64()) / count;
        let var = channel_sum(xs, xs, run, channels, c, |v, _| {
            let d = v.to_f64() - mean;
            d * d
        }) / count;
        [mean, var]
    });
    let mean: Vec<f64> = stats.iter().map(|s| s[0]).collect();
    let var: Vec<f64> = stats.iter().map(|s| s[1]).collect();
    let (scale, shift) = scale_shift(
        &data::<T>(&gamma),
        &data::<T>(&beta),
        &mean,
        &var,
        epsilon,
    );
    let output = affine::<T>(&x, &scale, &shift);
    let dtype = x.dtype();
    [
        output,
        vector::<T>(mean.into_iter(), dtype),
        vector::<T>(var.into_iter(), dtype),
    ]
}

fn train_backward<T: Real>(
    x: FlexTensor,
    gamma: FlexTensor,
    mean: FlexTensor,
    var: FlexTensor,
    epsilon: f64,
    dy: FlexTensor,
) -> [FlexTensor; 3] {
    let shape = x.layout().shape().clone();
    let (channels, run) = geometry(&shape);
    let (xs, dys) = (x.storage::<T>(), dy.storage::<T>());
    let count = (xs.len() / channels.max(1)) as f64;
    let (gamma, mean) = (data::<T>(&gamma), data::<T>(&mean));
    let inv_std: Vec<f64> = data::<T>(&var)
        .iter()
        .map(|v| 1.0 / (v + epsilon).sqrt())
        .collect();
    // Per channel: the sum of dy (beta's gradient) and of dy * (x - mean).
    let sums = per_channel(channels, |c| {
        [
            channel_sum(dys, dys, run, channels, c, |g, _| g.to_f64()),
            channel_sum(dys, xs, run, channels, c, |g, v| {
                g.to_f64() * (v.to_f64() - mean[c])
            }),
        ]
    });
    // dx = (dy - mean(dy) - (x - mean) * k) * gamma * inv_std, k = mean(dy * (x - mean)) / var.
    let consts: Vec<[T; 4]> = (0..channels)
        .map(|c| {
            let k = sums[c][1] / count * inv_std[c] * inv_std[c];
            [mean[c], sums[c][0] / count, k, gamma[c] * inv_std[c]].map(T::from_f64)
        })
        .collect();
    let dx = map_runs::<T>(xs.len(), run, |r, dst| {
        let [m, mean_dy, k, s] = consts[r % channels];
        let span = r * run..(r + 1) * run;
        for ((d, &g), &v) in dst.iter_mut().zip(&dys[span.clone()]).zip(&xs[span]) {
            d.write(g.sub(mean_dy).sub(v.sub(m).mul(k)).mul(s));
        }
    });
    let dtype = x.dtype();
    [
        with_data(dx, shape, dtype),
        vector::<T>(sums.iter().zip(&inv_std).map(|(s, i)| s[1] * i), dtype),
        vector::<T>(sums.iter().map(|s| s[0]), dtype),
    ]
}

/// Runs `native` for f32/f64, and for f16/bf16 on f32 copies of `tensors` with the results cast
/// back.
fn by_dtype<const N: usize, const M: usize>(
    tensors: [FlexTensor; N],
    op: &str,
    native_f32: impl FnOnce([FlexTensor; N]) -> [FlexTensor; M],
    native_f64: impl FnOnce([FlexTensor; N]) -> [FlexTensor; M],
) -> [FlexTensor; M] {
    let dtype = tensors[0].dtype();
    for t in &tensors[1..] {
        assert_eq!(
            t.dtype(),
            dtype,
            "{op}: operand dtype {:?} does not match input dtype {:?}",
            t.dtype(),
            dtype
        );
    }
    let tensors = tensors.map(|t| t.to_contiguous());
    match dtype {
        DType::F32 => native_f32(tensors),
        DType::F64 => native_f64(tensors),
        DType::F16 => native_f32(tensors.map(|t| cast_to_f32(t, f16::to_f32)))
            .map(|t| cast_from_f32(t, f16::from_f32)),
        DType::BF16 => native_f32(tensors.map(|t| cast_to_f32(t, bf16::to_f32)))
            .map(|t| cast_from_f32(t, bf16::from_f32)),
        dtype => panic!("{op}: unsupported dtype {dtype:?}"),
    }
}

/// `ModuleOps::batch_norm`: normalisation with given statistics.
pub fn batch_norm(
    x: FlexTensor,
    gamma: FlexTensor,
    beta: FlexTensor,
    mean: FlexTensor,
    var: FlexTensor,
    epsilon: f64,
) -> FlexTensor {
    let [y] = by_dtype(
        [x, gamma, beta, mean, var],
        "batch_norm",
        |[x, g, b, m, v]| [inference::<f32>(x, g, b, m, v, epsilon)],
        |[x, g, b, m, v]| [inference::<f64>(x, g, b, m, v, epsilon)],
    );
    y
}

/// `ModuleOps::batch_norm_train`: output, batch mean and biased batch variance.
pub fn batch_norm_train(
    x: FlexTensor,
    gamma: FlexTensor,
    beta: FlexTensor,
    epsilon: f64,
) -> [FlexTensor; 3] {
    by_dtype(
        [x, gamma, beta],
        "batch_norm_train",
        |[x, g, b]| train::<f32>(x, g, b, epsilon),
        |[x, g, b]| train::<f64>(x, g, b, epsilon),
    )
}

/// `ModuleOps::batch_norm_train_backward`: gradients of input, gamma and beta.
pub fn batch_norm_train_backward(
    x: FlexTensor,
    gamma: FlexTensor,
    mean: FlexTensor,
    var: FlexTensor,
    epsilon: f64,
    output_grad: FlexTensor,
) -> [FlexTensor; 3] {
    by_dtype(
        [x, gamma, mean, var, output_grad],
        "batch_norm_train_backward",
        |[x, g, m, v, dy]| train_backward::<f32>(x, g, m, v, epsilon, dy),
        |[x, g, m, v, dy]| train_backward::<f64>(x, g, m, v, epsilon, dy),
    )
}
