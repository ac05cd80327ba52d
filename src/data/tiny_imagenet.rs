//! Tiny-ImageNet-200 in its official layout: `wnids.txt` (the classes), `words.txt` (their
//! names), `train/<wnid>/images/*.JPEG`, and `val/images/*.JPEG` labelled by
//! `val/val_annotations.txt` (`file <TAB> wnid <TAB> box`). The official validation set is the
//! test split; the selection split is held out of `train/` like every format's
//! (`data.val_fraction`). Labels follow the sorted wnids, as torchvision's ImageFolder over
//! `train/` numbers them, so that a PyTorch model trained that way keeps its outputs.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};

use super::Dataset;
use super::image_folder::{ImageFolder, is_image, sorted_entries};

fn read_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("{}: cannot read", path.display()))
}

/// The class wnids of `wnids.txt`, sorted; an empty or repeated one is an error.
fn wnids(root: &Path) -> Result<Vec<String>> {
    let path = root.join("wnids.txt");
    let text = read_text(&path)
        .context("Tiny-ImageNet expects wnids.txt, words.txt, train/ and val/ (scripts/tiny_imagenet.sh lays them out)")?;
    let mut ids: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    ids.sort();
    if ids.is_empty() {
        bail!("{}: no class ids", path.display());
    }
    if let Some(w) = ids.windows(2).find(|w| w[0] == w[1]) {
        bail!("{}: class id '{}' appears twice", path.display(), w[0]);
    }
    Ok(ids)
}

/// Each wnid's display name: the first synonym `words.txt` gives it, the wnid itself when the
/// file does not name it.
fn names(root: &Path, ids: &[String]) -> Result<Vec<String>> {
    let path = root.join("words.txt");
    let text = read_text(&path)?;
    let words: HashMap<&str, &str> = text
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(id, names)| (id.trim(), names.split(',').next().unwrap_or("").trim()))
        .collect();
    Ok(ids
        .iter()
        .map(|id| match words.get(id.as_str()) {
            Some(name) if !name.is_empty() => name.to_string(),
            _ => id.clone(),
        })
        .collect())
}

fn train_files(root: &Path, ids: &[String]) -> Result<Vec<(PathBuf, usize)>> {
    let train = root.join("train");
    let mut files = Vec::new();
    for (label, id) in ids.iter().enumerate() {
        let dir = train.join(id).join("images");
        if !dir.is_dir() {
            bail!(
                "{}: missing; wnids.txt lists class '{id}' (Tiny-ImageNet expects train/<wnid>/images/)",
                dir.display()
            );
        }
        let before = files.len();
        files.extend(
            sorted_entries(&dir)?
                .into_iter()
                .filter(|p| p.is_file() && is_image(p))
                .map(|p| (p, label)),
        );
        if files.len() == before {
            bail!("{}: no .JPEG images", dir.display());
        }
    }
    Ok(files)
}

fn val_files(root: &Path, ids: &[String]) -> Result<Vec<(PathBuf, usize)>> {
    let val = root.join("val");
    let path = val.join("val_annotations.txt");
    let text = read_text(&path)?;
    let label: HashMap<&str, usize> = ids
        .iter()
        .enumerate()
        .map(|(k, id)| (id.as_str(), k))
        .collect();
    let mut files = Vec::new();
    for (n, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let mut fields = line.split('\t');
        let (Some(file), Some(id)) = (fields.next(), fields.next()) else {
            bail!(
                "{} line {}: expected 'file<TAB>wnid<TAB>box', got '{line}'",
                path.display(),
                n + 1
            );
        };
        let Some(&k) = label.get(id.trim()) else {
            bail!(
                "{} line {}: class '{}' is not in wnids.txt",
                path.display(),
                n + 1,
                id.trim()
            );
        };
        let image = val.join("images").join(file.trim());
        if !image.is_file() {
            bail!(
                "{} line {}: {} does not exist",
                path.display(),
                n + 1,
                image.display()
            );
        }
        files.push((image, k));
    }
    if files.is_empty() {
        bail!("{}: no annotated images", path.display());
    }
    files.sort();
    Ok(files)
}

pub fn open(root: &Path, resize: usize, crop: usize, random_resized_crop: bool) -> Result<Dataset> {
    let ids = wnids(root)?;
    let classes = names(root, &ids)?;
    let train = ImageFolder::of_files(train_files(root, &ids)?, resize, crop, random_resized_crop)?;
    let test = ImageFolder::of_files(val_files(root, &ids)?, resize, crop, false)?;
    Dataset::of_splits(
        Arc::new(train),
        Arc::new(test),
        classes,
        &root.join("val"),
        "images",
        " (set data.crop)",
    )
}
