//! Batches from a split, prepared on a background thread (samples decoded and augmented in
//! parallel) so that the model, not the loader, sets the pace.

use std::panic::AssertUnwindSafe;
use std::sync::mpsc::{Receiver, sync_channel};

use anyhow::{Result, bail};
use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rayon::prelude::*;

use super::Split;
use super::augment::{AugmentConfig, Normalize, Placement, render};
use crate::seeds;

pub struct Batch {
    /// [B x frames, C, H, W], normalised: a clip's frames are consecutive.
    pub images: Vec<f32>,
    pub labels: Vec<usize>,
    /// Each image's position in its split (what a memory of samples is indexed by).
    pub samples: Vec<usize>,
    pub dims: [usize; 4],
}

impl Batch {
    pub(crate) fn len(&self) -> usize {
        self.labels.len()
    }
    /// The images as a tensor (moving the host buffer, no copy), with the host labels.
    pub(crate) fn into_images(self, device: &Device) -> (Tensor<4>, Vec<usize>) {
        let images = Tensor::from_data(TensorData::new(self.images, self.dims), device);
        (images, self.labels)
    }

    /// The images and the labels as tensors, for a training step.
    pub(crate) fn into_tensors(self, device: &Device) -> (Tensor<4>, Tensor<1, Int>) {
        let (images, labels) = self.into_images(device);
        let n = labels.len();
        let labels: Vec<i64> = labels.into_iter().map(|l| l as i64).collect();
        (
            images,
            Tensor::from_data(TensorData::new(labels, [n]), device),
        )
    }
}

#[derive(Clone)]
pub struct Loader {
    pub split: Split,
    pub batch_size: usize,
    pub normalize: Normalize,
    /// `Some` for training: shuffled order and random augmentation.
    pub augment: Option<AugmentConfig>,
    pub seed: u64,
    pub prefetch: usize,
}

impl Loader {
    /// Batches of `split` in order, without augmentation (validation, evaluation).
    pub(crate) fn evaluation(
        split: Split,
        batch_size: usize,
        normalize: Normalize,
        prefetch: usize,
    ) -> Self {
        Self {
            split,
            batch_size,
            normalize,
            augment: None,
            seed: 0,
            prefetch,
        }
    }

    pub fn num_batches(&self) -> usize {
        self.split.len().div_ceil(self.batch_size)
    }

    /// Sample order of `epoch`, as positions in the split: shuffled with (seed, epoch) when
    /// training, natural otherwise.
    pub fn order(&self, epoch: usize) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.split.len()).collect();
        if self.augment.is_some() {
            order.shuffle(&mut StdRng::seed_from_u64(seeds::next(
                self.seed ^ seeds::next(epoch as u64),
            )));
        }
        order
    }

    /// Builds batch `b` of `order` for `epoch`. A clip's frames share one augmentation, so
    /// that a crop or flip does not itself look like motion.
    pub fn batch(&self, order: &[usize], epoch: usize, b: usize) -> Result<Batch> {
        let shape = self.split.source.shape();
        let chw: usize = shape.iter().product();
        let frames = self.split.source.frames();
        let start = b * self.batch_size;
        let picks = &order[start..(start + self.batch_size).min(order.len())];
        let mut images = vec![0f32; picks.len() * frames * chw];
        images
            .par_chunks_mut(frames * chw)
            .zip(picks.par_iter().enumerate())
            .try_for_each_init(
                || vec![0u8; frames * chw],
                |buf, (dst, (k, &position))| -> Result<()> {
                    let i = self.split.indices[position];
                    let at = match &self.augment {
                        Some(cfg) => {
                            let s = seeds::next(
                                self.seed ^ seeds::next((epoch as u64) << 32 | (start + k) as u64),
                            );
                            let mut rng = StdRng::seed_from_u64(s);
                            self.split.source.read_train(i, &mut rng, buf)?;
                            Placement::sample(cfg, &mut rng)
                        }
                        None => {
                            self.split.source.read(i, buf)?;
                            Placement::IDENTITY
                        }
                    };
                    for (src, dst) in buf.chunks_exact(chw).zip(dst.chunks_exact_mut(chw)) {
                        render(src, shape, at, &self.normalize, dst);
                    }
                    Ok(())
                },
            )?;
        let labels = picks
            .iter()
            .map(|&p| self.split.source.label(self.split.indices[p]))
            .collect();
        Ok(Batch {
            images,
            labels,
            samples: picks.to_vec(),
            dims: [picks.len() * frames, shape[0], shape[1], shape[2]],
        })
    }

    /// The batches of `epoch`, prepared ahead on a background thread. Every way the thread
    /// can stop early (a read error, a panic) reaches the caller as an error.
    pub(crate) fn epoch(&self, epoch: usize) -> Result<Epoch> {
        self.epoch_from(epoch, 0)
    }

    /// The batches of `epoch` from batch `first` on (a resumed epoch), the same as those
    /// of the whole epoch.
    pub(crate) fn epoch_from(&self, epoch: usize, first: usize) -> Result<Epoch> {
        if self.split.is_empty() {
            bail!("cannot iterate over an empty split");
        }
        let (tx, rx) = sync_channel(self.prefetch);
        let this = self.clone();
        let expected = self.num_batches().saturating_sub(first);
        std::thread::spawn(move || {
            let order = this.order(epoch);
            for b in first..this.num_batches() {
                let batch =
                    std::panic::catch_unwind(AssertUnwindSafe(|| this.batch(&order, epoch, b)))
                        .unwrap_or_else(|panic| {
                            let msg = panic
                                .downcast_ref::<String>()
                                .map(String::as_str)
                                .or_else(|| panic.downcast_ref::<&str>().copied())
                                .unwrap_or("no message");
                            Err(anyhow::anyhow!(
                                "the data loader panicked on batch {b}: {msg}"
                            ))
                        });
                let failed = batch.is_err();
                // A closed channel means the consumer stopped early; nothing left to do.
                if tx.send(batch).is_err() || failed {
                    break;
                }
            }
        });
        Ok(Epoch {
            rx,
            expected,
            received: 0,
        })
    }
}

/// The batches of one epoch, in order; ends with an error if the loader stopped before the
/// last one.
pub(crate) struct Epoch {
    rx: Receiver<Result<Batch>>,
    expected: usize,
    received: usize,
}

impl Iterator for Epoch {
    type Item = Result<Batch>;

    fn next(&mut self) -> Option<Result<Batch>> {
        match self.rx.recv() {
            Ok(batch) => {
                // After an error the thread stops: that error is the epoch's end.
                self.received = if batch.is_ok() {
                    self.received + 1
                } else {
                    self.expected
                };
                Some(batch)
            }
            Err(_) if self.received < self.expected => {
                let got = std::mem::replace(&mut self.received, self.expected);
                Some(Err(anyhow::anyhow!(
                    "the data loader stopped after {got} of {} batches",
                    self.expected
                )))
            }
            Err(_) => None,
        }
    }
}

#[cfg(test)]
mod tests;
