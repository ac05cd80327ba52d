//! One TOML file describes a run; `--set key=value` overrides any key. Unknown keys are errors.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::data::DataConfig;
use crate::models::ModelConfig;
use crate::optim::{OptimConfig, ScheduleConfig};
use crate::precision::Precision;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    pub(crate) epochs: usize,
    pub(crate) batch_size: usize,
    /// Batch size for validation and evaluation (default: `batch_size`).
    #[serde(default)]
    pub(crate) eval_batch_size: Option<usize>,
    #[serde(default)]
    pub seed: u64,
    /// Run directory: config, metrics and checkpoints are written here.
    pub out_dir: PathBuf,
    #[serde(default = "default_device")]
    pub device: String,
    /// Steps between mid-epoch checkpoints (`last.ckpt`, resumable at that step) for long
    /// epochs; 0: at epoch ends only.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub(crate) checkpoint_every: usize,
    /// The trained backbone's arithmetic: "f32", "f16" (loss-scaled) or "bf16".
    #[serde(default, skip_serializing_if = "Precision::is_f32")]
    pub precision: Precision,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

fn default_device() -> String {
    "flex".into()
}

impl TrainConfig {
    pub fn eval_batch_size(&self) -> usize {
        self.eval_batch_size.unwrap_or(self.batch_size)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    pub data: DataConfig,
    pub model: ModelConfig,
    pub optim: OptimConfig,
    #[serde(default)]
    pub schedule: ScheduleConfig,
    pub train: TrainConfig,
    /// Distillation only: the frozen teacher.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub teacher: Option<crate::distill::TeacherConfig>,
    /// Distillation only: losses, extractor, temperature, phases.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distill: Option<crate::distill::DistillConfig>,
}

/// Parses an override value as a TOML value (number, bool, array, quoted string), falling
/// back to a bare string so that `--set data.root=/some/path` works unquoted.
fn parse_value(raw: &str) -> toml::Value {
    toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()))
}

/// The dotted key at byte `at` of a TOML text as `toml::to_string` writes one (`[a.b]`
/// headers, `key = value` lines): what an error's position points at, named.
fn key_at(text: &str, at: usize) -> Option<String> {
    let before = text.get(..at)?;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = text[line_start..].lines().next()?;
    let header = |l: &str| {
        let l = l.trim();
        (l.starts_with('[') && l.ends_with(']')).then(|| l.trim_matches(['[', ']']).to_string())
    };
    if let Some(table) = header(line) {
        return Some(table);
    }
    let key = line.split_once('=')?.0.trim().trim_matches('"');
    let table = text[..line_start].lines().rev().find_map(header);
    Some(match table {
        Some(t) => format!("{t}.{key}"),
        None => key.to_string(),
    })
}

/// Applies `key.path=value` overrides to a parsed TOML table.
pub(crate) fn apply_overrides(table: &mut toml::Table, overrides: &[String]) -> Result<()> {
    for o in overrides {
        let (key, value) = o
            .split_once('=')
            .with_context(|| format!("--set '{o}': expected key=value"))?;
        let parts: Vec<&str> = key.trim().split('.').collect();
        if parts.iter().any(|p| p.is_empty()) {
            bail!("--set '{o}': empty key segment");
        }
        let mut t = &mut *table;
        for p in &parts[..parts.len() - 1] {
            t = t
                .entry(p.to_string())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()))
                .as_table_mut()
                .with_context(|| format!("--set '{o}': '{p}' is not a table"))?;
        }
        t.insert(
            parts[parts.len() - 1].to_string(),
            parse_value(value.trim()),
        );
    }
    Ok(())
}

/// The settings in which `there` and `here` differ, each as "<prefix><key> <there> there,
/// <here> here", nested tables flattened to dotted keys; a key one side leaves out reads
/// "default". Compared as serialised, so a field added to a config later is compared too.
pub(crate) fn differences(prefix: &str, there: &toml::Table, here: &toml::Table) -> Vec<String> {
    let keys: std::collections::BTreeSet<&String> = there.keys().chain(here.keys()).collect();
    let shown =
        |v: Option<&toml::Value>| v.map_or_else(|| "default".to_string(), |v| v.to_string());
    let mut out = Vec::new();
    for k in keys {
        match (there.get(k), here.get(k)) {
            (Some(toml::Value::Table(a)), Some(toml::Value::Table(b))) => {
                out.extend(differences(&format!("{prefix}{k}."), a, b));
            }
            (a, b) if a != b => {
                out.push(format!("{prefix}{k} {} there, {} here", shown(a), shown(b)))
            }
            _ => {}
        }
    }
    out
}

impl RunConfig {
    /// Parses TOML text (`origin` names it in errors) with overrides applied.
    pub fn parse(text: &str, origin: &str, overrides: &[String]) -> Result<Self> {
        let mut table: toml::Table =
            toml::from_str(text).with_context(|| format!("{origin}: invalid TOML"))?;
        apply_overrides(&mut table, overrides)?;
        // Round-tripping through text gives serde's errors the key path and position.
        let text = toml::to_string(&table)?;
        let mut cfg: RunConfig = toml::from_str(&text).map_err(|e| {
            let hint = if overrides.is_empty() {
                String::new()
            } else {
                format!(" (after --set {})", overrides.join(" "))
            };
            let key = e
                .span()
                .and_then(|span| key_at(&text, span.start))
                .map_or(String::new(), |k| format!("{k}: "));
            anyhow::anyhow!(
                "{origin}{hint}: invalid config: {key}{}",
                e.message().trim()
            )
        })?;
        cfg.validate()
            .with_context(|| format!("{origin}: invalid config"))?;
        if let Some(d) = &mut cfg.distill {
            d.options = d.options.normalized()?;
        }
        Ok(cfg)
    }

    /// The config lstmkd wrote into a run folder (`config.toml`), in today's form whatever
    /// version wrote it (`losses::migrate_written`).
    pub fn load_written(path: &Path, overrides: &[String]) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("{}: cannot read config", path.display()))?;
        let mut table: toml::Table =
            toml::from_str(&text).with_context(|| format!("{}: invalid TOML", path.display()))?;
        if let Some(toml::Value::Table(distill)) = table.get_mut("distill") {
            crate::distill::losses::migrate_written(distill);
        }
        Self::parse(
            &toml::to_string(&table)?,
            &path.display().to_string(),
            overrides,
        )
    }

    pub fn load(path: &Path, overrides: &[String]) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("{}: cannot read config", path.display()))?;
        Self::parse(&text, &path.display().to_string(), overrides)
    }

    pub(crate) fn validate(&self) -> Result<()> {
        self.data.validate()?;
        self.model.validate()?;
        self.optim.validate()?;
        self.schedule.validate(self.train.epochs)?;
        if self.train.epochs == 0 {
            bail!("train.epochs: must be at least 1");
        }
        if self.train.batch_size == 0 || self.train.eval_batch_size == Some(0) {
            bail!("train.batch_size / train.eval_batch_size: must be at least 1");
        }
        crate::device::parse(&self.train.device).context("train.device")?;
        if let Some(d) = &self.distill {
            d.validate()?;
        }
        Ok(())
    }

    /// The `[teacher]` and `[distill]` tables, which distillation and adaptation need.
    pub fn distillation(
        &self,
    ) -> Result<(
        &crate::distill::TeacherConfig,
        &crate::distill::DistillConfig,
    )> {
        match (&self.teacher, &self.distill) {
            (Some(t), Some(d)) => Ok((t, d)),
            _ => bail!(
                "the config needs [teacher] and [distill] tables (see docs/CONFIGURATION.md, Distillation)"
            ),
        }
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("a RunConfig always serialises")
    }
}
