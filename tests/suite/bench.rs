use crate::common::{lstmkd, ok};

const TINY: [&str; 20] = [
    "bench",
    "--teacher",
    "resnet14",
    "--student",
    "resnet8",
    "--input",
    "1x12x12",
    "--classes",
    "3",
    "--batch",
    "4",
    "--warmup",
    "1",
    "--steps",
    "2",
    "--conv-channels",
    "4",
    "--hidden",
    "3",
    "--json",
];

#[test]
fn bench_times_every_case_and_breaks_the_distillation_step_down() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("bench.json");
    let mut args = TINY.to_vec();
    args.push(json.to_str().unwrap());
    let stdout = ok(lstmkd(&args));
    assert!(
        stdout.contains("distillation step / student step"),
        "{stdout}"
    );
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    for case in ["student_step", "distill_step", "infer_b1", "infer_batch"] {
        let ms = r[case]["ms_mean"].as_f64().unwrap();
        assert!(ms > 0.0 && ms.is_finite(), "{case}: {ms}");
    }
    assert_eq!(r["infer_b1"]["batch"], 1);
    assert_eq!(r["infer_batch"]["batch"], 4);
    assert!(r["peak_gflops"].as_f64().unwrap() > 0.0);
    let parts: Vec<&str> = r["breakdown"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    for part in [
        "data wait",
        "teacher forward",
        "student forward",
        "teacher extractors",
        "student extractors",
        "losses",
        "backward",
        "optimiser",
    ] {
        assert!(parts.contains(&part), "{part} missing from {parts:?}");
    }
    // The parts are timed inside the steps: together they cannot exceed them (a part timed
    // twice, or outside the step, would).
    let timed: f64 = r["breakdown"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["name"] != "other")
        .map(|p| p["share"].as_f64().unwrap())
        .sum();
    assert!(
        timed > 0.5 && timed <= 1.0 + 1e-9,
        "timed parts take {timed} of the step"
    );
    let teacher_macs = r["breakdown"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "teacher forward")
        .unwrap()["gmac"]
        .as_f64()
        .unwrap();
    assert_eq!(
        teacher_macs,
        4.0 * resnet14_macs(12, 1, 3) as f64 / 1e9,
        "batch of 4"
    );
}

/// Multiply-accumulates of one forward pass of RepDistiller's CIFAR ResNet-14 on a
/// `side` x `side` image of `channels` channels, written out layer by layer: a 3x3 stem to 16
/// channels, three stages of two basic blocks (16, 32, 64 channels; the last two start with
/// stride 2 and a 1x1 projection shortcut), a linear head. Batch norm, ReLU and pooling are not
/// multiply-accumulates of a product.
fn resnet14_macs(side: u64, channels: u64, classes: u64) -> u64 {
    let conv =
        |out_side: u64, c_in: u64, c_out: u64, k: u64| out_side * out_side * c_in * c_out * k * k;
    let stem = conv(side, channels, 16, 3);
    let stage1 = 4 * conv(side, 16, 16, 3);
    let stage = |s: u64, c_in: u64, c: u64| {
        conv(s, c_in, c, 3) + 3 * conv(s, c, c, 3) + conv(s, c_in, c, 1)
    };
    let stage2 = stage(side / 2, 16, 32);
    let stage3 = stage(side / 4, 32, 64);
    stem + stage1 + stage2 + stage3 + 64 * classes
}

#[test]
fn bench_rejects_unknown_models_and_zero_sizes() {
    let mut args = TINY.to_vec();
    args[2] = "resnet99";
    args.push("unused.json");
    let out = lstmkd(&args);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--teacher") && err.contains("resnet99"),
        "{err}"
    );
    let mut args = TINY.to_vec();
    args[14] = "0";
    args.push("unused.json");
    let err = String::from_utf8_lossy(&lstmkd(&args).stderr).into_owned();
    assert!(err.contains("--steps"), "{err}");
    assert!(!std::path::Path::new("unused.json").exists());
}

#[test]
fn bench_overrides_reach_the_distillation_config() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("bench.json");
    let mut args = TINY.to_vec();
    args.extend([
        json.to_str().unwrap(),
        "--set",
        "distill.weights={ce=1.0,kd=1.0}",
    ]);
    ok(lstmkd(&args));
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(r["losses"], serde_json::json!(["ce", "kd"]));
    let parts = r["breakdown"].to_string();
    assert!(!parts.contains("extractors"), "{parts}");
    let mut args = TINY.to_vec();
    args.extend([json.to_str().unwrap(), "--set", "distill.nonsense=1"]);
    let err = String::from_utf8_lossy(&lstmkd(&args).stderr).into_owned();
    assert!(err.contains("nonsense"), "{err}");
}

#[test]
fn bench_times_a_checkpoints_deployed_inference() {
    let d = tempfile::tempdir().unwrap();
    let net = lstmkd::models::ModelConfig::new("resnet8")
        .init(1, 3, &burn::tensor::Device::flex())
        .unwrap();
    let meta = crate::common::meta("resnet8", [1, 12, 12], 3);
    let ckpt = d.path().join("n.ckpt");
    lstmkd::train::checkpoint::Checkpoint::new(meta, &net, None)
        .unwrap()
        .save(&ckpt)
        .unwrap();
    let json = d.path().join("t.json");
    let out = crate::common::ok(crate::common::lstmkd(&[
        "bench",
        "--checkpoint",
        ckpt.to_str().unwrap(),
        "--batch",
        "4",
        "--steps",
        "2",
        "--warmup",
        "1",
        "--json",
        json.to_str().unwrap(),
    ]));
    assert!(
        out.contains("inference b1") && out.contains("inference b4"),
        "{out}"
    );
    let rows: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[1]["batch"], 4);
    assert!(rows[1]["ms_mean"].as_f64().unwrap() > 0.0);
}
