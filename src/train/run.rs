//! A run: its directory, data splits and loaders, and the devices, set up from a config.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::tensor::Device;

use super::checkpoint::{Meta, PartialEpoch, RunState, write_atomic};
use super::folder_lock::FolderLock;
use crate::config::RunConfig;
use crate::data::augment::Normalize;
use crate::data::loader::Loader;
use crate::data::{Dataset, channel_stats, train_val_split};
use crate::precision::LossScale;

pub(crate) const CONFIG_FILE: &str = "config.toml";
pub(crate) const METRICS_FILE: &str = "metrics.jsonl";
pub(crate) const LAST: &str = "last.ckpt";
pub(crate) const BEST: &str = "best.ckpt";
/// The student a distillation deploys (its backbone, or backbone and extractors when fused).
pub(crate) const DEPLOYED: &str = "deployed.ckpt";

pub struct Run {
    /// The resolved config (normalisation statistics filled in).
    pub(crate) cfg: RunConfig,
    pub(crate) dir: PathBuf,
    pub(crate) dataset: Dataset,
    pub train: Loader,
    pub val: Loader,
    /// Plain device for inference; `train_device` adds autodiff.
    pub(crate) device: Device,
    pub(crate) train_device: Device,
    /// Training continues from `last.ckpt` (false: from epoch 0).
    pub(crate) resume: bool,
    /// Held by a run that writes its directory (none for a run opened only to read).
    _lock: Option<FolderLock>,
}

impl Run {
    /// Opens the data and the run directory. A new run refuses a directory that already holds
    /// a run; `resuming` continues the run there: from its `last.ckpt`, or, when it never
    /// finished an epoch (a failure in the first one), again from epoch 0.
    pub fn new(cfg: RunConfig, resuming: bool) -> Result<Self> {
        Self::new_checked(cfg, resuming, |_| Ok(()))
    }

    /// `new`, with `check` run on the opened data before anything is written, so that a
    /// run its caller refuses leaves no directory behind.
    pub(crate) fn new_checked(
        cfg: RunConfig,
        resuming: bool,
        check: impl FnOnce(&Run) -> Result<()>,
    ) -> Result<Self> {
        let dir = cfg.train.out_dir.clone();
        // Taken before the folder is read, so that what is checked is what this process
        // alone will change; a new folder is created (and taken) only once the run passes.
        let mut lock = match dir.is_dir() {
            true => Some(FolderLock::take(&dir)?),
            false => None,
        };
        let has_last = dir.join(LAST).exists();
        let has_run = has_last || dir.join(CONFIG_FILE).exists();
        if !resuming && has_run {
            bail!(
                "{}: already holds a run; continue it with --resume {} or choose another train.out_dir",
                dir.display(),
                dir.display()
            );
        }
        // What a run writes, in a folder that holds no run's config: starting one there
        // would overwrite those files, and continuing one is not possible.
        let written: Vec<&str> = [BEST, METRICS_FILE, DEPLOYED]
            .into_iter()
            .filter(|f| dir.join(f).exists())
            .collect();
        if !has_run && !written.is_empty() {
            bail!(
                "{}: holds {} but no {CONFIG_FILE}: not a run lstmkd can continue, and a new one would overwrite them; choose another train.out_dir",
                dir.display(),
                written.join(", ")
            );
        }
        if resuming && !has_run {
            bail!(
                "{}: holds no run to resume (no {CONFIG_FILE}); start one with --config FILE",
                dir.display()
            );
        }
        let mut run = Self::open(cfg)?;
        check(&run)?;
        run.resume = has_last;
        if lock.is_none() {
            lock = Some(FolderLock::take(&dir)?);
            // The folder did not exist when it was checked: another process may have
            // started a run there since.
            if dir.join(CONFIG_FILE).exists() {
                bail!(
                    "{}: another process started a run here meanwhile; continue it with --resume {} once it stops",
                    dir.display(),
                    dir.display()
                );
            }
        }
        run._lock = lock;
        if !has_last {
            if resuming {
                eprintln!(
                    "{}: no {LAST} yet (no epoch finished): starting the run again from epoch 0",
                    dir.display()
                );
            }
            write_atomic(&dir.join(CONFIG_FILE), run.cfg.to_toml().as_bytes())?;
            // Records of epochs that never reached a checkpoint would be repeated.
            let metrics = dir.join(METRICS_FILE);
            if metrics.exists() {
                std::fs::remove_file(&metrics)
                    .with_context(|| format!("{}: cannot remove", metrics.display()))?;
            }
        }
        Ok(run)
    }

    /// Opens the data and builds the loaders without touching the run directory.
    pub fn open(mut cfg: RunConfig) -> Result<Self> {
        let dir = cfg.train.out_dir.clone();
        let device = crate::device::parse(&cfg.train.device)?;
        cfg.train.precision.check(&device, &cfg.train.device)?;
        let dataset = cfg.data.open()?;
        // The model's frame count follows the data: a clip set makes it a clip model.
        let frames = dataset.frames();
        if cfg.model.frames != 1 && cfg.model.frames != frames {
            bail!(
                "model.frames: {} but the data has {frames} frames per sample (model.frames follows data.frames; leave it out)",
                cfg.model.frames
            );
        }
        cfg.model.frames = frames;
        let net = cfg
            .model
            .init(dataset.shape()[0], dataset.num_classes(), &device)?;
        crate::models::check_input(&net, &cfg.model.name, dataset.shape(), &device)?;
        let (mut train, val) =
            train_val_split(dataset.train.clone(), cfg.data.val_fraction, cfg.train.seed);
        if let Some(limit) = cfg.data.limit_train {
            // The split is already a seeded shuffle: its first `limit` images are a seeded sample.
            train.indices =
                std::sync::Arc::new(train.indices.iter().take(limit).copied().collect());
        }
        if train.is_empty() || val.is_empty() {
            bail!(
                "data: {} training images are too few for a validation fraction of {}",
                dataset.train.len(),
                cfg.data.val_fraction
            );
        }
        let [channels, h, w] = dataset.shape();
        // A crop of more padding than image would be mostly padding, and the padded view
        // is allocated whole.
        let pad = cfg.data.augment.pad_crop;
        if pad > h.min(w) {
            bail!(
                "data.pad_crop: {pad} pixels of padding on {h}x{w} images; at most {}",
                h.min(w)
            );
        }
        if cfg.data.mean.is_none() || cfg.data.std.is_none() {
            let (mean, std) = channel_stats(&train, 10_000)?;
            cfg.data.mean.get_or_insert(mean);
            cfg.data.std.get_or_insert(std);
        }
        let (mean, std) = (
            cfg.data.mean.clone().unwrap(),
            cfg.data.std.clone().unwrap(),
        );
        if mean.len() != channels || std.len() != channels {
            bail!(
                "data.mean / data.std: need {channels} values (one per channel), got {} and {}",
                mean.len(),
                std.len()
            );
        }
        let normalize = Normalize::new(&mean, &std);
        let val = Loader::evaluation(
            val,
            cfg.train.eval_batch_size(),
            normalize.clone(),
            cfg.data.prefetch,
        );
        let train = Loader {
            split: train,
            batch_size: cfg.train.batch_size,
            normalize,
            augment: Some(cfg.data.augment),
            seed: cfg.train.seed,
            prefetch: cfg.data.prefetch,
        };
        Ok(Self {
            train_device: device.clone().autodiff(),
            device,
            cfg,
            dir,
            dataset,
            train,
            val,
            resume: false,
            _lock: None,
        })
    }

    pub(crate) fn meta(
        &self,
        epoch: usize,
        val_acc: f64,
        best_val_acc: f64,
        partial: Option<PartialEpoch>,
        loss_scale: Option<LossScale>,
    ) -> Meta {
        let state = RunState {
            config: self.cfg.clone(),
            epoch,
            val_acc,
            best_val_acc,
            partial,
            loss_scale,
        };
        Meta::of_run(state, self.dataset.shape(), self.dataset.classes.clone())
    }
}

/// The settings in which the run already in `dir` differs from `cfg`, leaving out what a run
/// fills in when it starts (normalisation, frame count) where `cfg` leaves it to the run.
pub(crate) fn stored_differences(dir: &Path, cfg: &RunConfig) -> Result<Vec<String>> {
    let stored = RunConfig::load_written(&dir.join(CONFIG_FILE), &[])?;
    let mut wanted = cfg.clone();
    wanted.train.out_dir = stored.train.out_dir.clone();
    wanted.data.mean = wanted.data.mean.or_else(|| stored.data.mean.clone());
    wanted.data.std = wanted.data.std.or_else(|| stored.data.std.clone());
    if wanted.model.frames == 1 {
        wanted.model.frames = stored.model.frames;
    }
    let table = |c: &RunConfig| toml::Table::try_from(c).context("serialising a run's config");
    Ok(crate::config::differences(
        "",
        &table(&stored)?,
        &table(&wanted)?,
    ))
}
