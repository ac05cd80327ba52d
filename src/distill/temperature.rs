//! Temperature policy: fixed, or dynamic from the student's validation accuracy through a
//! threshold table (the seed's: acc < 0.70 -> 1, < 0.90 -> 3, else 5).

use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TemperatureConfig {
    /// "dynamic" or "fixed".
    #[serde(default = "default_policy")]
    pub policy: String,
    /// The fixed policy's temperature.
    #[serde(default = "default_fixed")]
    pub value: f64,
    /// Dynamic: (accuracy below which, temperature), ascending thresholds.
    #[serde(default = "default_table")]
    pub table: Vec<(f64, f64)>,
    /// Dynamic: the temperature at or above the last threshold.
    #[serde(default = "default_top")]
    pub top: f64,
}

fn default_policy() -> String {
    "dynamic".into()
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
            policy: default_policy(),
            value: default_fixed(),
            table: default_table(),
            top: default_top(),
        }
    }
}

impl TemperatureConfig {
    pub fn validate(&self) -> Result<()> {
        if !matches!(self.policy.as_str(), "dynamic" | "fixed") {
            bail!(
                "distill.temperature.policy: expected \"dynamic\" or \"fixed\", got \"{}\"",
                self.policy
            );
        }
        let temps = self.table.iter().map(|t| t.1).chain([self.value, self.top]);
        if temps.clone().any(|t| !(t > 0.0 && t.is_finite())) {
            bail!("distill.temperature: every temperature must be positive");
        }
        if self.table.windows(2).any(|w| w[0].0 >= w[1].0) {
            bail!("distill.temperature.table: thresholds must be strictly increasing");
        }
        Ok(())
    }

    pub fn is_dynamic(&self) -> bool {
        self.policy == "dynamic"
    }

    /// The temperature for the next epoch given the last validation accuracy; before the
    /// first validation (None) the dynamic policy reads the accuracy as 0.
    pub fn next(&self, val_acc: Option<f64>) -> f64 {
        if !self.is_dynamic() {
            return self.value;
        }
        let acc = val_acc.unwrap_or(0.0);
        self.table
            .iter()
            .find(|(threshold, _)| acc < *threshold)
            .map_or(self.top, |(_, t)| *t)
    }
}
