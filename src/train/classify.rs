//! Plain supervised training of a zoo model with cross-entropy (teachers, baseline students).

use anyhow::Result;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::tensor::{Int, Tensor};

use super::run::Run;
use super::trainer::{StepLoss, Task, fit, start_or_resume};
use crate::models::Network;
use crate::precision::Precision;
use crate::profile;

pub(crate) struct Classify;

impl Task for Classify {
    type Model = Network;

    fn train_step(
        &mut self,
        model: &Network,
        images: Tensor<4>,
        targets: Tensor<1, Int>,
        _samples: &[usize],
        _epoch: usize,
        _step: usize,
    ) -> StepLoss {
        let logits = profile::part("student forward", || model.forward(images).logits);
        let total = profile::part("losses", || {
            CrossEntropyLossConfig::new()
                .init(&logits.device())
                .forward(logits.clone(), targets)
        });
        StepLoss {
            total,
            logits,
            parts: Vec::new(),
        }
    }

    fn in_precision(&self, model: &Network, precision: Precision) -> Network {
        precision.view(model.clone())
    }

    fn logits(&self, model: &Network, images: Tensor<4>) -> Tensor<2> {
        model.forward(images).logits
    }
}

/// Trains the run's model from scratch, or resumes it from the run's last checkpoint.
pub fn train(run: &Run) -> Result<Network> {
    let c = run.dataset.shape()[0];
    let k = run.dataset.num_classes();
    run.train_device.seed(run.cfg.train.seed);
    let model = run.cfg.model.init(c, k, &run.train_device)?;
    let (model, optim, start) = start_or_resume(run, model, run.cfg.optim.init())?;
    fit(run, &mut Classify, model, optim, start)
}
