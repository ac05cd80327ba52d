//! FitNet hints (Romero et al.): a 1x1 conv (+BN) regressor maps the student's tap to the
//! teacher's channels; the loss is the mean squared difference. A student tap of another size
//! is resized (bilinear) to the teacher's.

use burn::module::Module;
use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};
use burn::tensor::{Device, Tensor};

use crate::models::layers::ConvBn;

#[derive(Module, Debug)]
pub struct Regressor {
    pub proj: ConvBn,
}

impl Regressor {
    pub fn new(student_channels: usize, teacher_channels: usize, device: &Device) -> Self {
        Self {
            proj: ConvBn::new(student_channels, teacher_channels, 1, 1, 1, device),
        }
    }

    /// The student's tap in the teacher's channels and spatial size.
    pub fn forward(&self, student: Tensor<4>, size: [usize; 2]) -> Tensor<4> {
        let [_, _, h, w] = student.dims();
        let student = if [h, w] != size {
            interpolate(
                student,
                // Half-pixel centres as PyTorch's default (see the attention maps in `at`).
                InterpolateOptions::new(InterpolateMode::Bilinear)
                    .with_align_corners(false)
                    .with_output_size(size),
            )
        } else {
            student
        };
        self.proj.forward(student)
    }
}

pub fn hint_loss(regressed: Tensor<4>, teacher: Tensor<4>) -> Tensor<1> {
    (regressed - teacher).powi_scalar(2).mean()
}

pub const SPEC: super::LossSpec = super::LossSpec {
    name: "fitnet",
    about: "FitNet hints: 1x1-conv regressed student taps vs teacher taps, MSE (summed)",
    needs: super::Needs {
        extractors: false,
        regressors: true,
    },
    compute: |i| {
        super::sum_over_taps(
            i.regressed
                .iter()
                .zip(i.teacher_taps)
                .map(|(s, t)| hint_loss(s.clone(), t.clone())),
        )
    },
};
