//! A distillation run: the teacher loaded with its adapted extractors, the student built, the
//! step of `distill::step` run by the trainer, and the deployed student written.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use burn::module::Module;
use burn::tensor::{Device, Int, Tensor};

use super::checkpoint::{Checkpoint, Meta};
use super::run::{BEST, DEPLOYED, Run};
use super::trainer::{StepLoss, Task, fit, start_or_resume};
use crate::config::RunConfig;
use crate::distill::losses;
use crate::distill::step::Distill;
use crate::distill::student::{FusedStudent, Student};
use crate::distill::teacher::{Teacher, TeacherHead};
use crate::distill::views::ViewAugment;
use crate::distill::{DistillConfig, TeacherConfig};
use crate::precision::Precision;

/// The trainer runs the distillation step of `distill::step`.
impl Task for Distill {
    type Model = Student;

    fn train_step(
        &mut self,
        student: &Student,
        images: Tensor<4>,
        targets: Tensor<1, Int>,
        samples: &[usize],
        epoch: usize,
        step: usize,
    ) -> StepLoss {
        let out = self.step(student, images, targets, samples, epoch, step);
        StepLoss {
            total: out.total,
            logits: out.logits,
            parts: out.parts,
        }
    }

    fn in_precision(&self, student: &Student, precision: Precision) -> Student {
        Student {
            net: precision.view(student.net.clone()),
            head: student.head.clone(),
            parts: student.parts.clone(),
        }
    }

    fn logits(&self, student: &Student, images: Tensor<4>) -> Tensor<2> {
        student.logits(images, self.cfg.fused)
    }

    fn end_epoch(&mut self, epoch: usize, val_acc: f64) -> BTreeMap<String, f64> {
        self.finish_epoch(epoch, val_acc)
    }
}

/// Loads the teacher backbone, with its adapted extractors when the losses of `dcfg` read
/// them, and the header of its checkpoint.
pub fn load_teacher(
    cfg: &TeacherConfig,
    dcfg: &DistillConfig,
    device: &Device,
) -> Result<(Teacher, Meta)> {
    let checkpoint = Checkpoint::load(&cfg.checkpoint).context("teacher.checkpoint")?;
    // Frozen and only ever run in inference mode: its batch norms fold away.
    let net = checkpoint
        .network(device)
        .context("teacher.checkpoint")?
        .valid()
        .fold_bn();
    let meta = checkpoint.meta;
    let mut teacher = Teacher {
        net,
        head: None,
        input: meta.input,
        classes: meta.classes.len(),
    };
    if dcfg.needs().extractors {
        teacher.head = Some(adapted_extractors(cfg, dcfg, &teacher, device)?.valid());
    }
    Ok((teacher, meta))
}

/// The checkpoint `lstmkd adapt` wrote at `teacher.extractors`, refused when missing or when
/// fitted for another extractor than `dcfg`'s.
pub(crate) fn adapted_checkpoint(cfg: &TeacherConfig, dcfg: &DistillConfig) -> Result<Checkpoint> {
    let path = cfg.extractors_path();
    if !path.exists() {
        bail!(
            "teacher.extractors: {} does not exist; fit the teacher's extractors first with `lstmkd adapt --config <this config>`",
            path.display()
        );
    }
    let adapted = Checkpoint::load(&path).context("teacher.extractors")?;
    // Weights load by shape, so extractors adapted with another window or core would load
    // silently and distil something other than what the config says.
    if let Some(fitted) = adapted
        .meta
        .run
        .as_ref()
        .and_then(|r| r.config.distill.as_ref())
    {
        let differing = extractor_differences(fitted, dcfg)?;
        if !differing.is_empty() {
            bail!(
                "teacher.extractors: {} was adapted for another extractor ({}); adapt again into a file of its own (set teacher.extractors, then `lstmkd adapt --config <this config>`)",
                path.display(),
                differing.join(", ")
            );
        }
    }
    Ok(adapted)
}

/// The teacher's extractors as `lstmkd adapt` fitted them.
fn adapted_extractors(
    cfg: &TeacherConfig,
    dcfg: &DistillConfig,
    teacher: &Teacher,
    device: &Device,
) -> Result<TeacherHead> {
    let adapted = adapted_checkpoint(cfg, dcfg)?;
    let template = TeacherHead::init(
        &teacher.net,
        teacher.input,
        teacher.classes,
        &dcfg.extractor,
        dcfg.taps,
        device,
    );
    adapted
        .apply(template)
        .context("teacher.extractors (does distill.extractor match the adaptation's?)")
}

/// The extractor settings and taps in which `fitted` and `wanted` differ, each as
/// "distill.<field> <fitted> there, <wanted> here" (`config::differences`).
pub(crate) fn extractor_differences(
    fitted: &DistillConfig,
    wanted: &DistillConfig,
) -> Result<Vec<String>> {
    let fields = |d: &DistillConfig| -> Result<toml::Table> {
        let mut out = toml::Table::new();
        out.insert("taps".into(), toml::Value::Integer(d.taps as i64));
        out.insert("extractor".into(), toml::Value::try_from(&d.extractor)?);
        Ok(out)
    };
    Ok(crate::config::differences(
        "distill.",
        &fields(fitted)?,
        &fields(wanted)?,
    ))
}

/// A fresh student for `teacher`; with a shared lens its extractors start as copies of the
/// teacher's adapted ones.
pub fn new_student(
    cfg: &RunConfig,
    teacher: &Teacher,
    samples: usize,
    device: &Device,
) -> Result<Student> {
    let (teacher_cfg, dcfg) = cfg.distillation()?;
    let student = Student::init(&cfg.model, dcfg, teacher, samples, device)?;
    if dcfg.reads_adapted_extractors() {
        let adapted = adapted_extractors(teacher_cfg, dcfg, teacher, device)?;
        return Ok(student.share_lens(adapted, dcfg.freeze_student_extractor));
    }
    Ok(student)
}

/// Distils the run's student from its teacher (resuming when asked), then writes the deployed
/// student (the backbone of the best checkpoint) as `deployed.ckpt`.
pub(crate) fn distill(cfg: RunConfig, resume: bool) -> Result<Run> {
    let (teacher_cfg, dcfg) = cfg.distillation().map(|(t, d)| (t.clone(), d.clone()))?;
    let device = crate::device::parse(&cfg.train.device)?;
    let (teacher, meta) = load_teacher(&teacher_cfg, &dcfg, &device)?;
    let mut cfg = cfg;
    // The student sees the teacher's normalisation, so both read the same inputs.
    cfg.data.mean = cfg.data.mean.or_else(|| Some(meta.mean.clone()));
    cfg.data.std = cfg.data.std.or_else(|| Some(meta.std.clone()));
    let run = Run::new_checked(cfg, resume, |run| {
        meta.check_data(
            &run.dataset,
            &format!("the teacher {}", teacher_cfg.checkpoint.display()),
        )?;
        if run.cfg.data.label_fraction < 1.0 {
            let true_class: Vec<&str> = dcfg
                .active_losses()
                .into_iter()
                .filter(|n| losses::find(n).is_some_and(|s| s.needs.true_class))
                .collect();
            for (on, what) in [
                (
                    dcfg.tmix > 0.0,
                    "tmix (it mixes in a partner's label)".to_string(),
                ),
                (
                    !true_class.is_empty(),
                    format!("{} (reads the true class)", true_class.join(", ")),
                ),
            ] {
                if on {
                    bail!(
                        "data.label_fraction < 1: {what} would use labels outside the labelled share"
                    );
                }
            }
        }
        if run.dataset.frames() > 1
            && (dcfg.rtc || dcfg.tmix > 0.0 || dcfg.fused || dcfg.adaptive_window.is_some())
        {
            bail!(
                "distill.rtc / tmix / fused / adaptive_window: row crops, row mixing, fused extractors and row windows are for images, not clips"
            );
        }
        Ok(())
    })?;
    run.train_device.seed(run.cfg.train.seed);
    let student = new_student(&run.cfg, &teacher, run.train.split.len(), &run.train_device)?;
    let (student, optim, start) = start_or_resume(&run, student, run.cfg.optim.init())?;
    let mut dcfg = dcfg;
    if dcfg.temperature.is_relative() {
        let acc = teacher_val_acc(&run, &teacher)?;
        dcfg.temperature = dcfg.temperature.resolve(acc);
        let table: Vec<String> = dcfg
            .temperature
            .table
            .iter()
            .map(|(a, t)| format!("< {:.2}% -> {t}", 100.0 * a))
            .collect();
        println!(
            "temperature: relative to the teacher's {:.2}% validation top-1: {}, else {}",
            100.0 * acc,
            table.join(", "),
            dcfg.temperature.top
        );
    }
    // The frozen teacher computes in the student's precision, as under PyTorch's autocast.
    let teacher = teacher.in_precision(run.cfg.train.precision);
    // The dynamic temperature follows the last epoch's validation accuracy, which the
    // checkpoint itself carries (metrics.jsonl may be missing or behind it).
    let mut task = Distill::new(
        teacher,
        dcfg,
        run.cfg.train.epochs,
        run.train.num_batches(),
        run.dataset.num_classes(),
        run.cfg.train.seed,
        start.val_acc,
    );
    if task.cfg.needs().second_view {
        let (mean, std) = (
            run.cfg.data.mean.clone().unwrap_or_default(),
            run.cfg.data.std.clone().unwrap_or_default(),
        );
        task.view = Some(ViewAugment {
            pad: run.cfg.data.augment.pad_crop,
            hflip: run.cfg.data.augment.hflip,
            black: mean.iter().zip(&std).map(|(m, s)| -m / s).collect(),
        });
    }
    if run.cfg.data.label_fraction < 1.0 {
        let n = (run.cfg.data.label_fraction * run.train.split.len() as f64).round() as usize;
        println!(
            "labels: the losses use {n} of {} training labels (data.label_fraction = {})",
            run.train.split.len(),
            run.cfg.data.label_fraction
        );
        task.labelled = Some(n);
    }
    fit(&run, &mut task, student, optim, start)?;
    export_deployed(&run, &task)?;
    Ok(run)
}

/// The teacher's top-1 on the run's validation split (measured, not read from its checkpoint,
/// so that imported teachers and other splits work too).
fn teacher_val_acc(run: &Run, teacher: &Teacher) -> Result<f64> {
    let tally = super::trainer::tally(&run.val, &run.device, teacher.classes, |images| {
        teacher.net.forward(images).logits
    })?;
    Ok(tally.top1())
}

/// The deployed student of the best checkpoint, evaluable by `lstmkd eval`: the backbone
/// alone, or in `fused` mode the backbone with its extractors.
fn export_deployed(run: &Run, task: &Distill) -> Result<()> {
    let best = Checkpoint::load(&run.dir.join(BEST))?;
    let template = Student::init(
        &run.cfg.model,
        &task.cfg,
        &task.teacher,
        run.train.split.len(),
        &run.device,
    )?;
    let student = best.apply(template).context("best.ckpt")?;
    let mut meta = best.meta.clone();
    if let Some(state) = &mut meta.run {
        state.config.teacher = None;
        state.config.distill = None;
    }
    let path = run.dir.join(DEPLOYED);
    if task.cfg.fused {
        let fused = FusedStudent {
            net: student.net,
            head: student.head,
        };
        meta.fused = Some(fused.spec(&task.cfg.extractor));
        Checkpoint::new(meta, &fused, None)?.save(&path)
    } else {
        Checkpoint::new(meta, &student.net, None)?.save(&path)
    }
}
