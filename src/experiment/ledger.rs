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

use super::{SeedResult, legacy_key};
use crate::config::RunConfig;
use crate::train::checkpoint::{Checkpoint, lock_beside, write_atomic};

/// The version of lstmkd's numbers. Every change that alters what a run computes (a step's
/// arithmetic or summation order, initialisation, data order, augmentation) bumps it, so that
/// a ledger never reports a run of older code as one of this code: it is part of every key.
/// `ledger::results_version_pins_a_distillation_steps_numbers` fails when a step's numbers
/// change and this does not.
pub const RESULTS_VERSION: u32 = 2;

/// The key format of entries recorded before keys were versioned (no `key_format` field):
/// every run committed up to then, all of results version 1.
const LEGACY_FORMAT: u32 = 1;
pub(crate) const KEY_FORMAT: u32 = 2;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    pub(crate) row: String,
    pub(crate) seed: u64,
    /// The run's key (`Keys`), of format `key_format`.
    pub(crate) config_sha256: String,
    #[serde(default = "legacy_format")]
    pub key_format: u32,
    #[serde(default = "legacy_format")]
    pub results_version: u32,
    /// The code that trained it (`git describe` of the build), "unknown" when the build had
    /// no git or the entry predates this field.
    #[serde(default = "unknown")]
    pub code: String,
    pub(crate) result: SeedResult,
    pub(crate) params: usize,
    pub(crate) latency_ms_b1: f64,
    pub(crate) throughput_b64: f64,
    /// The CPU it ran on (`/proc/cpuinfo`'s model name) and when it finished (Unix seconds).
    pub(crate) machine: String,
    pub(crate) finished_unix: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct File {
    runs: Vec<Entry>,
}

fn legacy_format() -> u32 {
    LEGACY_FORMAT
}

fn unknown() -> String {
    "unknown".into()
}

/// The code this binary was built from, as recorded in new entries.
pub fn code() -> &'static str {
    env!("LSTMKD_CODE")
}

pub struct Ledger {
    path: PathBuf,
    file: File,
}

/// What identifies a run, in the current format and in the legacy one that committed entries
/// of results version 1 carry. A distillation whose extractors are not adapted (yet) has no
/// current key: the runner adapts them before it looks such a run up again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    pub current: Option<String>,
    /// None for a config the legacy layout cannot express (it sets an option added since).
    pub legacy: Option<String>,
}

/// Everything that decides a run's numbers, hashed into its key. The config is serialised
/// without its output folder; a config field added later must be left out of the
/// serialisation at its default (`skip_serializing_if`), or every recorded key changes
/// (`ledger::a_run_key_is_pinned` holds one key). The teacher's weights are hashed parameter by
/// parameter, not as file bytes: a checkpoint's header is not byte-for-byte the same when the
/// same teacher is trained again; of the adapted extractors' file, its weights section.
#[derive(Serialize)]
struct Key {
    key_format: u32,
    results_version: u32,
    config_sha256: String,
    teacher_weights_sha256: Option<String>,
    extractors_sha256: Option<String>,
}

/// The keys of the run `cfg`; with `teacher`, of its teacher's weights and, where its losses
/// read them, of the adapted extractors it will load.
pub fn keys(cfg: &RunConfig, teacher: bool) -> Result<Keys> {
    let mut cfg = cfg.clone();
    cfg.train.out_dir = PathBuf::new();
    let text = toml::to_string(&cfg).context("serialising the run's config")?;
    let teacher = cfg.teacher.as_ref().filter(|_| teacher);
    let weights = match teacher {
        Some(t) => {
            let net = Checkpoint::load(&t.checkpoint)?
                .network(&Device::flex())
                .with_context(|| format!("{}: the teacher", t.checkpoint.display()))?;
            let mut bytes = Vec::new();
            net.visit(&mut Weights(&mut bytes));
            Some(bytes)
        }
        None => None,
    };
    let extractors = match (teacher, cfg.distill.as_ref()) {
        (Some(t), Some(d)) if d.needs().extractors => {
            let path = t.extractors_path();
            match path.exists() {
                true => Some(Some(sha256(&Checkpoint::load(&path)?.model))),
                false => None,
            }
        }
        _ => Some(None),
    };
    // Until keys were versioned, a key was the hash of the config text (in the layout of that
    // time) followed by the teacher's weights.
    let old_text = legacy_key::text(&cfg).context("serialising the run's config")?;
    let legacy = old_text
        .map(|text| sha256(&[text.as_bytes(), weights.as_deref().unwrap_or_default()].concat()));
    let current = match extractors {
        Some(extractors_sha256) => {
            let key = Key {
                key_format: KEY_FORMAT,
                results_version: RESULTS_VERSION,
                config_sha256: sha256(text.as_bytes()),
                teacher_weights_sha256: weights.as_deref().map(sha256),
                extractors_sha256,
            };
            Some(sha256(
                &serde_json::to_vec(&key).context("serialising a run's key")?,
            ))
        }
        None => None,
    };
    Ok(Keys { current, legacy })
}

/// The config part of a legacy key: the hash of the config as the code of key format 1
/// serialised it, without its output folder.
pub fn legacy_config_sha256(cfg: &RunConfig) -> Result<Option<String>> {
    let mut cfg = cfg.clone();
    cfg.train.out_dir = PathBuf::new();
    let text = legacy_key::text(&cfg).context("serialising the run's config")?;
    Ok(text.map(|t| sha256(t.as_bytes())))
}

fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Every parameter's shape and values, in visiting order.
struct Weights<'a>(&'a mut Vec<u8>);

impl ModuleVisitor for Weights<'_> {
    fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
        let value = p.val();
        self.0.extend(format!("{:?}", value.dims()).as_bytes());
        for v in value.into_data().iter::<f32>() {
            self.0.extend(v.to_le_bytes());
        }
    }
}

pub(crate) fn machine() -> String {
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

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The recorded run of `seed` with these keys, whatever its row was called: the key is
    /// the run. An entry of the legacy format is a run of results version 1, so it stands for
    /// this code's run only while that is the current version.
    pub fn find(&self, seed: u64, keys: &Keys) -> Option<&Entry> {
        self.file.runs.iter().find(|e| {
            e.seed == seed
                && match e.key_format {
                    LEGACY_FORMAT => {
                        RESULTS_VERSION == e.results_version
                            && keys.legacy.as_ref() == Some(&e.config_sha256)
                    }
                    _ => keys.current.as_ref() == Some(&e.config_sha256),
                }
        })
    }

    /// The other ledgers in this one's folder (`*-runs.json`), where another suite may have
    /// recorded a run with the same key: the comparison's KD is the research suite's KD. A
    /// file there that is not a ledger is an error, since passing over it would train its runs
    /// again, hours of them.
    pub(crate) fn siblings(&self) -> Result<Vec<Ledger>> {
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
    pub(crate) fn record(&mut self, entry: Entry) -> Result<()> {
        let _lock = lock_beside(&self.path)?;
        self.file = Ledger::open(&self.path)?.file;
        self.file
            .runs
            .retain(|e| !(e.row == entry.row && e.seed == entry.seed));
        self.file.runs.push(entry);
        write_atomic(&self.path, &serde_json::to_vec_pretty(&self.file)?)
    }
}
