//! Checkpoints: one self-describing file, written atomically (temporary file, fsync, rename).
//!
//! Layout (version 2): the magic `LSTMKD02`, then three length-prefixed sections (a JSON
//! header, the model's record, the optimiser's state, empty unless `last`), then the CRC-32 of
//! everything before it, so that a flipped bit is an error instead of wrong weights. The
//! header describes the network without needing a run behind it (model, input, classes,
//! normalisation), which is what an imported checkpoint has; the run's config and progress
//! come along only where there was a run. Version 1 files (`LSTMKD01`, no checksum, the run
//! config as the header) still load.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::module::Module;
use burn::store::ModuleRecord;
use burn::tensor::{Bytes, Device};
use serde::{Deserialize, Serialize};

use crate::config::RunConfig;
use crate::models::{ModelConfig, Network};
use crate::precision::LossScale;

const MAGIC_V1: &[u8; 8] = b"LSTMKD01";
const MAGIC: &[u8; 8] = b"LSTMKD02";

/// Where the checkpoint's network came from and how it reads its inputs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Meta {
    pub model: ModelConfig,
    /// [C, H, W] of the network's inputs.
    pub input: [usize; 3],
    pub classes: Vec<String>,
    /// Per-channel normalisation of pixels in [0, 1].
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
    /// Inference pre-processing: the shorter side is resized to this before the centre crop
    /// to H x W (0: images are resized straight to H x W).
    #[serde(default)]
    pub resize: usize,
    /// What wrote it, e.g. "lstmkd train" or "imported from resnet18.pth".
    pub origin: String,
    /// The training run behind the weights, when there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<RunState>,
    /// A fused deployed student: the record is backbone + extractors (`FusedStudent`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fused: Option<crate::distill::FusedSpec>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RunState {
    pub config: RunConfig,
    /// Epochs completed when the checkpoint was taken.
    pub epoch: usize,
    /// -1 before any validation.
    pub best_val_acc: f64,
    /// The last finished epoch's validation accuracy (0 before the first).
    pub val_acc: f64,
    /// An interrupted epoch: the steps of epoch `epoch` (0-based) already taken and what the
    /// epoch's record had summed so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partial: Option<PartialEpoch>,
    /// f16's loss scaling where the run trains in f16 (`train.precision`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_scale: Option<LossScale>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PartialEpoch {
    pub steps: usize,
    pub loss_sum: f64,
    pub correct: f64,
    pub seen: usize,
    pub parts: std::collections::BTreeMap<String, f64>,
    pub lr: f64,
    pub seconds: f64,
}

/// The version 1 header: the run itself.
#[derive(Deserialize)]
struct MetaV1 {
    config: RunConfig,
    epoch: usize,
    best_val_acc: f64,
    val_acc: f64,
    input: [usize; 3],
    classes: Vec<String>,
}

impl Meta {
    /// Refuses data the network cannot read: images of another shape, another class count,
    /// or another number of frames per sample. `what` names the network's checkpoint.
    pub fn check_data(&self, dataset: &crate::data::Dataset, what: &str) -> Result<()> {
        let describe = |(shape, classes, frames): ([usize; 3], usize, usize)| {
            format!(
                "images {shape:?} (C, H, W) with {classes} classes, {frames} frame(s) per sample"
            )
        };
        let data = (dataset.shape(), dataset.num_classes(), dataset.frames());
        let wanted = (self.input, self.classes.len(), self.model.frames);
        if data != wanted {
            bail!(
                "data: {} do not fit {what}, which reads {}",
                describe(data),
                describe(wanted)
            );
        }
        Ok(())
    }

    /// The header of a checkpoint written during a run (its normalisation resolved).
    pub(crate) fn of_run(run: RunState, input: [usize; 3], classes: Vec<String>) -> Self {
        let config = &run.config;
        let data = &config.data;
        let cropped = data.format.decodes_files() && data.crop > 0;
        Self {
            model: config.model.clone(),
            input,
            classes,
            mean: data.mean.clone().unwrap_or_default(),
            std: data.std.clone().unwrap_or_default(),
            resize: if cropped { data.resize } else { 0 },
            // An adaptation is a run with a distill table and no teacher (`train::adapt`).
            origin: match (&config.teacher, &config.distill) {
                (Some(_), _) => "lstmkd distill",
                (None, Some(_)) => "lstmkd adapt",
                (None, None) => "lstmkd train",
            }
            .into(),
            run: Some(run),
            fused: None,
        }
    }

    /// The run behind the checkpoint, or an error naming what needs one.
    pub(crate) fn run(&self, what: &str) -> Result<&RunState> {
        self.run.as_ref().with_context(|| {
            format!(
                "{what} needs a checkpoint written by a training run; this one was {}",
                self.origin
            )
        })
    }

    fn from_v1(v1: MetaV1) -> Self {
        let run = RunState {
            config: v1.config,
            epoch: v1.epoch,
            best_val_acc: v1.best_val_acc,
            val_acc: v1.val_acc,
            partial: None,
            loss_scale: None,
        };
        Self::of_run(run, v1.input, v1.classes)
    }

    fn validate(&self) -> Result<()> {
        self.model.validate()?;
        let c = self.input[0];
        if self.input.contains(&0) {
            bail!("input {:?} has a zero size", self.input);
        }
        if self.classes.is_empty() {
            bail!("no classes");
        }
        if self.mean.len() != c || self.std.len() != c {
            bail!(
                "normalisation has {} means and {} stds for {c} input channels",
                self.mean.len(),
                self.std.len()
            );
        }
        if self.std.iter().any(|&s| !(s > 0.0 && s.is_finite())) {
            bail!("normalisation std must be positive");
        }
        if let Some(f) = &self.fused {
            f.extractor.validate()?;
            if f.extractors.is_empty() || f.extractors.contains(&0) {
                bail!("fused: extractor channels {:?}", f.extractors);
            }
        }
        Ok(())
    }
}

pub struct Checkpoint {
    pub meta: Meta,
    pub(crate) model: Vec<u8>,
    pub(crate) optim: Vec<u8>,
}

/// Writes `bytes` to `path` so that a reader sees either the old file or the new one.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp: PathBuf = path.with_extension("tmp");
    {
        let mut f = std::fs::File::create(&tmp)
            .with_context(|| format!("{}: cannot create", tmp.display()))?;
        f.write_all(bytes)
            .and_then(|_| f.sync_all())
            .with_context(|| format!("{}: cannot write", tmp.display()))?;
    }
    std::fs::rename(&tmp, path)
        .with_context(|| format!("{}: cannot move into place", path.display()))?;
    if let Some(dir) = path.parent().and_then(|d| std::fs::File::open(d).ok()) {
        // Makes the rename itself durable; failure here only weakens crash safety.
        let _ = dir.sync_all();
    }
    Ok(())
}

/// An exclusive lock on a hidden file beside `path` (its folder created), held until the
/// returned file is dropped: processes sharing `path` take turns.
pub(crate) fn lock_beside(path: &Path) -> Result<std::fs::File> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    if let Some(dir) = dir {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("{}: cannot create", dir.display()))?;
    }
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let lock_path = path.with_file_name(format!(".{name}.lock"));
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("{}: cannot create", lock_path.display()))?;
    lock.lock()
        .with_context(|| format!("{}: cannot lock", lock_path.display()))?;
    Ok(lock)
}

fn push_section(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
    out.extend_from_slice(bytes);
}

/// Reads length-prefixed sections, checking every length against what is left of the file
/// before allocating.
struct Sections<'a> {
    rest: &'a [u8],
    path: &'a Path,
}

impl<'a> Sections<'a> {
    fn next(&mut self) -> Result<&'a [u8]> {
        let truncated = || format!("{}: truncated checkpoint", self.path.display());
        let (len, rest) = self.rest.split_at_checked(8).with_context(truncated)?;
        let n = u64::from_le_bytes(len.try_into().expect("8 bytes"));
        let n = usize::try_from(n)
            .ok()
            .filter(|&n| n <= rest.len())
            .with_context(truncated)?;
        let (section, rest) = rest.split_at(n);
        self.rest = rest;
        Ok(section)
    }
}

impl Checkpoint {
    pub fn new<M: Module>(
        meta: Meta,
        model: &M,
        optim: Option<&burn::optim::ModuleOptimizer>,
    ) -> Result<Self> {
        // valid() folds the batch norms' pending running-statistics updates in (burn keeps the
        // last update of a training step aside until then); a mid-epoch checkpoint would
        // otherwise hold statistics one step old.
        let model = model
            .valid()
            .into_record()
            .into_bytes()
            .map_err(|e| anyhow::anyhow!("cannot serialise the model: {e}"))?
            .to_vec();
        let optim = match optim {
            Some(o) => o
                .into_bytes()
                .map_err(|e| anyhow::anyhow!("cannot serialise the optimiser: {e}"))?
                .to_vec(),
            None => Vec::new(),
        };
        Ok(Self { meta, model, optim })
    }

    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let header = serde_json::to_vec(&self.meta)?;
        let mut out = Vec::with_capacity(header.len() + self.model.len() + self.optim.len() + 36);
        out.extend_from_slice(MAGIC);
        push_section(&mut out, &header);
        push_section(&mut out, &self.model);
        push_section(&mut out, &self.optim);
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        Ok(out)
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        write_atomic(path, &self.to_bytes()?)
    }

    pub fn load(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path)
            .with_context(|| format!("{}: cannot read checkpoint", path.display()))?;
        Self::from_bytes(&bytes, path)
    }

    /// Parses a checkpoint's bytes; `path` names it in errors.
    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<Self> {
        let magic = bytes.get(..8);
        let v1 = magic == Some(MAGIC_V1);
        if !v1 && magic != Some(MAGIC) {
            bail!("{}: not an lstmkd checkpoint (wrong magic)", path.display());
        }
        let body = if v1 {
            &bytes[8..]
        } else {
            let Some((data, crc)) = bytes.split_at_checked(bytes.len().saturating_sub(4)) else {
                bail!("{}: truncated checkpoint", path.display());
            };
            if data.len() < 8 {
                bail!("{}: truncated checkpoint", path.display());
            }
            let stored = u32::from_le_bytes(crc.try_into().expect("4 bytes"));
            if crc32fast::hash(data) != stored {
                bail!(
                    "{}: checksum mismatch: the file is corrupt or truncated",
                    path.display()
                );
            }
            &data[8..]
        };
        let mut sections = Sections { rest: body, path };
        let header = sections.next()?;
        let model = sections.next()?.to_vec();
        let optim = sections.next()?.to_vec();
        let unreadable = || format!("{}: unreadable checkpoint header", path.display());
        let meta = if v1 {
            Meta::from_v1(serde_json::from_slice(header).with_context(unreadable)?)
        } else {
            serde_json::from_slice(header).with_context(unreadable)?
        };
        meta.validate()
            .with_context(|| format!("{}: invalid checkpoint header", path.display()))?;
        Ok(Self { meta, model, optim })
    }

    /// Loads the weights into `model` (same architecture).
    pub fn apply<M: Module>(&self, model: M) -> Result<M> {
        let record = ModuleRecord::from_bytes(Bytes::from_bytes_vec(self.model.clone()))
            .map_err(|e| anyhow::anyhow!("checkpoint model record: {e}"))?;
        model
            .try_load_record(record)
            .map_err(|e| anyhow::anyhow!("checkpoint does not fit the model: {e}"))
    }

    pub(crate) fn optimizer(
        &self,
        optim: burn::optim::ModuleOptimizer,
    ) -> Result<burn::optim::ModuleOptimizer> {
        if self.optim.is_empty() {
            bail!("checkpoint holds no optimiser state (only 'last.ckpt' does)");
        }
        optim
            .from_bytes(Bytes::from_bytes_vec(self.optim.clone()))
            .map_err(|e| anyhow::anyhow!("checkpoint optimiser state: {e}"))
    }

    /// Rebuilds the zoo model the checkpoint holds, with its weights, on `device`.
    pub fn network(&self, device: &Device) -> Result<Network> {
        let m = &self.meta;
        if m.fused.is_some() {
            bail!(
                "this is a fused student (backbone + extractors): eval, predict and export take it, a teacher or a resume cannot"
            );
        }
        let net = m.model.init(m.input[0], m.classes.len(), device)?;
        self.apply(net)
    }
}
