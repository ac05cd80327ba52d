//! The ledger of finished suite runs: what a run's key covers, the formats it is written in,
//! the committed ledgers' keys carried over, and the results version that guards them.

use std::path::Path;

use lstmkd::config::RunConfig;
use lstmkd::experiment::ledger::{self, Keys, Ledger, RESULTS_VERSION, keys};
use sha2::{Digest, Sha256};

use crate::common::{lstmkd, ok, toml_config};
use crate::distill::tiny_teacher;

fn hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn config(text: &str, set: &[&str]) -> RunConfig {
    let set: Vec<String> = set.iter().map(|s| s.to_string()).collect();
    RunConfig::parse(text, "run.toml", &set).unwrap()
}

#[test]
fn a_run_key_is_pinned() {
    let cfg = config(
        &toml_config(Path::new("/data/fmnist"), Path::new("/runs/a"), ""),
        &[],
    );
    let k = keys(&cfg, false).unwrap();
    // The config as TOML without its output folder: the legacy key is its hash, the current
    // one hashes it with the results version in a versioned key.
    let mut bare = cfg.clone();
    bare.train.out_dir = Default::default();
    let text = toml::to_string(&bare).unwrap();
    assert_eq!(k.legacy, Some(hex(text.as_bytes())));
    let key = format!(
        r#"{{"key_format":2,"results_version":{RESULTS_VERSION},"config_sha256":"{}","teacher_weights_sha256":null,"extractors_sha256":null}}"#,
        hex(text.as_bytes())
    );
    assert_eq!(k.current.as_deref(), Some(hex(key.as_bytes()).as_str()));
    // Pinned: a change of the config's serialisation changes every recorded key. If this
    // fails, the change must keep the serialisation (skip_serializing_if at the default) or
    // bump the key format with a migration.
    assert_eq!(
        k.legacy.as_deref(),
        Some("50c5d9caad2c0f3626940c5e46cc58aa15623e7819067362eed62ca7b376fdbe")
    );
    assert_eq!(k.current.as_deref(), Some(CURRENT));
}

/// The current key of `a_run_key_is_pinned`'s config (key format 2, results version 2).
const CURRENT: &str = "945863efdd760460d0cad8cd5eef45e58b6ae3ff644318d3562a4c8f7422e751";

/// A CE + DKD distillation config with `distill` added to its [distill] table.
fn dkd_config(distill: &str) -> RunConfig {
    let text = toml_config(
        Path::new("/data/fmnist"),
        Path::new("/runs/a"),
        &format!(
            "[teacher]\ncheckpoint = \"/t.ckpt\"\n\n[distill]\nweights = {{ ce = 1.0, dkd = 1.0 }}\n{distill}"
        ),
    );
    config(&text, &[])
}

#[test]
fn the_options_of_the_legacy_layout_keep_a_legacy_key() {
    let with = |distill: &str| keys(&dkd_config(distill), false).unwrap().legacy;
    assert!(with("").is_some());
    assert!(with("dkd = { warmup = 0.1 }").is_some());
    assert!(with("at = { taps = 3 }").is_some());
    // An option of that layout set to its default is the same run as leaving it out.
    assert_eq!(with("dkd = { alpha = 1.0 }"), with(""));
}

#[test]
fn an_option_at_its_default_is_the_same_run_as_no_option() {
    let cfg = dkd_config;
    let plain = cfg("");
    for same in [
        "dkd = { alpha = 1.0 }",
        "dkd = { alpha = 1, beta = 8 }",
        "at = { normalize = true }",
    ] {
        assert_eq!(cfg(same), plain, "{same}");
        assert_eq!(
            keys(&cfg(same), false).unwrap(),
            keys(&plain, false).unwrap(),
            "{same}"
        );
    }
    let other = cfg("dkd = { alpha = 2 }");
    assert_ne!(
        keys(&other, false).unwrap().current,
        keys(&plain, false).unwrap().current
    );
    // Integers where the option is a float read as the same value.
    assert_eq!(other, cfg("dkd = { alpha = 2.0 }"));
}

#[test]
fn a_ledger_key_follows_the_config_and_the_teachers_weights_not_the_output_folder() {
    let d = tempfile::tempdir().unwrap();
    let (data, teacher_dir) = tiny_teacher(d.path(), 32, 16);
    let teacher = teacher_dir.join("best.ckpt");
    let cfg = |out: &str, set: &[&str]| {
        let text = toml_config(
            &data,
            &d.path().join(out),
            &format!(
                "[teacher]\ncheckpoint = \"{}\"\n\n[distill]\nweights = {{ ce = 1.0, kd = 1.0 }}\n",
                teacher.display()
            ),
        );
        config(&text, set)
    };
    let key = keys(&cfg("a", &[]), true).unwrap();
    assert_eq!(key.current.as_ref().unwrap().len(), 64);
    assert_eq!(
        key,
        keys(&cfg("b", &[]), true).unwrap(),
        "the output folder"
    );
    let other = keys(&cfg("a", &["train.epochs=7"]), true).unwrap();
    assert!(other.current != key.current && other.legacy != key.legacy);
    let alone = keys(&cfg("a", &[]), false).unwrap();
    // The same teacher written again (another header, same weights) keeps the key; a teacher
    // with other weights at the same path changes it.
    let same = lstmkd::train::checkpoint::Checkpoint::load(&teacher).unwrap();
    same.save(&teacher).unwrap();
    assert_eq!(key, keys(&cfg("a", &[]), true).unwrap());
    let retrained = d.path().join("other");
    std::fs::create_dir_all(&retrained).unwrap();
    let (_, other_dir) = tiny_teacher(&retrained, 48, 16);
    std::fs::copy(other_dir.join("best.ckpt"), &teacher).unwrap();
    let other = keys(&cfg("a", &[]), true).unwrap();
    assert!(
        other.current != key.current && other.legacy != key.legacy,
        "the teacher's weights"
    );
    assert_eq!(
        alone,
        keys(&cfg("a", &[]), false).unwrap(),
        "no teacher, no change"
    );
    std::fs::remove_file(&teacher).unwrap();
    let e = format!("{:#}", keys(&cfg("a", &[]), true).unwrap_err());
    assert!(e.contains("best.ckpt"), "{e}");
}

#[test]
fn the_adapted_extractors_are_part_of_a_distillations_key() {
    let d = tempfile::tempdir().unwrap();
    let (data, teacher_dir) = tiny_teacher(d.path(), 32, 16);
    let cfg_path = d.path().join("lstmkd.toml");
    let table = format!(
        "[teacher]\ncheckpoint = \"{}\"\n\n[distill]\nweights = {{ ce = 1.0, temporal = 1.0 }}\nadapt_epochs = 1\nend_to_end = true\n",
        teacher_dir.join("best.ckpt").display()
    );
    let text = toml_config(&data, &d.path().join("student"), &table);
    std::fs::write(&cfg_path, &text).unwrap();
    let cfg = config(&text, &[]);
    let before = keys(&cfg, true).unwrap();
    assert_eq!(
        before.current, None,
        "no extractors adapted: no current key"
    );
    ok(lstmkd(&["adapt", "--config", cfg_path.to_str().unwrap()]));
    let adapted = keys(&cfg, true).unwrap();
    assert!(adapted.current.is_some());
    assert_eq!(
        adapted.legacy, before.legacy,
        "legacy keys never covered them"
    );
    // Adapted again with more epochs: other extractors, another key.
    std::fs::remove_dir_all(teacher_dir.join("adapt")).unwrap();
    ok(lstmkd(&[
        "adapt",
        "--config",
        cfg_path.to_str().unwrap(),
        "--set",
        "distill.adapt_epochs=2",
    ]));
    let again = keys(&config(&text, &["distill.adapt_epochs=2"]), true).unwrap();
    assert!(again.current.is_some() && again.current != adapted.current);
}

/// Every committed ledger under docs/reproducing/.
fn committed_ledgers() -> Vec<std::path::PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/reproducing");
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with("-runs.json"))
        .collect();
    paths.sort();
    assert!(paths.len() >= 5, "{paths:?}");
    paths
}

/// The committed ledgers were recorded before keys were versioned: their entries are runs of
/// results version 1, found through their legacy key while that is the current version and
/// not after (the kernels of version 2 round differently).
#[test]
fn committed_ledgers_load_with_their_entries_as_results_version_1() {
    for path in committed_ledgers() {
        let text = std::fs::read_to_string(&path).unwrap();
        let raw: serde_json::Value = serde_json::from_str(&text).unwrap();
        let runs = raw["runs"].as_array().unwrap();
        assert!(!runs.is_empty(), "{}", path.display());
        let ledger = Ledger::open(&path).unwrap();
        for run in runs {
            let key = run["config_sha256"].as_str().unwrap().to_string();
            let seed = run["seed"].as_u64().unwrap();
            // Recorded before keys were versioned, so found through the legacy key.
            let legacy = Keys {
                current: None,
                legacy: Some(key.clone()),
            };
            let found = ledger.find(seed, &legacy);
            assert_eq!(
                found.map(|e| (e.key_format, e.results_version, e.code.as_str())),
                (RESULTS_VERSION == 1).then_some((1, 1, "unknown")),
                "{} seed {seed}",
                path.display()
            );
            // The legacy key matches nothing as a current one.
            let current = Keys {
                current: Some(key),
                legacy: None,
            };
            assert!(ledger.find(seed, &current).is_none());
        }
    }
}

#[test]
fn a_committed_run_is_found_through_its_legacy_key_at_its_results_version_only() {
    // The comparison suite's student alone at `mid` has no teacher, so its key needs nothing
    // but the suite's config: at results version 1 a dry run finds all five seeds in the
    // committed ledger; at a later version it would train them again.
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let d = tempfile::tempdir().unwrap();
    let o = lstmkd(&[
        "experiment",
        "--suite",
        "comparison",
        "--budget",
        "mid",
        "--seeds",
        "5",
        "--rows",
        "1",
        "--dry-run",
        "--out",
        d.path().to_str().unwrap(),
        "--ledger",
        repo.join("docs/reproducing/comparison-mid-runs.json")
            .to_str()
            .unwrap(),
    ]);
    let out = ok(o);
    assert_eq!(
        out.matches("\n  recorded in ").count(),
        if RESULTS_VERSION == 1 { 5 } else { 0 },
        "every seed of the row recorded at version 1, none after: {out}"
    );
}

#[test]
fn the_code_recorded_is_the_builds_git_describe() {
    let described = std::process::Command::new("git")
        .args(["describe", "--always", "--dirty", "--abbrev=12"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success());
    let code = ledger::code();
    match described {
        // The build may predate an edit of the tree: compare the commits.
        Some(o) => {
            let commit = |s: &str| s.trim().trim_end_matches("-dirty").to_string();
            assert_eq!(commit(code), commit(&String::from_utf8_lossy(&o.stdout)));
        }
        None => assert_eq!(code, "unknown"),
    }
}

/// What a small distillation of every LSTM-KD loss computes at one results version.
#[derive(serde::Deserialize, serde::Serialize, Debug, PartialEq)]
struct Pinned {
    results_version: u32,
    teacher_val_loss: f64,
    train_loss: f64,
    losses: std::collections::BTreeMap<String, f64>,
    val_loss: f64,
}

#[test]
fn results_version_pins_a_distillation_steps_numbers() {
    let d = tempfile::tempdir().unwrap();
    let (_, student, _) = crate::distill::tiny_distillation(
        d.path(),
        "weights = { ce = 1.0, kd = 1.0, at = 100.0, temporal = 0.05, aux_ce = 0.5 }\nend_to_end = true\nadapt_epochs = 1\n",
    );
    let teacher = lstmkd::train::metrics::read_jsonl(&d.path().join("teacher/metrics.jsonl"));
    let run = lstmkd::train::metrics::read_jsonl(&student.join("metrics.jsonl")).unwrap();
    let measured = Pinned {
        results_version: RESULTS_VERSION,
        teacher_val_loss: teacher.unwrap()[0].val_loss,
        train_loss: run[0].train_loss,
        losses: run[0].losses.clone(),
        val_loss: run[0].val_loss,
    };
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/results_version.json");
    let pinned: Pinned = serde_json::from_slice(&std::fs::read(&fixture).unwrap()).unwrap();
    let measured_json = serde_json::to_string_pretty(&measured).unwrap();
    assert_eq!(
        pinned.results_version,
        RESULTS_VERSION,
        "RESULTS_VERSION changed: record this version's numbers in {}:\n{measured_json}",
        fixture.display()
    );
    // Rounding differs between machines (AVX-512 or AVX2 kernels) in the last digits; a
    // change of what is computed moves these by far more.
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-4 * a.abs().max(b.abs()).max(1e-3);
    let same = close(pinned.teacher_val_loss, measured.teacher_val_loss)
        && close(pinned.train_loss, measured.train_loss)
        && close(pinned.val_loss, measured.val_loss)
        && pinned.losses.len() == measured.losses.len()
        && pinned
            .losses
            .iter()
            .all(|(k, v)| measured.losses.get(k).is_some_and(|m| close(*v, *m)));
    assert!(
        same,
        "a distillation's numbers changed without RESULTS_VERSION: every recorded run is of the \
         old code. Bump RESULTS_VERSION (src/experiment/ledger.rs) and record the new numbers in \
         {}:\n{measured_json}\npinned: {pinned:?}",
        fixture.display()
    );
}

/// The configs of every row of every suite config at each of its budgets (seed 0), named
/// "<file> / <budget> / <suite> / <row>".
fn every_suite_row() -> Vec<(String, RunConfig)> {
    let mut out = Vec::new();
    for file in ["fmnist.toml", "motion.toml"] {
        let path = format!("{}/configs/experiments/{file}", env!("CARGO_MANIFEST_DIR"));
        let mut table: toml::Table =
            toml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let experiment = table.remove("experiment").unwrap();
        let experiment = experiment.as_table().unwrap();
        let suites = lstmkd::experiment::suites::all(experiment, &path).unwrap();
        for (budget, list) in experiment.iter().filter(|(_, v)| v.is_array()) {
            let list: Vec<String> = list
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap().to_string())
                .collect();
            for suite in &suites {
                for row in &suite.rows {
                    let mut base = table.clone();
                    if row.kind == lstmkd::experiment::suites::Kind::Alone {
                        base.remove("teacher");
                        base.remove("distill");
                    }
                    let mut overrides = list.clone();
                    overrides.push("train.seed=0".into());
                    overrides.extend(row.overrides.iter().cloned());
                    let text = toml::to_string(&base).unwrap();
                    let cfg = RunConfig::parse(&text, &path, &overrides).unwrap();
                    let name = format!("{file} / {budget} / {} / {}", suite.name, row.label);
                    out.push((name, cfg));
                }
            }
        }
    }
    out
}

#[test]
fn the_legacy_key_of_every_suite_row_is_kept() {
    // Recorded with the code that wrote the committed ledgers (keys of format 1): the hash of
    // each row's config as that code serialised it. The teacher's weights, the other part of
    // such a key, do not depend on lstmkd's config format.
    let fixture =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/legacy_config_keys.json");
    let measured: std::collections::BTreeMap<String, String> = every_suite_row()
        .into_iter()
        .map(|(name, cfg)| (name, ledger::legacy_config_sha256(&cfg).unwrap().unwrap()))
        .collect();
    let pinned: std::collections::BTreeMap<String, String> =
        serde_json::from_slice(&std::fs::read(&fixture).unwrap()).unwrap();
    assert!(pinned.len() > 100, "{}", pinned.len());
    for (name, key) in &pinned {
        assert_eq!(measured.get(name), Some(key), "{name}");
    }
}
