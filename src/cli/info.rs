//! `lstmkd info`: a zoo model or a checkpoint described.

use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::models::{ModelConfig, ZOO, summarize};

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// A zoo model name (see --list); or give --checkpoint or --list instead.
    #[arg(long, required_unless_present_any = ["list", "checkpoint"], conflicts_with = "checkpoint")]
    model: Option<String>,
    /// Describe a checkpoint instead: its header (model, input, classes, normalisation,
    /// origin, run) and its network.
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// Input size as CxHxW.
    #[arg(long, default_value = "3x32x32")]
    input: String,
    /// Number of classes of the model's classifier.
    #[arg(long, default_value_t = 100)]
    classes: usize,
    /// Width multiplier (MobileNetV2 and the CIFAR ResNets).
    #[arg(long, default_value_t = 1.0)]
    width: f64,
    /// List the zoo.
    #[arg(long)]
    list: bool,
}

pub(crate) fn run(args: Args) -> Result<()> {
    let Args {
        model,
        checkpoint,
        input,
        classes,
        width,
        list,
    } = args;
    if list {
        for (name, what) in ZOO {
            println!("{name:<20} {what}");
        }
        return Ok(());
    }
    let (cfg, [c, h, w], classes) = match checkpoint {
        Some(path) => checkpoint_info(&path)?,
        None => {
            let cfg = ModelConfig {
                width,
                ..ModelConfig::new(&model.context("give --model NAME or --checkpoint FILE")?)
            };
            (cfg, crate::models::parse_input(&input)?, classes)
        }
    };
    let device = burn::tensor::Device::flex();
    let net = cfg.init(c, classes, &device)?;
    let s = summarize(&net, [1, c, h, w], &device);
    let (sample, frames) = match cfg.frames {
        1 => ("image", String::new()),
        f => ("clip", format!(" per frame + clip head, {f} frames")),
    };
    println!("model       {} (width {width}){frames}", cfg.name);
    println!("input       {c}x{h}x{w}, {classes} classes");
    println!("parameters  {}", s.params);
    println!(
        "forward     {:.2} MMAC = {:.2} MFLOP per {sample}",
        s.macs as f64 / 1e6,
        2.0 * s.macs as f64 / 1e6
    );
    println!("logits      {:?}", s.logits);
    for (i, t) in s.taps.iter().enumerate() {
        println!("tap {i}       [C={}, H={}, W={}]", t[1], t[2], t[3]);
    }
    Ok(())
}

/// The header of a checkpoint, then its network as `info --model` describes one.
fn checkpoint_info(path: &std::path::Path) -> Result<(ModelConfig, [usize; 3], usize)> {
    let ckpt = crate::train::checkpoint::Checkpoint::load(path)?;
    let m = &ckpt.meta;
    println!("checkpoint  {}", path.display());
    println!("origin      {}", m.origin);
    let names = if m.classes.len() > 12 {
        format!(
            "{}, ... ({} in all)",
            m.classes[..12].join(", "),
            m.classes.len()
        )
    } else {
        m.classes.join(", ")
    };
    println!("classes     {names}");
    println!("normalise   mean {:?}, std {:?}", m.mean, m.std);
    if m.resize > 0 {
        println!(
            "preprocess  shorter side to {}, centre crop {}x{}",
            m.resize, m.input[1], m.input[2]
        );
    }
    if let Some(run) = &m.run {
        println!(
            "run         {} epochs, val top-1 {:.2}% (best {:.2}%), data {}",
            run.epoch,
            100.0 * run.val_acc,
            100.0 * run.best_val_acc,
            run.config.data.root.display()
        );
    }
    if let Some(f) = &m.fused {
        println!(
            "fused       backbone + {} extractors (input channels {:?}, window {}, hidden {})",
            f.extractors.len(),
            f.extractors,
            f.extractor.window,
            f.extractor.hidden
        );
    }
    Ok((m.model.clone(), m.input, m.classes.len()))
}
