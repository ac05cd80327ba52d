//! The comparison suites: each row is a set of config overrides on the suite's base config, with
//! the seed's claim for that row beside it (for the report, never as a result).

/// How a row trains its student.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Cross-entropy alone (`lstmkd train`), no teacher.
    Alone,
    /// `lstmkd distill`.
    Distill,
}

pub struct Row {
    pub label: &'static str,
    pub kind: Kind,
    pub overrides: &'static [&'static str],
    /// What the seed reports for this row (its ImageNet / CIFAR-100 setting).
    pub claim: &'static str,
}

pub struct Suite {
    pub name: &'static str,
    pub about: &'static str,
    pub rows: &'static [Row],
}

const LSTM_KD: &str =
    "distill.weights={ce = 1.0, kd = 1.0, at = 100.0, temporal = 0.05, aux_ce = 0.5}";
const DYNAMIC: &str = "distill.temperature.policy=\"dynamic\"";
const FIXED: &str = "distill.temperature.policy=\"fixed\"";
const E2E: &str = "distill.end_to_end=true";
const LS: &str = "distill.logit_standardization=true";

/// FitNet as the baselines and the comparison suites run it.
const FITNET: Row = Row {
    label: "FitNet",
    kind: Kind::Distill,
    overrides: &["distill.weights={ce = 1.0, fitnet = 1.0}", E2E],
    claim: "-",
};

pub const SUITES: &[Suite] = &[
    Suite {
        name: "seed-benchmark",
        about: "student alone / traditional feature KD (KD + FitNet) / LSTM KD",
        rows: &[
            Row {
                label: "student alone",
                kind: Kind::Alone,
                overrides: &[],
                claim: "71.8%, 3.5M, 12.3 ms (MobileNetV2, ImageNet)",
            },
            Row {
                label: "KD + FitNet",
                kind: Kind::Distill,
                overrides: &[
                    "distill.weights={ce = 1.0, kd = 1.0, fitnet = 1.0}",
                    E2E,
                    FIXED,
                ],
                claim: "74.2%, 3.5M, 12.1 ms",
            },
            Row {
                label: "LSTM KD",
                kind: Kind::Distill,
                overrides: &[LSTM_KD, DYNAMIC],
                claim: "76.7%, 3.5M, 11.8 ms",
            },
        ],
    },
    Suite {
        name: "seed-ablation",
        about: "base CE + KD / + temporal extractor and loss / + attention transfer / + dynamic temperature",
        rows: &[
            Row {
                label: "CE + KD",
                kind: Kind::Distill,
                overrides: &["distill.weights={ce = 1.0, kd = 1.0}", E2E, FIXED],
                claim: "72.4%",
            },
            Row {
                label: "+ temporal",
                kind: Kind::Distill,
                overrides: &[
                    "distill.weights={ce = 1.0, kd = 1.0, temporal = 0.05, aux_ce = 0.5}",
                    E2E,
                    FIXED,
                ],
                claim: "74.9% (+2.5)",
            },
            Row {
                label: "+ attention (multi-level)",
                kind: Kind::Distill,
                overrides: &[LSTM_KD, E2E, FIXED],
                claim: "76.7% (+1.8)",
            },
            Row {
                label: "+ dynamic temperature",
                kind: Kind::Distill,
                overrides: &[LSTM_KD, E2E, DYNAMIC],
                claim: "77.3% (+0.6)",
            },
        ],
    },
    Suite {
        name: "schedule",
        about: "progressive vs end-to-end, dynamic vs fixed temperature (epochs to reach the target accuracy)",
        rows: &[
            Row {
                label: "progressive, dynamic T",
                kind: Kind::Distill,
                overrides: &[LSTM_KD, DYNAMIC],
                claim: "+1.8% over end-to-end; dynamic T converges 30% faster, +2.1%",
            },
            Row {
                label: "end-to-end, dynamic T",
                kind: Kind::Distill,
                overrides: &[LSTM_KD, DYNAMIC, E2E],
                claim: "-",
            },
            Row {
                label: "progressive, fixed T",
                kind: Kind::Distill,
                overrides: &[LSTM_KD, FIXED],
                claim: "-",
            },
            Row {
                label: "end-to-end, fixed T",
                kind: Kind::Distill,
                overrides: &[LSTM_KD, FIXED, E2E],
                claim: "-",
            },
        ],
    },
    Suite {
        name: "baselines",
        about: "KD, FitNet, AT, DKD and LSTM KD side by side",
        rows: &[
            Row {
                label: "KD",
                kind: Kind::Distill,
                overrides: &["distill.weights={ce = 1.0, kd = 1.0}", E2E, FIXED],
                claim: "-",
            },
            FITNET,
            Row {
                label: "AT",
                kind: Kind::Distill,
                overrides: &["distill.weights={ce = 1.0, at = 100.0}", E2E],
                claim: "-",
            },
            Row {
                label: "DKD",
                kind: Kind::Distill,
                overrides: &["distill.weights={ce = 1.0, dkd = 1.0}", E2E],
                claim: "-",
            },
            Row {
                label: "LSTM KD",
                kind: Kind::Distill,
                overrides: &[LSTM_KD, DYNAMIC],
                claim: "-",
            },
        ],
    },
    Suite {
        name: "comparison",
        about: "the strong baselines (KD, KD + logit standardisation, DKD with warm-up, CRD, AT on every stage, FitNet) against LSTM KD's variants, for the mid budget",
        rows: &[
            Row {
                label: "student alone",
                kind: Kind::Alone,
                overrides: &[],
                claim: "-",
            },
            Row {
                label: "KD",
                kind: Kind::Distill,
                overrides: &["distill.weights={ce = 1.0, kd = 1.0}", E2E, FIXED],
                claim: "CIFAR-100 resnet32x4 -> 8x4: 73.33% (Sun et al.)",
            },
            Row {
                label: "KD + LS",
                kind: Kind::Distill,
                overrides: &["distill.weights={ce = 1.0, kd = 1.0}", LS, E2E, FIXED],
                claim: "76.62% (Sun et al.)",
            },
            Row {
                label: "DKD (warm-up)",
                kind: Kind::Distill,
                overrides: &[
                    "distill.weights={ce = 1.0, dkd = 1.0}",
                    "distill.dkd_warmup=0.083",
                    E2E,
                ],
                claim: "76.32% (Sun et al.'s table)",
            },
            Row {
                label: "CRD",
                kind: Kind::Distill,
                overrides: &["distill.weights={ce = 1.0, crd = 0.8}", E2E],
                claim: "75.51% (RepDistiller, resnet32x4 -> 8x4)",
            },
            Row {
                label: "AT (every stage)",
                kind: Kind::Distill,
                overrides: &[
                    "distill.weights={ce = 1.0, at = 100.0}",
                    "distill.loss_taps={at = 3}",
                    E2E,
                ],
                claim: "-",
            },
            FITNET,
            Row {
                label: "LSTM KD (phases, dynamic T)",
                kind: Kind::Distill,
                overrides: &[LSTM_KD, DYNAMIC],
                claim: "the method: above KD and feature distillation",
            },
            Row {
                label: "LSTM KD (end-to-end, T = 4)",
                kind: Kind::Distill,
                overrides: &[LSTM_KD, E2E, FIXED],
                claim: "-",
            },
            Row {
                label: "LSTM KD + LS (end-to-end, T = 4)",
                kind: Kind::Distill,
                overrides: &[LSTM_KD, LS, E2E, FIXED],
                claim: "-",
            },
            Row {
                label: "LSTM KD, random extractor (end-to-end, T = 4)",
                kind: Kind::Distill,
                overrides: &[LSTM_KD, "distill.temporal_init=\"random\"", E2E, FIXED],
                claim: "-",
            },
        ],
    },
];

pub fn find(name: &str) -> Option<&'static Suite> {
    SUITES.iter().find(|s| s.name == name)
}

/// A file-system name for a row label.
pub fn slug(label: &str) -> String {
    let s: String = label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    s.split('-')
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join("-")
}
