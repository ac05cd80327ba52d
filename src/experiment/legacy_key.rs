//! The config as ledger keys of format 1 hashed it: the TOML text of the run config in the
//! layout of that time, when the losses' options were flat `[distill]` keys (`dkd_alpha`,
//! `loss_taps`, ...). Every run committed before keys were versioned has such a key, so this
//! layout is frozen here, field for field and in the same order, whatever the config becomes.
//! `ledger::the_legacy_key_of_every_suite_row_is_kept` holds it to the text that code wrote.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::config::{RunConfig, TrainConfig};
use crate::data::DataConfig;
use crate::distill::adaptive_window::AdaptiveWindow;
use crate::distill::extractor::ExtractorConfig;
use crate::distill::losses::{at, crd, dkd, fitnet, ntxent, temporal};
use crate::distill::phases::Phase;
use crate::distill::temperature::TemperatureConfig;
use crate::distill::{DistillConfig, TeacherConfig, TemporalInit};
use crate::models::ModelConfig;
use crate::optim::{OptimConfig, ScheduleConfig};

#[derive(Serialize)]
struct Run<'a> {
    data: &'a DataConfig,
    model: &'a ModelConfig,
    optim: &'a OptimConfig,
    schedule: &'a ScheduleConfig,
    train: &'a TrainConfig,
    #[serde(skip_serializing_if = "Option::is_none")]
    teacher: Option<&'a TeacherConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    distill: Option<Distill<'a>>,
}

#[derive(Serialize)]
struct Distill<'a> {
    weights: &'a BTreeMap<String, f64>,
    taps: usize,
    extractor: &'a ExtractorConfig,
    temporal_init: TemporalInit,
    freeze_student_extractor: bool,
    temperature: &'a TemperatureConfig,
    phases: &'a Option<Vec<Phase>>,
    end_to_end: bool,
    rtc: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    adaptive_window: &'a Option<AdaptiveWindow>,
    tmix: f64,
    fused: bool,
    adapt_epochs: usize,
    adapt_lr: f64,
    #[serde(flatten)]
    options: Options,
}

#[derive(Serialize)]
struct Options {
    at_normalize: bool,
    dkd_alpha: f64,
    dkd_beta: f64,
    dkd_temperature: f64,
    dkd_warmup: f64,
    logit_standardization: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    temporal_relative: bool,
    loss_taps: BTreeMap<String, usize>,
    crd_feat_dim: usize,
    crd_negatives: usize,
    crd_temperature: f64,
    crd_momentum: f64,
    #[serde(skip_serializing_if = "is_128")]
    ntxent_feat_dim: usize,
    #[serde(skip_serializing_if = "is_half")]
    ntxent_temperature: f64,
}

fn is_128(d: &usize) -> bool {
    *d == 128
}

fn is_half(t: &f64) -> bool {
    *t == 0.5
}

fn options(d: &DistillConfig) -> Options {
    let o = &d.options;
    let (at, dkd, crd, ntxent) = (
        o.of::<at::Options>("at"),
        o.of::<dkd::Options>("dkd"),
        o.of::<crd::Options>("crd"),
        o.of::<ntxent::Options>("ntxent"),
    );
    let taps = [
        ("at", at.taps),
        ("fitnet", o.of::<fitnet::Options>("fitnet").taps),
    ];
    Options {
        at_normalize: at.normalize,
        dkd_alpha: dkd.alpha,
        dkd_beta: dkd.beta,
        dkd_temperature: dkd.temperature,
        dkd_warmup: dkd.warmup,
        logit_standardization: d.logit_standardization,
        temporal_relative: o.of::<temporal::Options>("temporal").relative,
        loss_taps: taps
            .into_iter()
            .filter_map(|(loss, n)| Some((loss.to_string(), n?)))
            .collect(),
        crd_feat_dim: crd.feat_dim,
        crd_negatives: crd.negatives,
        crd_temperature: crd.temperature,
        crd_momentum: crd.momentum,
        ntxent_feat_dim: ntxent.feat_dim,
        ntxent_temperature: ntxent.temperature,
    }
}

/// The loss options the layout of key format 1 had, by loss: a config setting any other (a
/// loss or an option added since) has no legacy key, since that layout cannot tell it from the
/// run without it.
const LAYOUT: &[(&str, &[&str])] = &[
    ("at", &["normalize", "taps"]),
    ("fitnet", &["taps"]),
    ("temporal", &["relative"]),
    ("dkd", &["alpha", "beta", "temperature", "warmup"]),
    ("crd", &["feat_dim", "negatives", "temperature", "momentum"]),
    ("ntxent", &["feat_dim", "temperature"]),
];

fn representable(d: &DistillConfig) -> bool {
    d.options.tables().all(|(loss, table)| {
        let known = LAYOUT
            .iter()
            .find(|(l, _)| *l == loss)
            .map(|(_, keys)| *keys);
        match (known, table.as_table()) {
            (Some(keys), Some(t)) => t.keys().all(|k| keys.contains(&k.as_str())),
            _ => false,
        }
    })
}

/// The run config's text as key format 1 hashed it (the output folder left empty by the
/// caller); None for a config that layout cannot express.
pub(crate) fn text(cfg: &RunConfig) -> Result<Option<String>, toml::ser::Error> {
    if cfg.distill.as_ref().is_some_and(|d| !representable(d)) {
        return Ok(None);
    }
    let distill = cfg.distill.as_ref().map(|d| Distill {
        weights: &d.weights,
        taps: d.taps,
        extractor: &d.extractor,
        temporal_init: d.temporal_init,
        freeze_student_extractor: d.freeze_student_extractor,
        temperature: &d.temperature,
        phases: &d.phases,
        end_to_end: d.end_to_end,
        rtc: d.rtc,
        adaptive_window: &d.adaptive_window,
        tmix: d.tmix,
        fused: d.fused,
        adapt_epochs: d.adapt_epochs,
        adapt_lr: d.adapt_lr,
        options: options(d),
    });
    toml::to_string(&Run {
        data: &cfg.data,
        model: &cfg.model,
        optim: &cfg.optim,
        schedule: &cfg.schedule,
        train: &cfg.train,
        teacher: cfg.teacher.as_ref(),
        distill,
    })
    .map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn distill(text: &str) -> DistillConfig {
        toml::from_str(&format!("weights = {{ ce = 1.0, kd = 1.0 }}\n{text}")).unwrap()
    }

    #[test]
    fn options_beyond_the_layout_have_no_legacy_form() {
        // Configs cannot set these today (validation refuses them); a loss or an option added
        // later can, and its runs must not match a legacy entry trained without it.
        assert!(representable(&distill(
            "dkd = { warmup = 0.1 }\nat = { taps = 3 }"
        )));
        assert!(!representable(&distill("kd = { new_option = 1 }")));
        assert!(!representable(&distill("dkd = { new_option = 1 }")));
        assert!(!representable(&distill("newloss = { x = 1 }")));
    }
}
