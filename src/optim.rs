//! Optimisers (SGD with momentum as PyTorch's, AdamW) and the learning-rate schedule
//! (constant, cosine, multi-step; optional linear warm-up), computed per step.

use anyhow::{Result, bail};
use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamWConfig, ModuleOptimizer, SgdConfig};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(crate) enum OptimName {
    Sgd,
    Adamw,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OptimConfig {
    pub(crate) name: OptimName,
    pub lr: f64,
    #[serde(default = "default_momentum")]
    pub(crate) momentum: f64,
    #[serde(default)]
    pub(crate) nesterov: bool,
    #[serde(default = "default_weight_decay")]
    pub(crate) weight_decay: f64,
    /// AdamW (beta1, beta2).
    #[serde(default = "default_betas")]
    pub(crate) betas: [f64; 2],
    #[serde(default = "default_eps")]
    pub(crate) eps: f64,
}

fn default_momentum() -> f64 {
    0.9
}
fn default_weight_decay() -> f64 {
    5e-4
}
fn default_betas() -> [f64; 2] {
    [0.9, 0.999]
}
fn default_eps() -> f64 {
    1e-8
}

impl OptimConfig {
    pub(crate) fn validate(&self) -> Result<()> {
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            bail!("optim.lr: must be a positive number, got {}", self.lr);
        }
        if !(0.0..1.0).contains(&self.momentum) {
            bail!("optim.momentum: must be in [0, 1), got {}", self.momentum);
        }
        if !(self.weight_decay >= 0.0 && self.weight_decay.is_finite()) {
            bail!(
                "optim.weight_decay: must be >= 0, got {}",
                self.weight_decay
            );
        }
        if self.betas.iter().any(|b| !(0.0..1.0).contains(b)) {
            bail!("optim.betas: each must be in [0, 1), got {:?}", self.betas);
        }
        if !(self.eps > 0.0 && self.eps.is_finite()) {
            bail!("optim.eps: must be a positive number, got {}", self.eps);
        }
        Ok(())
    }

    pub fn init(&self) -> ModuleOptimizer {
        let decay =
            (self.weight_decay > 0.0).then(|| WeightDecayConfig::new(self.weight_decay as f32));
        match self.name {
            OptimName::Sgd => SgdConfig::new()
                .with_weight_decay(decay)
                .with_momentum((self.momentum > 0.0).then(|| {
                    // burn's default dampening is 0.1; PyTorch's (and every KD recipe's) is 0.
                    MomentumConfig::new()
                        .with_momentum(self.momentum)
                        .with_dampening(0.0)
                        .with_nesterov(self.nesterov)
                }))
                .init(),
            OptimName::Adamw => AdamWConfig::new()
                .with_beta_1(self.betas[0] as f32)
                .with_beta_2(self.betas[1] as f32)
                .with_epsilon(self.eps as f32)
                .with_weight_decay(self.weight_decay as f32)
                .init(),
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum ScheduleName {
    Constant,
    #[default]
    Cosine,
    Multistep,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConfig {
    #[serde(default)]
    pub name: ScheduleName,
    /// Linear warm-up from 0 over this many epochs (fractions allowed).
    #[serde(default)]
    pub warmup_epochs: f64,
    /// Multi-step: epochs at which the rate is multiplied by `gamma`.
    #[serde(default)]
    pub milestones: Vec<usize>,
    #[serde(default = "default_gamma")]
    pub gamma: f64,
    /// Cosine: the rate reached at the end of the run.
    #[serde(default)]
    pub min_lr: f64,
}

fn default_gamma() -> f64 {
    0.1
}

/// What a config without a `[schedule]` table gets: the per-field defaults above.
impl Default for ScheduleConfig {
    fn default() -> Self {
        Self {
            name: ScheduleName::default(),
            warmup_epochs: 0.0,
            milestones: Vec::new(),
            gamma: default_gamma(),
            min_lr: 0.0,
        }
    }
}

impl ScheduleConfig {
    pub(crate) fn validate(&self, epochs: usize) -> Result<()> {
        // Written so that NaN fails every check.
        if !(0.0..=epochs as f64).contains(&self.warmup_epochs) {
            bail!(
                "schedule.warmup_epochs: must be in [0, train.epochs = {epochs}], got {}",
                self.warmup_epochs
            );
        }
        if self.name == ScheduleName::Multistep && self.milestones.is_empty() {
            bail!("schedule.milestones: the multistep schedule needs at least one milestone");
        }
        if self.milestones.windows(2).any(|w| w[0] >= w[1]) {
            bail!(
                "schedule.milestones: must be strictly increasing, got {:?}",
                self.milestones
            );
        }
        if !(self.gamma > 0.0 && self.gamma.is_finite()) {
            bail!("schedule.gamma: must be positive, got {}", self.gamma);
        }
        if !(self.min_lr >= 0.0 && self.min_lr.is_finite()) {
            bail!("schedule.min_lr: must be >= 0, got {}", self.min_lr);
        }
        Ok(())
    }

    /// Learning rate at `progress` epochs into a run of `epochs` (progress = epoch + step
    /// fraction), for a base rate `lr`.
    pub fn lr(&self, lr: f64, progress: f64, epochs: usize) -> f64 {
        if progress < self.warmup_epochs {
            return lr * progress.max(1e-3 * self.warmup_epochs) / self.warmup_epochs;
        }
        match self.name {
            ScheduleName::Constant => lr,
            ScheduleName::Cosine => {
                let span = (epochs as f64 - self.warmup_epochs).max(1e-9);
                let t = ((progress - self.warmup_epochs) / span).clamp(0.0, 1.0);
                self.min_lr + (lr - self.min_lr) * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())
            }
            ScheduleName::Multistep => {
                let passed = self
                    .milestones
                    .iter()
                    .filter(|&&m| progress >= m as f64)
                    .count();
                lr * self.gamma.powi(passed as i32)
            }
        }
    }
}

#[cfg(test)]
mod tests;
