//! Import, export and predict: ONNX run in another runtime (tract), safetensors against
//! torchvision's own key lists and a PyTorch-layout file written here, every family's import
//! against PyTorch's logits (tests/fixtures, scripts/torch/make_fixtures.py), checkpoint
//! format versions and corruption.

use std::collections::BTreeMap;
use std::path::Path;

use burn::module::{Module, ModuleMapper, Param};
use burn::store::{ModuleSnapshot, PathFilter, bridge};
use burn::tensor::{Device, Distribution, Tensor, TensorData};
use lstmkd::interop::export::run_tract;
use lstmkd::models::{ModelConfig, Network};
use lstmkd::train::checkpoint::{Checkpoint, Meta};
use tempfile::tempdir;

use crate::common::{lstmkd, meta, ok, values};

/// Random batch-norm parameters and statistics (fresh ones are the identity, which would
/// hide a wrong mapping of mean/var/weight/bias).
struct RandomNorms {
    path: Vec<String>,
}

impl ModuleMapper for RandomNorms {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.pop();
    }
    fn map_float<const D: usize>(&mut self, p: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let dist = match self.path.last().map(String::as_str) {
            Some("gamma" | "running_var") => Distribution::Uniform(0.5, 1.5),
            Some("beta" | "running_mean") => Distribution::Uniform(-0.2, 0.2),
            _ => return p,
        };
        let t = p.val();
        Param::from_tensor(Tensor::random(t.shape(), dist, &t.device()))
    }
}

fn random_net(name: &str, input: [usize; 3], classes: usize) -> Network {
    let device = Device::flex();
    device.seed(7);
    let net = ModelConfig::new(name)
        .init(input[0], classes, &device)
        .unwrap();
    net.map(&mut RandomNorms { path: Vec::new() })
}

/// `lstmkd export` of `ckpt` as `format` to `out`, which must succeed.
fn export(ckpt: &Path, format: &str, out: &Path) {
    ok(lstmkd(&[
        "export",
        "--checkpoint",
        ckpt.to_str().unwrap(),
        "--format",
        format,
        "--out",
        out.to_str().unwrap(),
        "--force",
    ]));
}

fn save(net: &Network, meta: Meta, path: &Path) {
    Checkpoint::new(meta, net, None)
        .unwrap()
        .save(path)
        .unwrap();
}

/// The unfolded network's logits for pixels in [0, 1], normalised as written out here.
fn reference_logits(net: &Network, meta: &Meta, images: &TensorData) -> Vec<f32> {
    let [c, h, w] = meta.input;
    let v: Vec<f32> = images.try_to_vec::<f32>().unwrap();
    let n = v.len() / (c * h * w);
    let normed: Vec<f32> = v
        .iter()
        .enumerate()
        .map(|(i, &x)| {
            let ch = (i / (h * w)) % c;
            (x - meta.mean[ch]) / meta.std[ch]
        })
        .collect();
    let x = Tensor::<4>::from_data(TensorData::new(normed, [n, c, h, w]), &Device::flex());
    net.valid()
        .forward(x)
        .logits
        .into_data()
        .try_to_vec::<f32>()
        .unwrap()
}

/// Top-1 hits and summed cross-entropy of row-major `logits` ([N, k]) against `labels`.
fn top1_hits_and_ce(logits: &[f32], k: usize, labels: &[usize]) -> (usize, f64) {
    let (mut hits, mut ce) = (0, 0.0);
    for (n, &y) in labels.iter().enumerate() {
        let row: Vec<f64> = logits[n * k..][..k].iter().map(|&v| v as f64).collect();
        let top = (0..k).fold(0, |b, j| if row[j] > row[b] { j } else { b });
        hits += (top == y) as usize;
        let mx = row[top];
        ce += mx + row.iter().map(|v| (v - mx).exp()).sum::<f64>().ln() - row[y];
    }
    (hits, ce)
}

fn assert_close(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}");
    let scale = want.iter().fold(1f32, |m, x| m.max(x.abs()));
    let diff = got
        .iter()
        .zip(want)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(
        diff <= 1e-4 * scale,
        "{what}: max |diff| {diff} at logit scale {scale}"
    );
}

#[test]
fn onnx_export_runs_in_tract_like_lstmkd_for_every_family() {
    let dir = tempdir().unwrap();
    let cases: &[(&str, [usize; 3])] = &[
        ("resnet8", [3, 32, 32]),
        ("resnet8x4", [1, 16, 16]),
        ("wrn_16_2", [3, 32, 32]),
        ("vgg8", [3, 32, 32]),
        ("vgg8", [1, 64, 64]),
        ("mobilenetv2_cifar", [3, 32, 32]),
        ("mobilenetv2", [3, 64, 64]),
        ("resnet18", [3, 64, 64]),
        ("resnet50", [3, 64, 48]),
    ];
    for &(name, input) in cases {
        let net = random_net(name, input, 7);
        let m = meta(name, input, 7);
        let ckpt = dir.path().join(format!("{name}.ckpt"));
        let onnx = dir.path().join(format!("{name}-{}.onnx", input[1]));
        save(&net, m.clone(), &ckpt);
        export(&ckpt, "onnx", &onnx);
        let [c, h, w] = input;
        // Three images: the batch dimension is dynamic although the export checked two.
        let images = Tensor::<4>::random(
            [3, c, h, w],
            Distribution::Uniform(0.0, 1.0),
            &Device::flex(),
        )
        .into_data();
        let got = run_tract(&std::fs::read(&onnx).unwrap(), &images).unwrap();
        assert_close(&got, &reference_logits(&net, &m, &images), name);
    }
}

/// `name shape dtype` lines of a torchvision state_dict, saved from torchvision 0.24.
fn torchvision_keys(file: &str) -> BTreeMap<String, (String, String)> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(file);
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            let v: Vec<&str> = l.split(' ').collect();
            (v[0].to_string(), (v[1].to_string(), v[2].to_string()))
        })
        .collect()
}

#[test]
fn safetensors_export_has_torchvisions_keys_shapes_and_dtypes() {
    let dir = tempdir().unwrap();
    for (name, fixture) in [
        ("resnet18", "torchvision_resnet18_keys.txt"),
        ("resnet50", "torchvision_resnet50_keys.txt"),
        ("mobilenetv2", "torchvision_mobilenet_v2_keys.txt"),
    ] {
        let input = [3, 32, 32];
        let net = random_net(name, input, 10);
        let ckpt = dir.path().join(format!("{name}.ckpt"));
        let out = dir.path().join(format!("{name}.safetensors"));
        save(&net, meta(name, input, 10), &ckpt);
        export(&ckpt, "safetensors", &out);
        let bytes = std::fs::read(&out).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let got: BTreeMap<String, (String, String)> = st
            .tensors()
            .into_iter()
            .map(|(k, v)| {
                let shape: Vec<String> = v.shape().iter().map(|d| d.to_string()).collect();
                let shape = if shape.is_empty() {
                    "-".into()
                } else {
                    shape.join("x")
                };
                let dtype = match v.dtype() {
                    safetensors::Dtype::F32 => "float32",
                    safetensors::Dtype::I64 => "int64",
                    other => panic!("{k}: {other:?}"),
                };
                (k, (shape, dtype.to_string()))
            })
            .collect();
        assert_eq!(got, torchvision_keys(fixture), "{name}");
        // The same checkpoint exports to the same bytes, metadata in key order.
        export(&ckpt, "safetensors", &out);
        assert!(std::fs::read(&out).unwrap() == bytes, "{name}: other bytes");
        let (len, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
        let mut sorted: Vec<&String> = header.metadata().as_ref().unwrap().keys().collect();
        sorted.sort();
        assert!(sorted.len() > 3, "{sorted:?}");
        let header = String::from_utf8_lossy(&bytes[8..8 + len]);
        let at: Vec<usize> = sorted
            .iter()
            .map(|k| header.find(&format!("\"{k}\":")).unwrap())
            .collect();
        assert!(at.is_sorted(), "{name}: {header}");
    }
}

/// A state_dict in PyTorch's layout written from `net` by this test's own naming rules for
/// RepDistiller's CIFAR ResNets (shortcut Sequential indices, batch-norm weight/bias,
/// [out, in] linear weights, num_batches_tracked), every name under `prefix`, beside an
/// `epoch` entry as training containers hold.
fn repdistiller_resnet_safetensors(net: &Network, prefix: &str) -> Vec<u8> {
    let mut owned: Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)> = vec![(
        "epoch".into(),
        safetensors::Dtype::I64,
        vec![],
        240i64.to_le_bytes().to_vec(),
    )];
    for t in net.collect(None::<PathFilter>, None, true) {
        let name = t
            .name
            .replace("downsample.conv", "downsample.0")
            .replace("downsample.bn", "downsample.1")
            .replace(".gamma", ".weight")
            .replace(".beta", ".bias");
        let data = bridge::into_data(t).unwrap();
        let shape = data.shape().to_vec();
        let v: Vec<f32> = data.try_to_vec::<f32>().unwrap();
        let (shape, v) = if name == "fc.weight" {
            let (r, c) = (shape[0], shape[1]);
            let mut tr = vec![0f32; v.len()];
            for i in 0..r {
                for j in 0..c {
                    tr[j * r + i] = v[i * c + j];
                }
            }
            (vec![c, r], tr)
        } else {
            (shape, v)
        };
        if name.ends_with("running_var") {
            let bn = name.trim_end_matches(".running_var");
            owned.push((
                format!("{prefix}{bn}.num_batches_tracked"),
                safetensors::Dtype::I64,
                vec![],
                12i64.to_le_bytes().to_vec(),
            ));
        }
        let bytes = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        owned.push((
            format!("{prefix}{name}"),
            safetensors::Dtype::F32,
            shape,
            bytes,
        ));
    }
    safetensors_of(&owned)
}

/// A safetensors file of (name, dtype, shape, little-endian bytes).
fn safetensors_of(owned: &[(String, safetensors::Dtype, Vec<usize>, Vec<u8>)]) -> Vec<u8> {
    let views: Vec<(String, safetensors::tensor::TensorView)> = owned
        .iter()
        .map(|(n, d, s, b)| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(*d, s.clone(), b).unwrap(),
            )
        })
        .collect();
    safetensors::serialize(views, None).unwrap()
}

fn import(args: &[&str]) -> std::process::Output {
    let mut all = vec!["import"];
    all.extend_from_slice(args);
    lstmkd(&all)
}

#[test]
fn pytorch_layout_state_dict_imports_to_the_same_network() {
    let dir = tempdir().unwrap();
    let input = [3, 32, 32];
    let source = random_net("resnet8x4", input, 5);
    let file = dir.path().join("resnet8x4.safetensors");
    // As DataParallel inside RepDistiller's container saves it.
    std::fs::write(
        &file,
        repdistiller_resnet_safetensors(&source, "model.module."),
    )
    .unwrap();
    let ckpt = dir.path().join("imported.ckpt");
    let names = dir.path().join("names.txt");
    std::fs::write(&names, "cat\ndog\nfox\nowl\nbee\n").unwrap();
    let out = ok(import(&[
        "--model",
        "resnet8x4",
        "--weights",
        file.to_str().unwrap(),
        "--class-names",
        names.to_str().unwrap(),
        "--out",
        ckpt.to_str().unwrap(),
    ]));
    assert!(out.contains("5 classes"), "{out}");
    let imported = Checkpoint::load(&ckpt).unwrap();
    let m = &imported.meta;
    assert_eq!(m.input, [3, 32, 32], "CIFAR family default input");
    assert_eq!(m.classes, ["cat", "dog", "fox", "owl", "bee"]);
    assert_eq!(
        m.mean,
        [0.5071, 0.4867, 0.4408],
        "RepDistiller's CIFAR-100 mean"
    );
    assert!(m.run.is_none());
    let net = imported.network(&Device::flex()).unwrap();
    let images = Tensor::<4>::random(
        [2, 3, 32, 32],
        Distribution::Uniform(0.0, 1.0),
        &Device::flex(),
    )
    .into_data();
    assert_close(
        &reference_logits(&net, m, &images),
        &reference_logits(&source, m, &images),
        "imported vs source",
    );

    // Mismatches are listed and nothing is written.
    let bad = dir.path().join("bad.ckpt");
    let refused = |model: &str, extra: &[&str]| {
        let mut args = vec!["--model", model, "--weights", file.to_str().unwrap()];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--out", bad.to_str().unwrap()]);
        let o = import(&args);
        let e = String::from_utf8_lossy(&o.stderr).into_owned();
        assert_eq!(o.status.code(), Some(1), "{e}");
        e
    };
    let e = refused("resnet32x4", &[]);
    assert!(
        e.contains("missing keys") && e.contains("layer1.1.conv1.weight"),
        "{e}"
    );
    let e = refused("wrn_16_2", &[]);
    assert!(
        e.contains("unexpected keys") && e.contains("layer1.0.conv1.weight"),
        "{e}"
    );
    let e = refused("resnet8x4", &["--classes", "7"]);
    assert!(
        e.contains("mis-shaped keys") && e.contains("fc.weight: file [5, 256], model [7, 256]"),
        "{e}"
    );
    assert!(!bad.exists());
    let garbage = dir.path().join("garbage.pth");
    std::fs::write(&garbage, b"not a checkpoint at all").unwrap();
    let e = import(&[
        "--model",
        "resnet8",
        "--weights",
        garbage.to_str().unwrap(),
        "--out",
        bad.to_str().unwrap(),
    ]);
    assert_eq!(
        e.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&e.stderr)
    );
    assert!(String::from_utf8_lossy(&e.stderr).contains("garbage.pth"));
    // An existing --out is kept.
    let again = import(&[
        "--model",
        "resnet8x4",
        "--weights",
        file.to_str().unwrap(),
        "--out",
        ckpt.to_str().unwrap(),
    ]);
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
}

fn weights(net: &Network) -> Vec<(String, Vec<f32>)> {
    net.collect(None::<PathFilter>, None, true)
        .into_iter()
        .map(|t| {
            let name = t.name.clone();
            (
                name,
                bridge::into_data(t).unwrap().try_to_vec::<f32>().unwrap(),
            )
        })
        .collect()
}

/// Inputs the fixtures' logits were computed on (scripts/torch/make_fixtures.py).
fn fixture_input(n: usize, side: usize) -> TensorData {
    let (plane, image) = (side * side, 3 * side * side);
    let v: Vec<f32> = (0..n * image)
        .map(|i| {
            let (b, c) = (i / image, (i / plane) % 3);
            let (h, w) = ((i / side) % side, i % side);
            ((b * 7 + c * 5 + h * 3 + w * (b + 1)) % 17) as f32 / 8.0 - 1.0
        })
        .collect();
    TensorData::new(v, [n, 3, side, side])
}

/// make_fixtures.py's `formula_`: tensor `j` of the state_dict at flat index i, by its role.
fn formula(name: &str, j: usize, shape: &[usize]) -> Vec<f32> {
    let n: usize = shape.iter().product();
    (0..n as u64)
        .map(|i| {
            let u = ((i * 40503 + j as u64 * 9973 + 17) % 65536) as f64 / 65536.0 - 0.5;
            let v = if shape.len() > 1 {
                u * 2.0 * (6.0 / (n / shape[0]) as f64).sqrt()
            } else if name.ends_with("running_var") {
                u * 0.5 + 1.0
            } else if name.ends_with("weight") {
                u * 0.4 + 1.0
            } else {
                u * 0.2
            };
            v as f32
        })
        .collect()
}

#[test]
fn every_family_imported_from_pytorchs_layout_gives_pytorchs_logits() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let reference: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures.join("zoo_torch_logits.json")).unwrap(),
    )
    .unwrap();
    let families = reference["families"].as_array().unwrap();
    assert_eq!(families.len(), 7);
    let dir = tempdir().unwrap();
    for family in families {
        let model = family["model"].as_str().unwrap();
        let keys = family["keys"].as_array().unwrap();
        let owned: Vec<_> = keys
            .iter()
            .enumerate()
            .map(|(j, k)| {
                let name = k[0].as_str().unwrap().to_string();
                let shape: Vec<usize> = k[1]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|d| d.as_u64().unwrap() as usize)
                    .collect();
                match k[2].as_str().unwrap() {
                    "int64" => (
                        name,
                        safetensors::Dtype::I64,
                        shape,
                        0i64.to_le_bytes().to_vec(),
                    ),
                    "float32" => {
                        let v = formula(&name, j, &shape);
                        let bytes = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                        (name, safetensors::Dtype::F32, shape, bytes)
                    }
                    other => panic!("{model}: {other}"),
                }
            })
            .collect();
        let weights = dir.path().join(format!("{model}.safetensors"));
        std::fs::write(&weights, safetensors_of(&owned)).unwrap();
        let side = family["input"][2].as_u64().unwrap() as usize;
        let ckpt = dir.path().join(format!("{model}.ckpt"));
        let got = imported_logits(model, &weights, side, &ckpt);
        let want = floats_of(&family["logits"]);
        assert_close(&got, &want, model);
        // The two inputs' logits differ by far more than the tolerance: the match holds
        // the network's arithmetic, not only its constants.
        let scale = want.iter().fold(1f32, |m, x| m.max(x.abs()));
        let apart = (0..3).fold(0f32, |m, k| m.max((want[k] - want[3 + k]).abs()));
        assert!(apart > 5e-3 * scale, "{model}: {apart} at scale {scale}");
    }
}

/// Imports `weights` as `model` at side x side into `ckpt` and returns its logits on the
/// fixtures' two inputs.
fn imported_logits(model: &str, weights: &Path, side: usize, ckpt: &Path) -> Vec<f32> {
    ok(import(&[
        "--model",
        model,
        "--weights",
        weights.to_str().unwrap(),
        "--input",
        &format!("3x{side}x{side}"),
        "--out",
        ckpt.to_str().unwrap(),
    ]));
    let net = Checkpoint::load(ckpt)
        .unwrap()
        .network(&Device::flex())
        .unwrap()
        .valid();
    let x = Tensor::<4>::from_data(fixture_input(2, side), &Device::flex());
    values(net.forward(x).logits)
}

fn floats_of(list: &serde_json::Value) -> Vec<f32> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect()
}

#[test]
fn weights_pytorch_saved_give_pytorchs_logits_and_export_back_to_its_file() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let weights = fixtures.join("resnet8_torch.safetensors");
    let reference: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures.join("resnet8_torch_logits.json")).unwrap(),
    )
    .unwrap();
    let dir = tempdir().unwrap();
    let ckpt = dir.path().join("t.ckpt");
    let got = imported_logits("resnet8", &weights, 32, &ckpt);
    assert_close(&got, &floats_of(&reference["logits"]), "PyTorch's logits");

    // Exported again, every tensor is PyTorch's own: names, dtypes, shapes and bytes.
    let back = dir.path().join("back.safetensors");
    export(&ckpt, "safetensors", &back);
    let (a, b) = (
        std::fs::read(&weights).unwrap(),
        std::fs::read(&back).unwrap(),
    );
    let (theirs, ours) = (
        safetensors::SafeTensors::deserialize(&a).unwrap(),
        safetensors::SafeTensors::deserialize(&b).unwrap(),
    );
    let mut names = theirs.names();
    names.sort();
    let mut exported = ours.names();
    exported.sort();
    assert_eq!(names, exported);
    for name in names {
        let (t, o) = (theirs.tensor(name).unwrap(), ours.tensor(name).unwrap());
        assert_eq!((t.dtype(), t.shape()), (o.dtype(), o.shape()), "{name}");
        // lstmkd does not count batches: written as 0 (docs/INTEROP.md).
        if name.ends_with("num_batches_tracked") {
            assert_eq!(o.data(), 0i64.to_le_bytes(), "{name}");
        } else {
            assert!(t.data() == o.data(), "{name}: values differ");
        }
    }
}

#[test]
fn safetensors_export_then_import_round_trips_exactly() {
    let dir = tempdir().unwrap();
    for (name, input) in [
        ("resnet14", [1, 28, 28]),
        ("wrn_16_2", [3, 32, 32]),
        ("vgg11", [3, 32, 32]),
        ("mobilenetv2_cifar", [3, 32, 32]),
        ("resnet34", [3, 64, 64]),
    ] {
        let net = random_net(name, input, 6);
        let ckpt = dir.path().join(format!("{name}.ckpt"));
        let st = dir.path().join(format!("{name}.safetensors"));
        let back = dir.path().join(format!("{name}-back.ckpt"));
        let m = meta(name, input, 6);
        save(&net, m.clone(), &ckpt);
        export(&ckpt, "safetensors", &st);
        let input_arg = format!("{}x{}x{}", input[0], input[1], input[2]);
        let mean: Vec<String> = m.mean.iter().map(|v| v.to_string()).collect();
        let std: Vec<String> = m.std.iter().map(|v| v.to_string()).collect();
        ok(import(&[
            "--model",
            name,
            "--weights",
            st.to_str().unwrap(),
            "--input",
            &input_arg,
            "--mean",
            &mean.join(","),
            "--std",
            &std.join(","),
            "--out",
            back.to_str().unwrap(),
        ]));
        let imported = Checkpoint::load(&back).unwrap();
        assert_eq!(
            imported.meta.classes.len(),
            6,
            "{name}: classes from the classifier"
        );
        assert_eq!(imported.meta.mean, m.mean);
        assert_eq!(
            weights(&imported.network(&Device::flex()).unwrap()),
            weights(&net),
            "{name}"
        );
    }
}

#[test]
fn checkpoints_of_version_1_load_and_corruption_is_an_error() {
    let dir = tempdir().unwrap();
    let net = random_net("resnet8", [1, 28, 28], 4);
    let v2 = dir.path().join("v2.ckpt");
    save(&net, meta("resnet8", [1, 28, 28], 4), &v2);
    let bytes = std::fs::read(&v2).unwrap();

    // Every flipped bit of the file is detected.
    for pos in [9usize, bytes.len() / 2, bytes.len() - 1] {
        let mut bad = bytes.clone();
        bad[pos] ^= 0x10;
        let e = Checkpoint::from_bytes(&bad, Path::new("flipped.ckpt"))
            .err()
            .unwrap();
        let e = format!("{e:#}");
        assert!(
            e.contains("flipped.ckpt") && (e.contains("checksum") || e.contains("magic")),
            "{e}"
        );
    }
    let e = format!(
        "{:#}",
        Checkpoint::from_bytes(&bytes[..bytes.len() / 3], Path::new("cut.ckpt"))
            .err()
            .unwrap()
    );
    assert!(e.contains("cut.ckpt"), "{e}");

    // A version 1 file (the run config as its header, no checksum) written the way lstmkd
    // 0.1 wrote them.
    let cfg = lstmkd::config::RunConfig::parse(
        &crate::common::toml_config(Path::new("/data"), Path::new("/run"), ""),
        "v1.toml",
        &[],
    )
    .unwrap();
    let mut cfg = cfg;
    cfg.data.mean = Some(vec![0.25]);
    cfg.data.std = Some(vec![0.5]);
    let header = serde_json::json!({
        "config": cfg, "epoch": 3, "best_val_acc": 0.5, "val_acc": 0.25,
        "input": [1, 28, 28], "classes": ["a", "b", "c", "d"],
    });
    let model = net.clone().into_record().into_bytes().unwrap().to_vec();
    let mut v1 = b"LSTMKD01".to_vec();
    for section in [serde_json::to_vec(&header).unwrap(), model, Vec::new()] {
        v1.extend_from_slice(&(section.len() as u64).to_le_bytes());
        v1.extend_from_slice(&section);
    }
    let old = Checkpoint::from_bytes(&v1, Path::new("v1.ckpt")).unwrap();
    assert_eq!(old.meta.model.name, "resnet8");
    assert_eq!(old.meta.mean, [0.25]);
    assert_eq!(old.meta.run.as_ref().unwrap().epoch, 3);
    assert_eq!(
        weights(&old.network(&Device::flex()).unwrap()),
        weights(&net)
    );

    // A section length beyond the file (or beyond usize) is an error, not an allocation.
    let mut huge = b"LSTMKD01".to_vec();
    huge.extend_from_slice(&u64::MAX.to_le_bytes());
    let e = format!(
        "{:#}",
        Checkpoint::from_bytes(&huge, Path::new("huge.ckpt"))
            .err()
            .unwrap()
    );
    assert!(e.contains("huge.ckpt: truncated"), "{e}");
}

#[test]
fn predict_ranks_classes_by_the_softmax_of_the_logits() {
    let dir = tempdir().unwrap();
    let input = [3, 20, 24];
    let net = random_net("resnet8", input, 4);
    let m = meta("resnet8", input, 4);
    let ckpt = dir.path().join("net.ckpt");
    save(&net, m.clone(), &ckpt);
    let imgs = dir.path().join("imgs/sub");
    std::fs::create_dir_all(&imgs).unwrap();
    let mut pixels = Vec::new();
    for k in 0..3u32 {
        let img = image::RgbImage::from_fn(24, 20, |x, y| {
            image::Rgb([
                (x * 10 + k * 40) as u8,
                (y * 12) as u8,
                ((x + y) * 5 + k) as u8,
            ])
        });
        img.save(imgs.join(format!("{k}.png"))).unwrap();
        let plane: Vec<f32> = (0..3)
            .flat_map(|c| {
                img.pixels()
                    .map(move |p| p.0[c] as f32 / 255.0)
                    .collect::<Vec<_>>()
            })
            .collect();
        pixels.extend(plane);
    }
    std::fs::write(dir.path().join("imgs/notes.txt"), "not an image").unwrap();
    let out = ok(lstmkd(&[
        "predict",
        "--checkpoint",
        ckpt.to_str().unwrap(),
        dir.path().join("imgs").to_str().unwrap(),
        "--json",
        "--top",
        "2",
    ]));
    let got: serde_json::Value = serde_json::from_str(&out).unwrap();
    let got = got.as_array().unwrap();
    assert_eq!(
        got.len(),
        3,
        "the folder is searched recursively, text files skipped"
    );
    let want = reference_logits(&net, &m, &TensorData::new(pixels, [3, 3, 20, 24]));
    for (k, p) in got.iter().enumerate() {
        assert!(
            p["file"]
                .as_str()
                .unwrap()
                .ends_with(&format!("sub/{k}.png")),
            "sorted"
        );
        let logits: Vec<f32> = p["logits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect();
        let want = &want[k * 4..(k + 1) * 4];
        assert_close(&logits, want, "predict logits");
        let z: f32 = want.iter().map(|l| l.exp()).sum();
        let mut order: Vec<usize> = (0..4).collect();
        order.sort_by(|&a, &b| want[b].total_cmp(&want[a]));
        let top = p["top"].as_array().unwrap();
        assert_eq!(top.len(), 2);
        for (r, &j) in top.iter().zip(&order) {
            assert_eq!(r["class"], format!("c{j}"));
            assert!((r["prob"].as_f64().unwrap() as f32 - want[j].exp() / z).abs() < 1e-5);
        }
    }
    let broken = dir.path().join("broken.png");
    std::fs::write(&broken, b"\x89PNG garbage").unwrap();
    let e = lstmkd(&[
        "predict",
        "--checkpoint",
        ckpt.to_str().unwrap(),
        broken.to_str().unwrap(),
    ]);
    assert_eq!(e.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&e.stderr).contains("broken.png"));
}

#[test]
fn fused_student_deploys_evaluates_and_exports_with_its_lstms() {
    let d = tempdir().unwrap();
    let (data, teacher_dir) = crate::distill::tiny_teacher(d.path(), 64, 16);
    let student_dir = d.path().join("fused");
    let distill = format!(
        r#"
[teacher]
checkpoint = "{}"

[distill]
weights = {{ ce = 1.0, aux_ce = 0.5, temporal = 0.1 }}
end_to_end = true
fused = true
adapt_epochs = 1
extractor = {{ conv_channels = 6, hidden = 5 }}
"#,
        teacher_dir.join("best.ckpt").display()
    );
    let cfg = crate::common::toml_config(&data, &student_dir, &distill)
        .replace("epochs = 3", "epochs = 1");
    let cfg_path = d.path().join("fused.toml");
    std::fs::write(&cfg_path, cfg).unwrap();
    ok(lstmkd(&["adapt", "--config", cfg_path.to_str().unwrap()]));
    ok(lstmkd(&["distill", "--config", cfg_path.to_str().unwrap()]));
    let deployed = student_dir.join("deployed.ckpt");
    let ckpt = Checkpoint::load(&deployed).unwrap();
    let spec = ckpt.meta.fused.clone().expect("a fused header");
    // resnet8's last two taps (32 and 64 channels, 4x4 and 2x2 on 8x8 inputs) behind
    // shared-lens adapters to the teacher's (resnet8 as well).
    assert_eq!(spec.extractors, [32, 64]);
    assert!(spec.adapters);

    let onnx = d.path().join("fused.onnx");
    let model = crate::common::exported_onnx(&deployed, &onnx);
    let bytes = std::fs::read(&onnx).unwrap();
    let ops: Vec<&str> = model
        .graph
        .as_ref()
        .unwrap()
        .node
        .iter()
        .map(|n| n.op_type.as_str())
        .collect();
    assert_eq!(
        ops.iter().filter(|o| **o == "LSTM").count(),
        4,
        "2 taps x 2 stacked BiLSTMs"
    );
    // The 2x2 tap is shorter than the 3-row window: padded inside the graph.
    assert!(ops.contains(&"Pad"));

    let m = &ckpt.meta;
    let fused = ckpt
        .apply(
            lstmkd::distill::student::FusedStudent::init(
                &m.model,
                m.input,
                m.classes.len(),
                &spec,
                &Device::flex(),
            )
            .unwrap(),
        )
        .unwrap()
        .valid();
    let images = Tensor::<4>::random(
        [3, 1, 8, 8],
        Distribution::Uniform(0.0, 1.0),
        &Device::flex(),
    )
    .into_data();
    let normed = (Tensor::<4>::from_data(images.clone(), &Device::flex()) - m.mean[0]) / m.std[0];
    // Unfolded, with the extractors' row-wise window convolution and burn's LSTM; the graph
    // has the plain Conv3d over the window stack and ONNX's LSTM operator.
    let want: Vec<f32> = fused
        .forward(normed)
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    assert_close(&run_tract(&bytes, &images).unwrap(), &want, "fused ONNX");

    // `lstmkd eval` of the fused checkpoint scores what the graph (tract, another runtime)
    // computes on the test set the data helper generated.
    let (pixels, labels) = crate::common::toy_images(16, 8, 8, 4, 2);
    let test = TensorData::new(
        pixels.iter().map(|&p| p as f32 / 255.0).collect::<Vec<_>>(),
        [16, 1, 8, 8],
    );
    let logits = run_tract(&bytes, &test).unwrap();
    let k = m.classes.len();
    let labels: Vec<usize> = labels.iter().map(|&y| y as usize).collect();
    let (hits, ce) = top1_hits_and_ce(&logits, k, &labels);
    let eval_dir = d.path().join("eval");
    ok(lstmkd(&[
        "eval",
        "--checkpoint",
        deployed.to_str().unwrap(),
        "--out",
        eval_dir.to_str().unwrap(),
    ]));
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(eval_dir.join("eval.json")).unwrap()).unwrap();
    assert_eq!(json["top1"].as_f64().unwrap(), hits as f64 / 16.0, "{json}");
    let loss = json["loss"].as_f64().unwrap();
    assert!(
        (loss - ce / 16.0).abs() < 1e-4,
        "loss {loss} vs {}",
        ce / 16.0
    );

    // Validation during the run scored the fused logits too: the graph on the run's
    // validation images (its split of the generated training set) gives that epoch's metrics.
    let run = lstmkd::config::RunConfig::load(&cfg_path, &[]).unwrap();
    let dataset = run.data.open().unwrap();
    let (_, val) =
        lstmkd::data::train_val_split(dataset.train.clone(), run.data.val_fraction, run.train.seed);
    let (pixels, labels) = crate::common::toy_images(64, 8, 8, 4, 1);
    let images: Vec<f32> = val
        .indices
        .iter()
        .flat_map(|&i| {
            pixels[i * 64..(i + 1) * 64]
                .iter()
                .map(|&p| p as f32 / 255.0)
        })
        .collect();
    let n = val.indices.len();
    let logits = run_tract(&bytes, &TensorData::new(images, [n, 1, 8, 8])).unwrap();
    let val_labels: Vec<usize> = val.indices.iter().map(|&i| labels[i] as usize).collect();
    let (hits, ce) = top1_hits_and_ce(&logits, k, &val_labels);
    let m = lstmkd::train::metrics::read_jsonl(&student_dir.join("metrics.jsonl")).unwrap();
    assert_eq!(m[0].val_acc, hits as f64 / n as f64);
    assert!(
        (m[0].val_loss - ce / n as f64).abs() < 1e-4,
        "{} vs {}",
        m[0].val_loss,
        ce / n as f64
    );
}

#[test]
fn imported_checkpoints_describe_themselves_and_evaluate_on_given_data() {
    let dir = tempdir().unwrap();
    let source = random_net("resnet8x4", [3, 32, 32], 2);
    let file = dir.path().join("w.safetensors");
    // As Lightning saves a module holding the network as `self.model`.
    std::fs::write(
        &file,
        repdistiller_resnet_safetensors(&source, "state_dict.model."),
    )
    .unwrap();
    let ckpt = dir.path().join("t.ckpt");
    ok(import(&[
        "--model",
        "resnet8x4",
        "--weights",
        file.to_str().unwrap(),
        "--input",
        "3x16x16",
        "--resize",
        "0",
        "--out",
        ckpt.to_str().unwrap(),
    ]));
    let info = ok(lstmkd(&["info", "--checkpoint", ckpt.to_str().unwrap()]));
    assert!(
        info.contains("imported from") && info.contains("input       3x16x16, 2 classes"),
        "{info}"
    );

    // No run behind it: eval needs a dataset, and says so.
    let e = lstmkd(&["eval", "--checkpoint", ckpt.to_str().unwrap()]);
    assert_eq!(e.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&e.stderr).contains("--data"));

    // An ImageFolder of 16x16 images (no resizing, so pixels are exactly what the reference
    // reads); the same images in both splits, whichever one eval reads.
    let data = dir.path().join("folder");
    let mut pixels = Vec::new();
    let mut labels = Vec::new();
    for (k, class) in ["a", "b"].iter().enumerate() {
        for i in 0..8u32 {
            let img = image::RgbImage::from_fn(16, 16, |x, y| {
                let v =
                    |s: u32| ((x * (3 + s + i) + y * (5 + 2 * s + k as u32) + i * 17) % 251) as u8;
                image::Rgb([v(0), v(1), v(2)])
            });
            for split in ["train", "val"] {
                let d = data.join(split).join(class);
                std::fs::create_dir_all(&d).unwrap();
                img.save(d.join(format!("{i}.png"))).unwrap();
            }
            // CHW in [0, 1], as the loader converts.
            for c in 0..3 {
                pixels.extend(img.pixels().map(|p| p[c] as f32 / 255.0));
            }
            labels.push(k);
        }
    }
    let header = Checkpoint::load(&ckpt).unwrap().meta;
    let logits = reference_logits(&source, &header, &TensorData::new(pixels, [16, 3, 16, 16]));
    let (hits, ce) = top1_hits_and_ce(&logits, 2, &labels);
    let out = dir.path().join("eval");
    let report = ok(lstmkd(&[
        "eval",
        "--checkpoint",
        ckpt.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]));
    assert!(report.contains("test images 16"), "{report}");
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("eval.json")).unwrap()).unwrap();
    assert_eq!(json["top1"].as_f64().unwrap(), hits as f64 / 16.0, "{json}");
    // The mean cross-entropy pins the logits themselves, not only their argmax.
    let ce = ce / 16.0;
    let loss = json["loss"].as_f64().unwrap();
    assert!((loss - ce).abs() < 1e-5, "loss {loss} vs {ce}");
    let written = std::fs::read(out.join("eval.json")).unwrap();
    // A zero batch size is refused before anything is evaluated or written.
    let zero = lstmkd(&[
        "eval",
        "--checkpoint",
        ckpt.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--batch-size",
        "0",
    ]);
    assert_eq!(zero.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&zero.stderr).contains("--batch-size"));
    assert_eq!(std::fs::read(out.join("eval.json")).unwrap(), written);
}

#[test]
fn a_pytorch_zip_checkpoint_reads_to_torchs_own_tensors() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let sd = lstmkd::interop::state_dict::read(&fixtures.join("tiny_state_dict.pth")).unwrap();
    let want: serde_json::Map<String, serde_json::Value> = serde_json::from_str(
        &std::fs::read_to_string(fixtures.join("tiny_state_dict.json")).unwrap(),
    )
    .unwrap();
    // Unwrapped from {"model": ..., "epoch": 3}: the state_dict's tensors, nothing else.
    assert_eq!(
        sd.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>()
    );
    for (name, data) in &sd {
        let shape: Vec<usize> = want[name]["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap() as usize)
            .collect();
        assert_eq!(data.shape().to_vec(), shape, "{name}");
        // JSON holds each f32 widened to f64, as text: parsed back and compared as f32.
        let values: Vec<f32> = want[name]["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect();
        let got: Vec<f32> = if name.ends_with("num_batches_tracked") {
            data.iter::<i64>().map(|v| v as f32).collect()
        } else {
            data.iter::<f32>().collect()
        };
        assert_eq!(got, values, "{name}");
    }
}
