//! Plain supervised training of a zoo model with cross-entropy (teachers, baseline students).

use anyhow::Result;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::tensor::{Int, Tensor};

use super::checkpoint::Checkpoint;
use super::run::{LAST, Run};
use super::trainer::{Start, StepLoss, Task, fit};
use crate::models::Network;

pub struct Classify;

impl Task for Classify {
    type Model = Network;

    fn train_step(
        &mut self,
        model: &Network,
        images: Tensor<4>,
        targets: Tensor<1, Int>,
        _epoch: usize,
    ) -> StepLoss {
        let logits = model.forward(images).logits;
        let total = CrossEntropyLossConfig::new()
            .init(&logits.device())
            .forward(logits.clone(), targets);
        StepLoss {
            total,
            logits,
            parts: Vec::new(),
        }
    }

    fn logits(&self, model: &Network, images: Tensor<4>) -> Tensor<2> {
        model.forward(images).logits
    }
}

/// Trains the run's model from scratch, or resumes it from the run's last checkpoint.
pub fn train(run: &Run, resume: bool) -> Result<Network> {
    let c = run.dataset.shape()[0];
    let k = run.dataset.num_classes();
    run.train_device.seed(run.cfg.train.seed);
    let model = run.cfg.model.init(c, k, &run.train_device)?;
    let optim = run.cfg.optim.init();
    let (model, optim, start) = if resume {
        let ckpt = Checkpoint::load(&run.dir.join(LAST))?;
        let start = Start {
            epoch: ckpt.meta.epoch,
            best_val_acc: ckpt.meta.best_val_acc,
        };
        (ckpt.apply(model)?, ckpt.optimizer(optim)?, start)
    } else {
        (
            model,
            optim,
            Start {
                epoch: 0,
                best_val_acc: f64::NEG_INFINITY,
            },
        )
    };
    fit(run, &mut Classify, model, optim, start)
}
