//! Temperature policy: fixed, or dynamic from the student's validation accuracy through a
//! threshold table (the paper's: acc < 0.70 -> 1, < 0.90 -> 3, else 5), or relative: the same
//! table with its thresholds read as fractions of the teacher's validation accuracy. The paper's
//! absolute thresholds hold T = 1 for a whole run wherever the student stays under 70%, as it
//! does on data harder than the paper's; the relative table moves with what is reachable.

use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};

/// How the temperature is chosen each epoch.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    /// From the student's last validation accuracy through `table`.
    #[default]
    Dynamic,
    /// `value` throughout.
    Fixed,
    /// As dynamic, with `table`'s thresholds read as fractions of the teacher's accuracy.
    Relative,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TemperatureConfig {
    #[serde(default)]
    pub policy: Policy,
    /// The fixed policy's temperature.
    #[serde(default = "default_fixed")]
    pub value: f64,
    /// Dynamic: (accuracy below which, temperature), ascending thresholds; relative: the
    /// thresholds are fractions of the teacher's validation accuracy.
    #[serde(default = "default_table")]
    pub table: Vec<(f64, f64)>,
    /// Dynamic: the temperature at or above the last threshold.
    #[serde(default = "default_top")]
    pub top: f64,
}

fn default_fixed() -> f64 {
    4.0
}
fn default_table() -> Vec<(f64, f64)> {
    vec![(0.70, 1.0), (0.90, 3.0)]
}
fn default_top() -> f64 {
    5.0
}

impl Default for TemperatureConfig {
    fn default() -> Self {
        Self {
            policy: Policy::default(),
            value: default_fixed(),
            table: default_table(),
            top: default_top(),
        }
    }
}

impl TemperatureConfig {
    pub(crate) fn validate(&self) -> Result<()> {
        let temps = self.table.iter().map(|t| t.1).chain([self.value, self.top]);
        if temps.clone().any(|t| !(t > 0.0 && t.is_finite())) {
            bail!("distill.temperature: every temperature must be positive");
        }
        // Finite first, so that the order check compares numbers.
        if self.table.iter().any(|t| !t.0.is_finite())
            || self.table.windows(2).any(|w| w[0].0 >= w[1].0)
        {
            bail!("distill.temperature.table: thresholds must be finite and strictly increasing");
        }
        Ok(())
    }

    pub(crate) fn is_relative(&self) -> bool {
        self.policy == Policy::Relative
    }

    /// The policy for a teacher of validation accuracy `teacher_acc`: a relative table becomes
    /// the dynamic one with its thresholds scaled; the others are unchanged.
    pub fn resolve(&self, teacher_acc: f64) -> Self {
        if !self.is_relative() {
            return self.clone();
        }
        Self {
            policy: Policy::Dynamic,
            table: self
                .table
                .iter()
                .map(|&(fraction, t)| (fraction * teacher_acc, t))
                .collect(),
            ..self.clone()
        }
    }

    /// The temperature for the next epoch given the last validation accuracy; before the
    /// first validation (None) the dynamic policy reads the accuracy as 0. A relative policy
    /// must be resolved against its teacher first.
    pub fn next(&self, val_acc: Option<f64>) -> f64 {
        debug_assert!(!self.is_relative(), "resolve a relative policy first");
        if self.policy == Policy::Fixed {
            return self.value;
        }
        let acc = val_acc.unwrap_or(0.0);
        self.table
            .iter()
            .find(|(threshold, _)| acc < *threshold)
            .map_or(self.top, |(_, t)| *t)
    }
}
