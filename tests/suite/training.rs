use std::path::Path;

use burn::module::Module;
use lstmkd::config::RunConfig;
use lstmkd::train::checkpoint::Checkpoint;
use lstmkd::train::metrics::read_jsonl;
use lstmkd::train::run::Run;
use tempfile::tempdir;

use crate::common::{lstmkd, ok, toml_config, write_idx_dataset};

pub fn weights(path: &Path) -> Vec<f32> {
    let ckpt = Checkpoint::load(path).unwrap();
    let net = ckpt.network(&burn::tensor::Device::flex()).unwrap();
    let mut out = Vec::new();
    struct Collect<'a>(&'a mut Vec<f32>);
    impl burn::module::ModuleVisitor for Collect<'_> {
        fn visit_float<const D: usize>(
            &mut self,
            p: &burn::module::Param<burn::tensor::Tensor<D>>,
        ) {
            self.0.extend(p.val().into_data().iter::<f32>());
        }
    }
    net.visit(&mut Collect(&mut out));
    out
}

#[test]
fn tiny_run_learns_and_writes_metrics_and_checkpoints() {
    let d = tempdir().unwrap();
    let (data, out) = (d.path().join("data"), d.path().join("run"));
    write_idx_dataset(&data, 240, 80, 8, true);
    let cfg = RunConfig::parse(&toml_config(&data, &out, ""), "tiny.toml", &[]).unwrap();
    let run = Run::new(cfg, false).unwrap();
    lstmkd::train::classify::train(&run).unwrap();
    let m = read_jsonl(&out.join("metrics.jsonl")).unwrap();
    assert_eq!(m.iter().map(|r| r.epoch).collect::<Vec<_>>(), vec![1, 2, 3]);
    assert!(m[2].train_loss < m[0].train_loss, "loss falls: {m:?}");
    assert!(m[2].train_acc > m[0].train_acc, "accuracy rises: {m:?}");
    assert!(m[2].val_acc > 0.5, "4 classes, better than chance: {m:?}");
    for f in ["config.toml", "last.ckpt", "best.ckpt"] {
        assert!(out.join(f).is_file(), "{f}");
    }
    assert_eq!(
        std::fs::read_dir(&out)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "tmp")
            })
            .count(),
        0,
        "no temporary files left"
    );
    let last = Checkpoint::load(&out.join("last.ckpt")).unwrap();
    let state = last.meta.run.as_ref().unwrap();
    assert_eq!(state.epoch, 3);
    assert!(
        state.config.data.mean.is_some(),
        "normalisation is resolved into the run config"
    );
    assert_eq!(Some(&last.meta.mean), state.config.data.mean.as_ref());

    // A second run into the same directory is refused; nothing is overwritten.
    drop(run);
    let before = std::fs::read(out.join("last.ckpt")).unwrap();
    let cfg = RunConfig::parse(&toml_config(&data, &out, ""), "tiny.toml", &[]).unwrap();
    let e = format!("{:#}", Run::new(cfg, false).err().unwrap());
    assert!(e.contains("already holds a run"), "{e}");
    assert_eq!(std::fs::read(out.join("last.ckpt")).unwrap(), before);

    // eval from the CLI: reports and files.
    let o = lstmkd(&[
        "eval",
        "--checkpoint",
        out.join("best.ckpt").to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("eval.json")).unwrap()).unwrap();
    assert_eq!(report["images"], 80);
    assert!(report["top1"].as_f64().unwrap() > 0.5);
    // The confusion matrix (rows: true class) holds every test image once, its diagonal
    // the top-1 hits, its rows the per-class accuracies.
    let csv = std::fs::read_to_string(out.join("confusion.csv")).unwrap();
    let rows: Vec<Vec<u64>> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').skip(1).map(|v| v.parse().unwrap()).collect())
        .collect();
    assert_eq!(rows.iter().flatten().sum::<u64>(), 80);
    let diagonal: u64 = (0..rows.len()).map(|k| rows[k][k]).sum();
    assert_eq!(report["top1"].as_f64().unwrap(), diagonal as f64 / 80.0);
    // IDX data has 10 classes; the toy set uses 4, and a class without test images has no
    // accuracy (null).
    for (k, entry) in report["per_class"].as_array().unwrap().iter().enumerate() {
        let n: u64 = rows[k].iter().sum();
        let want = (n > 0).then(|| rows[k][k] as f64 / n as f64);
        assert_eq!(entry[1].as_f64(), want, "class {k}");
    }
}

#[test]
fn resume_continues_from_the_saved_epoch_with_the_optimiser_state() {
    let d = tempdir().unwrap();
    let data = d.path().join("data");
    write_idx_dataset(&data, 96, 16, 8, false);
    let straight = d.path().join("straight");
    let parts = d.path().join("parts");
    let cfg = |out: &Path, epochs: &str| toml_config(&data, out, "").replace("epochs = 3", epochs);

    std::fs::write(d.path().join("a.toml"), cfg(&straight, "epochs = 3")).unwrap();
    let o = lstmkd(&[
        "train",
        "--config",
        d.path().join("a.toml").to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    // Interrupted after two epochs, then resumed to three.
    std::fs::write(d.path().join("b.toml"), cfg(&parts, "epochs = 2")).unwrap();
    let o = lstmkd(&[
        "train",
        "--config",
        d.path().join("b.toml").to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = lstmkd(&[
        "train",
        "--resume",
        parts.to_str().unwrap(),
        "--set",
        "train.epochs=3",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains("epoch 3/3") && !stdout.contains("epoch 1/3"),
        "{stdout}"
    );

    // The same steps in the same order on the same thread pool: bit for bit (flex's sums do
    // not depend on the thread count).
    assert!(
        weights(&straight.join("last.ckpt")) == weights(&parts.join("last.ckpt")),
        "the resumed run's weights are the straight run's"
    );
    let m = read_jsonl(&parts.join("metrics.jsonl")).unwrap();
    assert_eq!(m.iter().map(|r| r.epoch).collect::<Vec<_>>(), vec![1, 2, 3]);
}

/// f16's loss scale is part of the run's state: a run stopped after an epoch and resumed
/// scales (and skips overflowing steps) as the straight run did, so its weights are the same
/// bit for bit; the checkpoints carry the scale, the f32 master weights and nothing in f16.
#[test]
fn an_f16_run_resumes_weight_for_weight_with_its_loss_scale() {
    let d = tempdir().unwrap();
    let data = d.path().join("data");
    write_idx_dataset(&data, 64, 16, 8, false);
    let cfg = |name: &str, epochs: usize| {
        let out = d.path().join(name);
        let text = toml_config(&data, &out, "").replace(
            "epochs = 3",
            &format!("epochs = {epochs}\nprecision = \"f16\""),
        );
        let path = d.path().join(format!("{name}.toml"));
        std::fs::write(&path, text).unwrap();
        (path, out)
    };
    let (straight_cfg, straight) = cfg("straight", 2);
    ok(lstmkd(&[
        "train",
        "--config",
        straight_cfg.to_str().unwrap(),
    ]));
    let (parts_cfg, parts) = cfg("parts", 1);
    ok(lstmkd(&["train", "--config", parts_cfg.to_str().unwrap()]));
    let first = Checkpoint::load(&parts.join("last.ckpt")).unwrap();
    let scale = first.meta.run.as_ref().unwrap().loss_scale.unwrap();
    // 64 images, 80% for training, batches of 16: 4 steps; each either counted or skipped.
    assert!(
        (scale.scale == 65536.0 && scale.good_steps == 4) || scale.scale < 65536.0,
        "{scale:?}"
    );
    ok(lstmkd(&[
        "train",
        "--resume",
        parts.to_str().unwrap(),
        "--set",
        "train.epochs=2",
    ]));
    assert!(
        weights(&straight.join("last.ckpt")) == weights(&parts.join("last.ckpt")),
        "the resumed f16 run's weights are the straight run's"
    );
    let last = |dir: &Path| {
        let c = Checkpoint::load(&dir.join("last.ckpt")).unwrap();
        c.meta.run.unwrap().loss_scale
    };
    assert_eq!(last(&straight), last(&parts));
}

#[test]
fn non_finite_loss_stops_with_the_step_and_keeps_the_last_checkpoint() {
    let d = tempdir().unwrap();
    let (data, out) = (d.path().join("data"), d.path().join("run"));
    write_idx_dataset(&data, 64, 16, 8, false);
    std::fs::write(
        d.path().join("c.toml"),
        toml_config(&data, &out, "").replace("epochs = 3", "epochs = 1"),
    )
    .unwrap();
    let o = lstmkd(&[
        "train",
        "--config",
        d.path().join("c.toml").to_str().unwrap(),
    ]);
    assert!(o.status.success());
    let saved = std::fs::read(out.join("last.ckpt")).unwrap();
    let o = lstmkd(&[
        "train",
        "--resume",
        out.to_str().unwrap(),
        "--set",
        "train.epochs=2",
        "--set",
        "optim.lr=1e30",
    ]);
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains("at epoch 2, step") && e.contains("last.ckpt"),
        "{e}"
    );
    assert_eq!(
        std::fs::read(out.join("last.ckpt")).unwrap(),
        saved,
        "last good checkpoint kept"
    );
}

#[test]
fn bad_inputs_exit_non_zero_with_a_message() {
    let d = tempdir().unwrap();
    let missing = d.path().join("nope.toml");
    let o = lstmkd(&["train", "--config", missing.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("nope.toml: cannot read config"));

    let cfg = toml_config(&d.path().join("no-data"), &d.path().join("run"), "");
    std::fs::write(d.path().join("r.toml"), cfg).unwrap();
    let o = lstmkd(&[
        "train",
        "--config",
        d.path().join("r.toml").to_str().unwrap(),
    ]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && e.contains("no-data") && e.contains("does not exist"),
        "{e}"
    );

    std::fs::write(d.path().join("x.ckpt"), b"garbage").unwrap();
    let o = lstmkd(&[
        "eval",
        "--checkpoint",
        d.path().join("x.ckpt").to_str().unwrap(),
    ]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && e.contains("not an lstmkd checkpoint"),
        "{e}"
    );

    let o = lstmkd(&["info", "--model", "resnet20", "--input", "3x32"]);
    assert!(!o.status.success());
    let o = lstmkd(&[
        "info",
        "--model",
        "resnet20",
        "--input",
        "1x28x28",
        "--classes",
        "10",
    ]);
    let s = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success()
            && s.contains("parameters  272186")
            && s.contains("tap 2       [C=64, H=7, W=7]"),
        "{s}"
    );
}

#[test]
fn limit_train_samples_the_training_split_and_keeps_validation_whole() {
    let d = tempdir().unwrap();
    let data = d.path().join("data");
    write_idx_dataset(&data, 100, 10, 8, false);
    let text = toml_config(&data, &d.path().join("run"), "");
    let full = Run::open(RunConfig::parse(&text, "t", &[]).unwrap()).unwrap();
    let o = ["data.limit_train=30".to_string()];
    let limited = Run::open(RunConfig::parse(&text, "t", &o).unwrap()).unwrap();
    assert_eq!((full.train.split.len(), full.val.split.len()), (80, 20));
    assert_eq!(
        (limited.train.split.len(), limited.val.split.len()),
        (30, 20)
    );
    assert!(
        limited
            .train
            .split
            .indices
            .iter()
            .all(|i| full.train.split.indices.contains(i))
    );
    assert_eq!(limited.train.num_batches(), 2);
}

/// An ImageFolder of 8x8 images (class k bright in rows 2k..2k+2) and a config training on it.
fn image_folder_run(root: &Path, out: &Path) -> String {
    for split in ["train", "val"] {
        for (k, class) in ["a", "b"].iter().enumerate() {
            let dir = root.join(split).join(class);
            std::fs::create_dir_all(&dir).unwrap();
            for i in 0..8u32 {
                image::RgbImage::from_fn(8, 8, |_, y| {
                    let v = if y as usize / 2 == k {
                        220
                    } else {
                        (i * 9) as u8
                    };
                    image::Rgb([v, v, v])
                })
                .save(dir.join(format!("{i}.png")))
                .unwrap();
            }
        }
    }
    // Given statistics: nothing decodes the images before the first epoch.
    toml_config(root, out, "")
        .replace("format = \"idx\"", "format = \"image-folder\"")
        .replace(
            "hflip = false",
            "hflip = false\nmean = [0.5, 0.5, 0.5]\nstd = [0.25, 0.25, 0.25]",
        )
        .replace("epochs = 3", "epochs = 2")
}

#[test]
fn a_run_that_failed_before_its_first_checkpoint_restarts_with_resume() {
    let d = tempfile::tempdir().unwrap();
    let (data, out) = (d.path().join("data"), d.path().join("run"));
    let cfg = d.path().join("cfg.toml");
    std::fs::write(&cfg, image_folder_run(&data, &out)).unwrap();
    // An image that only fails when the loader decodes it, in the first epoch.
    let broken = data.join("train/b/7.png");
    let good = std::fs::read(&broken).unwrap();
    std::fs::write(&broken, b"\x89PNG\r\n\x1a\n broken").unwrap();
    let o = lstmkd(&["train", "--config", cfg.to_str().unwrap()]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && e.contains("7.png"), "{e}");
    assert!(out.join("config.toml").exists() && !out.join("last.ckpt").exists());

    // A new run there is refused with the command that continues it ...
    let o = lstmkd(&["train", "--config", cfg.to_str().unwrap()]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains(&format!("--resume {}", out.display())), "{e}");
    // ... which, once the image is fixed, starts the run again from epoch 0.
    std::fs::write(&broken, good).unwrap();
    let o = ok(lstmkd(&["train", "--resume", out.to_str().unwrap()]));
    assert!(o.contains("epoch 1/2") && o.contains("epoch 2/2"), "{o}");
    let m = read_jsonl(&out.join("metrics.jsonl")).unwrap();
    assert_eq!(m.iter().map(|r| r.epoch).collect::<Vec<_>>(), vec![1, 2]);

    // Resuming a directory that holds no run says how to start one.
    let o = lstmkd(&[
        "train",
        "--resume",
        d.path().join("nothing").to_str().unwrap(),
    ]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("--config"));

    // Teacher adaptation, which resumes by itself, gets out of the same trap.
    let distill = format!(
        "[teacher]\ncheckpoint = \"{}\"\n\n[distill]\nweights = {{ ce = 1.0, aux_ce = 1.0 }}\nend_to_end = true\nadapt_epochs = 1\nextractor = {{ conv_channels = 4, hidden = 4 }}\n",
        out.join("best.ckpt").display()
    );
    let dcfg = d.path().join("distill.toml");
    std::fs::write(
        &dcfg,
        image_folder_run(&data, &d.path().join("student")) + &distill,
    )
    .unwrap();
    let good = std::fs::read(&broken).unwrap();
    std::fs::write(&broken, b"broken").unwrap();
    assert!(
        !lstmkd(&["adapt", "--config", dcfg.to_str().unwrap()])
            .status
            .success()
    );
    std::fs::write(&broken, good).unwrap();
    ok(lstmkd(&["adapt", "--config", dcfg.to_str().unwrap()]));
    assert!(out.join("adapt/best.ckpt").is_file());
}

#[test]
fn periodic_checkpoints_let_a_crashed_epoch_resume_at_the_last_one() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    let (straight, crashed) = (d.path().join("straight"), d.path().join("crashed"));
    let cfg = |out: &Path| {
        image_folder_run(&data, out)
            .replace("batch_size = 16", "batch_size = 2\ncheckpoint_every = 3")
    };
    std::fs::write(d.path().join("a.toml"), cfg(&straight)).unwrap();
    std::fs::write(d.path().join("b.toml"), cfg(&crashed)).unwrap();
    ok(lstmkd(&[
        "train",
        "--config",
        d.path().join("a.toml").to_str().unwrap(),
    ]));

    // A crash mid-epoch (here a broken image, which no signal handler sees) loses only the
    // steps since the last periodic checkpoint.
    let broken = data.join("train/a/3.png");
    let good = std::fs::read(&broken).unwrap();
    std::fs::write(&broken, b"\x89PNG\r\n\x1a\n broken").unwrap();
    let o = lstmkd(&[
        "train",
        "--config",
        d.path().join("b.toml").to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    let state = Checkpoint::load(&crashed.join("last.ckpt"))
        .expect("a periodic checkpoint before the broken image")
        .meta
        .run
        .unwrap();
    let steps = state.partial.expect("saved mid-epoch").steps;
    assert_eq!((state.epoch, steps % 3), (0, 0), "every 3 steps: {steps}");
    assert!(steps > 0);

    std::fs::write(&broken, good).unwrap();
    ok(lstmkd(&["train", "--resume", crashed.to_str().unwrap()]));
    assert_eq!(
        weights(&straight.join("last.ckpt")),
        weights(&crashed.join("last.ckpt"))
    );
}

#[test]
fn metrics_are_rewritten_whole_and_a_resumed_epoch_replaces_its_stale_record() {
    use lstmkd::train::metrics::{EpochRecord, append_jsonl};
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("metrics.jsonl");
    let record = |epoch: usize, val_acc: f64| -> EpochRecord {
        serde_json::from_value(serde_json::json!({
            "epoch": epoch, "lr": 0.1, "train_loss": 1.0, "train_acc": 0.5, "val_loss": 1.0,
            "val_acc": val_acc, "val_top5": 1.0, "img_per_s": 1.0, "seconds": 1.0,
        }))
        .unwrap()
    };
    // Epoch 1 from an older version (an unknown field), epoch 2 written before a crash that
    // came ahead of its checkpoint, and a torn line.
    std::fs::write(
        &path,
        "{\"epoch\":1,\"old_field\":3,\"val_acc\":0.1}\n{\"epoch\":2,\"val_acc\":0.2}\n{\"epoch\":3,\"va",
    )
    .unwrap();
    append_jsonl(&path, &record(2, 0.9)).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(lines[0].contains("old_field"));
    let last: serde_json::Value = serde_json::from_str(lines[1]).unwrap();
    assert_eq!(
        (last["epoch"].as_u64(), last["val_acc"].as_f64()),
        (Some(2), Some(0.9))
    );
}

#[test]
fn data_decodes_every_file_and_lists_all_bad_ones() {
    let d = tempfile::tempdir().unwrap();
    let (data, out) = (d.path().join("data"), d.path().join("run"));
    let cfg = d.path().join("cfg.toml");
    std::fs::write(&cfg, image_folder_run(&data, &out)).unwrap();
    let o = ok(lstmkd(&["data", "--config", cfg.to_str().unwrap()]));
    assert!(o.contains("train: 16 images decoded, 0 bad"), "{o}");
    for bad in ["train/a/3.png", "train/b/5.png", "val/a/1.png"] {
        std::fs::write(data.join(bad), b"not an image").unwrap();
    }
    let o = lstmkd(&["data", "--config", cfg.to_str().unwrap()]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(e.contains("3 bad files"), "{e}");
    for bad in ["a/3.png", "b/5.png", "val/a/1.png"] {
        assert!(e.contains(bad), "{bad}: {e}");
    }
    assert!(!out.exists(), "nothing written");
}

/// Runs `lstmkd` with `LSTMKD_INTERRUPT_AFTER_STEPS` (a SIGINT after that many steps).
pub fn interrupted_after(steps: usize, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_lstmkd"))
        .args(args)
        .env("LSTMKD_INTERRUPT_AFTER_STEPS", steps.to_string())
        .output()
        .unwrap()
}

/// Trains `model` for 2 epochs straight and again stopped after 7 steps (epoch 2 of 5-step
/// epochs) and resumed; the two final networks must be equal weight for weight.
fn stopped_mid_epoch_resumes_exactly(model: &str) {
    let d = tempdir().unwrap();
    let data = d.path().join("data");
    write_idx_dataset(&data, 96, 16, 8, false);
    let (straight, parts) = (d.path().join("straight"), d.path().join("parts"));
    let cfg = |out: &Path| {
        toml_config(&data, out, "")
            .replace("epochs = 3", "epochs = 2")
            .replace("name = \"resnet8\"", &format!("name = \"{model}\""))
    };
    std::fs::write(d.path().join("a.toml"), cfg(&straight)).unwrap();
    std::fs::write(d.path().join("b.toml"), cfg(&parts)).unwrap();
    ok(lstmkd(&[
        "train",
        "--config",
        d.path().join("a.toml").to_str().unwrap(),
    ]));
    let o = interrupted_after(
        7,
        &[
            "train",
            "--config",
            d.path().join("b.toml").to_str().unwrap(),
        ],
    );
    let e = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(130), "{e}");
    assert!(
        e.contains(&format!("--resume {}", parts.display())) && e.contains("epoch 2, step 2"),
        "{e}"
    );
    let mid = Checkpoint::load(&parts.join("last.ckpt")).unwrap();
    let state = mid.meta.run.unwrap();
    assert_eq!((state.epoch, state.partial.unwrap().steps), (1, 2));
    let o = ok(lstmkd(&["train", "--resume", parts.to_str().unwrap()]));
    assert!(o.contains("epoch 2/2") && !o.contains("epoch 1/2"), "{o}");
    assert_eq!(
        weights(&straight.join("last.ckpt")),
        weights(&parts.join("last.ckpt")),
        "{model}"
    );
    let m = read_jsonl(&parts.join("metrics.jsonl")).unwrap();
    assert_eq!(m.iter().map(|r| r.epoch).collect::<Vec<_>>(), vec![1, 2]);
    let straight_m = read_jsonl(&straight.join("metrics.jsonl")).unwrap();
    assert_eq!(
        m[1].train_loss, straight_m[1].train_loss,
        "the epoch's sums carry over"
    );
}

#[test]
fn a_run_stopped_mid_epoch_resumes_weight_for_weight() {
    stopped_mid_epoch_resumes_exactly("resnet8");
}

#[test]
fn mobilenetv2_dropout_follows_the_step_across_a_resume() {
    stopped_mid_epoch_resumes_exactly("mobilenetv2_cifar");
}

/// Toy IDX data of `n` training images and a config training on it for `epochs` epochs:
/// (config path, run directory).
/// `lstmkd train --config cfg` started in the background, once it has saved an epoch into
/// `out` (its signal handler, and its hold on the folder, are then in place).
fn training_under_way(cfg: &Path, out: &Path, stderr: std::process::Stdio) -> std::process::Child {
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_lstmkd"))
        .args(["train", "--config", cfg.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let t0 = std::time::Instant::now();
    while !out.join("last.ckpt").exists() {
        assert!(t0.elapsed().as_secs() < 120, "no epoch finished");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    child
}

fn tiny_run(dir: &Path, n: usize, epochs: usize) -> (std::path::PathBuf, std::path::PathBuf) {
    let data = dir.join("data");
    write_idx_dataset(&data, n, 8, 8, false);
    let out = dir.join("run");
    let cfg = dir.join("run.toml");
    let text = toml_config(&data, &out, "").replace("epochs = 3", &format!("epochs = {epochs}"));
    std::fs::write(&cfg, text).unwrap();
    (cfg, out)
}

#[test]
fn sigterm_saves_the_step_it_reached() {
    let d = tempdir().unwrap();
    let (cfg, out) = tiny_run(d.path(), 96, 400);
    let child = training_under_way(&cfg, &out, std::process::Stdio::piped());
    std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let o = child.wait_with_output().unwrap();
    let e = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(143), "{e}");
    assert!(e.contains("interrupted (signal 15)"), "{e}");
    let state = Checkpoint::load(&out.join("last.ckpt"))
        .unwrap()
        .meta
        .run
        .unwrap();
    assert!(
        state.epoch >= 1 && state.partial.is_some(),
        "{e} {} {:?}",
        state.epoch,
        state.partial
    );
}

#[test]
fn resume_on_a_corrupt_last_checkpoint_fails_naming_it() {
    let d = tempdir().unwrap();
    let (cfg, out) = tiny_run(d.path(), 48, 1);
    ok(lstmkd(&["train", "--config", cfg.to_str().unwrap()]));
    let last = out.join("last.ckpt");
    let mut bytes = std::fs::read(&last).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&last, &bytes).unwrap();
    let o = lstmkd(&[
        "train",
        "--resume",
        out.to_str().unwrap(),
        "--set",
        "train.epochs=2",
    ]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(e.contains("last.ckpt") && e.contains("checksum"), "{e}");
    assert_eq!(std::fs::read(&last).unwrap(), bytes, "left as it was");
}

#[test]
fn data_and_folders_a_run_cannot_use_are_refused_before_anything_is_written() {
    let d = tempdir().unwrap();
    let run = d.path().join("run");
    let train = |data: &Path, set: &[&str]| {
        let cfg = d.path().join("c.toml");
        std::fs::write(&cfg, toml_config(data, &run, "")).unwrap();
        let mut args = vec!["train", "--config", cfg.to_str().unwrap()];
        for s in set {
            args.extend(["--set", s]);
        }
        let o = lstmkd(&args);
        assert!(!o.status.success());
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    let idx = |name: &str, train_hw: usize, test_hw: usize| {
        let root = d.path().join(name);
        write_idx_dataset(&root, 20, 8, train_hw, false);
        let (images, labels) = crate::common::toy_images(8, test_hw, test_hw, 4, 5);
        let n = 8u32;
        let test_dims = [n, test_hw as u32, test_hw as u32];
        let bytes = crate::common::idx_bytes(&test_dims, &images);
        crate::common::write_file(&root.join("t10k-images-idx3-ubyte"), &bytes, false);
        let bytes = crate::common::idx_bytes(&[n], &labels);
        crate::common::write_file(&root.join("t10k-labels-idx1-ubyte"), &bytes, false);
        root
    };
    let images = idx("idx8", 8, 8);
    let cases: Vec<(String, &str)> = vec![
        (
            train(&idx("mixed", 8, 6), &[]),
            "test images are [1, 6, 6] but training images are [1, 8, 8]",
        ),
        (
            train(&idx("empty", 0, 0), &["data.mean=[0.5]", "data.std=[0.25]"]),
            "holds images of shape [1, 0, 0]",
        ),
        (
            train(&idx("tiny", 4, 4), &["model.name=\"vgg8\""]),
            "images of 4x4 are too small for 'vgg8': its tap 3 comes out 0x0",
        ),
        (
            train(&images, &["data.pad_crop=9"]),
            "data.pad_crop: 9 pixels of padding on 8x8 images; at most 8",
        ),
        (
            train(&images, &["data.prefetch=65"]),
            "data.prefetch: batches prepared ahead, 1 to 64, got 65",
        ),
    ];
    for (err, expected) in &cases {
        assert!(err.contains(expected), "{expected}: {err}");
        assert!(!run.exists(), "{expected}: the run folder was written");
    }
    // An image folder of one class.
    let one = d.path().join("one");
    for split in ["train", "val"] {
        let dir = one.join(split).join("only");
        std::fs::create_dir_all(&dir).unwrap();
        for i in 0..4u8 {
            image::GrayImage::from_pixel(8, 8, image::Luma([i * 60]))
                .save(dir.join(format!("{i}.png")))
                .unwrap();
        }
    }
    let err = train(
        &one,
        &[
            "data.format=\"image-folder\"",
            "data.mean=[0.5]",
            "data.std=[0.25]",
        ],
    );
    assert!(
        err.contains("has 1 class(es); a classifier needs at least 2"),
        "{err}"
    );
    assert!(!run.exists());
    // A folder holding a run's files but no config.toml is not a run to continue, nor one to
    // overwrite.
    std::fs::create_dir_all(&run).unwrap();
    std::fs::write(run.join("best.ckpt"), b"someone's model").unwrap();
    let err = train(&images, &[]);
    assert!(err.contains("holds best.ckpt but no config.toml"), "{err}");
    assert_eq!(
        std::fs::read(run.join("best.ckpt")).unwrap(),
        b"someone's model"
    );
}

#[test]
fn a_checkpoint_refuses_data_of_another_shape_class_count_or_frame_count() {
    let d = tempdir().unwrap();
    write_idx_dataset(d.path(), 8, 4, 8, false);
    let data = lstmkd::data::idx::open(d.path()).unwrap();
    let meta = |input: [usize; 3], classes: usize, frames: usize| {
        let mut m = crate::common::meta("resnet8", input, classes);
        m.model.frames = frames;
        m
    };
    meta([1, 8, 8], 10, 1).check_data(&data, "it").unwrap();
    for (m, theirs) in [
        (
            meta([1, 6, 8], 10, 1),
            "images [1, 6, 8] (C, H, W) with 10 classes, 1 frame(s)",
        ),
        (
            meta([1, 8, 8], 3, 1),
            "images [1, 8, 8] (C, H, W) with 3 classes, 1 frame(s)",
        ),
        (
            meta([1, 8, 8], 10, 4),
            "images [1, 8, 8] (C, H, W) with 10 classes, 4 frame(s)",
        ),
    ] {
        let e = format!("{:#}", m.check_data(&data, "the clip model").unwrap_err());
        assert!(
            e.contains("data: images [1, 8, 8] (C, H, W) with 10 classes, 1 frame(s) per sample do not fit the clip model, which reads")
                && e.contains(theirs),
            "{e}"
        );
    }
}

/// Every file of a folder with its bytes.
fn folder_bytes(dir: &Path) -> Vec<(std::ffi::OsString, Vec<u8>)> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (e.file_name(), std::fs::read(e.path()).unwrap())
        })
        .collect();
    files.sort();
    files
}

#[test]
fn a_second_process_on_a_run_folder_is_refused_until_the_first_dies() {
    let d = tempdir().unwrap();
    let (cfg, out) = tiny_run(d.path(), 96, 400);
    let mut first = training_under_way(&cfg, &out, std::process::Stdio::null());
    let pid = first.id().to_string();
    let signal = |sig: &str| {
        let s = std::process::Command::new("kill")
            .args([sig, &pid])
            .status();
        assert!(s.unwrap().success());
    };
    // Stopped, the first process changes nothing while the second is judged; it still
    // holds the folder.
    signal("-STOP");
    let before = folder_bytes(&out);
    let o = lstmkd(&["train", "--resume", out.to_str().unwrap()]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(e.contains(out.to_str().unwrap()) && e.contains(&pid), "{e}");
    assert_eq!(
        folder_bytes(&out),
        before,
        "the refused process wrote nothing"
    );
    signal("-KILL");
    first.wait().unwrap();
    // The killed holder's lock file is still there, and blocks nothing.
    assert!(out.join(".lstmkd.lock").exists());
    let o = lstmkd(&[
        "train",
        "--resume",
        out.to_str().unwrap(),
        "--set",
        "train.epochs=1",
    ]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}
