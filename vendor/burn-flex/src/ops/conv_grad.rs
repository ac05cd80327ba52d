//! The weight gradient of a 2-D convolution as products over the batch (lstmkd's patch).
//!
//! burn-backend's generic weight gradient is another convolution with batch and channels
//! swapped, whose output is the small kernel: every input channel becomes a product with
//! `kh * kw` output rows, and flex lowers it image by image. Here it is what PyTorch does:
//! `dW_g = dY_g x im2col(X_g)^T`, one GEMM per group over a chunk of images whose columns fit
//! a fixed budget; depthwise kernels are direct sums. The chunking depends only on the shapes,
//! so the summation order (and the result, bit for bit) does not depend on the thread count.
//! The columns are built from a channels-last copy of the chunk, tap-major (each tap's
//! channels one contiguous run, copied rather than gathered plane by plane); that only permutes
//! the product's output columns, so every sum keeps its order, and `dW` is permuted back to
//! [O, C / groups, kh, kw] at the end.
//! (The input gradient stays flex's transposed convolution: the same batch-level GEMM with a
//! col2im measured no faster here, 2026-11-29.)

use alloc::vec;
use alloc::vec::Vec;

use burn_backend::DType;
use burn_backend::ops::ConvOptions;
use burn_std::{Bytes, Shape};

use crate::{FlexTensor, Layout};

/// Floats of im2col columns built at once (4 MiB of f32: the columns are packed for the
/// product while still in cache, and the buffer is small enough to clear cheaply).
const COLS_BUDGET: usize = 1 << 20;

/// `dW` for `x` [B, C, H, W], `dy` [B, O, Ho, Wo] and a weight of shape
/// [O, C / groups, kh, kw]; symmetric padding (the caller pads asymmetric inputs).
pub fn conv2d_weight_backward<T>(
    x: FlexTensor,
    weight_shape: [usize; 4],
    dy: FlexTensor,
    options: &ConvOptions<2>,
    dtype: DType,
) -> FlexTensor
where
    T: burn_backend::Element + bytemuck::Pod + num_traits::Zero + num_traits::One,
{
    let x = x.to_contiguous();
    let dy = dy.to_contiguous();
    let xs = x.layout().shape().to_vec();
    let ys = dy.layout().shape().to_vec();
    let (b, c, h, w) = (xs[0], xs[1], xs[2], xs[3]);
    let [o, cg, kh, kw] = weight_shape;
    let groups = options.groups;
    let og = o / groups;
    let (ho, wo) = (ys[2], ys[3]);
    let l = ho * wo;
    let ck = cg * kh * kw;
    let xd: &[T] = x.storage();
    let yd: &[T] = dy.storage();
    let mut dw = vec![T::zero(); o * ck];
    if l == 0 || b == 0 {
        return tensor(dw, weight_shape, dtype);
    }
    let geom = Geometry {
        c,
        h,
        w,
        cg,
        kh,
        kw,
        wo,
        stride: options.stride,
        pad: options.padding_begin(),
        dilation: options.dilation,
    };
    if cg == 1 && og == 1 {
        depthwise(xd, yd, &mut dw, b, l, &geom);
        return tensor(dw, weight_shape, dtype);
    }
    let chunk = (COLS_BUDGET / (l * ck)).clamp(1, b);
    let mut cols = super::filled_vec(chunk * l * ck, T::zero());
    let mut dyt = vec![T::zero(); og * chunk * l];
    let mut nhwc = super::filled_vec(chunk * h * w * cg, T::zero());
    for start in (0..b).step_by(chunk) {
        let n = chunk.min(b - start);
        let k = n * l;
        for g in 0..groups {
            channels_last(xd, &mut nhwc[..n * h * w * cg], start, g, &geom);
            im2col(&nhwc, &mut cols[..k * ck], l, &geom);
            // dY of the group's channels as [og, n * l]: image after image along k.
            for_each_chunk(&mut dyt[..og * k], k, |oo, row| {
                for i in 0..n {
                    let src = ((start + i) * o + g * og + oo) * l;
                    row[i * l..(i + 1) * l].copy_from_slice(&yd[src..src + l]);
                }
            });
            // SAFETY: the slices hold m x k, k x n and m x n elements at the given strides.
            unsafe {
                gemm::gemm(
                    og,
                    ck,
                    k,
                    dw[g * og * ck..].as_mut_ptr(),
                    1,
                    ck as isize,
                    start > 0,
                    dyt.as_ptr(),
                    1,
                    k as isize,
                    cols.as_ptr(),
                    1,
                    ck as isize,
                    T::one(),
                    T::one(),
                    false,
                    false,
                    false,
                    parallelism(og * ck * k),
                );
            }
        }
    }
    // Columns were (tap, channel); the weight is (channel, tap).
    let taps = kh * kw;
    let mut out = vec![T::zero(); o * ck];
    for (src, dst) in dw.chunks(ck).zip(out.chunks_mut(ck)) {
        for t in 0..taps {
            for ci in 0..cg {
                dst[ci * taps + t] = src[t * cg + ci];
            }
        }
    }
    tensor(out, weight_shape, dtype)
}

struct Geometry {
    c: usize,
    h: usize,
    w: usize,
    cg: usize,
    kh: usize,
    kw: usize,
    wo: usize,
    stride: [usize; 2],
    pad: [usize; 2],
    dilation: [usize; 2],
}

impl Geometry {
    /// The input index read by output position `p` at kernel offset (ki, kj), if inside.
    #[inline]
    fn tap(&self, p: usize, ki: usize, kj: usize) -> Option<usize> {
        let (oy, ox) = (p / self.wo, p % self.wo);
        let iy = (oy * self.stride[0] + ki * self.dilation[0]).checked_sub(self.pad[0])?;
        let ix = (ox * self.stride[1] + kj * self.dilation[1]).checked_sub(self.pad[1])?;
        (iy < self.h && ix < self.w).then_some(iy * self.w + ix)
    }
}

/// Group `g`'s channels of images `start..` as [image, row, column, channel].
fn channels_last<T: Copy + Send + Sync>(
    xd: &[T],
    out: &mut [T],
    start: usize,
    g: usize,
    geom: &Geometry,
) {
    let plane = geom.h * geom.w;
    let cg = geom.cg;
    for_each_chunk(out, plane * cg, |i, image| {
        let base = ((start + i) * geom.c + g * cg) * plane;
        for ci in 0..cg {
            let x = &xd[base + ci * plane..base + (ci + 1) * plane];
            for (at, &v) in x.iter().enumerate() {
                image[at * cg + ci] = v;
            }
        }
    });
}

/// Rows (image i, position p) of the columns from the channels-last chunk `xn`: each row is
/// `kh * kw` runs of `cg` channels, a tap outside the input a run of zeros.
fn im2col<T: Copy + Send + Sync + num_traits::Zero>(
    xn: &[T],
    cols: &mut [T],
    l: usize,
    geom: &Geometry,
) {
    let plane = geom.h * geom.w;
    let cg = geom.cg;
    let ck = cg * geom.kh * geom.kw;
    // Tasks of whole rows, at least 16 Ki elements each.
    let rows = (16384 / ck).max(1);
    for_each_chunk(cols, rows * ck, |task, block| {
        for (j, row) in block.chunks_mut(ck).enumerate() {
            let r = task * rows + j;
            let (i, p) = (r / l, r % l);
            let image = &xn[i * plane * cg..(i + 1) * plane * cg];
            for (t, run) in row.chunks_mut(cg).enumerate() {
                match geom.tap(p, t / geom.kw, t % geom.kw) {
                    Some(at) => run.copy_from_slice(&image[at * cg..(at + 1) * cg]),
                    None => run.fill(T::zero()),
                }
            }
        }
    });
}

fn depthwise<T>(xd: &[T], yd: &[T], dw: &mut [T], b: usize, l: usize, geom: &Geometry)
where
    T: Copy
        + Send
        + Sync
        + num_traits::Zero
        + core::ops::Mul<Output = T>
        + core::ops::Add<Output = T>,
{
    let plane = geom.h * geom.w;
    let k = geom.kh * geom.kw;
    let c = geom.c;
    for_each_chunk(dw, k, |ch, taps| {
        for ki in 0..geom.kh {
            for kj in 0..geom.kw {
                let mut sum = T::zero();
                for i in 0..b {
                    let x = &xd[(i * c + ch) * plane..][..plane];
                    let y = &yd[(i * c + ch) * l..][..l];
                    for (p, &dy) in y.iter().enumerate() {
                        if let Some(at) = geom.tap(p, ki, kj) {
                            sum = sum + dy * x[at];
                        }
                    }
                }
                taps[ki * geom.kw + kj] = sum;
            }
        }
    });
}

fn for_each_chunk<T: Send>(data: &mut [T], size: usize, f: impl Fn(usize, &mut [T]) + Send + Sync) {
    #[cfg(feature = "rayon")]
    {
        use rayon::prelude::*;
        data.par_chunks_mut(size)
            .enumerate()
            .for_each(|(i, chunk)| f(i, chunk));
    }
    #[cfg(not(feature = "rayon"))]
    data.chunks_mut(size)
        .enumerate()
        .for_each(|(i, chunk)| f(i, chunk));
}

fn parallelism(work: usize) -> gemm::Parallelism {
    #[cfg(feature = "rayon")]
    if work >= 192 * 192 * 192 {
        return gemm::Parallelism::Rayon(0);
    }
    let _ = work;
    gemm::Parallelism::None
}

fn tensor<T: burn_backend::Element + bytemuck::Pod>(
    data: Vec<T>,
    shape: [usize; 4],
    dtype: DType,
) -> FlexTensor {
    FlexTensor::new(
        Bytes::from_elems(data),
        Layout::contiguous(Shape::from(shape.to_vec())),
        dtype,
    )
}
