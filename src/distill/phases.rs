//! Progressive schedule: phases, each ending at an epoch (or a fraction of the run) and naming
//! the losses active in it. The default is the paper's three phases; a single phase with every
//! loss is end-to-end training.

use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Phase {
    pub name: String,
    /// End of the phase (exclusive) in epochs ...
    #[serde(default)]
    pub until_epoch: Option<usize>,
    /// ... or as a fraction of the run. The last phase runs to the end and gives neither.
    #[serde(default)]
    pub until_fraction: Option<f64>,
    /// Loss names active in this phase (see the loss registry).
    pub losses: Vec<String>,
}

/// The paper's phases at its boundaries (20 and 50 of ~100 epochs), as fractions of the run.
/// The paper's three phases over the active losses `all`; a phase none of them belongs to is
/// left out (a plain KD config trains its losses from the first epoch).
pub fn paper_phases(all: &[&str]) -> Vec<Phase> {
    let feature: Vec<String> = all
        .iter()
        .filter(|l| **l == "at")
        .map(|s| s.to_string())
        .collect();
    let temporal: Vec<String> = all
        .iter()
        .filter(|l| matches!(**l, "at" | "temporal" | "aux_ce"))
        .map(|s| s.to_string())
        .collect();
    vec![
        Phase {
            name: "feature alignment".into(),
            until_epoch: None,
            until_fraction: Some(0.2),
            losses: feature,
        },
        Phase {
            name: "temporal fusion".into(),
            until_epoch: None,
            until_fraction: Some(0.5),
            losses: temporal,
        },
        Phase {
            name: "joint optimisation".into(),
            until_epoch: None,
            until_fraction: None,
            losses: all.iter().map(|s| s.to_string()).collect(),
        },
    ]
    .into_iter()
    .filter(|p| !p.losses.is_empty())
    .collect()
}

pub fn validate(phases: &[Phase], known: &[&str]) -> Result<()> {
    if phases.is_empty() {
        bail!("distill.phases: at least one phase is needed");
    }
    for (i, p) in phases.iter().enumerate() {
        if p.losses.is_empty() {
            bail!(
                "distill.phases[{i}] ({}): no configured loss is active in this phase; give the losses it needs a weight, set distill.end_to_end = true, or list [[distill.phases]] yourself",
                p.name
            );
        }
        if let Some(bad) = p.losses.iter().find(|l| !known.contains(&l.as_str())) {
            bail!(
                "distill.phases[{i}] ({}): loss '{bad}' is not one of this run's losses: {}",
                p.name,
                known.join(", ")
            );
        }
        let last = i + 1 == phases.len();
        match (p.until_epoch, p.until_fraction) {
            (Some(_), Some(_)) => bail!(
                "distill.phases[{i}] ({}): give until_epoch or until_fraction, not both",
                p.name
            ),
            (None, None) if !last => bail!(
                "distill.phases[{i}] ({}): needs until_epoch or until_fraction (only the last phase may omit it)",
                p.name
            ),
            // An end on the last phase would be ignored: the run would train that phase's
            // losses to its end while the config reads as if later phases were meant to follow.
            (Some(_), _) | (_, Some(_)) if last => bail!(
                "distill.phases[{i}] ({}): the last phase runs to the end of the run, so it takes no until_epoch or until_fraction; list the phases that follow it, or drop its end",
                p.name
            ),
            (_, Some(f)) if !(f > 0.0 && f <= 1.0) => bail!(
                "distill.phases[{i}] ({}): until_fraction must be in (0, 1], got {f}",
                p.name
            ),
            _ => {}
        }
        // A phase that ends no later than the one before it is never active. Ends given in
        // different units are not compared: that needs the run's epoch count.
        if let Some(prev) = i.checked_sub(1).map(|j| &phases[j]) {
            let before = match (
                prev.until_epoch,
                p.until_epoch,
                prev.until_fraction,
                p.until_fraction,
            ) {
                (Some(a), Some(b), ..) => b <= a,
                (_, _, Some(a), Some(b)) => b <= a,
                _ => false,
            };
            if before {
                bail!(
                    "distill.phases[{i}] ({}): ends no later than distill.phases[{}] ({}), so it would never be active; list the phases in the order they run",
                    p.name,
                    i - 1,
                    prev.name
                );
            }
        }
    }
    Ok(())
}

/// End epoch (exclusive) of a phase in a run of `epochs`.
fn end_epoch(p: &Phase, epochs: usize) -> f64 {
    match (p.until_epoch, p.until_fraction) {
        (Some(e), _) => e as f64,
        (None, Some(f)) => f * epochs as f64,
        (None, None) => f64::INFINITY,
    }
}

/// The phase active in `epoch` (0-based).
pub fn active(phases: &[Phase], epoch: usize, epochs: usize) -> &Phase {
    phases
        .iter()
        .find(|p| (epoch as f64) < end_epoch(p, epochs))
        .unwrap_or_else(|| phases.last().expect("validated non-empty"))
}
