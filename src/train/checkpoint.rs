//! Checkpoints: one file holding a JSON header, the model's record and (for `last`) the
//! optimiser's state, written atomically (temporary file, fsync, rename).

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::module::Module;
use burn::store::ModuleRecord;
use burn::tensor::{Bytes, Device};
use serde::{Deserialize, Serialize};

use crate::config::RunConfig;
use crate::models::Network;

const MAGIC: &[u8; 8] = b"LSTMKD01";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Meta {
    pub config: RunConfig,
    /// Epochs completed when the checkpoint was taken.
    pub epoch: usize,
    pub best_val_acc: f64,
    pub val_acc: f64,
    /// [C, H, W] of the inputs, and the class names.
    pub input: [usize; 3],
    pub classes: Vec<String>,
}

pub struct Checkpoint {
    pub meta: Meta,
    pub model: Vec<u8>,
    pub optim: Vec<u8>,
}

/// Writes `bytes` to `path` so that a reader sees either the old file or the new one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
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

fn push_section(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
    out.extend_from_slice(bytes);
}

impl Checkpoint {
    pub fn new<M: Module>(
        meta: Meta,
        model: &M,
        optim: Option<&burn::optim::ModuleOptimizer>,
    ) -> Result<Self> {
        let model = model
            .clone()
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

    pub fn save(&self, path: &Path) -> Result<()> {
        let header = serde_json::to_vec(&self.meta)?;
        let mut out = Vec::with_capacity(header.len() + self.model.len() + self.optim.len() + 32);
        out.extend_from_slice(MAGIC);
        push_section(&mut out, &header);
        push_section(&mut out, &self.model);
        push_section(&mut out, &self.optim);
        write_atomic(path, &out)
    }

    pub fn load(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path)
            .with_context(|| format!("{}: cannot read checkpoint", path.display()))?;
        if bytes.len() < 8 || &bytes[..8] != MAGIC {
            bail!("{}: not an lstmkd checkpoint (wrong magic)", path.display());
        }
        let mut rest = &bytes[8..];
        let mut section = || -> Result<Vec<u8>> {
            if rest.len() < 8 {
                bail!("{}: truncated checkpoint", path.display());
            }
            let n = u64::from_le_bytes(rest[..8].try_into().unwrap()) as usize;
            if rest.len() < 8 + n {
                bail!("{}: truncated checkpoint", path.display());
            }
            let s = rest[8..8 + n].to_vec();
            rest = &rest[8 + n..];
            Ok(s)
        };
        let header = section()?;
        let model = section()?;
        let optim = section()?;
        let meta: Meta = serde_json::from_slice(&header)
            .with_context(|| format!("{}: unreadable checkpoint header", path.display()))?;
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

    pub fn optimizer(
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

    /// Rebuilds the zoo model the checkpoint was trained as, with its weights, on `device`.
    pub fn network(&self, device: &Device) -> Result<Network> {
        let m = &self.meta;
        let net = m.config.model.init(m.input[0], m.classes.len(), device)?;
        self.apply(net)
    }
}
