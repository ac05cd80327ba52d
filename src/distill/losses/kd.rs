//! Logit distillation (Hinton et al.): T^2 * KL(softmax(t/T) || softmax(s/T)), batch mean.

use burn::tensor::Tensor;
use burn::tensor::activation::log_softmax;

pub fn kd_loss(student: Tensor<2>, teacher: Tensor<2>, temperature: f64) -> Tensor<1> {
    let [b, _] = student.dims();
    let log_ps = log_softmax(student.div_scalar(temperature), 1);
    let log_pt = log_softmax(teacher.div_scalar(temperature), 1);
    let pt = log_pt.clone().exp();
    (pt * (log_pt - log_ps))
        .sum()
        .mul_scalar(temperature * temperature / b as f64)
}

pub const SPEC: super::LossSpec = super::LossSpec {
    name: "kd",
    about: "logit KD: T^2 KL(teacher || student) at the current temperature",
    needs: super::Needs::NONE,
    compute: |i| {
        kd_loss(
            i.student_logits.clone(),
            i.teacher_logits.clone(),
            i.temperature,
        )
    },
};
