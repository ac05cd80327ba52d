//! Adaptive window (the method's future work): each sample's extractor window, in rows, chosen
//! from how hard the sample is for the teacher, measured as the entropy (nats) of the teacher's
//! softmax. Confident samples get short windows, uncertain ones longer context. Both sides'
//! extractors read a sample with the same window; at inference (fused) the configured
//! `extractor.window` applies, since there is no teacher.

use anyhow::{Result, bail};
use burn::tensor::Tensor;
use burn::tensor::activation::log_softmax;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AdaptiveWindow {
    /// (entropy below which, window), thresholds ascending.
    pub table: Vec<(f64, usize)>,
    /// The window at or above the last threshold.
    pub top: usize,
}

impl AdaptiveWindow {
    pub(crate) fn validate(&self) -> Result<()> {
        if self
            .table
            .iter()
            .map(|t| t.1)
            .chain([self.top])
            .any(|w| w == 0)
        {
            bail!("distill.adaptive_window: every window must be at least 1 row");
        }
        // Finite first, so that the order check compares numbers.
        if self.table.iter().any(|t| !t.0.is_finite())
            || self.table.windows(2).any(|w| w[0].0 >= w[1].0)
        {
            bail!(
                "distill.adaptive_window.table: thresholds must be finite and strictly increasing"
            );
        }
        Ok(())
    }

    pub(crate) fn window(&self, entropy: f64) -> usize {
        self.table
            .iter()
            .find(|(threshold, _)| entropy < *threshold)
            .map_or(self.top, |(_, w)| *w)
    }

    /// The window of each sample of the teacher's `logits` [B, K].
    pub fn windows(&self, logits: &Tensor<2>) -> Vec<usize> {
        let [b, _] = logits.dims();
        let logp = log_softmax(logits.clone(), 1);
        let entropy = (logp.clone().exp() * logp).sum_dim(1).neg().reshape([b]);
        // The windows group the batch on the host: one read per step.
        let host: Vec<f32> = crate::profile::read(entropy)
            .try_to_vec()
            .expect("float logits");
        host.iter().map(|&h| self.window(h as f64)).collect()
    }
}

#[cfg(test)]
mod tests;
