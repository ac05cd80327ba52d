//! Classification metrics accumulated over batches, and the per-epoch `metrics.jsonl` record.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// Counts over a pass: confusion matrix (rows = true class), top-5 hits, summed loss.
#[derive(Debug, Clone)]
pub(crate) struct Tally {
    pub(crate) confusion: Vec<Vec<u64>>,
    pub(crate) top5: u64,
    pub(crate) loss_sum: f64,
    pub(crate) count: u64,
}

impl Tally {
    pub(crate) fn new(num_classes: usize) -> Self {
        Self {
            confusion: vec![vec![0; num_classes]; num_classes],
            top5: 0,
            loss_sum: 0.0,
            count: 0,
        }
    }

    /// Adds a batch of host logits ([B * K], row-major) with their labels; the loss is the
    /// cross-entropy computed here in f64, so validation needs no second device pass.
    pub(crate) fn add(&mut self, logits: &[f32], labels: &[usize]) {
        let k = self.confusion.len();
        for (row, &y) in logits.chunks_exact(k).zip(labels) {
            let (pred, _) = row
                .iter()
                .enumerate()
                .fold((0, f32::NEG_INFINITY), |best, (i, &v)| {
                    if v > best.1 { (i, v) } else { best }
                });
            self.confusion[y][pred] += 1;
            let above = row.iter().filter(|&&v| v > row[y]).count();
            if above < 5 {
                self.top5 += 1;
            }
            let max = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
            let lse = max
                + row
                    .iter()
                    .map(|&v| (v as f64 - max).exp())
                    .sum::<f64>()
                    .ln();
            self.loss_sum += lse - row[y] as f64;
            self.count += 1;
        }
    }

    pub(crate) fn top1(&self) -> f64 {
        let correct: u64 = (0..self.confusion.len())
            .map(|i| self.confusion[i][i])
            .sum();
        correct as f64 / self.count.max(1) as f64
    }
    pub(crate) fn top5(&self) -> f64 {
        self.top5 as f64 / self.count.max(1) as f64
    }
    pub(crate) fn loss(&self) -> f64 {
        self.loss_sum / self.count.max(1) as f64
    }
    /// Accuracy of each true class (NaN for a class with no samples).
    pub(crate) fn per_class(&self) -> Vec<f64> {
        self.confusion
            .iter()
            .enumerate()
            .map(|(i, row)| row[i] as f64 / row.iter().sum::<u64>() as f64)
            .collect()
    }
}

/// One line of `metrics.jsonl`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EpochRecord {
    /// 1-based epoch number.
    pub epoch: usize,
    pub(crate) lr: f64,
    pub train_loss: f64,
    pub train_acc: f64,
    pub val_loss: f64,
    pub val_acc: f64,
    pub(crate) val_top5: f64,
    pub img_per_s: f64,
    /// Seconds spent on validation (included in `seconds`).
    #[serde(default)]
    pub val_seconds: f64,
    pub seconds: f64,
    /// Mean of each named loss term over the epoch (methods with several terms).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub losses: BTreeMap<String, f64>,
    /// Anything a method reports per epoch (e.g. the temperature).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, f64>,
}

pub fn read_jsonl(path: &Path) -> Result<Vec<EpochRecord>> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read", path.display()))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str(l).with_context(|| {
                format!("{}: line {}: not a metrics record", path.display(), i + 1)
            })
        })
        .collect()
}

/// The lines of `path` holding records of epochs before `before_epoch`, kept as written (read
/// as plain JSON, so records of older versions stay); a torn line (an append interrupted
/// before appends were atomic) is not JSON and goes.
fn kept_lines(path: &Path, before_epoch: usize) -> Result<String> {
    let mut text = String::new();
    if !path.exists() {
        return Ok(text);
    }
    let old = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read", path.display()))?;
    for line in old.lines().filter(|l| !l.trim().is_empty()) {
        let keep = serde_json::from_str::<serde_json::Value>(line)
            .ok()
            .and_then(|v| v.get("epoch").and_then(|e| e.as_u64()))
            .is_some_and(|e| (e as usize) < before_epoch);
        if keep {
            text.push_str(line);
            text.push('\n');
        }
    }
    Ok(text)
}

/// Drops the records of epoch `before_epoch` and later (a resumed run writes them again).
pub(crate) fn truncate_jsonl(path: &Path, before_epoch: usize) -> Result<()> {
    let text = kept_lines(path, before_epoch)?;
    super::checkpoint::write_atomic(path, text.as_bytes())
}

/// Adds `record` to the run's metrics, rewriting the file atomically so that a crash leaves
/// whole lines only; a stale record of the same epoch is replaced.
pub fn append_jsonl(path: &Path, record: &EpochRecord) -> Result<()> {
    let mut text = kept_lines(path, record.epoch)?;
    text.push_str(&serde_json::to_string(record)?);
    text.push('\n');
    super::checkpoint::write_atomic(path, text.as_bytes())
}
