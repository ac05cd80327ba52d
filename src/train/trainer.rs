//! The training loop shared by every method: batches -> task loss -> backward -> optimiser,
//! per-epoch validation, metrics, atomic checkpoints, resume, and a stop on non-finite loss.

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::{Context, Result};
use burn::module::Module;
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Int, Tensor};

use super::checkpoint::{Checkpoint, PartialEpoch};
use super::metrics::{EpochRecord, Tally, append_jsonl, truncate_jsonl};
use super::progress::Progress;
use super::run::{BEST, LAST, METRICS_FILE, Run};
use crate::data::loader::Loader;
use crate::precision::{LossScale, MixedPrecision, Precision};
use crate::profile;

/// What one training step produces.
pub struct StepLoss {
    /// The loss to minimise, shape [1].
    pub total: Tensor<1>,
    /// The logits accuracy is measured on.
    pub(crate) logits: Tensor<2>,
    /// Named terms of the loss (already weighted), for the progress line and metrics.
    pub parts: Vec<(String, Tensor<1>)>,
}

/// A training objective: plain classification, or a distillation method.
pub trait Task {
    type Model: Module;

    /// `samples`: each image's position in the training split.
    #[allow(clippy::too_many_arguments)]
    fn train_step(
        &mut self,
        model: &Self::Model,
        images: Tensor<4>,
        targets: Tensor<1, Int>,
        samples: &[usize],
        epoch: usize,
        step: usize,
    ) -> StepLoss;

    /// `model` with its trained backbone in `precision` (`Precision::view`); the parts that
    /// stay f32 (extractors, loss parts) as they are.
    fn in_precision(&self, model: &Self::Model, precision: Precision) -> Self::Model;

    /// Logits at inference (the model is already in `valid()` mode on the plain device).
    fn logits(&self, model: &Self::Model, images: Tensor<4>) -> Tensor<2>;

    /// Called after each epoch's validation; returns values to log (e.g. the temperature).
    fn end_epoch(&mut self, _epoch: usize, _val_acc: f64) -> BTreeMap<String, f64> {
        BTreeMap::new()
    }
}

/// Runs `loader` through the model in inference mode and tallies the predictions.
pub(crate) fn evaluate<T: Task>(
    task: &T,
    model: &T::Model,
    loader: &Loader,
    device: &Device,
    num_classes: usize,
) -> Result<Tally> {
    let model = model.valid();
    tally(loader, device, num_classes, |images| {
        task.logits(&model, images)
    })
}

/// Runs `loader` through `logits` and tallies the predictions.
pub(crate) fn tally(
    loader: &Loader,
    device: &Device,
    num_classes: usize,
    logits: impl Fn(Tensor<4>) -> Tensor<2>,
) -> Result<Tally> {
    let mut tally = Tally::new(num_classes);
    for batch in loader.epoch(0)? {
        let batch = batch?;
        let (images, labels) = batch.into_images(device);
        let logits = logits(images);
        let host = profile::read(logits)
            .try_to_vec::<f32>()
            .map_err(|e| anyhow::anyhow!("reading logits: {e:?}"))?;
        tally.add(&host, &labels);
    }
    Ok(tally)
}

/// Where training starts: fresh, or from a checkpoint's epoch and optimiser state.
pub(crate) struct Start {
    pub(crate) epoch: usize,
    pub(crate) best_val_acc: f64,
    /// Validation accuracy of the last finished epoch (None at epoch 0).
    pub(crate) val_acc: Option<f64>,
    /// Where an interrupted epoch stopped.
    pub(crate) partial: Option<PartialEpoch>,
    pub(crate) loss_scale: Option<LossScale>,
}

/// A fresh start, or the run's last checkpoint loaded into `model` and `optim`.
pub(crate) fn start_or_resume<M: Module>(
    run: &Run,
    model: M,
    optim: ModuleOptimizer,
) -> Result<(M, ModuleOptimizer, Start)> {
    if !run.resume {
        let start = Start {
            epoch: 0,
            best_val_acc: -1.0,
            val_acc: None,
            partial: None,
            loss_scale: None,
        };
        return Ok((model, optim, start));
    }
    let ckpt = Checkpoint::load(&run.dir.join(LAST))?;
    let state = ckpt.meta.run("--resume")?;
    let start = Start {
        epoch: state.epoch,
        best_val_acc: state.best_val_acc,
        val_acc: (state.epoch > 0).then_some(state.val_acc),
        partial: state.partial.clone(),
        loss_scale: state.loss_scale,
    };
    Ok((ckpt.apply(model)?, ckpt.optimizer(optim)?, start))
}

/// What one optimisation step reports, read from the device in one transfer.
pub struct Stepped {
    pub(crate) total: f32,
    /// Correct top-1 predictions in the batch.
    pub(crate) hits: f32,
    pub(crate) parts: Vec<(String, f32)>,
}

/// One optimisation step: the task's loss, backward, the optimiser at `lr`. Under f16 a
/// step whose gradients overflow is skipped and the loss scale halved (`precision`).
#[allow(clippy::too_many_arguments)]
pub fn optimise<T: Task>(
    task: &mut T,
    model: T::Model,
    optim: &mut ModuleOptimizer,
    amp: &mut MixedPrecision,
    images: Tensor<4>,
    targets: Tensor<1, Int>,
    samples: &[usize],
    lr: f64,
    epoch: usize,
    step: usize,
) -> Result<(T::Model, Stepped)> {
    let b = targets.dims()[0];
    let out = match amp.precision.is_f32() {
        true => task.train_step(&model, images, targets.clone(), samples, epoch, step),
        false => {
            let low = task.in_precision(&model, amp.precision);
            task.train_step(&low, images, targets.clone(), samples, epoch, step)
        }
    };
    let scaled = match amp.loss_scale {
        None => out.total.clone(),
        Some(s) => out.total.clone() * s.scale,
    };
    let mut grads = profile::part("backward", || {
        GradientsParams::from_grads(scaled.backward(), &model)
    });
    let flag = amp.unscale(&mut grads, &model);
    let checked = flag.is_some();
    let host = profile::part("read loss", || {
        let hits = out
            .logits
            .clone()
            .argmax(1)
            .reshape([b])
            .equal(targets)
            .int()
            .sum()
            .float();
        let mut scalars = vec![out.total.clone().detach().reshape([1]), hits.reshape([1])];
        scalars.extend(
            out.parts
                .iter()
                .map(|(_, t)| t.clone().detach().reshape([1])),
        );
        scalars.extend(flag.map(|f| f.float()));
        profile::read(Tensor::cat(scalars, 0)).try_to_vec::<f32>()
    })
    .map_err(|e| anyhow::anyhow!("reading the loss: {e:?}"))?;
    // The flag, when there is one, is the last value read.
    let finite = !checked || host[host.len() - 1] == 1.0;
    amp.update(finite);
    let model = match finite {
        true => profile::part("optimiser", || optim.step(lr, model, grads)),
        false => model,
    };
    let stepped = Stepped {
        total: host[0],
        hits: host[1],
        parts: out
            .parts
            .into_iter()
            .map(|(n, _)| n)
            .zip(host[2..].iter().copied())
            .collect(),
    };
    Ok((model, stepped))
}

/// Trains from `start` to the configured number of epochs, returning the final model.
pub(crate) fn fit<T: Task>(
    run: &Run,
    task: &mut T,
    mut model: T::Model,
    mut optim: ModuleOptimizer,
    start: Start,
) -> Result<T::Model> {
    let epochs = run.cfg.train.epochs;
    let metrics_path = run.dir.join(METRICS_FILE);
    truncate_jsonl(&metrics_path, start.epoch + 1)?;
    let mut state = Standing {
        best: start.best_val_acc,
        last_val: start.val_acc.unwrap_or(0.0),
    };
    super::interrupt::install()?;
    let mut resumed = start.partial;
    let mut amp = MixedPrecision::new(run.cfg.train.precision, start.loss_scale);
    for epoch in start.epoch..epochs {
        let t0 = Instant::now();
        let progress = Progress::epoch(epoch + 1, epochs, run.train.num_batches());
        let sofar = resumed.take().unwrap_or_default();
        let (next, tally) = train_epoch(
            run, task, model, &mut optim, &mut amp, epoch, sofar, state, &progress, t0,
        )?;
        model = next;
        let tv = Instant::now();
        let classes = run.dataset.num_classes();
        let val = evaluate(task, &model, &run.val, &run.device, classes)?;
        let val_seconds = tv.elapsed().as_secs_f64();
        let extra = task.end_epoch(epoch, val.top1());
        let seen = tally.seen as f64;
        let record = EpochRecord {
            epoch: epoch + 1,
            lr: tally.lr,
            train_loss: tally.loss_sum / seen,
            train_acc: tally.correct / seen,
            val_loss: val.loss(),
            val_acc: val.top1(),
            val_top5: val.top5(),
            img_per_s: seen / tally.seconds,
            val_seconds,
            seconds: tally.seconds + val_seconds,
            losses: tally
                .parts
                .into_iter()
                .map(|(k, v)| (k, v / seen))
                .collect(),
            extra,
        };
        let improved = record.val_acc > state.best;
        state = Standing {
            best: state.best.max(record.val_acc),
            last_val: record.val_acc,
        };
        let ckpt = Checkpoint::new(
            run.meta(epoch + 1, record.val_acc, state.best, None, amp.loss_scale),
            &model,
            Some(&optim),
        )?;
        ckpt.save(&run.dir.join(LAST))?;
        if improved {
            Checkpoint {
                optim: Vec::new(),
                ..ckpt
            }
            .save(&run.dir.join(BEST))?;
        }
        append_jsonl(&metrics_path, &record)?;
        progress.finish(epoch_line(&record, epochs, improved));
    }
    Ok(model)
}

/// The best and the last validation accuracy so far, as checkpoints record them.
#[derive(Clone, Copy)]
struct Standing {
    best: f64,
    last_val: f64,
}

/// The steps of `epoch` from where `sofar` stopped (a fresh tally at its start): the model
/// after them and the epoch's tally, its `seconds` the training time. A signal saves the step
/// reached and ends the run; so does a non-finite loss, without saving.
#[allow(clippy::too_many_arguments)]
fn train_epoch<T: Task>(
    run: &Run,
    task: &mut T,
    mut model: T::Model,
    optim: &mut ModuleOptimizer,
    amp: &mut MixedPrecision,
    epoch: usize,
    sofar: PartialEpoch,
    state: Standing,
    progress: &Progress,
    t0: Instant,
) -> Result<(T::Model, PartialEpoch)> {
    let cfg = &run.cfg;
    let (epochs, steps) = (cfg.train.epochs, run.train.num_batches());
    let (first, earlier) = (sofar.steps, sofar.seconds);
    let mut tally = sofar;
    for (i, batch) in run.train.epoch_from(epoch, first)?.enumerate() {
        let step = first + i;
        let batch = batch.context("loading a training batch")?;
        // The model's own randomness (dropout) follows (seed, epoch, step), so an epoch
        // resumed mid-way draws what the uninterrupted one drew.
        run.train_device
            .seed(crate::seeds::step_model(cfg.train.seed, epoch, step));
        let lr = cfg.schedule.lr(
            cfg.optim.lr,
            epoch as f64 + step as f64 / steps as f64,
            epochs,
        );
        let b = batch.len();
        let samples = batch.samples.clone();
        let (images, targets) = batch.into_tensors(&run.train_device);
        let (next, host) = optimise(
            task, model, optim, amp, images, targets, &samples, lr, epoch, step,
        )?;
        model = next;
        // The step has already been applied; the run stops here without saving it, so no
        // non-finite weights reach a checkpoint.
        if !host.total.is_finite() {
            return Err(non_finite(run, host.total, epoch, step));
        }
        tally.steps = step + 1;
        tally.lr = lr;
        tally.loss_sum += host.total as f64 * b as f64;
        tally.correct += host.hits as f64;
        tally.seen += b;
        for (name, v) in host.parts {
            *tally.parts.entry(name).or_default() += v as f64 * b as f64;
        }
        tally.seconds = earlier + t0.elapsed().as_secs_f64();
        let signal = super::interrupt::after_step();
        let every = cfg.train.checkpoint_every;
        let periodic = every > 0 && (step + 1).is_multiple_of(every) && step + 1 < steps;
        if signal.is_some() || periodic {
            let meta = run.meta(
                epoch,
                state.last_val,
                state.best,
                Some(tally.clone()),
                amp.loss_scale,
            );
            Checkpoint::new(meta, &model, Some(optim))?.save(&run.dir.join(LAST))?;
        }
        if let Some(signal) = signal {
            progress.finish(format!(
                "epoch {}/{epochs} interrupted after step {}/{steps}",
                epoch + 1,
                step + 1
            ));
            return Err(super::interrupt::Interrupted {
                signal,
                checkpoint: run.dir.join(LAST),
                epoch,
                step: step + 1,
            }
            .into());
        }
        progress.step(|| {
            format!(
                "loss {:.4} acc {:.2}% {:.0} img/s",
                tally.loss_sum / tally.seen as f64,
                100.0 * tally.correct / tally.seen as f64,
                tally.seen as f64 / tally.seconds
            )
        });
    }
    tally.seconds = earlier + t0.elapsed().as_secs_f64();
    Ok((model, tally))
}

fn non_finite(run: &Run, loss: f32, epoch: usize, step: usize) -> anyhow::Error {
    let last = run.dir.join(LAST);
    let kept = if last.exists() {
        format!("the last good checkpoint is {}", last.display())
    } else {
        "no checkpoint was written before it".to_string()
    };
    let steps = run.train.num_batches();
    anyhow::anyhow!(
        "loss became {loss} at epoch {}, step {} (global step {}); stopped, {kept}",
        epoch + 1,
        step + 1,
        epoch * steps + step + 1,
    )
}

fn epoch_line(r: &EpochRecord, epochs: usize, improved: bool) -> String {
    let mut line = format!(
        "epoch {}/{} lr {:.4} train_loss {:.4} train_acc {:.2}% val_loss {:.4} val_acc {:.2}%{} {:.0} img/s {:.1}s",
        r.epoch,
        epochs,
        r.lr,
        r.train_loss,
        100.0 * r.train_acc,
        r.val_loss,
        100.0 * r.val_acc,
        if improved { " (best)" } else { "" },
        r.img_per_s,
        r.seconds
    );
    for (k, v) in r.losses.iter().chain(&r.extra) {
        line.push_str(&format!(" {k} {v:.4}"));
    }
    line
}

#[cfg(test)]
mod tests;
