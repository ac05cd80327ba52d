//! Teacher adaptation: the teacher's extractors and aux heads fitted with cross-entropy on its
//! frozen backbone, before distillation. The result is saved beside the teacher checkpoint.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use burn::module::Module;
use burn::tensor::{Device, Int, Tensor};

use super::extractor::{Extractor, ExtractorConfig};
use super::losses::ce::soft_cross_entropy;
use crate::config::RunConfig;
use crate::models::{Network, summarize};
use crate::train::checkpoint::Checkpoint;
use crate::train::checkpoint::write_atomic;
use crate::train::optim::{OptimConfig, OptimName, ScheduleConfig};
use crate::train::run::{BEST, CONFIG_FILE, Run};
use crate::train::trainer::{StepLoss, Task, fit, start_or_resume};

/// The extractors (with their aux heads) on the teacher's distilled taps.
#[derive(Module, Debug)]
pub struct TeacherHead {
    pub extractors: Vec<Extractor>,
}

/// Shapes of the last `taps` taps of `net` for inputs of `ckpt`'s size.
pub fn tap_shapes(
    net: &Network,
    input: [usize; 3],
    taps: usize,
    device: &Device,
) -> Vec<[usize; 4]> {
    let all = summarize(net, [1, input[0], input[1], input[2]], device).taps;
    all[all.len().saturating_sub(taps)..].to_vec()
}

impl TeacherHead {
    pub fn init(
        net: &Network,
        ckpt: &Checkpoint,
        cfg: &ExtractorConfig,
        taps: usize,
        device: &Device,
    ) -> Self {
        let classes = ckpt.meta.classes.len();
        let extractors = tap_shapes(net, ckpt.meta.input, taps, device)
            .iter()
            .map(|s| cfg.init(s[1], classes, device))
            .collect();
        Self { extractors }
    }

    /// Mean of the aux heads' logits over the taps.
    pub fn logits(&self, taps: &[Tensor<4>]) -> Tensor<2> {
        let n = self.extractors.len() as f64;
        self.extractors
            .iter()
            .zip(taps)
            .map(|(e, t)| e.forward(t.clone(), None).aux_logits)
            .reduce(|a, b| a + b)
            .expect("at least one extractor")
            .div_scalar(n)
    }
}

/// Where `lstmkd adapt` writes for a teacher checkpoint.
pub fn run_dir(teacher_checkpoint: &Path) -> PathBuf {
    teacher_checkpoint
        .parent()
        .unwrap_or(Path::new("."))
        .join("adapt")
}

fn last_taps(net: &Network, images: Tensor<4>, n: usize) -> Vec<Tensor<4>> {
    super::deepest(net.forward(images).taps, n)
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
        let n = logits.len() as f64;
        StepLoss {
            total: parts
                .iter()
                .map(|(_, l)| l.clone())
                .reduce(|a, b| a + b)
                .expect("extractors"),
            logits: logits
                .into_iter()
                .reduce(|a, b| a + b)
                .expect("extractors")
                .div_scalar(n),
            parts,
        }
    }

    fn logits(&self, head: &TeacherHead, images: Tensor<4>) -> Tensor<2> {
        head.logits(&last_taps(&self.backbone, images, self.taps))
    }
}

/// Fits the teacher's extractors for the distillation config `cfg` (resuming if started).
pub fn adapt(cfg: &RunConfig) -> Result<PathBuf> {
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
    // Adaptation continues whatever was started in its directory.
    let resuming = dir.join(CONFIG_FILE).exists();
    let run = Run::new(run_cfg, resuming)?;
    let backbone = teacher.network(&run.device)?.valid().fold_bn();
    run.train_device.seed(cfg.train.seed);
    let head = TeacherHead::init(
        &backbone,
        &teacher,
        &distill.extractor,
        distill.taps,
        &run.train_device,
    );
    let (head, optim, start) = start_or_resume(&run, head, run.cfg.optim.init())?;
    let mut task = Adapt {
        backbone,
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
