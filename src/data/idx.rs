//! IDX files (MNIST, Fashion-MNIST): `{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]`.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use flate2::read::GzDecoder;

use super::{Dataset, InMemory, check_labels};

/// Reads a file whole, gunzipping it when its name ends in `.gz`.
pub(crate) fn read_maybe_gz(path: &Path) -> Result<Vec<u8>> {
    let raw = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
    if path.extension().is_some_and(|e| e == "gz") {
        let mut out = Vec::new();
        GzDecoder::new(raw.as_slice())
            .read_to_end(&mut out)
            .with_context(|| format!("{}: not a valid gzip stream", path.display()))?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

/// Finds `stem` or `stem.gz` in `root`.
fn locate(root: &Path, stem: &str) -> Result<PathBuf> {
    for name in [stem.to_string(), format!("{stem}.gz")] {
        let p = root.join(&name);
        if p.is_file() {
            return Ok(p);
        }
    }
    bail!(
        "{}: missing IDX file '{stem}' (or '{stem}.gz')",
        root.display()
    )
}

/// Parses an unsigned-byte IDX file of `ndims` dimensions, returning the dims and the data.
pub fn parse(bytes: &[u8], ndims: usize, path: &Path) -> Result<(Vec<usize>, Vec<u8>)> {
    let header = 4 + 4 * ndims;
    if bytes.len() < 4 {
        bail!("{}: file too short for an IDX header", path.display());
    }
    if bytes[0] != 0 || bytes[1] != 0 || bytes[2] != 0x08 || bytes[3] as usize != ndims {
        bail!(
            "{}: wrong magic number {:02x}{:02x}{:02x}{:02x} (expected 000008{:02x}: unsigned bytes, {} dimensions)",
            path.display(),
            bytes[0],
            bytes[1],
            bytes[2],
            bytes[3],
            ndims,
            ndims
        );
    }
    if bytes.len() < header {
        bail!("{}: truncated IDX header", path.display());
    }
    let dims: Vec<usize> = (0..ndims)
        .map(|d| {
            let o = 4 + 4 * d;
            u32::from_be_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]]) as usize
        })
        .collect();
    let Some(expected) = dims.iter().try_fold(1usize, |n, &d| n.checked_mul(d)) else {
        bail!(
            "{}: header dimensions {:?} overflow (a corrupt header)",
            path.display(),
            dims
        );
    };
    let data = &bytes[header..];
    if data.len() < expected {
        bail!(
            "{}: truncated: header announces {} bytes of data ({:?}), file holds {}",
            path.display(),
            expected,
            dims,
            data.len()
        );
    }
    if data.len() > expected {
        bail!(
            "{}: {} trailing bytes after the {} announced by the header",
            path.display(),
            data.len() - expected,
            expected
        );
    }
    Ok((dims, data.to_vec()))
}

fn load_pair(root: &Path, prefix: &str) -> Result<InMemory> {
    let img_path = locate(root, &format!("{prefix}-images-idx3-ubyte"))?;
    let lbl_path = locate(root, &format!("{prefix}-labels-idx1-ubyte"))?;
    let (dims, images) = parse(&read_maybe_gz(&img_path)?, 3, &img_path)?;
    let (ldims, labels) = parse(&read_maybe_gz(&lbl_path)?, 1, &lbl_path)?;
    if dims[0] != ldims[0] {
        bail!(
            "{}: {} images but {} has {} labels",
            img_path.display(),
            dims[0],
            lbl_path.display(),
            ldims[0]
        );
    }
    let labels: Vec<usize> = labels.into_iter().map(usize::from).collect();
    check_labels(&labels, 10, &lbl_path)?;
    Ok(InMemory {
        images,
        labels,
        shape: [1, dims[1], dims[2]],
    })
}

pub fn open(root: &Path) -> Result<Dataset> {
    let train = load_pair(root, "train")?;
    let test = load_pair(root, "t10k")?;
    Ok(Dataset {
        train: Arc::new(train),
        test: Arc::new(test),
        classes: class_names(root),
    })
}

const FASHION: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

/// Fashion-MNIST and MNIST share the file layout and nothing in the files tells them apart:
/// a folder named like Fashion-MNIST's (as Debian's and torchvision's are) gets its class
/// names, any other MNIST's digits (`data.class_names` names them otherwise).
fn class_names(root: &Path) -> Vec<String> {
    let root = root.canonicalize().unwrap_or_else(|_| root.to_path_buf());
    let fashion = root.components().any(|c| {
        c.as_os_str()
            .to_string_lossy()
            .to_lowercase()
            .contains("fashion")
    });
    if fashion {
        FASHION.iter().map(|s| s.to_string()).collect()
    } else {
        (0..10).map(|i| i.to_string()).collect()
    }
}
