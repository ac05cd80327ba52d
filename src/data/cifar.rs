//! CIFAR binary files. CIFAR-10: `data_batch_{1..5}.bin`, `test_batch.bin`, records of
//! 1 label byte + 3072 pixel bytes. CIFAR-100: `train.bin`, `test.bin`, records of a coarse
//! and a fine label byte + 3072 pixel bytes.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};

use super::{Cifar100Labels, Dataset, InMemory, check_labels, read_class_names};

const PIXELS: usize = 3 * 32 * 32;

/// Accepts the folder itself or its parent holding the archive's usual sub-folder.
fn resolve(root: &Path, first_file: &str, subdir: &str) -> PathBuf {
    if root.join(first_file).is_file() {
        root.to_path_buf()
    } else {
        root.join(subdir)
    }
}

fn read_records(
    files: &[PathBuf],
    label_bytes: usize,
    label_index: usize,
    num_classes: usize,
) -> Result<InMemory> {
    let record = label_bytes + PIXELS;
    let mut images = Vec::new();
    let mut labels = Vec::new();
    for path in files {
        let bytes = std::fs::read(path)
            .with_context(|| format!("{}: cannot read CIFAR file", path.display()))?;
        if bytes.is_empty() {
            bail!("{}: file is empty", path.display());
        }
        if !bytes.len().is_multiple_of(record) {
            bail!(
                "{}: truncated record: {} bytes is not a multiple of the {}-byte record",
                path.display(),
                bytes.len(),
                record
            );
        }
        let first = labels.len();
        for rec in bytes.chunks_exact(record) {
            labels.push(rec[label_index] as usize);
            images.extend_from_slice(&rec[label_bytes..]);
        }
        check_labels(&labels[first..], num_classes, path)?;
    }
    Ok(InMemory {
        images,
        labels,
        shape: [3, 32, 32],
    })
}

pub fn open_cifar10(root: &Path) -> Result<Dataset> {
    let dir = resolve(root, "data_batch_1.bin", "cifar-10-batches-bin");
    let train: Vec<PathBuf> = (1..=5)
        .map(|i| dir.join(format!("data_batch_{i}.bin")))
        .collect();
    let test = vec![dir.join("test_batch.bin")];
    for f in train.iter().chain(&test) {
        if !f.is_file() {
            bail!("{}: missing CIFAR-10 file", f.display());
        }
    }
    Ok(Dataset {
        train: Arc::new(read_records(&train, 1, 0, 10)?),
        test: Arc::new(read_records(&test, 1, 0, 10)?),
        classes: label_names(&dir.join("batches.meta.txt"), &CIFAR10)?,
    })
}

pub fn open_cifar100(root: &Path, labels: Cifar100Labels) -> Result<Dataset> {
    let dir = resolve(root, "train.bin", "cifar-100-binary");
    let (train, test) = (dir.join("train.bin"), dir.join("test.bin"));
    for f in [&train, &test] {
        if !f.is_file() {
            bail!("{}: missing CIFAR-100 file", f.display());
        }
    }
    let (index, classes, names_file) = match labels {
        Cifar100Labels::Coarse => (0, 20, "coarse_label_names.txt"),
        Cifar100Labels::Fine => (1, 100, "fine_label_names.txt"),
    };
    Ok(Dataset {
        train: Arc::new(read_records(&[train], 2, index, classes)?),
        test: Arc::new(read_records(&[test], 2, index, classes)?),
        classes: label_names(&dir.join(names_file), &numbers(classes))?,
    })
}

const CIFAR10: [&str; 10] = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
];

fn numbers(n: usize) -> Vec<String> {
    (0..n).map(|i| i.to_string()).collect()
}

/// The class names the binary distribution ships beside the records, one per line
/// (`fallback` when the file is absent).
fn label_names<S: AsRef<str>>(path: &Path, fallback: &[S]) -> Result<Vec<String>> {
    let classes = fallback.len();
    if !path.is_file() {
        return Ok(fallback.iter().map(|s| s.as_ref().to_string()).collect());
    }
    read_class_names(path, classes)
}
