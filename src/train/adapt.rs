//! Teacher adaptation: the teacher's extractors and aux heads fitted with cross-entropy on its
//! frozen backbone, before distillation. The result is saved beside the teacher checkpoint.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use burn::module::Module;
use burn::tensor::{Int, Tensor};

use super::checkpoint::{Checkpoint, write_atomic};
use super::run::{BEST, CONFIG_FILE, Run, stored_differences};
use super::trainer::{StepLoss, Task, fit, start_or_resume};
use crate::config::RunConfig;
use crate::distill::DistillConfig;
use crate::distill::extractor::mean_logits;
use crate::distill::losses::ce::soft_cross_entropy;
use crate::distill::teacher::TeacherHead;
use crate::models::Network;
use crate::optim::{OptimConfig, OptimName, ScheduleConfig};
use crate::precision::Precision;

fn last_taps(net: &Network, images: Tensor<4>, n: usize) -> Vec<Tensor<4>> {
    crate::distill::deepest(net.forward(images).taps, n)
}

struct Adapt {
    backbone: Network,
    taps: usize,
}

impl Task for Adapt {
    type Model = TeacherHead;

    fn train_step(
        &mut self,
        head: &TeacherHead,
        images: Tensor<4>,
        targets: Tensor<1, Int>,
        _samples: &[usize],
        _epoch: usize,
        _step: usize,
    ) -> StepLoss {
        let classes = head.extractors[0].head.weight.dims()[1];
        let soft = targets.one_hot(classes).float();
        let taps = last_taps(&self.backbone, images.without_autodiff(), self.taps);
        let mut parts = Vec::new();
        let mut logits = Vec::new();
        for (i, (e, t)) in head.extractors.iter().zip(taps).enumerate() {
            let out = e.forward(t, None);
            parts.push((
                format!("aux_ce_tap{i}"),
                soft_cross_entropy(out.aux_logits.clone(), soft.clone()),
            ));
            logits.push(out.aux_logits);
        }
        StepLoss {
            total: parts
                .iter()
                .map(|(_, l)| l.clone())
                .reduce(|a, b| a + b)
                .expect("extractors"),
            logits: mean_logits(logits),
            parts,
        }
    }

    /// Only the extractors train, in f32; the frozen backbone is already in the run's precision.
    fn in_precision(&self, head: &TeacherHead, _precision: Precision) -> TeacherHead {
        head.clone()
    }

    fn logits(&self, head: &TeacherHead, images: Tensor<4>) -> Tensor<2> {
        head.logits(&last_taps(&self.backbone, images, self.taps))
    }
}

/// Fits the teacher's extractors for the distillation config `cfg` (resuming if started).
pub(crate) fn adapt(cfg: &RunConfig) -> Result<PathBuf> {
    let (teacher_cfg, distill) = cfg.distillation()?;
    let teacher = Checkpoint::load(&teacher_cfg.checkpoint).context("teacher.checkpoint")?;
    // Written where distillation reads it: teacher.extractors (default adapt/best.ckpt
    // beside the teacher).
    let target = teacher_cfg.extractors_path();
    let dir = target
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), PathBuf::from);
    // The distillation's own data (with its --set overrides), read as distillation reads it:
    // with the teacher's normalisation unless the config gives one.
    let mut run_cfg = cfg.clone();
    run_cfg.model = teacher.meta.model.clone();
    run_cfg.data.mean = cfg
        .data
        .mean
        .clone()
        .or_else(|| Some(teacher.meta.mean.clone()));
    run_cfg.data.std = cfg
        .data
        .std
        .clone()
        .or_else(|| Some(teacher.meta.std.clone()));
    run_cfg.teacher = None;
    run_cfg.distill = Some(distill.clone());
    run_cfg.train.out_dir = dir.clone();
    run_cfg.train.epochs = distill.adapt_epochs;
    run_cfg.optim = OptimConfig {
        name: OptimName::Adamw,
        lr: distill.adapt_lr,
        weight_decay: 0.0,
        ..cfg.optim.clone()
    };
    run_cfg.schedule = ScheduleConfig::default();
    // Adaptation continues whatever adaptation was started in its directory, and nothing
    // else: its checkpoints would replace the files of another run there.
    let teacher_dir = teacher_cfg
        .checkpoint
        .canonicalize()
        .ok()
        .and_then(|p| p.parent().map(PathBuf::from));
    if teacher_dir.is_some() && teacher_dir == dir.canonicalize().ok() {
        bail!(
            "teacher.extractors: {} is in the teacher's own folder, where adapting would overwrite its files; set teacher.extractors to a file in a folder of its own",
            target.display()
        );
    }
    let resuming = dir.join(CONFIG_FILE).exists();
    if resuming {
        let there = RunConfig::load_written(&dir.join(CONFIG_FILE), &[])?;
        if there.teacher.is_some() || there.distill.is_none() {
            bail!(
                "teacher.extractors: {} holds a run that is not an adaptation; set teacher.extractors to a file in a folder of its own",
                dir.display()
            );
        }
        // Continuing an adaptation of other data or extractors would hand distillation
        // extractors fitted for something else. Of the distill table only the extractors
        // and their taps are the adaptation's: the student's losses may differ.
        let mut wanted = run_cfg.clone();
        if let (Some(w), Some(t)) = (wanted.distill.as_mut(), there.distill.as_ref()) {
            *w = DistillConfig {
                extractor: w.extractor.clone(),
                taps: w.taps,
                ..t.clone()
            };
        }
        let differ = stored_differences(&dir, &wanted)?;
        if !differ.is_empty() {
            bail!(
                "teacher.extractors: {} holds an adaptation of another config ({}); remove that folder, or set teacher.extractors to a file in a folder of its own",
                dir.display(),
                differ.join("; ")
            );
        }
    }
    let teacher_name = format!("the teacher {}", teacher_cfg.checkpoint.display());
    let run = Run::new_checked(run_cfg, resuming, |run| {
        teacher.meta.check_data(&run.dataset, &teacher_name)
    })?;
    let backbone = teacher.network(&run.device)?.valid().fold_bn();
    run.train_device.seed(cfg.train.seed);
    let head = TeacherHead::init(
        &backbone,
        teacher.meta.input,
        teacher.meta.classes.len(),
        &distill.extractor,
        distill.taps,
        &run.train_device,
    );
    let (head, optim, start) = start_or_resume(&run, head, run.cfg.optim.init())?;
    let mut task = Adapt {
        backbone: run.cfg.train.precision.view(backbone),
        taps: distill.taps,
    };
    fit(&run, &mut task, head, optim, start)?;
    let best = dir.join(BEST);
    if target != best {
        let bytes =
            std::fs::read(&best).with_context(|| format!("{}: cannot read", best.display()))?;
        write_atomic(&target, &bytes)?;
    }
    Ok(dir)
}
