//! Distillation losses, one file each, and the registry that names them for configs. A new
//! method is one file here with a `SPEC` plus one line in `REGISTRY`, including a method with
//! options (its `Options` type, read from `[distill.<name>]`, with its defaults and checks) and
//! one that trains parts of its own (its `init` builds them as `Parts`, which the student
//! carries, trains and checkpoints).

pub mod at;
pub mod aux_ce;
pub mod ce;
pub mod crd;
pub mod dkd;
pub mod fitnet;
pub mod kd;
pub mod ntxent;
pub mod temporal;

use std::collections::BTreeMap;

use burn::module::{Module, RunningState};
use burn::nn::Linear;
use burn::tensor::{Device, Int, Tensor};

use super::extractor::ExtractorOut;
use crate::models::layers::ConvBn;

/// Everything a loss may read for one batch. Teacher tensors carry no autodiff graph.
pub struct Inputs<'a> {
    pub(crate) student_logits: &'a Tensor<2>,
    pub(crate) teacher_logits: &'a Tensor<2>,
    /// Every tap of each model (one per stage), shallow to deep; `taps_of` picks a loss's.
    pub(crate) student_taps: &'a [Tensor<4>],
    pub(crate) teacher_taps: &'a [Tensor<4>],
    /// The teacher's taps on a second augmented view of the batch (empty unless a loss
    /// needs it).
    pub(crate) teacher_view_taps: &'a [Tensor<4>],
    /// How many of the deepest taps are distilled (`distill.taps`).
    pub(crate) taps: usize,
    /// Present when a loss that needs extractors is configured.
    pub(crate) student_extractors: &'a [ExtractorOut],
    pub(crate) teacher_extractors: &'a [ExtractorOut],
    pub targets: &'a Tensor<1, Int>,
    /// Targets as distributions (one-hot, or mixed by TMix), [B, K].
    pub(crate) soft_targets: &'a Tensor<2>,
    pub(crate) temperature: f64,
    /// The share of the run done by the end of the current step, in (0, 1].
    pub(crate) progress: f64,
    /// Each image's position in the training split (CRD's memory index).
    pub(crate) samples: &'a [usize],
    /// A seed for the loss's own sampling in this step (CRD's negatives).
    pub(crate) step_seed: u64,
    /// Logit standardisation (Sun et al., CVPR 2024) for the logit losses (`kd`, `dkd`).
    pub(crate) standardize_logits: bool,
    pub(crate) options: &'a LossOptions,
}

impl Inputs<'_> {
    /// The student's and the teacher's taps that `loss` compares, paired shallow to deep.
    pub(crate) fn taps_of(&self, loss: &str) -> (&[Tensor<4>], &[Tensor<4>]) {
        let n = tap_count(self.options, loss, self.taps);
        deepest_pair(self.student_taps, self.teacher_taps, n)
    }
}

/// The deepest `n` of each side's taps (as many as both have), so that they pair shallow to
/// deep.
fn deepest_pair<'a, T>(student: &'a [T], teacher: &'a [T], n: usize) -> (&'a [T], &'a [T]) {
    let n = n.min(student.len()).min(teacher.len());
    (&student[student.len() - n..], &teacher[teacher.len() - n..])
}

/// How many of the deepest taps `loss` compares: the `taps` of its table (the losses that
/// compare taps have one), else `taps`.
pub(crate) fn tap_count(options: &LossOptions, loss: &str, taps: usize) -> usize {
    options
        .table(loss)
        .and_then(|t| t.get("taps"))
        .and_then(toml::Value::as_integer)
        .map_or(taps, |n| n as usize)
}

/// Trainable parts a loss owns (FitNet's regressors, CRD's embedding heads), built by its
/// spec's `init`: trained with the student, saved in its checkpoints, restored on resume.
#[derive(Module, Debug, Default)]
pub struct Parts {
    pub convs: Vec<ConvBn>,
    pub(crate) linears: Vec<Linear>,
    /// State the loss updates itself rather than the optimiser (CRD's memories).
    pub states: Vec<RunningState<Tensor<2>>>,
}

/// What a loss's `init` may build its parts from.
pub struct PartsContext<'a> {
    /// Shapes `[1, channels, h, w]` of every tap of each model, shallow to deep.
    pub(crate) student_taps: &'a [[usize; 4]],
    pub(crate) teacher_taps: &'a [[usize; 4]],
    pub(crate) taps: usize,
    pub classes: usize,
    /// Images in the training split (CRD keeps a memory row per image).
    pub(crate) samples: usize,
    pub(crate) options: &'a LossOptions,
}

impl PartsContext<'_> {
    /// The tap shapes `loss` compares, paired as `Inputs::taps_of` pairs the taps.
    pub(crate) fn taps_of(&self, loss: &str) -> Vec<([usize; 4], [usize; 4])> {
        let n = tap_count(self.options, loss, self.taps);
        let (s, t) = deepest_pair(self.student_taps, self.teacher_taps, n);
        s.iter().copied().zip(t.iter().copied()).collect()
    }
}

/// Each loss's own options: the `[distill.<loss>]` tables as given. A loss's file defines
/// their keys, defaults and checks (its `Options` type and its spec's `options`) and reads
/// them with `of`; `validate` refuses a table no loss owns, naming the key that replaced an
/// old one.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub(crate) struct LossOptions(BTreeMap<String, toml::Value>);

/// The flat `[distill]` keys of per-loss options before each loss had its table: old key, the
/// loss, its key there, and the default that code wrote into every run's config.toml.
const MOVED: &[(&str, &str, &str, f64)] = &[
    ("at_normalize", "at", "normalize", 1.0),
    ("dkd_alpha", "dkd", "alpha", 1.0),
    ("dkd_beta", "dkd", "beta", 8.0),
    ("dkd_temperature", "dkd", "temperature", 4.0),
    ("dkd_warmup", "dkd", "warmup", 0.0),
    ("temporal_relative", "temporal", "relative", 0.0),
    ("crd_feat_dim", "crd", "feat_dim", 128.0),
    ("crd_negatives", "crd", "negatives", 4096.0),
    ("crd_temperature", "crd", "temperature", 0.07),
    ("crd_momentum", "crd", "momentum", 0.5),
    ("ntxent_feat_dim", "ntxent", "feat_dim", 128.0),
    ("ntxent_temperature", "ntxent", "temperature", 0.5),
];

/// A `[distill]` table that lstmkd wrote before each loss had its options table (a run
/// folder's config.toml), in today's form: the flat keys moved into their losses' tables,
/// those at the default that code wrote everywhere left out, so that the run reads as the same
/// config a user would write today. User configs are not migrated: their old keys are refused
/// with the new key's name (`validate`).
pub(crate) fn migrate_written(distill: &mut toml::Table) {
    // Booleans count as 0 and 1, so that one default column holds every kind of value.
    let number = |v: &toml::Value| match v {
        toml::Value::Boolean(b) => Some(f64::from(u8::from(*b))),
        toml::Value::Integer(i) => Some(*i as f64),
        toml::Value::Float(f) => Some(*f),
        _ => None,
    };
    for (old, loss, new, default) in MOVED {
        let Some(value) = distill.remove(*old) else {
            continue;
        };
        if number(&value) != Some(*default) {
            insert_option(distill, loss, new, value);
        }
    }
    if let Some(toml::Value::Table(taps)) = distill.remove("loss_taps") {
        for (loss, n) in taps {
            insert_option(distill, &loss, "taps", n);
        }
    }
}

fn insert_option(distill: &mut toml::Table, loss: &str, key: &str, value: toml::Value) {
    if let toml::Value::Table(t) = distill
        .entry(loss.to_string())
        .or_insert_with(|| toml::Value::Table(toml::Table::new()))
    {
        t.insert(key.to_string(), value);
    }
}

impl LossOptions {
    /// The options of `loss` as its `Options` type: its table, with the type's defaults for
    /// what the table leaves out.
    pub(crate) fn of<T: serde::de::DeserializeOwned + Default>(&self, loss: &str) -> T {
        match self.0.get(loss) {
            Some(table) => table
                .clone()
                .try_into()
                .expect("loss options are checked when the config is read"),
            None => T::default(),
        }
    }

    /// Every loss table the config gives, by loss name.
    pub(crate) fn tables(&self) -> impl Iterator<Item = (&str, &toml::Value)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// The loss's own table, if the config gives one.
    fn table(&self, loss: &str) -> Option<&toml::Table> {
        self.0.get(loss).and_then(toml::Value::as_table)
    }

    /// Every key is a table of a loss with options, which that loss accepts.
    pub(crate) fn validate(&self) -> anyhow::Result<()> {
        self.normalized().map(|_| ())
    }

    /// The options in their one form: each loss's table as its `check` gives it, tables left
    /// empty dropped.
    pub(crate) fn normalized(&self) -> anyhow::Result<Self> {
        use anyhow::{Context, bail};
        let mut out = BTreeMap::new();
        for (key, value) in &self.0 {
            if let Some((_, loss, new, _)) = MOVED.iter().find(|(old, _, _, _)| old == key) {
                bail!(
                    "distill.{key}: now `{new}` in the loss's own table: [distill.{loss}] {new} = ..."
                );
            }
            if key == "loss_taps" {
                bail!(
                    "distill.loss_taps: now `taps` in each loss's own table, e.g. [distill.at] taps = 3"
                );
            }
            let Some(check) = find(key).and_then(|s| s.options) else {
                let owners: Vec<&str> = REGISTRY
                    .iter()
                    .filter(|s| s.options.is_some())
                    .map(|s| s.name)
                    .collect();
                bail!(
                    "distill.{key}: unknown key (not a [distill] setting, nor a loss with options: {})",
                    owners.join(", ")
                );
            };
            let table = value.as_table().with_context(|| {
                format!("distill.{key}: expected a table of the loss's options")
            })?;
            let table = check(table).with_context(|| format!("distill.{key}"))?;
            if !table.is_empty() {
                out.insert(key.clone(), toml::Value::Table(table));
            }
        }
        Ok(Self(out))
    }
}

/// A loss's `options` check: its table read as `T` (unknown keys refused) and validated;
/// returns it in its one form, the options that differ from `T`'s defaults, so that
/// `alpha = 1`, `alpha = 1.0` and no `alpha` are one config (one ledger key, one run folder).
pub(crate) fn check<T>(table: &toml::Table) -> anyhow::Result<toml::Table>
where
    T: serde::de::DeserializeOwned + serde::Serialize + Default + Validate,
{
    let options: T = table.clone().try_into()?;
    options.validate()?;
    let given = toml::Table::try_from(&options)?;
    let default = toml::Table::try_from(T::default())?;
    Ok(given
        .into_iter()
        .filter(|(k, v)| default.get(k) != Some(v))
        .collect())
}

/// The checks a loss's options type makes beyond their types.
pub(crate) trait Validate {
    fn validate(&self) -> anyhow::Result<()>;
}

/// A loss's `taps`, when it gives one: at least one.
pub(crate) fn check_taps(taps: Option<usize>) -> anyhow::Result<()> {
    match taps {
        Some(0) => anyhow::bail!("taps: must be at least 1"),
        _ => Ok(()),
    }
}

/// A finite number at least `min` (`strict`: above it), or an error naming `key`.
pub(crate) fn at_least(key: &str, v: f64, min: f64, strict: bool) -> anyhow::Result<()> {
    let ok = v.is_finite() && if strict { v > min } else { v >= min };
    match ok {
        true => Ok(()),
        false => {
            let bound = if strict { "above" } else { "at least" };
            anyhow::bail!("{key}: must be a finite number {bound} {min}, got {v}")
        }
    }
}

/// What a loss needs built around the student and teacher.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Needs {
    /// Spatio-temporal extractors on both sides.
    pub(crate) extractors: bool,
    /// The teacher's taps on a second augmented view of the batch (contrastive losses).
    pub(crate) second_view: bool,
    /// The true class of every image, labelled or not (refused under `data.label_fraction`).
    pub(crate) true_class: bool,
}

impl Needs {
    pub(crate) const NONE: Needs = Needs {
        extractors: false,
        second_view: false,
        true_class: false,
    };
    pub(crate) const EXTRACTORS: Needs = Needs {
        extractors: true,
        second_view: false,
        true_class: false,
    };
    pub(crate) const SECOND_VIEW: Needs = Needs {
        extractors: false,
        second_view: true,
        true_class: false,
    };
    pub(crate) const TRUE_CLASS: Needs = Needs {
        extractors: false,
        second_view: false,
        true_class: true,
    };
}

/// Sums a loss over the distilled taps.
pub(crate) fn sum_over_taps(terms: impl Iterator<Item = Tensor<1>>) -> Tensor<1> {
    terms
        .reduce(|a, b| a + b)
        .expect("every distilled tap has its term")
}

pub(crate) struct LossSpec {
    pub(crate) name: &'static str,
    pub(crate) about: &'static str,
    pub(crate) needs: Needs,
    /// Checks the loss's `[distill.<name>]` table and gives it in its one form
    /// (`check::<Options>`); None: it has no options.
    pub(crate) options: Option<fn(&toml::Table) -> anyhow::Result<toml::Table>>,
    /// Builds the parts the loss trains (None: it has none).
    pub(crate) init: Option<fn(&PartsContext, &Device) -> Parts>,
    /// The loss for one batch, given its parts (empty without `init`).
    pub(crate) compute: fn(&Inputs, &Parts) -> Tensor<1>,
}

pub(crate) const REGISTRY: &[LossSpec] = &[
    ce::SPEC,
    kd::SPEC,
    at::SPEC,
    fitnet::SPEC,
    temporal::SPEC,
    aux_ce::SPEC,
    dkd::SPEC,
    crd::SPEC,
    ntxent::SPEC,
];

pub(crate) fn find(name: &str) -> Option<&'static LossSpec> {
    REGISTRY.iter().find(|s| s.name == name)
}

pub(crate) fn names() -> Vec<&'static str> {
    REGISTRY.iter().map(|s| s.name).collect()
}

#[cfg(test)]
mod tests;
