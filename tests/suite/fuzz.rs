//! Seeded mutation testing of every reader of user files: byte flips, truncations and
//! overwritten length fields of valid IDX, CIFAR, PNG, JPEG, checkpoint, safetensors and
//! PyTorch files must give errors (or, for a harmless mutation, a result), never a panic.
//! `LSTMKD_FUZZ_CASES=1000000 cargo test --release fuzz` runs a long campaign (default: 400
//! cases per format).

use std::path::Path;

use lstmkd::data::Cifar100Labels;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::common::{cifar_records, idx_bytes};

fn cases() -> usize {
    std::env::var("LSTMKD_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(400)
}

/// One random mutation of `valid`.
fn mutate(valid: &[u8], rng: &mut StdRng) -> Vec<u8> {
    let mut b = valid.to_vec();
    match rng.random_range(0..4) {
        0 => {
            for _ in 0..rng.random_range(1..=4) {
                let i = rng.random_range(0..b.len());
                b[i] ^= 1 << rng.random_range(0..8);
            }
        }
        1 => b.truncate(rng.random_range(0..b.len())),
        // A length or size field: an aligned word set to an extreme or random value, near the
        // start where headers are more often than not.
        _ => {
            let width = if rng.random_bool(0.5) { 4 } else { 8 };
            let span = b.len().min(256).saturating_sub(width);
            if span > 0 {
                let at = rng.random_range(0..span);
                let v: u64 = match rng.random_range(0..4) {
                    0 => 0,
                    1 => u64::MAX,
                    2 => u32::MAX as u64,
                    _ => rng.random(),
                };
                b[at..at + width].copy_from_slice(&v.to_le_bytes()[..width]);
            }
        }
    }
    b
}

/// Runs `read` (true: the bytes were read) on `cases()` mutations of `valid`; fails listing
/// any that panicked. `valid` itself must read, or the mutations would only ever meet a
/// reader that refuses everything.
fn campaign(name: &str, seed: u64, valid: &[u8], read: impl Fn(&[u8]) -> bool) {
    assert!(read(valid), "{name}: the unmutated input is refused");
    let mut rng = StdRng::seed_from_u64(seed);
    let mut panicked = Vec::new();
    // The panic hook is process-wide and other tests run beside this one, so it is left as
    // it is: the harness captures what it prints for this test alone.
    for case in 0..cases() {
        let bytes = mutate(valid, &mut rng);
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| read(&bytes))).is_err() {
            panicked.push(case);
        }
    }
    assert!(
        panicked.is_empty(),
        "{name}: {} of {} mutations panicked (seed {seed}, cases {:?})",
        panicked.len(),
        cases(),
        &panicked[..panicked.len().min(10)]
    );
}

fn write(dir: &Path, file: &str, bytes: &[u8]) -> std::path::PathBuf {
    let p = dir.join(file);
    std::fs::write(&p, bytes).unwrap();
    p
}

#[test]
fn fuzz_idx_and_cifar_readers() {
    let images = idx_bytes(&[3, 4, 4], &[7; 48]);
    campaign("idx", 1, &images, |b| {
        lstmkd::data::idx::parse(b, 3, Path::new("x")).is_ok()
    });
    let d = tempfile::tempdir().unwrap();
    let sub = d.path().join("cifar-100-binary");
    std::fs::create_dir_all(&sub).unwrap();
    let records = cifar_records(&[vec![1, 2], vec![3, 4]]);
    write(&sub, "test.bin", &records);
    campaign("cifar100", 2, &records, |b| {
        write(&sub, "train.bin", b);
        lstmkd::data::cifar::open_cifar100(d.path(), Cifar100Labels::Fine).is_ok()
    });
}

#[test]
fn fuzz_image_decoding_for_predict_and_image_folders() {
    let d = tempfile::tempdir().unwrap();
    let img = image::RgbImage::from_fn(12, 10, |x, y| image::Rgb([x as u8 * 20, y as u8 * 20, 7]));
    let mut png = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    let mut jpg = Vec::new();
    img.write_to(
        &mut std::io::Cursor::new(&mut jpg),
        image::ImageFormat::Jpeg,
    )
    .unwrap();
    let meta = lstmkd::train::checkpoint::Meta {
        model: lstmkd::models::ModelConfig::new("resnet8"),
        input: [3, 8, 8],
        classes: vec!["a".into()],
        mean: vec![0.5; 3],
        std: vec![0.25; 3],
        resize: 9,
        origin: "a test".into(),
        run: None,
        fused: None,
    };
    for (name, seed, valid) in [("png", 3, &png), ("jpg", 4, &jpg)] {
        campaign(name, seed, valid, |b| {
            let p = write(d.path(), &format!("x.{name}"), b);
            lstmkd::predict::load_image(&p, &meta).is_ok()
        });
    }
}

#[test]
fn fuzz_checkpoint_and_state_dict_readers() {
    use lstmkd::train::checkpoint::Checkpoint;
    let d = tempfile::tempdir().unwrap();
    let net = lstmkd::models::ModelConfig::new("resnet8")
        .init(1, 2, &burn::tensor::Device::flex())
        .unwrap();
    let meta = crate::common::meta("resnet8", [1, 8, 8], 2);
    let ckpt = Checkpoint::new(meta, &net, None).unwrap();
    let valid = ckpt.to_bytes().unwrap();
    campaign("checkpoint", 5, &valid, |b| {
        // Half the cases with a recomputed checksum, so the parser behind it is reached.
        let mut b = b.to_vec();
        if b.len() > 12 && b[0] % 2 == 0 {
            let n = b.len() - 4;
            let crc = crc32fast::hash(&b[..n]);
            b[n..].copy_from_slice(&crc.to_le_bytes());
        }
        Checkpoint::from_bytes(&b, Path::new("x.ckpt"))
            .is_ok_and(|c| c.network(&burn::tensor::Device::flex()).is_ok())
    });

    let sd = lstmkd::interop::state_dict::of(&net).unwrap();
    let st = lstmkd::interop::state_dict::safetensors_bytes(&sd, Default::default()).unwrap();
    campaign("safetensors", 6, &st, |b| {
        let p = write(d.path(), "x.safetensors", b);
        lstmkd::interop::state_dict::read(&p).is_ok_and(|sd| {
            let fresh = lstmkd::models::ModelConfig::new("resnet8")
                .init(1, 2, &burn::tensor::Device::flex())
                .unwrap();
            lstmkd::interop::state_dict::load(fresh, &sd, "x").is_ok()
        })
    });
    // A PyTorch zip checkpoint (torch.save of a state_dict), from scripts/torch/make_fixtures.py.
    let pth = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny_state_dict.pth"),
    )
    .unwrap();
    campaign("pth", 7, &pth, |b| {
        let p = write(d.path(), "x.pth", b);
        lstmkd::interop::state_dict::read(&p).is_ok()
    });
}
