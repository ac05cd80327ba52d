//! ImageFolder: `root/train/<class>/*.{jpg,jpeg,png}` and `root/val/<class>/...` (or `test/`),
//! the ImageNet layout. Images are decoded on demand by the loader's workers, resized so the
//! shorter side is `resize`, centre-cropped to `crop` x `crop`, and converted to RGB.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use image::imageops::FilterType;
use rand::Rng;
use rand::rngs::StdRng;

use super::{Dataset, Source};

pub(crate) struct ImageFolder {
    files: Vec<(PathBuf, usize)>,
    resize: usize,
    crop: usize,
    /// Training views are torchvision's RandomResizedCrop to `crop` (evaluation keeps
    /// resize + centre crop).
    random_resized_crop: bool,
    shape: [usize; 3],
}

pub(crate) fn is_image(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "jpg" | "jpeg" | "png"))
}

pub(crate) fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("{}: cannot list folder", dir.display()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()
        .with_context(|| format!("{}: cannot list folder", dir.display()))?;
    v.sort();
    Ok(v)
}

/// Class names: the sorted sub-folders of `dir`.
pub(crate) fn class_names(dir: &Path) -> Result<Vec<String>> {
    let names: Vec<String> = sorted_entries(dir)?
        .into_iter()
        .filter(|p| p.is_dir())
        .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    if names.is_empty() {
        bail!("{}: no class sub-folders", dir.display());
    }
    Ok(names)
}

impl ImageFolder {
    fn scan(
        dir: &Path,
        classes: &[String],
        resize: usize,
        crop: usize,
        random_resized_crop: bool,
    ) -> Result<Self> {
        let found = class_names(dir)?;
        if let Some(extra) = found.iter().find(|c| !classes.contains(c)) {
            bail!(
                "{}: class folder '{}' is not among the training classes",
                dir.display(),
                extra
            );
        }
        let mut files = Vec::new();
        for (label, class) in classes.iter().enumerate() {
            let class_dir = dir.join(class);
            if !class_dir.is_dir() {
                continue;
            }
            let before = files.len();
            for p in sorted_entries(&class_dir)? {
                if p.is_file() && is_image(&p) {
                    files.push((p, label));
                }
            }
            if files.len() == before {
                bail!(
                    "{}: empty class folder (no .jpg, .jpeg or .png files)",
                    class_dir.display()
                );
            }
        }
        Self::of_files(files, resize, crop, random_resized_crop)
    }

    /// Images listed with their labels; `files` must not be empty.
    pub(crate) fn of_files(
        files: Vec<(PathBuf, usize)>,
        resize: usize,
        crop: usize,
        random_resized_crop: bool,
    ) -> Result<Self> {
        let mut set = Self {
            files,
            resize,
            crop,
            random_resized_crop,
            shape: [3, crop, crop],
        };
        if crop == 0 {
            // Without a crop, every image must already have the first one's size.
            let (w, h) = set.decode(0)?.dimensions();
            set.shape = [3, h as usize, w as usize];
        }
        Ok(set)
    }

    fn open_rgb(&self, i: usize) -> Result<image::RgbImage> {
        let path = &self.files[i].0;
        let img = image::open(path)
            .with_context(|| format!("{}: cannot decode image", path.display()))?;
        Ok(img.to_rgb8())
    }

    fn decode(&self, i: usize) -> Result<image::RgbImage> {
        let path = &self.files[i].0;
        let img = resize_shorter(self.open_rgb(i)?, self.resize);
        if self.crop == 0 {
            return Ok(img);
        }
        center_crop(img, [self.crop, self.crop])
            .with_context(|| format!("{}: raise data.resize", path.display()))
    }
}

/// Resizes so that the shorter side is `size` pixels (0: unchanged), keeping the aspect as
/// torchvision's `Resize(size)` does (the longer side truncated, not rounded).
pub(crate) fn resize_shorter<P>(
    img: image::ImageBuffer<P, Vec<P::Subpixel>>,
    size: usize,
) -> image::ImageBuffer<P, Vec<P::Subpixel>>
where
    P: image::Pixel + 'static,
{
    let (w, h) = img.dimensions();
    if size == 0 || w.min(h) as usize == size {
        return img;
    }
    let long = |l: u32| ((size as f64 * l as f64 / w.min(h) as f64) as u32).max(1);
    let (nw, nh) = if w <= h {
        (size as u32, long(h))
    } else {
        (long(w), size as u32)
    };
    image::imageops::resize(&img, nw, nh, FilterType::Triangle)
}

/// torchvision's centre-crop offset: round((full - crop) / 2) with Python's half-to-even.
fn crop_offset(full: u32, crop: u32) -> u32 {
    let d = full - crop;
    let half = d / 2;
    if d % 2 == 1 && half % 2 == 1 {
        half + 1
    } else {
        half
    }
}

/// The central `[h, w]` of an image at least that large (offsets as torchvision's).
pub(crate) fn center_crop<P>(
    img: image::ImageBuffer<P, Vec<P::Subpixel>>,
    [h, w]: [usize; 2],
) -> Result<image::ImageBuffer<P, Vec<P::Subpixel>>>
where
    P: image::Pixel + 'static,
{
    let (iw, ih) = img.dimensions();
    let (cw, ch) = (w as u32, h as u32);
    if iw < cw || ih < ch {
        bail!("image is {iw}x{ih}, smaller than the {cw}x{ch} crop");
    }
    if (iw, ih) == (cw, ch) {
        return Ok(img);
    }
    let (x, y) = (crop_offset(iw, cw), crop_offset(ih, ch));
    Ok(image::imageops::crop_imm(&img, x, y, cw, ch).to_image())
}

/// torchvision's RandomResizedCrop box (scale 0.08-1 of the area, aspect ratio 3/4-4/3 drawn
/// log-uniformly, 10 tries, then the centre crop clamped to those ratios): (x, y, w, h).
pub fn random_resized_box(width: u32, height: u32, rng: &mut StdRng) -> (u32, u32, u32, u32) {
    let (w0, h0) = (width as f64, height as f64);
    let area = w0 * h0;
    let (lo, hi) = ((3.0f64 / 4.0).ln(), (4.0f64 / 3.0).ln());
    for _ in 0..10 {
        let target = area * rng.random_range(0.08..=1.0);
        let ratio = rng.random_range(lo..=hi).exp();
        let w = (target * ratio).sqrt().round();
        let h = (target / ratio).sqrt().round();
        if w >= 1.0 && h >= 1.0 && w <= w0 && h <= h0 {
            let (w, h) = (w as u32, h as u32);
            let x = rng.random_range(0..=width - w);
            let y = rng.random_range(0..=height - h);
            return (x, y, w, h);
        }
    }
    let ratio = w0 / h0;
    let (w, h) = if ratio < 3.0 / 4.0 {
        (w0, (w0 / (3.0 / 4.0)).round())
    } else if ratio > 4.0 / 3.0 {
        ((h0 * 4.0 / 3.0).round(), h0)
    } else {
        (w0, h0)
    };
    let (w, h) = (w as u32, h as u32);
    ((width - w) / 2, (height - h) / 2, w, h)
}

/// CHW bytes of an RGB image.
pub(crate) fn write_chw(img: &image::RgbImage, out: &mut [u8]) {
    let plane = (img.width() * img.height()) as usize;
    for (p, px) in img.pixels().enumerate() {
        for c in 0..3 {
            out[c * plane + p] = px.0[c];
        }
    }
}

impl Source for ImageFolder {
    fn len(&self) -> usize {
        self.files.len()
    }
    fn shape(&self) -> [usize; 3] {
        self.shape
    }
    fn label(&self, i: usize) -> usize {
        self.files[i].1
    }
    fn read(&self, i: usize, out: &mut [u8]) -> Result<()> {
        let img = self.decode(i)?;
        let (w, h) = img.dimensions();
        if [h as usize, w as usize] != [self.shape[1], self.shape[2]] {
            bail!(
                "{}: image is {w}x{h} but the dataset's images are {}x{} (set data.crop to make them equal)",
                self.files[i].0.display(),
                self.shape[2],
                self.shape[1]
            );
        }
        write_chw(&img, out);
        Ok(())
    }

    fn read_train(&self, i: usize, rng: &mut StdRng, out: &mut [u8]) -> Result<()> {
        if !self.random_resized_crop {
            return self.read(i, out);
        }
        let img = self.open_rgb(i)?;
        let (x, y, w, h) = random_resized_box(img.width(), img.height(), rng);
        let view = image::imageops::crop_imm(&img, x, y, w, h).to_image();
        let c = self.crop as u32;
        let img = image::imageops::resize(&view, c, c, FilterType::Triangle);
        write_chw(&img, out);
        Ok(())
    }
}

/// `root/train` and `root/val` (or `root/test`); `layout` describes the expected layout in
/// the error when one is missing.
pub(crate) fn split_dirs(root: &Path, layout: &str) -> Result<(PathBuf, PathBuf)> {
    let train_dir = root.join("train");
    if !train_dir.is_dir() {
        bail!("{}: missing 'train' folder ({layout})", root.display());
    }
    let test_dir = ["val", "test"]
        .iter()
        .map(|d| root.join(d))
        .find(|d| d.is_dir())
        .with_context(|| format!("{}: missing 'val' (or 'test') folder", root.display()))?;
    Ok((train_dir, test_dir))
}

pub fn open(root: &Path, resize: usize, crop: usize, random_resized_crop: bool) -> Result<Dataset> {
    let (train_dir, test_dir) =
        split_dirs(root, "ImageFolder expects train/<class>/ and val/<class>/")?;
    let classes = class_names(&train_dir)?;
    let train = ImageFolder::scan(&train_dir, &classes, resize, crop, random_resized_crop)?;
    let test = ImageFolder::scan(&test_dir, &classes, resize, crop, false)?;
    Dataset::of_splits(
        Arc::new(train),
        Arc::new(test),
        classes,
        &test_dir,
        "images",
        " (set data.crop)",
    )
}
