//! The comparison suites: each row is a set of config overrides on the suite's base config, with
//! the seed's claim for that row beside it (for the report, never as a result). Besides the
//! built-in suites, a suite config may define its own under `[experiment.suites.<name>]`, as
//! torchdistill keeps a whole experiment in one file.

use anyhow::{Context, Result, bail};

pub use crate::slug;
use serde::Deserialize;

use Kind::{Alone, Distill};

/// How a row trains its student.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Cross-entropy alone (`lstmkd train`), no teacher.
    Alone,
    /// `lstmkd distill`.
    Distill,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Row {
    pub label: String,
    #[serde(default = "distill")]
    pub kind: Kind,
    #[serde(default)]
    pub overrides: Vec<String>,
    /// What the seed (or the literature) reports for this row, for the report only.
    #[serde(default = "no_claim")]
    pub claim: String,
}

fn distill() -> Kind {
    Kind::Distill
}
fn no_claim() -> String {
    "-".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Suite {
    #[serde(skip)]
    pub name: String,
    pub about: String,
    /// The row every other is compared with seed by seed (paired differences) in the report.
    #[serde(default)]
    pub reference: Option<String>,
    pub rows: Vec<Row>,
}

fn row(label: &str, kind: Kind, overrides: &[&str], claim: &str) -> Row {
    Row {
        label: label.into(),
        kind,
        overrides: overrides.iter().map(|s| s.to_string()).collect(),
        claim: claim.into(),
    }
}

fn suite(name: &str, about: &str, reference: &str, rows: Vec<Row>) -> Suite {
    Suite {
        name: name.into(),
        about: about.into(),
        reference: Some(reference.into()),
        rows,
    }
}

const LSTM_KD: &str =
    "distill.weights={ce = 1.0, kd = 1.0, at = 100.0, temporal = 0.05, aux_ce = 0.5}";
const DYNAMIC: &str = "distill.temperature.policy=\"dynamic\"";
const FIXED: &str = "distill.temperature.policy=\"fixed\"";
const E2E: &str = "distill.end_to_end=true";
const LS: &str = "distill.logit_standardization=true";

/// FitNet as the baselines and the comparison suites run it.
fn fitnet() -> Row {
    row(
        "FitNet",
        Distill,
        &["distill.weights={ce = 1.0, fitnet = 1.0}", E2E],
        "-",
    )
}

/// The suites every suite config has.
pub fn builtin() -> Vec<Suite> {
    vec![
        suite(
            "seed-benchmark",
            "student alone / traditional feature KD (KD + FitNet) / LSTM KD",
            "KD + FitNet",
            vec![
                row(
                    "student alone",
                    Alone,
                    &[],
                    "71.8%, 3.5M, 12.3 ms (MobileNetV2, ImageNet)",
                ),
                row(
                    "KD + FitNet",
                    Distill,
                    &[
                        "distill.weights={ce = 1.0, kd = 1.0, fitnet = 1.0}",
                        E2E,
                        FIXED,
                    ],
                    "74.2%, 3.5M, 12.1 ms",
                ),
                row(
                    "LSTM KD",
                    Distill,
                    &[LSTM_KD, DYNAMIC],
                    "76.7%, 3.5M, 11.8 ms",
                ),
            ],
        ),
        suite(
            "seed-ablation",
            "base CE + KD / + temporal extractor and loss / + attention transfer / + dynamic temperature",
            "CE + KD",
            vec![
                row(
                    "CE + KD",
                    Distill,
                    &["distill.weights={ce = 1.0, kd = 1.0}", E2E, FIXED],
                    "72.4%",
                ),
                row(
                    "+ temporal",
                    Distill,
                    &[
                        "distill.weights={ce = 1.0, kd = 1.0, temporal = 0.05, aux_ce = 0.5}",
                        E2E,
                        FIXED,
                    ],
                    "74.9% (+2.5)",
                ),
                row(
                    "+ attention (multi-level)",
                    Distill,
                    &[LSTM_KD, E2E, FIXED],
                    "76.7% (+1.8)",
                ),
                row(
                    "+ dynamic temperature",
                    Distill,
                    &[LSTM_KD, E2E, DYNAMIC],
                    "77.3% (+0.6)",
                ),
            ],
        ),
        suite(
            "schedule",
            "progressive vs end-to-end, dynamic vs fixed temperature (epochs to reach the target accuracy)",
            "end-to-end, dynamic T",
            vec![
                row(
                    "progressive, dynamic T",
                    Distill,
                    &[LSTM_KD, DYNAMIC],
                    "+1.8% over end-to-end; dynamic T converges 30% faster, +2.1%",
                ),
                row(
                    "end-to-end, dynamic T",
                    Distill,
                    &[LSTM_KD, DYNAMIC, E2E],
                    "-",
                ),
                row("progressive, fixed T", Distill, &[LSTM_KD, FIXED], "-"),
                row("end-to-end, fixed T", Distill, &[LSTM_KD, FIXED, E2E], "-"),
            ],
        ),
        suite(
            "baselines",
            "KD, FitNet, AT, DKD and LSTM KD side by side",
            "KD",
            vec![
                row(
                    "KD",
                    Distill,
                    &["distill.weights={ce = 1.0, kd = 1.0}", E2E, FIXED],
                    "-",
                ),
                fitnet(),
                row(
                    "AT",
                    Distill,
                    &["distill.weights={ce = 1.0, at = 100.0}", E2E],
                    "-",
                ),
                row(
                    "DKD",
                    Distill,
                    &["distill.weights={ce = 1.0, dkd = 1.0}", E2E],
                    "-",
                ),
                row("LSTM KD", Distill, &[LSTM_KD, DYNAMIC], "-"),
            ],
        ),
        suite(
            "comparison",
            "the strong baselines (KD, KD + logit standardisation, DKD with warm-up, CRD, AT on every stage, FitNet) against LSTM KD's variants, for the mid budget",
            "KD",
            vec![
                row("student alone", Alone, &[], "-"),
                row(
                    "KD",
                    Distill,
                    &["distill.weights={ce = 1.0, kd = 1.0}", E2E, FIXED],
                    "CIFAR-100 resnet32x4 -> 8x4: 73.33% (Sun et al.)",
                ),
                row(
                    "KD + LS",
                    Distill,
                    &["distill.weights={ce = 1.0, kd = 1.0}", LS, E2E, FIXED],
                    "- (KD's weights and T; Sun et al.'s are the next row)",
                ),
                row(
                    "KD + LS (T = 2, CE 0.1, KD 9)",
                    Distill,
                    &[
                        "distill.weights={ce = 0.1, kd = 9.0}",
                        LS,
                        E2E,
                        "distill.temperature={policy = \"fixed\", value = 2.0}",
                    ],
                    "76.62% (Sun et al., these weights)",
                ),
                row(
                    "DKD (warm-up)",
                    Distill,
                    &[
                        "distill.weights={ce = 1.0, dkd = 1.0}",
                        "distill.dkd_warmup=0.083",
                        E2E,
                    ],
                    "76.32% (Sun et al.'s table)",
                ),
                row(
                    "CRD",
                    Distill,
                    &["distill.weights={ce = 1.0, crd = 0.8}", E2E],
                    "75.51% (RepDistiller, resnet32x4 -> 8x4)",
                ),
                row(
                    "AT (every stage)",
                    Distill,
                    &[
                        "distill.weights={ce = 1.0, at = 100.0}",
                        "distill.loss_taps={at = 3}",
                        E2E,
                    ],
                    "-",
                ),
                fitnet(),
                row(
                    "LSTM KD (phases, dynamic T)",
                    Distill,
                    &[LSTM_KD, DYNAMIC],
                    "the method: above KD and feature distillation",
                ),
                row(
                    "LSTM KD (end-to-end, T = 4)",
                    Distill,
                    &[LSTM_KD, E2E, FIXED],
                    "-",
                ),
                row(
                    "LSTM KD + LS (end-to-end, T = 4)",
                    Distill,
                    &[LSTM_KD, LS, E2E, FIXED],
                    "-",
                ),
                row(
                    "LSTM KD, random extractor (end-to-end, T = 4)",
                    Distill,
                    &[LSTM_KD, "distill.temporal_init=\"random\"", E2E, FIXED],
                    "-",
                ),
            ],
        ),
    ]
}

/// The built-in suites and those the suite config's `[experiment]` table defines under
/// `suites.<name>`; `origin` names the file in errors.
pub fn all(experiment: &toml::Table, origin: &str) -> Result<Vec<Suite>> {
    let mut suites = builtin();
    let Some(defined) = experiment.get("suites") else {
        return Ok(suites);
    };
    let defined = defined
        .as_table()
        .with_context(|| format!("{origin}: experiment.suites: expected a table of suites"))?;
    for (name, value) in defined {
        let at = format!("{origin}: experiment.suites.{name}");
        if suites.iter().any(|s| s.name == *name) {
            bail!("{at}: a built-in suite has this name; choose another");
        }
        if slug(name) != *name {
            bail!(
                "{at}: a suite name is lowercase letters, digits and single dashes (it names a folder)"
            );
        }
        let mut suite: Suite = value.clone().try_into().with_context(|| at.clone())?;
        if suite.rows.is_empty() {
            bail!("{at}: rows: a suite needs at least one row");
        }
        if let Some(r) = &suite.reference
            && !suite.rows.iter().any(|row| row.label == *r)
        {
            bail!("{at}: reference '{r}': no row has this label");
        }
        for (k, row) in suite.rows.iter().enumerate() {
            if slug(&row.label).is_empty() {
                bail!("{at}: rows[{k}].label: needs at least one letter or digit");
            }
            if let Some(j) = suite.rows[..k]
                .iter()
                .position(|r| slug(&r.label) == slug(&row.label))
            {
                bail!(
                    "{at}: rows[{k}].label '{}': same folder as rows[{j}] '{}'",
                    row.label,
                    suite.rows[j].label
                );
            }
        }
        suite.name = name.clone();
        suites.push(suite);
    }
    Ok(suites)
}
