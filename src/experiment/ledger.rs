//! A suite's ledger: the result of every finished (row, seed), in a JSON file meant to be
//! committed (by default `docs/reproducing/<suite>-<budget>-runs.json`). A run recorded there
//! with the same resolved config is taken from it instead of being trained again, so a suite
//! too long for one working day is carried on over several, on any machine with the teacher.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::SeedResult;
use crate::config::RunConfig;
use crate::train::checkpoint::{Checkpoint, lock_beside, write_atomic};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    pub row: String,
    pub seed: u64,
    /// SHA-256 of the run's resolved config without its output folder, and of its teacher's
    /// weights (`digest`).
    pub config_sha256: String,
    pub result: SeedResult,
    pub params: usize,
    pub latency_ms_b1: f64,
    pub throughput_b64: f64,
    /// The CPU it ran on (`/proc/cpuinfo`'s model name) and when it finished (Unix seconds).
    pub machine: String,
    pub finished_unix: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct File {
    runs: Vec<Entry>,
}

pub struct Ledger {
    path: PathBuf,
    file: File,
}

/// What identifies a run: its config but where it writes, and with `teacher` the weights of
/// the teacher it learns from (a retrained teacher at the same path makes another run). The
/// weights are hashed parameter by parameter, not as file bytes: a checkpoint's header is not
/// byte-for-byte the same when the same teacher is trained again. A config field added later
/// must be left out of the serialised config at its default (`skip_serializing_if`), or every
/// recorded key changes.
pub fn digest(cfg: &RunConfig, teacher: bool) -> Result<String> {
    let mut cfg = cfg.clone();
    cfg.train.out_dir = PathBuf::new();
    let text = toml::to_string(&cfg).context("serialising the run's config")?;
    let mut hash = Sha256::new();
    hash.update(text.as_bytes());
    if let Some(teacher) = cfg.teacher.as_ref().filter(|_| teacher) {
        let path = &teacher.checkpoint;
        let net = Checkpoint::load(path)?
            .network(&Device::flex())
            .with_context(|| format!("{}: the teacher", path.display()))?;
        net.visit(&mut Weights(&mut hash));
    }
    Ok(hash.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// Feeds every parameter's shape and values, in visiting order, to a hash.
struct Weights<'a>(&'a mut Sha256);

impl ModuleVisitor for Weights<'_> {
    fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
        let value = p.val();
        self.0.update(format!("{:?}", value.dims()).as_bytes());
        for v in value.into_data().iter::<f32>() {
            self.0.update(v.to_le_bytes());
        }
    }
}

pub fn machine() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

impl Ledger {
    /// The ledger at `path`; a missing file is an empty ledger.
    pub fn open(path: &Path) -> Result<Self> {
        let file = match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).with_context(|| {
                format!(
                    "{}: not a suite ledger (JSON with a `runs` list)",
                    path.display()
                )
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => File::default(),
            Err(e) => return Err(e).with_context(|| format!("{}: cannot read", path.display())),
        };
        Ok(Self {
            path: path.to_path_buf(),
            file,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The recorded run of `seed` whose key (`digest`) is `config_sha256`, whatever its row
    /// was called: the key is the run.
    pub fn find(&self, seed: u64, config_sha256: &str) -> Option<&Entry> {
        self.file
            .runs
            .iter()
            .find(|e| e.seed == seed && e.config_sha256 == config_sha256)
    }

    /// The other ledgers in this one's folder (`*-runs.json`), where another suite may have
    /// recorded a run with the same key: the comparison's KD is the research suite's KD. A
    /// file there that is not a ledger is an error, since passing over it would train its runs
    /// again, hours of them.
    pub fn siblings(&self) -> Result<Vec<Ledger>> {
        let dir = match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).with_context(|| format!("{}: cannot list", dir.display())),
        };
        let mut paths: Vec<PathBuf> = entries
            .map(|e| e.map(|e| e.path()))
            .collect::<std::io::Result<Vec<_>>>()
            .with_context(|| format!("{}: cannot list", dir.display()))?
            .into_iter()
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.ends_with("-runs.json"))
                    && p.file_name() != self.path.file_name()
            })
            .collect();
        paths.sort();
        paths
            .iter()
            .map(|p| {
                Ledger::open(p).with_context(|| {
                    format!(
                        "another suite's ledger beside {} (fix it or move it away)",
                        self.path.display()
                    )
                })
            })
            .collect()
    }

    /// Records `entry` (replacing an earlier one of its row and seed) and writes the file.
    /// Other processes may be recording other rows in the same file (`--rows`): under a lock
    /// beside it, the file is read again and the entry added to what it holds now.
    pub fn record(&mut self, entry: Entry) -> Result<()> {
        let _lock = lock_beside(&self.path)?;
        self.file = Ledger::open(&self.path)?.file;
        self.file
            .runs
            .retain(|e| !(e.row == entry.row && e.seed == entry.seed));
        self.file.runs.push(entry);
        write_atomic(&self.path, &serde_json::to_vec_pretty(&self.file)?)
    }
}
