//! flex's 2-D convolution (forward, input and weight gradients, through burn's autodiff)
//! against the convolution written out on the host in f64: the check any replacement of these
//! kernels (bench/upstream/) must pass.

use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Device, Tensor, TensorData};

use crate::common::{uniform, values};

struct Case {
    x: [usize; 4],
    out: usize,
    kernel: [usize; 2],
    stride: [usize; 2],
    /// (begin, end) per axis.
    pad: [(usize, usize); 2],
    dilation: [usize; 2],
    groups: usize,
}

/// (y, dx, dw) of y = conv(x, w) and the loss sum(y * r), written out.
fn reference(c: &Case, x: &[f32], w: &[f32], r: &[f32], ho: usize, wo: usize) -> [Vec<f64>; 3] {
    let [b, ci, h, wi] = c.x;
    let (cg, og) = (ci / c.groups, c.out / c.groups);
    let [kh, kw] = c.kernel;
    let mut y = vec![0.0; b * c.out * ho * wo];
    let mut dx = vec![0.0; x.len()];
    let mut dw = vec![0.0; w.len()];
    for n in 0..b {
        for o in 0..c.out {
            let g = o / og;
            for oy in 0..ho {
                for ox in 0..wo {
                    let yi = ((n * c.out + o) * ho + oy) * wo + ox;
                    for k in 0..cg {
                        let ch = g * cg + k;
                        for i in 0..kh {
                            for j in 0..kw {
                                let iy = (oy * c.stride[0] + i * c.dilation[0]) as isize
                                    - c.pad[0].0 as isize;
                                let ix = (ox * c.stride[1] + j * c.dilation[1]) as isize
                                    - c.pad[1].0 as isize;
                                if iy < 0 || ix < 0 || iy >= h as isize || ix >= wi as isize {
                                    continue;
                                }
                                let xi = ((n * ci + ch) * h + iy as usize) * wi + ix as usize;
                                let wj = ((o * cg + k) * kh + i) * kw + j;
                                y[yi] += x[xi] as f64 * w[wj] as f64;
                                dx[xi] += r[yi] as f64 * w[wj] as f64;
                                dw[wj] += r[yi] as f64 * x[xi] as f64;
                            }
                        }
                    }
                }
            }
        }
    }
    [y, dx, dw]
}

fn close(got: Vec<f32>, want: &[f64], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}");
    let scale = want.iter().fold(1f64, |m, v| m.max(v.abs()));
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (*g as f64 - w).abs() <= 2e-5 * scale,
            "{what}[{i}]: {g} vs {w} (scale {scale})"
        );
    }
}

fn check(c: Case) {
    let device = Device::flex().autodiff();
    let [b, ci, h, wi] = c.x;
    let w_shape = [c.out, ci / c.groups, c.kernel[0], c.kernel[1]];
    let out = |size: usize, k: usize, s: usize, (p0, p1): (usize, usize), d: usize| {
        (size + p0 + p1 - d * (k - 1) - 1) / s + 1
    };
    let ho = out(h, c.kernel[0], c.stride[0], c.pad[0], c.dilation[0]);
    let wo = out(wi, c.kernel[1], c.stride[1], c.pad[1], c.dilation[1]);
    let xv = uniform(b * ci * h * wi, 1);
    let wv = uniform(w_shape.iter().product(), 2);
    let rv = uniform(b * c.out * ho * wo, 3);
    let x = Tensor::<4>::from_data(TensorData::new(xv.clone(), c.x), &device).require_grad();
    let w = Tensor::<4>::from_data(TensorData::new(wv.clone(), w_shape), &device).require_grad();
    let r = Tensor::<4>::from_data(TensorData::new(rv.clone(), [b, c.out, ho, wo]), &device);
    let options = ConvOptions::new_with_padding(c.stride, c.pad, c.dilation, c.groups);
    let y = conv2d(x.clone(), w.clone(), None, options);
    let grads = (y.clone() * r).sum().backward();
    let [ry, rdx, rdw] = reference(&c, &xv, &wv, &rv, ho, wo);
    let what = format!("x {:?} out {} groups {}", c.x, c.out, c.groups);
    close(values(y), &ry, &format!("{what}: output"));
    close(
        values(x.grad(&grads).unwrap()),
        &rdx,
        &format!("{what}: input gradient"),
    );
    close(
        values(w.grad(&grads).unwrap()),
        &rdw,
        &format!("{what}: weight gradient"),
    );
}

#[test]
fn convolutions_and_their_gradients_match_the_written_out_sums() {
    let case = |x, out, k, s, p: [usize; 2], d, groups| Case {
        x,
        out,
        kernel: k,
        stride: s,
        pad: p.map(|p| (p, p)),
        dilation: d,
        groups,
    };
    // Odd sizes, padding 1.
    check(case([2, 3, 7, 6], 4, [3, 3], [1, 1], [1, 1], [1, 1], 1));
    // Stride 2 and two groups.
    check(case([3, 4, 9, 9], 6, [3, 3], [2, 2], [1, 1], [1, 1], 2));
    // Depthwise (MobileNetV2), stride 2.
    check(case([2, 6, 8, 7], 6, [3, 3], [2, 2], [1, 1], [1, 1], 6));
    // Channel multiplier 2 per group.
    check(case([2, 3, 6, 6], 6, [3, 3], [1, 1], [1, 1], [1, 1], 3));
    // A non-square kernel, uneven strides and padding, dilation 2.
    check(case([2, 4, 10, 7], 5, [3, 2], [2, 1], [0, 1], [2, 2], 1));
    // 1x1 (downsample shortcuts), stride 2.
    check(case([2, 8, 5, 5], 16, [1, 1], [2, 2], [0, 0], [1, 1], 1));
    // Small maps: a tile of output pixels spans several images, its rows cut mid-image.
    check(case([23, 5, 7, 7], 8, [3, 3], [1, 1], [1, 1], [1, 1], 1));
    // The same with 64 channels per group (the product with the channels as its rows).
    check(case([11, 8, 9, 9], 128, [3, 3], [1, 1], [1, 1], [1, 1], 2));
    // Columns over the per-call budget: the batch is split into chunks that accumulate.
    check(case([3, 64, 90, 90], 2, [3, 3], [1, 1], [1, 1], [1, 1], 1));
    // Asymmetric padding (begin != end), with stride 1 and with stride 2.
    let asymmetric = |stride| Case {
        pad: [(2, 0), (0, 1)],
        ..case([2, 3, 7, 8], 4, [3, 3], stride, [0, 0], [1, 1], 1)
    };
    check(asymmetric([1, 1]));
    check(asymmetric([2, 2]));
    // Padding beyond the kernel's reach: the stride-1 input gradient cannot be a convolution.
    check(case([2, 3, 6, 6], 4, [3, 3], [1, 1], [3, 3], [1, 1], 1));
    // No padding on a small map: the input has over twice the output's pixels.
    check(case([2, 3, 5, 5], 4, [3, 3], [1, 1], [0, 0], [1, 1], 1));
}
