//! Small generated datasets in every on-disk format the readers support.

use std::io::Write;
use std::path::Path;

use flate2::Compression;
use flate2::write::GzEncoder;

pub fn idx_bytes(dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, 0x08, dims.len() as u8];
    for d in dims {
        out.extend_from_slice(&d.to_be_bytes());
    }
    out.extend_from_slice(data);
    out
}

pub fn write_file(path: &Path, bytes: &[u8], gz: bool) {
    if gz {
        let mut e = GzEncoder::new(Vec::new(), Compression::fast());
        e.write_all(bytes).unwrap();
        let mut p = path.as_os_str().to_owned();
        p.push(".gz");
        std::fs::write(p, e.finish().unwrap()).unwrap();
    } else {
        std::fs::write(path, bytes).unwrap();
    }
}

/// A learnable toy task: class k lights up a horizontal band starting at row 2k (plus noise).
pub fn toy_images(n: usize, h: usize, w: usize, classes: usize, seed: u64) -> (Vec<u8>, Vec<u8>) {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut next = || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) as u32
    };
    let mut images = vec![0u8; n * h * w];
    let mut labels = vec![0u8; n];
    for i in 0..n {
        let k = (next() as usize) % classes;
        labels[i] = k as u8;
        for y in 0..h {
            for x in 0..w {
                let band = y / 2 == k % (h / 2);
                let noise = (next() % 60) as u8;
                images[i * h * w + y * w + x] = if band { 190 + noise } else { noise };
            }
        }
    }
    (images, labels)
}

/// Writes an IDX dataset (train and t10k) of toy images.
pub fn write_idx_dataset(root: &Path, n_train: usize, n_test: usize, hw: usize, gz: bool) {
    std::fs::create_dir_all(root).unwrap();
    for (prefix, n, seed) in [("train", n_train, 1), ("t10k", n_test, 2)] {
        let (images, labels) = toy_images(n, hw, hw, 4, seed);
        write_file(
            &root.join(format!("{prefix}-images-idx3-ubyte")),
            &idx_bytes(&[n as u32, hw as u32, hw as u32], &images),
            gz,
        );
        write_file(
            &root.join(format!("{prefix}-labels-idx1-ubyte")),
            &idx_bytes(&[n as u32], &labels),
            gz,
        );
    }
}

/// CIFAR records: `label_bytes` label bytes then 3072 pixels.
pub fn cifar_records(labels: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, l) in labels.iter().enumerate() {
        out.extend_from_slice(l);
        out.extend((0..3072).map(|p| ((p + i) % 251) as u8));
    }
    out
}

pub fn toml_config(root: &Path, out_dir: &Path, extra: &str) -> String {
    format!(
        r#"
[data]
format = "idx"
root = "{}"
val_fraction = 0.2
pad_crop = 1
hflip = false

[model]
name = "resnet8"

[optim]
name = "sgd"
lr = 0.05
momentum = 0.9
weight_decay = 0.0

[schedule]
name = "constant"

[train]
epochs = 3
batch_size = 16
seed = 3
out_dir = "{}"
{extra}
"#,
        root.display(),
        out_dir.display()
    )
}

/// Runs the lstmkd binary.
pub fn lstmkd(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_lstmkd"))
        .args(args)
        .output()
        .unwrap()
}

/// Asserts success and returns stdout.
pub fn ok(o: std::process::Output) -> String {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A checkpoint header for a zoo model `name` at `input` with `classes` classes and
/// per-channel statistics that differ by channel.
pub fn meta(name: &str, input: [usize; 3], classes: usize) -> lstmkd::train::checkpoint::Meta {
    let c = input[0];
    lstmkd::train::checkpoint::Meta {
        model: lstmkd::models::ModelConfig::new(name),
        input,
        classes: (0..classes).map(|k| format!("c{k}")).collect(),
        mean: (0..c).map(|i| 0.3 + 0.1 * i as f32).collect(),
        std: (0..c).map(|i| 0.2 + 0.05 * i as f32).collect(),
        resize: 0,
        origin: "a test".into(),
        run: None,
        fused: None,
    }
}

/// `lstmkd export --format onnx` of `checkpoint` to `out`, read back as ONNX's protobuf.
pub fn exported_onnx(checkpoint: &Path, out: &Path) -> tract_onnx::pb::ModelProto {
    ok(lstmkd(&[
        "export",
        "--checkpoint",
        checkpoint.to_str().unwrap(),
        "--format",
        "onnx",
        "--out",
        out.to_str().unwrap(),
    ]));
    let bytes = std::fs::read(out).unwrap();
    <tract_onnx::pb::ModelProto as prost::Message>::decode(&bytes[..]).unwrap()
}

pub use crate::reference::{uniform, values};
