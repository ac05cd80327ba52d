//! Clips: `root/train/<class>/<clip>/<frame>.{jpg,jpeg,png}` and `root/val/<class>/...` (or
//! `test/`), the layout video datasets take after frame extraction. A clip's frames are its
//! image files sorted by name; clips may differ in length. Each read samples a fixed number of
//! frames in order: for training one random frame from each of that many equal segments of the
//! clip (TSN's sampling), for evaluation each segment's middle frame. Frames are decoded on
//! demand, as grey when the first frame of the set is grey and as RGB otherwise.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use rand::Rng;
use rand::rngs::StdRng;

use super::image_folder::{class_names, is_image, sorted_entries, split_dirs};
use super::{Dataset, Source};

pub(crate) struct Clips {
    /// Each clip's frame files in order, with its label.
    clips: Vec<(Vec<PathBuf>, usize)>,
    frames: usize,
    shape: [usize; 3],
}

/// Frame `k` of `frames` drawn from a clip of `len` frames: segment k is
/// [floor(k len / frames), floor((k + 1) len / frames)), at least one frame wide; training
/// draws from it, evaluation takes its middle.
pub(crate) fn frame_index(len: usize, frames: usize, k: usize, rng: Option<&mut StdRng>) -> usize {
    let start = k * len / frames;
    let end = ((k + 1) * len / frames).max(start + 1);
    match rng {
        Some(rng) => rng.random_range(start..end),
        None => (start + end - 1) / 2,
    }
}

impl Clips {
    fn scan(dir: &Path, classes: &[String], frames: usize, grey: Option<bool>) -> Result<Self> {
        let found = class_names(dir)?;
        if let Some(extra) = found.iter().find(|c| !classes.contains(c)) {
            bail!(
                "{}: class folder '{extra}' is not among the training classes",
                dir.display()
            );
        }
        let mut clips = Vec::new();
        for (label, class) in classes.iter().enumerate() {
            let class_dir = dir.join(class);
            if !class_dir.is_dir() {
                continue;
            }
            let before = clips.len();
            for clip in sorted_entries(&class_dir)?
                .into_iter()
                .filter(|p| p.is_dir())
            {
                let files: Vec<PathBuf> = sorted_entries(&clip)?
                    .into_iter()
                    .filter(|p| p.is_file() && is_image(p))
                    .collect();
                if files.is_empty() {
                    bail!(
                        "{}: clip has no frames (.jpg, .jpeg or .png files)",
                        clip.display()
                    );
                }
                clips.push((files, label));
            }
            if clips.len() == before {
                bail!(
                    "{}: class folder has no clips (sub-folders of frames)",
                    class_dir.display()
                );
            }
        }
        // Sizes come from the files' headers, so a set is checked without decoding it.
        let mut shape = None;
        for (files, _) in &clips {
            for f in files {
                let (w, h) = image::image_dimensions(f).with_context(|| {
                    format!("{}: cannot read frame {}", clip_of(f), f.display())
                })?;
                let hw = [h as usize, w as usize];
                match shape {
                    None => shape = Some((hw, f.clone())),
                    Some((first, ref at)) if first != hw => bail!(
                        "{}: frame {} is {w}x{h} but {} is {}x{}: every frame must have one size",
                        clip_of(f),
                        f.display(),
                        at.display(),
                        first[1],
                        first[0]
                    ),
                    Some(_) => {}
                }
            }
        }
        let ([h, w], first) = shape.context("no clips")?;
        let grey = match grey {
            Some(g) => g,
            None => {
                let img = image::open(&first).with_context(|| {
                    format!(
                        "{}: cannot decode frame {}",
                        clip_of(&first),
                        first.display()
                    )
                })?;
                matches!(
                    img.color(),
                    image::ColorType::L8 | image::ColorType::L16 | image::ColorType::La8
                )
            }
        };
        Ok(Self {
            clips,
            frames,
            shape: [if grey { 1 } else { 3 }, h, w],
        })
    }

    fn read_frames(&self, i: usize, mut rng: Option<&mut StdRng>, out: &mut [u8]) -> Result<()> {
        let (files, _) = &self.clips[i];
        let plane: usize = self.shape.iter().product();
        for (k, dst) in out.chunks_exact_mut(plane).enumerate() {
            let f = &files[frame_index(files.len(), self.frames, k, rng.as_deref_mut())];
            let img = image::open(f)
                .with_context(|| format!("{}: cannot decode frame {}", clip_of(f), f.display()))?;
            let (w, h) = (img.width() as usize, img.height() as usize);
            if [h, w] != [self.shape[1], self.shape[2]] {
                bail!(
                    "{}: frame {} is {w}x{h}, not the set's {}x{}",
                    clip_of(f),
                    f.display(),
                    self.shape[2],
                    self.shape[1]
                );
            }
            if self.shape[0] == 1 {
                dst.copy_from_slice(img.to_luma8().as_raw());
            } else {
                super::image_folder::write_chw(&img.to_rgb8(), dst);
            }
        }
        Ok(())
    }
}

/// "clip <folder>" for a frame's path, to name the clip in errors.
fn clip_of(frame: &Path) -> String {
    format!("clip {}", frame.parent().unwrap_or(Path::new("")).display())
}

impl Source for Clips {
    fn len(&self) -> usize {
        self.clips.len()
    }
    fn shape(&self) -> [usize; 3] {
        self.shape
    }
    fn frames(&self) -> usize {
        self.frames
    }
    fn label(&self, i: usize) -> usize {
        self.clips[i].1
    }
    fn read(&self, i: usize, out: &mut [u8]) -> Result<()> {
        self.read_frames(i, None, out)
    }
    fn read_train(&self, i: usize, rng: &mut StdRng, out: &mut [u8]) -> Result<()> {
        self.read_frames(i, Some(rng), out)
    }
}

pub fn open(root: &Path, frames: usize) -> Result<Dataset> {
    let (train_dir, test_dir) = split_dirs(
        root,
        "clips are train/<class>/<clip>/<frame>.png and val/<class>/...",
    )?;
    let classes = class_names(&train_dir)?;
    let train = Clips::scan(&train_dir, &classes, frames, None)?;
    let test = Clips::scan(&test_dir, &classes, frames, Some(train.shape[0] == 1))?;
    Dataset::of_splits(
        Arc::new(train),
        Arc::new(test),
        classes,
        &test_dir,
        "frames",
        "",
    )
}
