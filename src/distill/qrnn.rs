//! Quasi-RNN (Bradbury et al., 2017), the lighter recurrent core the method names as future
//! work (`distill.extractor.core = "qrnn"`). The gates come from a convolution of width 2 over
//! time, computed for every step at once; only fo-pooling runs step by step, on element-wise
//! arithmetic: c_t = f_t c_{t-1} + (1 - f_t) z_t, h_t = o_t c_t, with z = tanh, f and o
//! sigmoid. Like the LSTM it leaves a hidden and a cell state, so the temporal loss applies.

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::activation::{sigmoid, tanh};
use burn::tensor::{Device, Tensor};

/// One direction: the width-2 convolution over time as a linear map of [x_{t-1}, x_t].
#[derive(Module, Debug)]
pub(crate) struct Qrnn {
    pub(crate) gates: Linear,
    pub(crate) d_hidden: usize,
}

/// Outputs [B, T, H] and the final (h, c), each [B, H].
pub(crate) struct QrnnOut {
    pub(crate) output: Tensor<3>,
    pub(crate) hidden: Tensor<2>,
    pub(crate) cell: Tensor<2>,
}

impl Qrnn {
    pub(crate) fn new(d_input: usize, d_hidden: usize, device: &Device) -> Self {
        Self {
            gates: LinearConfig::new(2 * d_input, 3 * d_hidden).init(device),
            d_hidden,
        }
    }

    /// `x` [B, T, D]; the step before the first reads zeros.
    pub(crate) fn forward(&self, x: Tensor<3>) -> QrnnOut {
        let [b, t, d] = x.dims();
        let h = self.d_hidden;
        let zeros = Tensor::<3>::zeros([b, 1, d], &x.device());
        let previous = Tensor::cat(vec![zeros, x.clone().slice([0..b, 0..t - 1, 0..d])], 1);
        let g = self.gates.forward(Tensor::cat(vec![previous, x], 2));
        let z = tanh(g.clone().slice([0..b, 0..t, 0..h]));
        let f = sigmoid(g.clone().slice([0..b, 0..t, h..2 * h]));
        let o = sigmoid(g.slice([0..b, 0..t, 2 * h..3 * h]));
        let mut c = Tensor::<2>::zeros([b, h], &z.device());
        let mut outputs = Vec::with_capacity(t);
        let step =
            |g: &Tensor<3>, s: usize| g.clone().slice([0..b, s..s + 1, 0..h]).reshape([b, h]);
        for s in 0..t {
            let fs = step(&f, s);
            c = fs.clone() * c + (fs.neg() + 1.0) * step(&z, s);
            outputs.push(step(&o, s) * c.clone());
        }
        let hidden = outputs[t - 1].clone();
        QrnnOut {
            output: Tensor::stack(outputs, 1),
            hidden,
            cell: c,
        }
    }
}

/// Both directions, the reverse one reading the sequence backwards; outputs concatenated as a
/// bidirectional LSTM's are, [B, T, 2H].
#[derive(Module, Debug)]
pub struct BiQrnn {
    pub(crate) forward: Qrnn,
    pub(crate) reverse: Qrnn,
}

impl BiQrnn {
    pub(crate) fn new(d_input: usize, d_hidden: usize, device: &Device) -> Self {
        Self {
            forward: Qrnn::new(d_input, d_hidden, device),
            reverse: Qrnn::new(d_input, d_hidden, device),
        }
    }

    /// Outputs [B, T, 2H] and the final states [2, B, H] (forward, then reverse).
    pub fn run(&self, x: Tensor<3>) -> (Tensor<3>, Tensor<3>, Tensor<3>) {
        let fwd = self.forward.forward(x.clone());
        let rev = self.reverse.forward(x.flip([1]));
        let output = Tensor::cat(vec![fwd.output, rev.output.flip([1])], 2);
        let hidden = Tensor::stack(vec![fwd.hidden, rev.hidden], 0);
        let cell = Tensor::stack(vec![fwd.cell, rev.cell], 0);
        (output, hidden, cell)
    }
}

#[cfg(test)]
mod tests;
