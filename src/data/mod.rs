//! Datasets: one file per on-disk format, all producing a `Source` of CHW u8 images with
//! labels; `loader` turns a split of a source into augmented, normalised batches.

pub mod augment;
pub mod cifar;
pub mod clips;
pub mod idx;
pub mod image_folder;
pub mod loader;
pub mod motion;
pub mod tiny_imagenet;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Result, bail};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

/// Random access to decoded images. Implementations must be cheap to share across threads.
pub trait Source: Send + Sync {
    fn len(&self) -> usize;
    /// Channels, height, width of every decoded image (of every frame, for clips).
    fn shape(&self) -> [usize; 3];
    /// Frames per sample: 1 for images; a clip source reads this many frames, one after
    /// the other, into each sample.
    fn frames(&self) -> usize {
        1
    }
    /// Bytes of one sample: frames x C x H x W.
    fn sample_len(&self) -> usize {
        self.frames() * self.shape().iter().product::<usize>()
    }
    fn label(&self, i: usize) -> usize;
    /// Writes sample `i` as CHW bytes per frame into `out` (length `sample_len`).
    fn read(&self, i: usize, out: &mut [u8]) -> Result<()>;
    /// Image `i` as a training view: a random one where the format draws its own
    /// (ImageFolder's random resized crop), `read` otherwise (the draws come from `rng`).
    fn read_train(&self, i: usize, rng: &mut StdRng, out: &mut [u8]) -> Result<()> {
        let _ = rng;
        self.read(i, out)
    }
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A whole dataset held in memory (IDX and CIFAR files are small enough).
pub(crate) struct InMemory {
    pub(crate) images: Vec<u8>,
    pub(crate) labels: Vec<usize>,
    pub(crate) shape: [usize; 3],
}

impl Source for InMemory {
    fn len(&self) -> usize {
        self.labels.len()
    }
    fn shape(&self) -> [usize; 3] {
        self.shape
    }
    fn label(&self, i: usize) -> usize {
        self.labels[i]
    }
    fn read(&self, i: usize, out: &mut [u8]) -> Result<()> {
        let n = self.shape.iter().product::<usize>();
        out.copy_from_slice(&self.images[i * n..(i + 1) * n]);
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// MNIST / Fashion-MNIST IDX files, gzipped or raw.
    Idx,
    Cifar10,
    Cifar100,
    /// One sub-folder per class (the ImageNet layout: `train/`, `val/`).
    ImageFolder,
    /// One sub-folder per class and per clip, holding the clip's frames.
    Clips,
    /// Tiny-ImageNet-200's official layout (`wnids.txt`, `train/<wnid>/images/`,
    /// `val/images/` with `val_annotations.txt`).
    TinyImagenet,
}

impl Format {
    /// Whether the format decodes image files of any size, which `data.resize` and
    /// `data.crop` bring to one.
    pub(crate) fn decodes_files(self) -> bool {
        matches!(self, Format::ImageFolder | Format::TinyImagenet)
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Cifar100Labels {
    Fine,
    Coarse,
}

/// The `[data]` table of a run config.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    pub(crate) format: Format,
    pub root: PathBuf,
    /// Fraction of the training files held out (seeded) for validation.
    #[serde(default = "default_val_fraction")]
    pub val_fraction: f64,
    #[serde(default = "default_cifar100_labels")]
    pub(crate) cifar100_labels: Cifar100Labels,
    /// ImageFolder: resize the shorter side to this many pixels (0 = keep).
    #[serde(default)]
    pub resize: usize,
    /// ImageFolder: centre crop to a square of this size (0 = keep; then all images must
    /// already share one size).
    #[serde(default)]
    pub crop: usize,
    /// ImageFolder: training images are torchvision's RandomResizedCrop to `crop` x `crop`
    /// (scale 0.08-1, ratio 3/4-4/3) instead of resize + centre crop; validation and test keep
    /// the centre crop. With `hflip` this is torchvision's ImageNet training recipe.
    #[serde(default)]
    pub(crate) random_resized_crop: bool,
    #[serde(flatten)]
    pub augment: augment::AugmentConfig,
    /// Per-channel mean and std in [0, 1] units; computed from the training split when absent
    /// and written into the run's resolved config.
    #[serde(default)]
    pub mean: Option<Vec<f32>>,
    #[serde(default)]
    pub std: Option<Vec<f32>>,
    /// Train on at most this many images of the training split (seeded choice), for quick
    /// budgets; validation keeps its full split.
    #[serde(default)]
    pub(crate) limit_train: Option<usize>,
    /// Batches prepared ahead of the training step.
    #[serde(default = "default_prefetch")]
    pub(crate) prefetch: usize,
    /// Share of the training split whose labels distillation may use (seeded: the split's
    /// first images, the same a `limit_train` of that many would train on alone); the others
    /// are read without labels. 0 is label-free distillation.
    #[serde(default = "one_share", skip_serializing_if = "is_all")]
    pub(crate) label_fraction: f64,
    /// Clips: frames sampled from each clip (default 8).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frames: Option<usize>,
}

/// Frames sampled per clip when `data.frames` is not given.
pub(crate) const DEFAULT_FRAMES: usize = 8;

fn default_val_fraction() -> f64 {
    0.1
}
fn default_cifar100_labels() -> Cifar100Labels {
    Cifar100Labels::Fine
}
fn one_share() -> f64 {
    1.0
}
fn is_all(share: &f64) -> bool {
    *share == 1.0
}
fn default_prefetch() -> usize {
    4
}
const MAX_PREFETCH: usize = 64;

/// A dataset's train and test sources with its class names.
pub struct Dataset {
    pub train: Arc<dyn Source>,
    pub test: Arc<dyn Source>,
    pub classes: Vec<String>,
}

impl Dataset {
    /// The splits a folder format read from `train/` and `test_dir`, refused when the test
    /// split's `what` (images, frames) do not have the training split's shape; `hint` follows
    /// the error.
    pub(crate) fn of_splits(
        train: Arc<dyn Source>,
        test: Arc<dyn Source>,
        classes: Vec<String>,
        test_dir: &Path,
        what: &str,
        hint: &str,
    ) -> Result<Self> {
        if test.shape() != train.shape() {
            bail!(
                "{}: {what} are {:?} but training {what} are {:?}{hint}",
                test_dir.display(),
                test.shape(),
                train.shape()
            );
        }
        Ok(Self {
            train,
            test,
            classes,
        })
    }

    pub fn num_classes(&self) -> usize {
        self.classes.len()
    }
    pub fn shape(&self) -> [usize; 3] {
        self.train.shape()
    }
    /// Frames per sample (1 for images).
    pub fn frames(&self) -> usize {
        self.train.frames()
    }
}

impl DataConfig {
    /// A dataset at `root` with every option at its default.
    pub fn new(format: Format, root: &std::path::Path) -> Self {
        Self {
            format,
            root: root.to_path_buf(),
            val_fraction: default_val_fraction(),
            cifar100_labels: default_cifar100_labels(),
            resize: 0,
            crop: 0,
            random_resized_crop: false,
            augment: augment::AugmentConfig::default(),
            mean: None,
            std: None,
            limit_train: None,
            prefetch: default_prefetch(),
            label_fraction: 1.0,
            frames: None,
        }
    }

    pub fn validate(&self) -> Result<()> {
        if !(self.val_fraction > 0.0 && self.val_fraction < 1.0) {
            bail!(
                "data.val_fraction: must be in (0, 1): validation never uses the test set, got {}",
                self.val_fraction
            );
        }
        for (name, v) in [("data.mean", &self.mean), ("data.std", &self.std)] {
            if let Some(v) = v
                && (v.is_empty() || v.iter().any(|x| !x.is_finite()))
            {
                bail!("{name}: must be a non-empty list of finite numbers");
            }
        }
        if let Some(std) = &self.std
            && std.iter().any(|&s| s <= 0.0)
        {
            bail!("data.std: every entry must be positive");
        }
        if !(0.0..=1.0).contains(&self.label_fraction) {
            bail!(
                "data.label_fraction: a share in [0, 1], got {}",
                self.label_fraction
            );
        }
        if self.limit_train == Some(0) {
            bail!("data.limit_train: must be at least 1");
        }
        // Every slot of the queue is allocated up front.
        if !(1..=MAX_PREFETCH).contains(&self.prefetch) {
            bail!(
                "data.prefetch: batches prepared ahead, 1 to {MAX_PREFETCH}, got {}",
                self.prefetch
            );
        }
        match (self.format, self.frames) {
            (Format::Clips, Some(0)) => bail!("data.frames: must be at least 1"),
            (Format::Clips, _) | (_, None) => {}
            (_, Some(_)) => bail!("data.frames: applies to format = \"clips\" only"),
        }
        if (self.resize, self.crop) != (0, 0) && !self.format.decodes_files() {
            if self.format == Format::Clips {
                bail!("data.resize / data.crop: not for clips (their frames must share one size)");
            }
            bail!(
                "data.resize / data.crop: only for format = \"image-folder\" or \"tiny-imagenet\" \
                 (format {:?} holds images of one size, read as they are)",
                self.format
            );
        }
        if self.random_resized_crop && (!self.format.decodes_files() || self.crop == 0) {
            bail!(
                "data.random_resized_crop: needs format = \"image-folder\" or \"tiny-imagenet\", and data.crop (the output size)"
            );
        }
        Ok(())
    }

    pub fn open(&self) -> Result<Dataset> {
        self.validate()?;
        if !self.root.exists() {
            bail!(
                "data.root: '{}' does not exist (format {:?})",
                self.root.display(),
                self.format
            );
        }
        let dataset = match self.format {
            Format::Idx => idx::open(&self.root),
            Format::Cifar10 => cifar::open_cifar10(&self.root),
            Format::Cifar100 => cifar::open_cifar100(&self.root, self.cifar100_labels),
            Format::ImageFolder => {
                image_folder::open(&self.root, self.resize, self.crop, self.random_resized_crop)
            }
            Format::TinyImagenet => {
                tiny_imagenet::open(&self.root, self.resize, self.crop, self.random_resized_crop)
            }
            Format::Clips => clips::open(&self.root, self.frames.unwrap_or(DEFAULT_FRAMES)),
        }?;
        let root = self.root.display();
        if dataset.num_classes() < 2 {
            bail!(
                "data.root: {root} has {} class(es); a classifier needs at least 2",
                dataset.num_classes()
            );
        }
        let shape = dataset.shape();
        if shape.contains(&0) {
            bail!("data.root: {root} holds images of shape {shape:?} (C, H, W); none may be 0");
        }
        if dataset.test.shape() != shape {
            bail!(
                "data.root: {root}: test images are {:?} but training images are {shape:?}",
                dataset.test.shape()
            );
        }
        Ok(dataset)
    }
}

/// A subset of a source, by index.
#[derive(Clone)]
pub struct Split {
    pub(crate) source: Arc<dyn Source>,
    pub indices: Arc<Vec<usize>>,
}

impl Split {
    pub fn all(source: Arc<dyn Source>) -> Self {
        let indices = Arc::new((0..source.len()).collect());
        Self { source, indices }
    }
    pub fn len(&self) -> usize {
        self.indices.len()
    }
    pub fn is_empty(&self) -> bool {
        self.indices.is_empty()
    }
}

/// Holds `fraction` of `source` out for validation; the same seed gives the same split.
pub fn train_val_split(source: Arc<dyn Source>, fraction: f64, seed: u64) -> (Split, Split) {
    let mut idx: Vec<usize> = (0..source.len()).collect();
    idx.shuffle(&mut StdRng::seed_from_u64(seed ^ 0x5EED_5B17));
    let n_val = (source.len() as f64 * fraction).round() as usize;
    let val: Vec<usize> = {
        let mut v = idx[..n_val].to_vec();
        v.sort_unstable();
        v
    };
    let train = idx[n_val..].to_vec();
    (
        Split {
            source: source.clone(),
            indices: Arc::new(train),
        },
        Split {
            source,
            indices: Arc::new(val),
        },
    )
}

/// Per-channel mean and std (in [0, 1] units) over up to `max_images` images of `split`.
pub(crate) fn channel_stats(split: &Split, max_images: usize) -> Result<(Vec<f32>, Vec<f32>)> {
    let [c, h, w] = split.source.shape();
    let mut buf = vec![0u8; split.source.sample_len()];
    let mut sum = vec![0f64; c];
    let mut sq = vec![0f64; c];
    let step = split.len().div_ceil(max_images).max(1);
    let mut count = 0usize;
    for &i in split.indices.iter().step_by(step) {
        split.source.read(i, &mut buf)?;
        for frame in buf.chunks_exact(c * h * w) {
            for ch in 0..c {
                for &p in &frame[ch * h * w..(ch + 1) * h * w] {
                    let v = p as f64 / 255.0;
                    sum[ch] += v;
                    sq[ch] += v * v;
                }
            }
            count += h * w;
        }
    }
    if count == 0 {
        bail!("cannot compute normalisation statistics of an empty split");
    }
    let mean: Vec<f32> = sum.iter().map(|s| (s / count as f64) as f32).collect();
    let std = sq
        .iter()
        .zip(&mean)
        .map(|(q, &m)| ((q / count as f64 - (m as f64).powi(2)).max(1e-12).sqrt()) as f32)
        .collect();
    Ok((mean, std))
}

/// Reads every image of `source` (in parallel, with a progress bar on a terminal) and returns
/// the errors of those that cannot be read, in index order.
pub(crate) fn verify(source: &dyn Source, what: &str) -> Vec<anyhow::Error> {
    use rayon::prelude::*;
    use std::io::IsTerminal;
    let n = source.len();
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new(n as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} eta {eta}")
                .expect("static template")
                .progress_chars("=> "),
        );
        bar.set_prefix(format!("checking {what}"));
        bar
    });
    let errors: Vec<anyhow::Error> = (0..n)
        .into_par_iter()
        .map_init(
            || vec![0u8; source.sample_len()],
            |buf, i| {
                let r = source.read(i, buf);
                if let Some(bar) = &bar {
                    bar.inc(1);
                }
                r.err()
            },
        )
        .flatten()
        .collect();
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    errors
}

/// Class names from a text file, one per line (blank lines skipped); there must be `classes`.
pub(crate) fn read_class_names(path: &std::path::Path, classes: usize) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("{}: cannot read class names: {e}", path.display()))?;
    let names: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    if names.len() != classes {
        bail!(
            "{}: {} class names for {classes} classes",
            path.display(),
            names.len()
        );
    }
    Ok(names)
}

/// Checks that every label is below `num_classes`, naming the file on failure.
pub(crate) fn check_labels(
    labels: &[usize],
    num_classes: usize,
    file: &std::path::Path,
) -> Result<()> {
    if let Some((i, &l)) = labels.iter().enumerate().find(|(_, l)| **l >= num_classes) {
        bail!(
            "{}: label {} of record {} is out of range (expected 0..{})",
            file.display(),
            l,
            i,
            num_classes
        );
    }
    Ok(())
}
