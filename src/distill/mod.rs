//! Distillation: the step (`step`), the spatio-temporal extractor, the losses, the temperature
//! policy, the progressive schedule, the temporal augmentations, and the student/teacher wiring.

pub mod adaptive_window;
pub mod extractor;
pub mod losses;
pub mod mix;
pub mod phases;
pub mod qrnn;
pub mod step;
pub mod student;
pub mod teacher;
pub mod temperature;
pub mod views;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use extractor::ExtractorConfig;
use losses::{LossOptions, Needs};
use phases::Phase;
use temperature::TemperatureConfig;

/// The deepest `n` of a model's taps (all of them if it has fewer), shallow to deep.
pub(crate) fn deepest(taps: Vec<Tensor<4>>, n: usize) -> Vec<Tensor<4>> {
    let skip = taps.len().saturating_sub(n);
    taps.into_iter().skip(skip).collect()
}

/// How a `fused` deployed student is built (recorded in its checkpoint header).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FusedSpec {
    pub(crate) extractor: ExtractorConfig,
    /// Input channels of each extractor, shallow to deep (one per distilled tap).
    pub extractors: Vec<usize>,
    /// Shared-lens adapters between the taps and the extractors.
    pub adapters: bool,
}

/// The `[teacher]` table of a distillation config.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TeacherConfig {
    /// A checkpoint written by `lstmkd train`.
    pub checkpoint: PathBuf,
    /// Adapted extractors written by `lstmkd adapt` (default: `adapt_dir` of the teacher
    /// checkpoint, `best.ckpt` there).
    #[serde(default)]
    pub extractors: Option<PathBuf>,
}

impl TeacherConfig {
    pub(crate) fn extractors_path(&self) -> PathBuf {
        self.extractors
            .clone()
            .unwrap_or_else(|| adapt_dir(&self.checkpoint).join("best.ckpt"))
    }
}

/// Where `lstmkd adapt` writes for a teacher checkpoint by default: `adapt/` beside a run's
/// `best.ckpt`, `adapt-<name>/` beside any other file, so that two teachers in one folder
/// (imported ones, or a run's best and last checkpoints) never share adapted extractors.
pub fn adapt_dir(teacher_checkpoint: &Path) -> PathBuf {
    let parent = teacher_checkpoint.parent().unwrap_or(Path::new("."));
    match teacher_checkpoint.file_stem() {
        Some(stem) if teacher_checkpoint.file_name() != Some("best.ckpt".as_ref()) => {
            parent.join(format!("adapt-{}", stem.to_string_lossy()))
        }
        _ => parent.join("adapt"),
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub(crate) enum TemporalInit {
    /// The student's extractor starts as a copy of the teacher's adapted one, behind a 1x1
    /// conv + BN adapter from the student's channels to the teacher's.
    #[default]
    SharedLens,
    /// The paper's literal reading: a freshly initialised student extractor.
    Random,
}

/// The `[distill]` table. Keys it does not name are the losses' own tables (`options`), which
/// `validate` checks, so that an unknown key is still an error.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DistillConfig {
    /// Loss weights by registry name (`lstmkd distill --list-losses`); a loss with no weight
    /// is off.
    pub(crate) weights: BTreeMap<String, f64>,
    /// How many of the deepest taps are distilled (the method: the last two).
    #[serde(default = "two")]
    pub taps: usize,
    #[serde(default)]
    pub(crate) extractor: ExtractorConfig,
    #[serde(default)]
    pub(crate) temporal_init: TemporalInit,
    /// Shared lens: keep the copied extractor frozen instead of fine-tuning it.
    #[serde(default)]
    pub(crate) freeze_student_extractor: bool,
    #[serde(default)]
    pub(crate) temperature: TemperatureConfig,
    /// Phases of the progressive schedule; absent = the paper's three phases. Ignored when
    /// `end_to_end`.
    #[serde(default)]
    pub(crate) phases: Option<Vec<Phase>>,
    /// Every loss from the first epoch.
    #[serde(default)]
    pub(crate) end_to_end: bool,
    /// Random temporal crop: both sides' extractors see the same random run of at least half
    /// of the windows.
    #[serde(default)]
    pub(crate) rtc: bool,
    /// Adaptive window: each sample's extractor window from the teacher's prediction entropy
    /// (`{ table = [[0.05, 2], [0.5, 3]], top = 5 }`); absent = `extractor.window` for all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adaptive_window: Option<adaptive_window::AdaptiveWindow>,
    /// Probability per batch of temporal mixing (a band of rows from another image, labels
    /// mixed in proportion).
    #[serde(default)]
    pub(crate) tmix: f64,
    /// Keep the student's extractors at inference and average their aux logits in.
    #[serde(default)]
    pub(crate) fused: bool,
    /// Teacher adaptation (`lstmkd adapt`): epochs and AdamW learning rate.
    #[serde(default = "two")]
    pub(crate) adapt_epochs: usize,
    #[serde(default = "adapt_lr")]
    pub(crate) adapt_lr: f64,
    /// Logit standardisation (Sun et al., CVPR 2024) for `kd` and `dkd`: z-score each
    /// sample's logits, on both sides, before the temperature.
    #[serde(default)]
    pub(crate) logit_standardization: bool,
    /// Each loss's own options, `[distill.<loss>]` (e.g. `[distill.dkd] alpha = 1.0`).
    #[serde(flatten)]
    pub(crate) options: LossOptions,
}

fn two() -> usize {
    2
}
fn adapt_lr() -> f64 {
    1e-3
}

impl DistillConfig {
    /// The losses with a non-zero weight, in registry order.
    pub(crate) fn active_losses(&self) -> Vec<&'static str> {
        losses::names()
            .into_iter()
            .filter(|n| self.weights.get(*n).is_some_and(|w| *w != 0.0))
            .collect()
    }

    pub fn phases(&self) -> Vec<Phase> {
        let all = self.active_losses();
        match (&self.phases, self.end_to_end) {
            (_, true) => vec![Phase {
                name: "end-to-end".into(),
                until_epoch: None,
                until_fraction: None,
                losses: all.iter().map(|s| s.to_string()).collect(),
            }],
            (Some(p), false) => p.clone(),
            (None, false) => phases::paper_phases(&all),
        }
    }

    /// What the configured losses need built (over all phases).
    pub(crate) fn needs(&self) -> Needs {
        self.active_losses()
            .iter()
            .filter_map(|n| losses::find(n))
            .fold(Needs::default(), |a, s| Needs {
                extractors: a.extractors || s.needs.extractors,
                second_view: a.second_view || s.needs.second_view,
                true_class: a.true_class || s.needs.true_class,
            })
    }

    /// Whether the student's extractors start as copies of the teacher's adapted ones (a
    /// shared lens). The teacher reads its adapted extractors whenever `needs().extractors`.
    pub(crate) fn reads_adapted_extractors(&self) -> bool {
        self.needs().extractors && self.temporal_init == TemporalInit::SharedLens
    }

    /// The configured losses that train parts of their own, in registry order (the order of
    /// `Student::parts`).
    pub(crate) fn owning_losses(&self) -> Vec<&'static losses::LossSpec> {
        self.active_losses()
            .iter()
            .filter_map(|n| losses::find(n))
            .filter(|s| s.init.is_some())
            .collect()
    }

    pub fn validate(&self) -> Result<()> {
        self.options.validate()?;
        for (name, w) in &self.weights {
            if losses::find(name).is_none() {
                bail!(
                    "distill.weights: unknown loss '{name}'; known: {}",
                    losses::names().join(", ")
                );
            }
            if !w.is_finite() || *w < 0.0 {
                bail!("distill.weights.{name}: must be a finite number >= 0, got {w}");
            }
        }
        if self.active_losses().is_empty() {
            bail!("distill.weights: no loss has a non-zero weight");
        }
        if self.taps == 0 {
            bail!("distill.taps: must be at least 1");
        }
        if !(0.0..=1.0).contains(&self.tmix) {
            bail!("distill.tmix: a probability in [0, 1], got {}", self.tmix);
        }
        if self.fused && !self.needs().extractors {
            bail!("distill.fused: needs extractors, i.e. a 'temporal' or 'aux_ce' weight");
        }
        if self.adapt_epochs == 0 || !(self.adapt_lr > 0.0 && self.adapt_lr.is_finite()) {
            bail!("distill.adapt_epochs / adapt_lr: must be positive (and finite)");
        }
        self.extractor.validate()?;
        if let Some(a) = &self.adaptive_window {
            a.validate()?;
            if self.rtc {
                bail!(
                    "distill.adaptive_window / rtc: a random crop is drawn for one window size; use one of them"
                );
            }
        }
        self.temperature.validate()?;
        let names = self.active_losses();
        phases::validate(&self.phases(), &names)
    }
}
