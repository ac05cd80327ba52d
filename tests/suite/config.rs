use std::path::Path;

use lstmkd::config::RunConfig;
use lstmkd::optim::{ScheduleConfig, ScheduleName};

use crate::common::toml_config;

fn base() -> String {
    toml_config(Path::new("/data/x"), Path::new("/tmp/out"), "")
}

fn err(text: &str, overrides: &[&str]) -> String {
    let o: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
    format!("{:#}", RunConfig::parse(text, "run.toml", &o).unwrap_err())
}

#[test]
fn parses_with_defaults_and_applies_overrides() {
    let cfg = RunConfig::parse(&base(), "run.toml", &[]).unwrap();
    assert_eq!(cfg.model.name, "resnet8");
    assert_eq!(cfg.train.device, "flex");
    assert_eq!(cfg.train.eval_batch_size(), 16);
    let o = [
        "optim.lr=0.2",
        "model.name=\"resnet20\"",
        "data.root=/other/place",
        "data.hflip=true",
        "schedule.milestones=[1, 2]",
        "schedule.name=multistep",
        "train.eval_batch_size=64",
    ]
    .map(String::from);
    let cfg = RunConfig::parse(&base(), "run.toml", &o).unwrap();
    assert_eq!(cfg.optim.lr, 0.2);
    assert_eq!(cfg.model.name, "resnet20");
    assert_eq!(cfg.data.root, Path::new("/other/place"));
    assert!(cfg.data.augment.hflip);
    assert_eq!(cfg.schedule.milestones, vec![1, 2]);
    assert_eq!(cfg.train.eval_batch_size(), 64);
    // The resolved config round-trips through TOML.
    let again = RunConfig::parse(&cfg.to_toml(), "resolved", &[]).unwrap();
    assert_eq!(again, cfg);
}

#[test]
fn a_config_without_a_schedule_table_gets_the_field_defaults() {
    let text: String = base()
        .lines()
        .filter(|l| !l.starts_with("[schedule]") && !l.starts_with("name = \"constant\""))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(!text.contains("[schedule]"), "{text}");
    let cfg = RunConfig::parse(&text, "run.toml", &[]).unwrap();
    assert_eq!(cfg.schedule.gamma, 0.1);
    assert_eq!(cfg.schedule.name, ScheduleName::Cosine);
}

#[test]
fn unknown_keys_are_rejected_in_the_file_and_in_overrides() {
    let e = err(
        &base().replace("lr = 0.05", "lr = 0.05\nlearning_rate = 1"),
        &[],
    );
    assert!(
        e.contains("run.toml") && e.contains("unknown field `learning_rate`"),
        "{e}"
    );
    let e = err(&base(), &["optim.lrr=0.1"]);
    assert!(
        e.contains("unknown field `lrr`") && e.contains("--set optim.lrr=0.1"),
        "{e}"
    );
    let e = err(&base(), &["nonsense.key=1"]);
    assert!(e.contains("unknown field `nonsense`"), "{e}");
    let e = err(&base(), &["optim.lr"]);
    assert!(e.contains("expected key=value"), "{e}");
}

#[test]
fn bad_values_name_the_field() {
    for (o, needle) in [
        ("optim.lr=-1", "optim.lr"),
        ("data.val_fraction=0.0", "data.val_fraction"),
        ("train.epochs=0", "train.epochs"),
        ("model.name=\"nope\"", "model.name"),
        ("train.device=\"cuda:0\"", "cuda"),
        ("train.device=\"abacus\"", "unknown device"),
        ("schedule.name=multistep", "schedule.milestones"),
        (
            "data.format=\"tiff\"",
            "data.format: unknown variant `tiff`",
        ),
        // Type errors name the key too.
        (
            "model.frames=\"two\"",
            "model.frames: invalid type: string \"two\"",
        ),
        ("data.val_fraction=\"x\"", "data.val_fraction: invalid type"),
        ("train.seed=-1", "train.seed: "),
        ("optim.eps=0.0", "optim.eps"),
        ("optim.weight_decay=nan", "optim.weight_decay"),
        ("schedule.warmup_epochs=nan", "schedule.warmup_epochs"),
        ("schedule.min_lr=nan", "schedule.min_lr"),
        ("schedule.gamma=inf", "schedule.gamma"),
        (
            "train.precision=\"f8\"",
            "train.precision: unknown variant `f8`, expected one of `f32`, `f16`, `bf16`",
        ),
    ] {
        let e = err(&base(), &[o]);
        assert!(e.contains(needle), "{o}: {e}");
    }
}

#[test]
fn schedules_follow_their_formulas() {
    let cos = ScheduleConfig {
        name: ScheduleName::Cosine,
        warmup_epochs: 2.0,
        ..Default::default()
    };
    assert!(
        (cos.lr(0.1, 1.0, 10) - 0.05).abs() < 1e-12,
        "half-way through warm-up"
    );
    assert!((cos.lr(0.1, 2.0, 10) - 0.1).abs() < 1e-12);
    assert!(
        (cos.lr(0.1, 6.0, 10) - 0.05).abs() < 1e-12,
        "cosine mid-point"
    );
    assert!(cos.lr(0.1, 10.0, 10).abs() < 1e-12);
    let ms = ScheduleConfig {
        name: ScheduleName::Multistep,
        milestones: vec![3, 6],
        gamma: 0.1,
        ..Default::default()
    };
    assert_eq!(ms.lr(1.0, 2.9, 10), 1.0);
    assert!((ms.lr(1.0, 3.0, 10) - 0.1).abs() < 1e-12);
    assert!((ms.lr(1.0, 7.5, 10) - 0.01).abs() < 1e-12);
}

#[test]
fn devices_without_their_feature_explain_how_to_build() {
    for (spec, feature, compiled) in [
        ("cuda:1", "cuda", cfg!(feature = "cuda")),
        ("tch", "tch", cfg!(feature = "tch")),
        ("vulkan:0", "vulkan", cfg!(feature = "vulkan")),
    ] {
        if !compiled {
            let e = format!("{:#}", lstmkd::device::parse(spec).unwrap_err());
            assert!(e.contains(&format!("--features {feature}")), "{e}");
        }
    }
    assert!(lstmkd::device::parse("flex").is_ok());
    assert!(lstmkd::device::parse("cuda:x").is_err());
}

#[test]
fn distill_tables_are_validated() {
    let with = |distill: &str| {
        let text = format!(
            "{}\n[teacher]\ncheckpoint = \"t.ckpt\"\n\n[distill]\n{distill}\n",
            base()
        );
        RunConfig::parse(&text, "d.toml", &[])
            .map(|_| ())
            .map_err(|e| format!("{e:#}"))
    };
    assert!(with("weights = { ce = 1.0, kd = 1.0 }\nend_to_end = true").is_ok());
    // A plain KD config under the default (the paper's) phases: the phases without any of its losses
    // are left out.
    let kd: lstmkd::distill::DistillConfig =
        toml::from_str("weights = { ce = 1.0, kd = 1.0 }").unwrap();
    kd.validate().unwrap();
    let phases = kd.phases();
    assert_eq!(phases.len(), 1);
    assert_eq!(phases[0].losses, ["ce", "kd"]);
    // Phases written out must each train something.
    let e = with(
        "weights = { ce = 1.0, kd = 1.0 }\n[[distill.phases]]\nname = \"warm\"\nuntil_epoch = 1\nlosses = [\"at\"]\n[[distill.phases]]\nname = \"rest\"\nlosses = [\"ce\", \"kd\"]",
    )
    .unwrap_err();
    assert!(e.contains("warm"), "{e}");
    // A lone phase with an end reads as the first of several, but it would train to the end.
    let e = with(
        "weights = { ce = 1.0, kd = 1.0 }\n[[distill.phases]]\nname = \"logits\"\nuntil_fraction = 0.2\nlosses = [\"ce\", \"kd\"]",
    )
    .unwrap_err();
    assert!(
        e.contains("distill.phases[0] (logits): the last phase runs to the end"),
        "{e}"
    );
    let e = with(
        "weights = { ce = 1.0, kd = 1.0 }\n[[distill.phases]]\nname = \"a\"\nuntil_epoch = 3\nlosses = [\"ce\"]\n[[distill.phases]]\nname = \"b\"\nuntil_epoch = 3\nlosses = [\"kd\"]\n[[distill.phases]]\nname = \"c\"\nlosses = [\"ce\", \"kd\"]",
    )
    .unwrap_err();
    assert!(
        e.contains("distill.phases[1] (b): ends no later than distill.phases[0] (a)"),
        "{e}"
    );
    for (bad, needle) in [
        (
            "dkd = { beta = -1.0 }",
            "distill.dkd: beta: must be a finite number at least 0",
        ),
        ("dkd = { alpha = nan }", "distill.dkd: alpha"),
        (
            "dkd = { temperature = 0.0 }",
            "distill.dkd: temperature: must be a finite number above 0",
        ),
        ("dkd = { warmup = 1.5 }", "distill.dkd: warmup"),
        ("dkd = { alpah = 1.0 }", "unknown field `alpah`"),
        (
            "dkd = 2.0",
            "distill.dkd: expected a table of the loss's options",
        ),
        ("at = { taps = 0 }", "distill.at: taps: must be at least 1"),
        (
            "crd = { negatives = 0 }",
            "distill.crd: negatives: 1 to 65536",
        ),
        ("crd = { momentum = 1.0 }", "distill.crd: momentum"),
        (
            "ntxent = { temperature = -1.0 }",
            "distill.ntxent: temperature",
        ),
        // A loss without options, or no loss at all: an unknown key.
        ("kd = { taps = 2 }", "distill.kd: unknown key"),
        ("tmixx = 0.5", "distill.tmixx: unknown key"),
        // Closed sets are enums: a value outside one is named with the key.
        (
            "temperature = { policy = \"warm\" }",
            "distill.temperature.policy: unknown variant `warm`, expected one of `dynamic`, `fixed`, `relative`",
        ),
        (
            "extractor = { core = \"gru\" }",
            "distill.extractor.core: unknown variant `gru`, expected `lstm` or `qrnn`",
        ),
        // The flat keys of before each loss had its table name the key that replaced them.
        (
            "dkd_beta = 2.0",
            "distill.dkd_beta: now `beta` in the loss's own table: [distill.dkd] beta",
        ),
        ("dkd_warmup = 0.1", "[distill.dkd] warmup"),
        ("at_normalize = false", "[distill.at] normalize"),
        ("temporal_relative = true", "[distill.temporal] relative"),
        ("crd_negatives = 16", "[distill.crd] negatives"),
        ("ntxent_feat_dim = 16", "[distill.ntxent] feat_dim"),
        (
            "loss_taps = { at = 3 }",
            "distill.loss_taps: now `taps` in each loss's own table, e.g. [distill.at] taps = 3",
        ),
        // NaN compares false with everything: it must not slip through an ordering check.
        (
            "temperature = { policy = \"dynamic\", table = [[nan, 2.0]] }",
            "distill.temperature.table: thresholds must be finite",
        ),
        (
            "adaptive_window = { table = [[0.5, 2], [nan, 3]], top = 4 }",
            "distill.adaptive_window.table: thresholds must be finite",
        ),
        ("adapt_lr = inf", "distill.adapt_epochs / adapt_lr"),
    ] {
        let e = with(&format!(
            "weights = {{ ce = 1.0, dkd = 1.0 }}\nend_to_end = true\n{bad}"
        ))
        .unwrap_err();
        assert!(e.contains(needle), "{bad}: {e}");
    }
    let e = with("weights = { ce = 1.0, kdd = 1.0 }").unwrap_err();
    assert!(e.contains("unknown loss 'kdd'"), "{e}");
    let e = with("weights = { ce = 1.0 }\nfused = true\nend_to_end = true").unwrap_err();
    assert!(e.contains("fused"), "{e}");
    let e = with("weights = { ce = 1.0 }\nend_to_end = true\ntmix = 2.0").unwrap_err();
    assert!(e.contains("distill.tmix"), "{e}");
}

#[test]
fn every_suite_row_is_a_valid_config_on_the_suite_configs_and_their_budgets() {
    let ghost = tempfile::tempdir().unwrap();
    for (file, min_budgets) in [("fmnist.toml", 4), ("motion.toml", 1)] {
        let path = format!("{}/configs/experiments/{file}", env!("CARGO_MANIFEST_DIR"));
        let mut table: toml::Table =
            toml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let experiment = table.remove("experiment").unwrap();
        let experiment = experiment.as_table().unwrap();
        let base = toml::to_string(&table).unwrap();
        let suites = lstmkd::experiment::suites::all(experiment, &path).unwrap();
        let budgets: Vec<(&String, Vec<String>)> = experiment
            .iter()
            .filter_map(|(name, v)| {
                let list = v.as_array()?;
                Some((
                    name,
                    list.iter()
                        .map(|v| v.as_str().unwrap().to_string())
                        .collect(),
                ))
            })
            .collect();
        assert!(budgets.len() >= min_budgets, "{file}: {budgets:?}");
        for (name, budget) in &budgets {
            for suite in &suites {
                let mut runs = Vec::new();
                for row in &suite.rows {
                    let mut overrides = budget.clone();
                    overrides.extend(row.overrides.iter().cloned());
                    let at = format!("{file} / {name} / {} / {}", suite.name, row.label);
                    let mut cfg = RunConfig::parse(&base, &path, &overrides)
                        .unwrap_or_else(|e| panic!("{at}: {e:#}"));
                    if row.kind == lstmkd::experiment::suites::Kind::Distill {
                        cfg.distillation().unwrap_or_else(|e| panic!("{at}: {e:#}"));
                        // Rows are compared with each other, not with whatever adapted file
                        // this checkout holds: the paths move where no file is, keeping which
                        // rows share one.
                        let t = cfg.teacher.as_mut().unwrap();
                        t.checkpoint = moved_under(ghost.path(), &t.checkpoint);
                        t.extractors = t
                            .extractors
                            .as_deref()
                            .map(|p| moved_under(ghost.path(), p));
                        runs.push((row.label.as_str(), cfg));
                    }
                }
                // Rows reading one adapted extractor file must need the same extractor, or the
                // runner refuses the suite when it starts.
                lstmkd::experiment::check_lenses(runs.iter().map(|(l, c)| (*l, c)))
                    .unwrap_or_else(|e| panic!("{file} / {name} / {}: {e:#}", suite.name));
            }
        }
    }
}

#[test]
fn suites_defined_in_a_suite_config_are_read_and_bad_ones_named() {
    use lstmkd::experiment::suites::{Kind, all};
    let parse = |text: &str| all(&toml::from_str(text).unwrap(), "s.toml");
    let suites = parse(
        r#"
        [suites.my-study]
        about = "two rows"
        rows = [
            { label = "alone", kind = "alone" },
            { label = "KD at T = 2", overrides = ['distill.temperature.value=2.0'], claim = "x" },
        ]
        "#,
    )
    .unwrap();
    let mine = suites.iter().find(|s| s.name == "my-study").unwrap();
    assert_eq!(mine.rows[0].kind, Kind::Alone);
    assert_eq!(mine.rows[1].kind, Kind::Distill, "distill is the default");
    assert_eq!(mine.rows[1].overrides, ["distill.temperature.value=2.0"]);
    assert_eq!(
        (mine.rows[0].claim.as_str(), mine.rows[1].claim.as_str()),
        ("-", "x")
    );
    assert!(
        suites.iter().any(|s| s.name == "comparison"),
        "built-ins stay"
    );

    for (text, wanted) in [
        (
            "[suites.comparison]\nabout = \"\"\nrows = [{ label = \"a\" }]",
            "experiment.suites.comparison: a built-in suite has this name",
        ),
        (
            "[suites.Big]\nabout = \"\"\nrows = [{ label = \"a\" }]",
            "experiment.suites.Big: a suite name is lowercase",
        ),
        (
            "[suites.s]\nabout = \"\"\nrows = []",
            "experiment.suites.s: rows: a suite needs at least one row",
        ),
        (
            "[suites.s]\nabout = \"\"\nrows = [{ label = \"a\", kind = \"teach\" }]",
            "unknown variant `teach`",
        ),
        (
            "[suites.s]\nabout = \"\"\nrows = [{ label = \"a\", weights = 1 }]",
            "unknown field `weights`",
        ),
        (
            "[suites.s]\nabout = \"\"\nrows = [{ label = \"K D\" }, { label = \"k-d\" }]",
            "rows[1].label 'k-d': same folder as rows[0] 'K D'",
        ),
        (
            "suites = 3",
            "s.toml: experiment.suites: expected a table of suites",
        ),
    ] {
        let err = format!("{:#}", parse(text).unwrap_err());
        assert!(err.contains(wanted), "{text}: {err}");
        assert!(err.contains("s.toml"), "{err}");
    }
}

/// `path` as if its root were `root`.
fn moved_under(root: &std::path::Path, path: &std::path::Path) -> std::path::PathBuf {
    root.join(path.strip_prefix("/").unwrap_or(path))
}

#[test]
fn a_run_folders_config_of_the_flat_option_keys_reads_as_todays() {
    // What the code before per-loss tables wrote into config.toml: every flat option, at its
    // default but for DKD's warm-up and AT's taps.
    let old = "\
weights = { ce = 1.0, at = 100.0, dkd = 1.0 }
at_normalize = true
dkd_alpha = 1.0
dkd_beta = 8.0
dkd_temperature = 4.0
dkd_warmup = 0.083
logit_standardization = false
crd_feat_dim = 128
crd_negatives = 4096
crd_temperature = 0.07
crd_momentum = 0.5

[distill.loss_taps]
at = 3
";
    let new = "weights = { ce = 1.0, at = 100.0, dkd = 1.0 }\ndkd = { warmup = 0.083 }\nat = { taps = 3 }\n";
    let d = tempfile::tempdir().unwrap();
    let with = |distill: &str| {
        format!(
            "{}\n[teacher]\ncheckpoint = \"t.ckpt\"\n\n[distill]\n{distill}",
            base()
        )
    };
    let path = d.path().join("config.toml");
    std::fs::write(&path, with(old)).unwrap();
    let written = RunConfig::load_written(&path, &[]).unwrap();
    assert_eq!(
        written,
        RunConfig::parse(&with(new), "new.toml", &[]).unwrap()
    );
    // As a user's config, the same text is refused with the key that replaced each one.
    let e = format!("{:#}", RunConfig::load(&path, &[]).unwrap_err());
    assert!(e.contains("[distill.at] normalize"), "{e}");
}
