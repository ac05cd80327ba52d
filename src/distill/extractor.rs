//! The spatio-temporal extractor (docs/METHOD.md section 2): height windows of a tap, a Conv3d over
//! (window, position, width), a mean over window and width, a stacked BiLSTM over window
//! positions, a mean over time and an auxiliary linear head.

use burn::module::Module;
use burn::nn::conv::{Conv3d, Conv3dConfig};
use burn::nn::{BiLstm, BiLstmConfig, Linear, LinearConfig, PaddingConfig3d};
use burn::tensor::activation::relu;
use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use super::qrnn::BiQrnn;
use crate::models::flops;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ExtractorConfig {
    /// Rows per window (T).
    #[serde(default = "default_window")]
    pub window: usize,
    /// Conv3d output channels.
    #[serde(default = "default_conv_channels")]
    pub conv_channels: usize,
    /// LSTM hidden size per direction.
    #[serde(default = "default_hidden")]
    pub hidden: usize,
    /// Stacked bidirectional layers.
    #[serde(default = "default_layers")]
    pub layers: usize,
    /// The recurrent core. Left out of the saved config when "lstm", so that the ledgers'
    /// keys hold.
    #[serde(default, skip_serializing_if = "is_lstm")]
    pub core: Core,
}

/// An extractor's recurrent core.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Core {
    /// Stacked BiLSTMs (the method).
    #[default]
    Lstm,
    /// Stacked bidirectional Quasi-RNNs (the method's future work).
    Qrnn,
}

fn is_lstm(core: &Core) -> bool {
    *core == Core::Lstm
}

fn default_window() -> usize {
    3
}
fn default_conv_channels() -> usize {
    256
}
fn default_hidden() -> usize {
    512
}
fn default_layers() -> usize {
    2
}

impl Default for ExtractorConfig {
    fn default() -> Self {
        Self {
            window: default_window(),
            conv_channels: default_conv_channels(),
            hidden: default_hidden(),
            layers: default_layers(),
            core: Core::default(),
        }
    }
}

impl ExtractorConfig {
    pub(crate) fn validate(&self) -> anyhow::Result<()> {
        for (name, v) in [
            ("window", self.window),
            ("conv_channels", self.conv_channels),
            ("hidden", self.hidden),
            ("layers", self.layers),
        ] {
            // The upper bound only keeps an absurd value from aborting on allocation.
            if !(1..=4096).contains(&v) {
                anyhow::bail!("distill.extractor.{name}: 1 to 4096, got {v}");
            }
        }
        Ok(())
    }

    /// An extractor for a tap of `channels` channels with an aux head over `num_classes`;
    /// with `frames` > 1 its taps are clips' frames and it runs over them.
    pub fn init(
        &self,
        channels: usize,
        num_classes: usize,
        frames: usize,
        device: &Device,
    ) -> Extractor {
        let conv = Conv3dConfig::new([channels, self.conv_channels], [3, 3, 3])
            .with_padding(PaddingConfig3d::Explicit(1, 1, 1))
            .init(device);
        let d_in = |l: usize| {
            if l == 0 {
                self.conv_channels
            } else {
                2 * self.hidden
            }
        };
        let (mut lstm, mut qrnn) = (Vec::new(), Vec::new());
        for l in 0..self.layers {
            match self.core {
                Core::Qrnn => qrnn.push(BiQrnn::new(d_in(l), self.hidden, device)),
                Core::Lstm => lstm.push(BiLstmConfig::new(d_in(l), self.hidden, true).init(device)),
            }
        }
        Extractor {
            conv,
            lstm,
            qrnn,
            head: LinearConfig::new(2 * self.hidden, num_classes).init(device),
            window: self.window,
            frames,
        }
    }
}

#[derive(Module, Debug)]
pub struct Extractor {
    pub conv: Conv3d,
    /// Stacked BiLSTMs, batch-first; empty with the QRNN core.
    pub lstm: Vec<BiLstm>,
    /// Stacked bidirectional QRNNs; empty with the LSTM core. Two lists rather than one enum,
    /// so that checkpoints of LSTM extractors keep their parameter paths.
    pub qrnn: Vec<BiQrnn>,
    pub head: Linear,
    pub window: usize,
    /// 1 for images. Above 1 a tap is [B x frames, C, H, W] and the sequence is the frames:
    /// the Conv3d runs over (frame, row, column), the mean is over rows and columns, and the
    /// BiLSTM reads one vector per frame (the method's cross-frame fusion).
    pub(crate) frames: usize,
}

pub struct ExtractorOut {
    /// z: mean over time of the last layer's outputs, [B, 2 * hidden].
    pub descriptor: Tensor<2>,
    pub aux_logits: Tensor<2>,
    /// Final hidden and cell states of every layer and direction, [layers * 2, B, hidden]
    /// (layer-major, forward before reverse).
    pub hidden: Tensor<3>,
    pub cell: Tensor<3>,
}

/// How the extractors of one step read their taps.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Reading<'a> {
    /// Every window position, the configured window.
    Whole,
    /// Extractor i reads only crop i (RTC).
    Crops(&'a [Crop]),
    /// Sample j is read with a window of `windows[j]` rows (adaptive window).
    Windows(&'a [usize]),
}

/// The mean of several heads' logits (aux heads, or a backbone with its aux heads).
pub(crate) fn mean_logits(logits: impl IntoIterator<Item = Tensor<2>>) -> Tensor<2> {
    let mut n = 0usize;
    let sum = logits
        .into_iter()
        .inspect(|_| n += 1)
        .reduce(|a, b| a + b)
        .expect("at least one head");
    sum.div_scalar(n as f64)
}

/// A contiguous run of window positions (random temporal crop).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Crop {
    pub start: usize,
    pub len: usize,
}

/// The kernels of `window_conv`: for each output window t' (stacked as output channels), the
/// Conv3d slices K[:, :, dt, di, :] with di in `di` placed at row t' + dt - 1 (the window they
/// read) and summed over the dt whose window exists. [T x D, C, T + len(di) - 1, 3].
fn window_kernel(weight: &Tensor<5>, di: std::ops::Range<usize>, window: usize) -> Tensor<4> {
    let [d, c, _, _, _] = weight.dims();
    let rows = window + di.len() - 1;
    let device = weight.device();
    let per_window = (0..window)
        .map(|t| {
            (0..3)
                .filter_map(|dt| {
                    let u = (t + dt).checked_sub(1).filter(|&u| u < window)?;
                    let slice = weight
                        .clone()
                        .slice([0..d, 0..c, dt..dt + 1, di.clone(), 0..3])
                        .reshape([d, c, di.len(), 3]);
                    let mut parts = Vec::new();
                    if u > 0 {
                        parts.push(Tensor::zeros([d, c, u, 3], &device));
                    }
                    parts.push(slice);
                    if rows - u - di.len() > 0 {
                        parts.push(Tensor::zeros([d, c, rows - u - di.len(), 3], &device));
                    }
                    Some(Tensor::cat(parts, 2))
                })
                .reduce(|a, b| a + b)
                .expect("window t reads itself (dt = 1)")
        })
        .collect();
    Tensor::cat(per_window, 0)
}

/// Number of window positions N for a tap of height `h` (after padding to the window).
pub fn positions(h: usize, window: usize) -> usize {
    h.max(window) - window + 1
}

/// F with zero rows appended up to `window` rows (a tap shorter than one window).
fn pad_rows(f: Tensor<4>, window: usize) -> Tensor<4> {
    let [b, c, h, w] = f.dims();
    if h >= window {
        return f;
    }
    let pad = Tensor::zeros([b, c, window - h, w], &f.device());
    Tensor::cat(vec![f, pad], 2)
}

/// Height windows S[B, C, T, N, W] with S[:, :, t, i, :] = F[:, :, i + t, :]; rows are
/// zero-padded up to T when the tap is shorter than a window.
/// The definition the extractor's convolution is tested against (`Extractor::window_conv`
/// computes the Conv3d over this stack without building it).
pub fn windows(f: Tensor<4>, window: usize) -> Tensor<5> {
    let f = pad_rows(f, window);
    let [b, c, h, w] = f.dims();
    let n = positions(h, window);
    let slices = (0..window)
        .map(|t| f.clone().slice([0..b, 0..c, t..t + n, 0..w]))
        .collect();
    Tensor::stack(slices, 2)
}

impl Extractor {
    /// The Conv3d over the window stack of `f` ([B, C, H, W]), computed from F's rows without
    /// building the stack. Returns the pre-ReLU output as [B, T, D, N, W], equal to
    /// `self.conv.forward(windows(f, T))` with the window and channel axes swapped (tested).
    ///
    /// S[:, :, t, i, :] = F[:, :, i + t, :], so kernel slice (dt, di) at output (t', i') reads
    /// row i' + t' + dt + di - 2 of F. For a fixed t' every slice is a row offset, so the
    /// slices that read inside the stack (window u = t' + dt - 1 in [0, T)) add up into one
    /// (T + 2) x 3 kernel over F's rows: one 2-D convolution gives all T windows as T x D
    /// channels, N rows, 3 (T + 2) D C N W multiply-accumulates per window instead of the
    /// Conv3d's 27 D C N W (15 against 27 at T = 3), and
    /// no im2col of the T-fold stack. What that kernel gets wrong is the stack's padding along
    /// positions: at i' = 0 the di = 0 slices must read nothing, at i' = N - 1 the di = 2
    /// slices; those two rows are computed apart (T x 3 kernels) and subtracted.
    pub fn window_conv(&self, f: Tensor<4>, window: usize) -> Tensor<5> {
        let f = pad_rows(f, window);
        let [b, c, h, w] = f.dims();
        let device = f.device();
        let n = positions(h, window);
        let weight = self.conv.weight.val();
        let d = weight.dims()[0];
        let bias = self
            .conv
            .bias
            .as_ref()
            .map(|bias| Tensor::cat(vec![bias.val(); window], 0));
        let rows =
            |pad: (usize, usize)| ConvOptions::new_with_padding([1, 1], [pad, (1, 1)], [1, 1], 1);
        let main = conv2d(
            f.clone(),
            window_kernel(&weight, 0..3, window),
            bias,
            rows((1, 1)),
        );
        let y = if window == 1 {
            // One window: the di = 0 and di = 2 slices at the ends read F's own padding.
            main
        } else {
            let first = conv2d(
                f.clone().slice([0..b, 0..c, 0..window - 1, 0..w]),
                window_kernel(&weight, 0..1, window),
                None,
                rows((1, 0)),
            );
            let last = conv2d(
                f.slice([0..b, 0..c, n..h, 0..w]),
                window_kernel(&weight, 2..3, window),
                None,
                rows((0, 1)),
            );
            let fix = if n == 1 {
                first + last
            } else {
                let middle = Tensor::zeros([b, window * d, n - 2, w], &device);
                Tensor::cat(vec![first, middle, last], 2)
            };
            main - fix
        };
        y.reshape([b, window, d, n, w])
    }

    /// Runs the extractor on tap `f` ([B, C, H, W]); `crop` restricts it to a sub-sequence of
    /// window positions.
    pub fn forward(&self, f: Tensor<4>, crop: Option<Crop>) -> ExtractorOut {
        if self.frames > 1 {
            return self.forward_frames(f);
        }
        self.forward_window(f, crop, self.window)
    }

    /// Extractor `i` of a step reading `f` as `reading` says.
    pub(crate) fn read(&self, f: Tensor<4>, reading: Reading, i: usize) -> ExtractorOut {
        match reading {
            Reading::Whole => self.forward(f, None),
            Reading::Crops(c) => self.forward(f, Some(c[i])),
            Reading::Windows(w) => self.forward_windows(f, w),
        }
    }

    /// The extractor with a window of `windows[i]` rows for sample i (the adaptive window):
    /// each group of samples that share a window runs as one batch, and the outputs return
    /// to the samples' order.
    pub(crate) fn forward_windows(&self, f: Tensor<4>, windows: &[usize]) -> ExtractorOut {
        let mut groups: std::collections::BTreeMap<usize, Vec<usize>> = Default::default();
        for (i, &w) in windows.iter().enumerate() {
            groups.entry(w).or_default().push(i);
        }
        if groups.len() == 1 {
            return self.forward_window(f, None, windows[0]);
        }
        let device = f.device();
        let index = |v: &[usize]| {
            let v: Vec<i64> = v.iter().map(|&i| i as i64).collect();
            Tensor::<1, burn::tensor::Int>::from_data(
                burn::tensor::TensorData::new(v.clone(), [v.len()]),
                &device,
            )
        };
        let (mut order, mut outs) = (Vec::new(), Vec::new());
        for (&w, members) in &groups {
            outs.push(self.forward_window(f.clone().select(0, index(members)), None, w));
            order.extend_from_slice(members);
        }
        // `order[k]` is the sample in row k of the concatenation; its inverse restores order.
        let mut inverse = vec![0; order.len()];
        for (k, &i) in order.iter().enumerate() {
            inverse[i] = k;
        }
        let back = index(&inverse);
        let cat2 = |pick: fn(&ExtractorOut) -> Tensor<2>| {
            Tensor::cat(outs.iter().map(pick).collect(), 0).select(0, back.clone())
        };
        let cat3 = |pick: fn(&ExtractorOut) -> Tensor<3>| {
            Tensor::cat(outs.iter().map(pick).collect(), 1).select(1, back.clone())
        };
        ExtractorOut {
            descriptor: cat2(|o| o.descriptor.clone()),
            aux_logits: cat2(|o| o.aux_logits.clone()),
            hidden: cat3(|o| o.hidden.clone()),
            cell: cat3(|o| o.cell.clone()),
        }
    }

    /// `forward` with a window of `t` rows instead of the configured one.
    pub(crate) fn forward_window(
        &self,
        f: Tensor<4>,
        crop: Option<Crop>,
        t: usize,
    ) -> ExtractorOut {
        let [b, c, h, w] = f.dims();
        // A crop of window positions start..start+len is the stack of rows start..start+len+T-1.
        let f = match crop {
            Some(Crop { start, len }) => {
                let n = positions(h, t);
                assert!(
                    start + len <= n && len > 0,
                    "crop {start}+{len} outside {n} windows"
                );
                let end = (start + len + t - 1).min(h);
                f.slice([0..b, 0..c, start..end, 0..w])
            }
            None => f,
        };
        let y = relu(self.window_conv(f, t));
        let [_, _, d, n, _] = y.dims();
        if flops::is_counting() {
            let fixes = if t > 1 { 2 * 3 * t } else { 0 };
            flops::add((d * c * t * (3 * (t + 2) * n + fixes) * w) as u64);
        }
        // Mean over the window axis and the width: one feature vector per window position.
        // The swap comes between the two means: with it after them, burn 0.22.1's wgpu
        // backend computes a wrong gradient (docs/BACKENDS.md); flex gives the same bits
        // either way.
        let x = y.mean_dim(4).swap_dims(2, 3).mean_dim(1).reshape([b, n, d]);
        self.sequence(x)
    }

    /// A clip tap [B x frames, C, H, W]: the Conv3d over (frame, row, column), a mean over rows
    /// and columns, one feature vector per frame.
    fn forward_frames(&self, f: Tensor<4>) -> ExtractorOut {
        let [bf, c, h, w] = f.dims();
        let (b, t) = (bf / self.frames, self.frames);
        let x = f.reshape([b, t, c, h, w]).swap_dims(1, 2);
        let y = relu(self.conv.forward(x));
        let [_, d, ..] = y.dims();
        if flops::is_counting() {
            flops::add((d * c * 27 * t * h * w) as u64);
        }
        // The swap between the means, as in `forward_window`.
        let x = y.mean_dim(4).swap_dims(1, 2).mean_dim(3).reshape([b, t, d]);
        self.sequence(x)
    }

    /// The stacked recurrent core over x [B, steps, D], the mean over time and the aux head.
    fn sequence(&self, x: Tensor<3>) -> ExtractorOut {
        let [b, n, _] = x.dims();
        let (mut hs, mut cs) = (Vec::new(), Vec::new());
        let mut x = x;
        for layer in &self.lstm {
            if flops::is_counting() {
                let [_, _, d_in] = x.dims();
                flops::add((2 * 4 * (d_in + layer.d_hidden) * layer.d_hidden * n) as u64);
            }
            let (out, state) = layer.forward(x, None);
            hs.push(state.hidden);
            cs.push(state.cell);
            x = out;
        }
        for layer in &self.qrnn {
            if flops::is_counting() {
                let [_, _, d_in] = x.dims();
                flops::add((2 * 2 * d_in * 3 * layer.forward.d_hidden * n) as u64);
            }
            let (out, hidden, cell) = layer.run(x);
            hs.push(hidden);
            cs.push(cell);
            x = out;
        }
        let [_, _, o] = x.dims();
        let descriptor = x.mean_dim(1).reshape([b, o]);
        if flops::is_counting() {
            let [din, dout] = self.head.weight.shape().dims();
            flops::add((din * dout) as u64);
        }
        ExtractorOut {
            aux_logits: self.head.forward(descriptor.clone()),
            descriptor,
            hidden: Tensor::cat(hs, 0),
            cell: Tensor::cat(cs, 0),
        }
    }
}
