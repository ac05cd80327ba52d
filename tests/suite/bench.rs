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
    assert!(teacher_macs > 0.0);
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
