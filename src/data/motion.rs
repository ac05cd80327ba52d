//! A generated motion dataset in the clips layout (`lstmkd make-clips`): each clip shows one
//! IDX image (a Fashion-MNIST item) sliding across a larger black canvas, and its class is the
//! item together with the direction of motion. Every position is visited by both directions of
//! an axis, so a single frame shows the item but not the class: the direction is only in the
//! order of the frames. Clip lengths vary; the speed keeps the travel the same.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::Source;

/// The directions of motion, as (name, dx, dy) per unit of travel.
pub(crate) const MOTIONS: [(&str, i32, i32); 4] = [
    ("right", 1, 0),
    ("left", -1, 0),
    ("down", 0, 1),
    ("up", 0, -1),
];

/// The set `generate` writes. `validate` names the flags of `lstmkd make-clips`, where these
/// come from.
#[derive(Debug, Clone)]
pub(crate) struct MotionOptions {
    /// Written as train/ and test/; must not exist yet.
    pub(crate) out: PathBuf,
    /// IDX dataset of grey images, the moving items.
    pub(crate) items: PathBuf,
    /// Clips per class.
    pub(crate) train_per_class: usize,
    pub(crate) test_per_class: usize,
    /// Clip lengths in frames, drawn uniformly from min..=max.
    pub(crate) min_frames: usize,
    pub(crate) max_frames: usize,
    /// Pixels the item travels over a clip (the canvas is the item plus this on each axis).
    pub(crate) travel: usize,
    /// Seed of every draw: the same seed writes the same set.
    pub(crate) seed: u64,
}

const MAX_TRAVEL: usize = 1024;
const MAX_FRAMES: usize = 1024;

impl MotionOptions {
    fn validate(&self) -> Result<()> {
        if self.min_frames < 2 || self.min_frames > self.max_frames {
            bail!(
                "--min-frames / --max-frames: need 2 <= min <= max (motion needs two frames), got {} and {}",
                self.min_frames,
                self.max_frames
            );
        }
        if self.train_per_class == 0 || self.test_per_class == 0 {
            bail!("--train-per-class / --test-per-class: must be at least 1");
        }
        // Bounds far above any useful clip set that keep every canvas and offset in u32 and
        // a clip's frames in memory.
        if !(1..=MAX_TRAVEL).contains(&self.travel) {
            bail!("--travel: 1 to {MAX_TRAVEL} pixels, got {}", self.travel);
        }
        if self.max_frames > MAX_FRAMES {
            bail!(
                "--max-frames: at most {MAX_FRAMES}, got {}",
                self.max_frames
            );
        }
        if self.out.exists() {
            bail!(
                "--out {}: already exists; choose a new folder (nothing is overwritten)",
                self.out.display()
            );
        }
        Ok(())
    }
}

/// Folder-safe class name: "<item>-<name>-<motion>", e.g. "3-dress-left".
fn class_name(item: usize, name: &str, motion: &str) -> String {
    format!("{item}-{}-{motion}", crate::slug(name))
}

/// Item offset along one axis at frame `j` of `len`: 0..=travel, forwards or backwards. The
/// backward path is the forward one played in reverse, rounding included, so that both
/// directions visit exactly the same positions.
pub(crate) fn offset(travel: usize, j: usize, len: usize, forwards: bool) -> usize {
    let step = if forwards { j } else { len - 1 - j };
    (travel * step + (len - 1) / 2) / (len - 1)
}

/// One clip's frames: `item` ([h, w] grey) moving in `motion` on a canvas grown by `travel`,
/// starting `across` pixels in on the other axis.
pub fn render_clip(
    item: &[u8],
    [h, w]: [usize; 2],
    travel: usize,
    (dx, dy): (i32, i32),
    across: usize,
    len: usize,
) -> Vec<image::GrayImage> {
    let (ch, cw) = (h + travel, w + travel);
    (0..len)
        .map(|j| {
            let (x0, y0) = match (dx, dy) {
                (0, dy) => (across, offset(travel, j, len, dy > 0)),
                (dx, _) => (offset(travel, j, len, dx > 0), across),
            };
            let mut canvas = image::GrayImage::new(cw as u32, ch as u32);
            for y in 0..h {
                for x in 0..w {
                    canvas.put_pixel(
                        (x0 + x) as u32,
                        (y0 + y) as u32,
                        image::Luma([item[y * w + x]]),
                    );
                }
            }
            canvas
        })
        .collect()
}

/// Indices of `source`'s images by label.
fn by_label(source: &dyn Source, labels: usize) -> Vec<Vec<usize>> {
    let mut by = vec![Vec::new(); labels];
    for i in 0..source.len() {
        by[source.label(i)].push(i);
    }
    by
}

/// Writes one split: `per_class` clips of each class, items drawn from `source`'s images of
/// that item class (`by_item`).
fn write_split(
    dir: &Path,
    source: &dyn Source,
    items: &[(usize, &str)],
    by_item: &[Vec<usize>],
    per_class: usize,
    opts: &MotionOptions,
    rng: &mut StdRng,
) -> Result<usize> {
    let [_, h, w] = source.shape();
    let mut buf = vec![0u8; h * w];
    let mut written = 0;
    for &(item, name) in items {
        for (motion, dx, dy) in MOTIONS {
            let class_dir = dir.join(class_name(item, name, motion));
            for k in 0..per_class {
                let pick = by_item[item][rng.random_range(0..by_item[item].len())];
                source.read(pick, &mut buf)?;
                let len = rng.random_range(opts.min_frames..=opts.max_frames);
                let across = rng.random_range(0..=opts.travel);
                let clip = class_dir.join(format!("clip{k:05}"));
                std::fs::create_dir_all(&clip)
                    .with_context(|| format!("{}: cannot create folder", clip.display()))?;
                for (j, frame) in render_clip(&buf, [h, w], opts.travel, (dx, dy), across, len)
                    .iter()
                    .enumerate()
                {
                    let path = clip.join(format!("frame{j:03}.png"));
                    frame
                        .save(&path)
                        .with_context(|| format!("{}: cannot write frame", path.display()))?;
                }
                written += 1;
            }
        }
    }
    Ok(written)
}

/// Generates the dataset; returns the number of (train, test) clips written.
pub(crate) fn generate(opts: &MotionOptions) -> Result<(usize, usize)> {
    opts.validate()?;
    let items = super::idx::open(&opts.items)
        .with_context(|| format!("--items {}", opts.items.display()))?;
    // Written beside the target and renamed at the end, so a failed run leaves no half set.
    let partial = opts.out.with_extension("partial");
    if partial.exists() {
        bail!(
            "{}: exists (a failed earlier run?); remove it first",
            partial.display()
        );
    }
    let channels = items.shape()[0];
    if channels != 1 {
        bail!("--items: expected grey images, got {channels} channels");
    }
    let k = items.num_classes();
    let (train_items, test_items) = (by_label(&*items.train, k), by_label(&*items.test, k));
    // Item classes with images on both sides (a small IDX set may lack some).
    let present: Vec<(usize, &str)> = items
        .classes
        .iter()
        .enumerate()
        .filter(|(i, _)| !train_items[*i].is_empty() && !test_items[*i].is_empty())
        .map(|(i, n)| (i, n.as_str()))
        .collect();
    if present.is_empty() {
        bail!(
            "--items {}: no class has images in both the training and the test files",
            opts.items.display()
        );
    }
    let mut rng = StdRng::seed_from_u64(opts.seed);
    let train = write_split(
        &partial.join("train"),
        &*items.train,
        &present,
        &train_items,
        opts.train_per_class,
        opts,
        &mut rng,
    )?;
    let test = write_split(
        &partial.join("test"),
        &*items.test,
        &present,
        &test_items,
        opts.test_per_class,
        opts,
        &mut rng,
    )?;
    std::fs::rename(&partial, &opts.out)
        .with_context(|| format!("{}: cannot move the finished set here", opts.out.display()))?;
    Ok((train, test))
}
