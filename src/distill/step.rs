//! One step of distillation, the heart of LSTM KD: the frozen teacher runs once (no autodiff)
//! on the step's (mixed) images, the student runs, both sides' extractors read their deepest
//! taps (whole, cropped or in per-sample windows), and the losses active in the current phase
//! are weighted and summed at the current temperature.

use std::collections::BTreeMap;

use burn::tensor::{Int, Tensor, TensorData};
use rand::SeedableRng;
use rand::rngs::StdRng;

use super::extractor::{ExtractorOut, Reading};
use super::losses::{self, Inputs, LossSpec, Parts};
use super::mix::{random_crops, tmix};
use super::phases::{self, Phase};
use super::student::Student;
use super::teacher::Teacher;
use super::views::{ViewAugment, second_view};
use super::{DistillConfig, deepest};
use crate::{profile, seeds};

pub struct Distill {
    pub teacher: Teacher,
    pub(crate) cfg: DistillConfig,
    pub(crate) phases: Vec<Phase>,
    pub(crate) epochs: usize,
    /// Optimisation steps per epoch, for the run's progress within an epoch.
    pub(crate) steps_per_epoch: usize,
    pub(crate) classes: usize,
    pub(crate) seed: u64,
    /// The temperature of the current epoch.
    pub(crate) temperature: f64,
    /// With `data.label_fraction` < 1: the training positions below this have labels the
    /// losses may use; the others' targets are zero rows.
    pub(crate) labelled: Option<usize>,
    /// How a second view is drawn, for losses that compare two (`ntxent`).
    pub view: Option<ViewAugment>,
}

/// What a step computed: the weighted total, the student's logits (for the training accuracy)
/// and each active loss, weighted.
pub struct StepOutput {
    pub total: Tensor<1>,
    pub logits: Tensor<2>,
    pub parts: Vec<(String, Tensor<1>)>,
}

/// Both networks' outputs on a step's images.
struct Forwards {
    teacher_logits: Tensor<2>,
    teacher_taps: Vec<Tensor<4>>,
    teacher_view_taps: Vec<Tensor<4>>,
    student_logits: Tensor<2>,
    student_taps: Vec<Tensor<4>>,
}

impl Distill {
    /// The task for a run of `epochs` of `steps_per_epoch` steps over `classes`, its
    /// temperature set from the last finished epoch's validation accuracy (None before the
    /// first).
    pub fn new(
        teacher: Teacher,
        cfg: DistillConfig,
        epochs: usize,
        steps_per_epoch: usize,
        classes: usize,
        seed: u64,
        last_val_acc: Option<f64>,
    ) -> Self {
        Self {
            temperature: cfg.temperature.next(last_val_acc),
            phases: cfg.phases(),
            epochs,
            steps_per_epoch,
            classes,
            seed,
            teacher,
            cfg,
            labelled: None,
            view: None,
        }
    }

    /// The share of the run done once `step` of `epoch` (both from 0) is taken (the
    /// learning-rate schedule reads the share at the step's start), so that a warm-up shorter
    /// than one epoch, as mdistiller's 20 of 240 epochs is on a 10-epoch run, still ramps up
    /// over its steps.
    pub fn progress(&self, epoch: usize, step: usize) -> f64 {
        let steps = self.steps_per_epoch.max(1) as f64;
        let done = epoch as f64 + ((step + 1) as f64 / steps).min(1.0);
        (done / self.epochs.max(1) as f64).min(1.0)
    }

    /// One step on a batch. `samples`: each image's position in the training split.
    pub fn step(
        &self,
        student: &Student,
        images: Tensor<4>,
        targets: Tensor<1, Int>,
        samples: &[usize],
        epoch: usize,
        step: usize,
    ) -> StepOutput {
        let phase = phases::active(&self.phases, epoch, self.epochs);
        let active: Vec<&LossSpec> = phase
            .losses
            .iter()
            .filter_map(|n| losses::find(n))
            .collect();
        // The step's draws come in this order (the mix, the second view, the crops) from one
        // seed per step: every recorded result depends on it, so changing it is a change of
        // RESULTS_VERSION.
        let mut rng = StdRng::seed_from_u64(seeds::step(self.seed, epoch, step));
        let (images, soft_targets) = self.mixed(images, &targets, samples, &mut rng);
        let needs_view = active.iter().any(|s| s.needs.second_view);
        let fwd = self.forwards(student, images, needs_view, &mut rng);
        let needs_extractors = active.iter().any(|s| s.needs.extractors);
        let (teacher_ext, student_ext) = match needs_extractors {
            true => self.extract(student, &fwd, &mut rng),
            false => (Vec::new(), Vec::new()),
        };
        let inputs = Inputs {
            student_logits: &fwd.student_logits,
            teacher_logits: &fwd.teacher_logits,
            student_taps: &fwd.student_taps,
            teacher_taps: &fwd.teacher_taps,
            teacher_view_taps: &fwd.teacher_view_taps,
            taps: self.cfg.taps,
            student_extractors: &student_ext,
            teacher_extractors: &teacher_ext,
            targets: &targets,
            soft_targets: &soft_targets,
            temperature: self.temperature,
            progress: self.progress(epoch, step),
            samples,
            step_seed: seeds::step_losses(self.seed, epoch, step),
            standardize_logits: self.cfg.logit_standardization,
            options: &self.cfg.options,
        };
        let (parts, total) = profile::part("losses", || self.weighted(student, &active, &inputs));
        StepOutput {
            total,
            logits: fwd.student_logits,
            parts,
        }
    }

    /// The step's images after TMix, with their soft targets; without labels (outside the
    /// labelled share) a sample's target row is zero.
    fn mixed(
        &self,
        images: Tensor<4>,
        targets: &Tensor<1, Int>,
        samples: &[usize],
        rng: &mut StdRng,
    ) -> (Tensor<4>, Tensor<2>) {
        let (images, soft) = tmix(images, targets.clone(), self.classes, self.cfg.tmix, rng);
        let Some(n) = self.labelled else {
            return (images, soft);
        };
        let keep: Vec<f32> = samples
            .iter()
            .map(|&p| f32::from(u8::from(p < n)))
            .collect();
        let b = keep.len();
        let mask = Tensor::<1>::from_data(TensorData::new(keep, [b]), &soft.device());
        (images, soft * mask.reshape([b, 1]))
    }

    fn forwards(
        &self,
        student: &Student,
        images: Tensor<4>,
        needs_view: bool,
        rng: &mut StdRng,
    ) -> Forwards {
        // The teacher sees the same (mixed) images, on the plain device: no graph is recorded.
        let teacher = profile::part("teacher forward", || {
            self.teacher.net.forward(images.clone().without_autodiff())
        });
        let teacher_view_taps = match (&self.view, needs_view) {
            (Some(view), true) => profile::part("teacher second view", || {
                let v2 = second_view(images.clone().without_autodiff(), view, rng);
                self.teacher.net.forward(v2).taps
            }),
            _ => Vec::new(),
        };
        let student_out = profile::part("student forward", || student.net.forward(images));
        Forwards {
            teacher_logits: teacher.logits,
            teacher_taps: teacher.taps,
            teacher_view_taps,
            student_logits: student_out.logits,
            student_taps: student_out.taps,
        }
    }

    /// Both sides' extractors on their deepest taps, read as RTC's crops (one draw for both
    /// sides), per-sample adaptive windows, or whole.
    fn extract(
        &self,
        student: &Student,
        fwd: &Forwards,
        rng: &mut StdRng,
    ) -> (Vec<ExtractorOut>, Vec<ExtractorOut>) {
        let t_taps = deepest(fwd.teacher_taps.clone(), self.cfg.taps);
        let s_taps = deepest(fwd.student_taps.clone(), self.cfg.taps);
        let crops = self.cfg.rtc.then(|| {
            // One crop for both sides: it must fit the shorter of each tap pair.
            let heights: Vec<usize> = t_taps
                .iter()
                .zip(&s_taps)
                .map(|(t, s)| t.dims()[2].min(s.dims()[2]))
                .collect();
            random_crops(&heights, self.cfg.extractor.window, rng)
        });
        let windows = self
            .cfg
            .adaptive_window
            .as_ref()
            .map(|a| a.windows(&fwd.teacher_logits));
        let reading = match (&crops, &windows) {
            (Some(c), _) => Reading::Crops(c),
            (_, Some(w)) => Reading::Windows(w),
            _ => Reading::Whole,
        };
        let head = self
            .teacher
            .head
            .as_ref()
            .expect("extractors are loaded when a loss needs them");
        let teacher = profile::part("teacher extractors", || {
            head.extractors
                .iter()
                .zip(&t_taps)
                .enumerate()
                .map(|(i, (e, t))| e.read(t.clone(), reading, i))
                .collect()
        });
        let student = profile::part("student extractors", || {
            student.head.extract(&s_taps, reading)
        });
        (teacher, student)
    }

    /// Each active loss times its weight, and their sum.
    fn weighted(
        &self,
        student: &Student,
        active: &[&LossSpec],
        inputs: &Inputs,
    ) -> (Vec<(String, Tensor<1>)>, Tensor<1>) {
        let owning = self.cfg.owning_losses();
        let none = Parts::default();
        let parts: Vec<(String, Tensor<1>)> = active
            .iter()
            .map(|spec| {
                let w = self.cfg.weights.get(spec.name).copied().unwrap_or(0.0);
                let owned = owning
                    .iter()
                    .position(|o| o.name == spec.name)
                    .map_or(&none, |k| &student.parts[k]);
                let loss = (spec.compute)(inputs, owned).mul_scalar(w);
                (spec.name.to_string(), loss)
            })
            .collect();
        let total = parts
            .iter()
            .map(|(_, l)| l.clone())
            .reduce(|a, b| a + b)
            .expect("phases are validated to name known losses");
        (parts, total)
    }

    /// After an epoch's validation: the next epoch's temperature; returns the temperature and
    /// the phase (from 1) the epoch ran with, to log.
    pub(crate) fn finish_epoch(&mut self, epoch: usize, val_acc: f64) -> BTreeMap<String, f64> {
        let used = self.temperature;
        self.temperature = self.cfg.temperature.next(Some(val_acc));
        let phase = phases::active(&self.phases, epoch, self.epochs);
        let index = self
            .phases
            .iter()
            .position(|p| p.name == phase.name)
            .unwrap_or(0);
        BTreeMap::from([
            ("temperature".to_string(), used),
            ("phase".to_string(), (index + 1) as f64),
        ])
    }
}
