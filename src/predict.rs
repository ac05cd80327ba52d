//! `lstmkd predict`: classifies image files with a checkpoint, pre-processed as its header
//! says (shorter side resized and centre-cropped, or resized straight to the input size),
//! and prints the top classes with their probabilities. A clip checkpoint classifies clips:
//! folders of frames, sampled as evaluation samples them.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::tensor::activation::softmax;
use burn::tensor::{Device, Tensor, TensorData};
use image::imageops::FilterType;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::data::augment::{Normalize, Placement, render};
use crate::data::image_folder::{center_crop, is_image, resize_shorter, sorted_entries, write_chw};
use crate::train::checkpoint::{Checkpoint, Meta};

/// What `predict` classifies and how. `run` names the flags of `lstmkd predict`, where these
/// come from.
#[derive(Debug, Clone)]
pub(crate) struct PredictOptions {
    pub(crate) checkpoint: PathBuf,
    /// Images and folders of images; for a clip checkpoint, clip folders and folders of them.
    pub(crate) inputs: Vec<PathBuf>,
    /// Classes kept per prediction.
    pub(crate) top: usize,
    /// Images (or clips) per forward pass.
    pub(crate) batch_size: usize,
    pub(crate) device: String,
}

#[derive(Debug, Serialize)]
pub(crate) struct Ranked {
    pub(crate) class: String,
    pub(crate) index: usize,
    pub(crate) prob: f32,
}

#[derive(Debug, Serialize)]
pub(crate) struct Prediction {
    pub(crate) file: PathBuf,
    pub(crate) top: Vec<Ranked>,
    pub(crate) logits: Vec<f32>,
}

/// The image files named by `inputs`, folders expanded recursively, in sorted order.
fn collect(inputs: &[PathBuf]) -> Result<Vec<PathBuf>> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
        for p in sorted_entries(dir)? {
            if p.is_dir() {
                walk(&p, out)?;
            } else if is_image(&p) {
                out.push(p);
            }
        }
        Ok(())
    }
    let mut files = Vec::new();
    for p in inputs {
        if p.is_dir() {
            let before = files.len();
            walk(p, &mut files)?;
            if files.len() == before {
                bail!("{}: no .png, .jpg or .jpeg files", p.display());
            }
        } else if p.is_file() {
            files.push(p.clone());
        } else {
            bail!("{}: no such file or folder", p.display());
        }
    }
    Ok(files)
}

/// The clip folders named by `inputs`: a folder with image files is a clip, any other folder
/// is searched for clips.
fn collect_clips(inputs: &[PathBuf]) -> Result<Vec<PathBuf>> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
        let entries = sorted_entries(dir)?;
        if entries.iter().any(|p| p.is_file() && is_image(p)) {
            out.push(dir.to_path_buf());
            return Ok(());
        }
        for p in entries.iter().filter(|p| p.is_dir()) {
            walk(p, out)?;
        }
        Ok(())
    }
    let mut clips = Vec::new();
    for p in inputs {
        if !p.is_dir() {
            bail!(
                "{}: a clip checkpoint classifies clips, folders of frames",
                p.display()
            );
        }
        let before = clips.len();
        walk(p, &mut clips)?;
        if clips.len() == before {
            bail!(
                "{}: no clip (a folder of .png, .jpg or .jpeg frames)",
                p.display()
            );
        }
    }
    Ok(clips)
}

/// A clip's `frames` frames, sampled as evaluation does, one after the other.
pub(crate) fn load_clip(dir: &Path, meta: &Meta, frames: usize) -> Result<Vec<f32>> {
    let files: Vec<PathBuf> = sorted_entries(dir)?
        .into_iter()
        .filter(|p| p.is_file() && is_image(p))
        .collect();
    (0..frames)
        .map(|k| {
            let f = &files[crate::data::clips::frame_index(files.len(), frames, k, None)];
            load_image(f, meta).with_context(|| format!("clip {}", dir.display()))
        })
        .collect::<Result<Vec<_>>>()
        .map(|v| v.concat())
}

/// One image as the network reads it: CHW pixels in [0, 1], normalised.
pub fn load_image(path: &Path, meta: &Meta) -> Result<Vec<f32>> {
    let [c, h, w] = meta.input;
    let img =
        image::open(path).with_context(|| format!("{}: cannot decode image", path.display()))?;
    let fit = |img: image::DynamicImage| -> Result<image::DynamicImage> {
        Ok(if meta.resize > 0 {
            match img {
                image::DynamicImage::ImageLuma8(g) => {
                    center_crop(resize_shorter(g, meta.resize), [h, w])?.into()
                }
                other => center_crop(resize_shorter(other.to_rgb8(), meta.resize), [h, w])?.into(),
            }
        } else if (img.width() as usize, img.height() as usize) == (w, h) {
            img
        } else {
            img.resize_exact(w as u32, h as u32, FilterType::Triangle)
        })
    };
    let img = fit(img).with_context(|| format!("{}", path.display()))?;
    let bytes = match c {
        1 => grey(img),
        3 => {
            let mut chw = vec![0u8; 3 * h * w];
            write_chw(&img.to_rgb8(), &mut chw);
            chw
        }
        other => bail!("predict reads 1- or 3-channel images, the checkpoint takes {other}"),
    };
    // The same normalisation the loader applies to training and evaluation batches.
    let mut out = vec![0f32; bytes.len()];
    let norm = Normalize::new(&meta.mean, &meta.std);
    render(&bytes, meta.input, Placement::IDENTITY, &norm, &mut out);
    Ok(out)
}

/// Grey levels as PIL's and torchvision's `Grayscale` compute them (ITU-R 601-2 luma);
/// images that are grey already are read as they are.
fn grey(img: image::DynamicImage) -> Vec<u8> {
    if let image::DynamicImage::ImageLuma8(g) = img {
        return g.into_raw();
    }
    img.to_rgb8()
        .pixels()
        .map(|p| {
            let [r, g, b] = p.0.map(u32::from);
            ((r * 299 + g * 587 + b * 114 + 500) / 1000) as u8
        })
        .collect()
}

pub(crate) fn run(opts: &PredictOptions) -> Result<Vec<Prediction>> {
    if opts.batch_size == 0 {
        bail!("--batch-size: must be at least 1");
    }
    if opts.top == 0 {
        bail!("--top: must be at least 1");
    }
    let ckpt = Checkpoint::load(&opts.checkpoint)?;
    let device: Device = crate::device::parse(&opts.device)?;
    let net = crate::deploy::Deployed::load(&ckpt, &device)?.fold_bn();
    let frames = net.frames();
    let files = if frames > 1 {
        collect_clips(&opts.inputs)?
    } else {
        collect(&opts.inputs)?
    };
    let meta = &ckpt.meta;
    let [c, h, w] = meta.input;
    let bar = (files.len() > opts.batch_size && std::io::stderr().is_terminal()).then(|| {
        let bar = ProgressBar::new(files.len() as u64);
        bar.set_style(
            ProgressStyle::with_template("predict [{bar:30}] {pos}/{len} eta {eta}")
                .expect("static template")
                .progress_chars("=> "),
        );
        bar
    });
    let mut out = Vec::with_capacity(files.len());
    for chunk in files.chunks(opts.batch_size) {
        let pixels: Vec<Vec<f32>> = {
            use rayon::prelude::*;
            chunk
                .par_iter()
                .map(|f| match frames {
                    1 => load_image(f, meta),
                    _ => load_clip(f, meta, frames),
                })
                .collect::<Result<_>>()?
        };
        let n = chunk.len();
        let x = Tensor::<4>::from_data(
            TensorData::new(pixels.concat(), [n * frames, c, h, w]),
            &device,
        );
        let logits = net.forward(x);
        let probs = softmax(logits.clone(), 1);
        let k = meta.classes.len();
        let read = |t: Tensor<2>| {
            t.into_data()
                .try_to_vec::<f32>()
                .map_err(|e| anyhow::anyhow!("reading the logits: {e:?}"))
        };
        let (logits, probs) = (read(logits)?, read(probs)?);
        for (i, file) in chunk.iter().enumerate() {
            let p = &probs[i * k..(i + 1) * k];
            let mut order: Vec<usize> = (0..k).collect();
            order.sort_by(|&a, &b| p[b].total_cmp(&p[a]));
            out.push(Prediction {
                file: file.clone(),
                top: order
                    .into_iter()
                    .take(opts.top)
                    .map(|j| Ranked {
                        class: meta.classes[j].clone(),
                        index: j,
                        prob: p[j],
                    })
                    .collect(),
                logits: logits[i * k..(i + 1) * k].to_vec(),
            });
        }
        if let Some(bar) = &bar {
            bar.inc(n as u64);
        }
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    Ok(out)
}

pub(crate) fn print(predictions: &[Prediction], json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(predictions)?);
        return Ok(());
    }
    for p in predictions {
        let top: Vec<String> = p
            .top
            .iter()
            .map(|r| format!("{} {:.1}%", r.class, 100.0 * r.prob))
            .collect();
        println!("{}  {}", p.file.display(), top.join(", "));
    }
    Ok(())
}
