//! The frozen teacher: backbone and adapted extractors on the plain (non-autodiff) device in
//! inference mode, so batch norm uses running statistics and nothing records a graph.

use std::path::PathBuf;

use anyhow::{Context, Result};
use burn::module::Module;
use burn::tensor::Device;

use super::TeacherConfig;
use super::adapt::TeacherHead;
use super::extractor::ExtractorConfig;
use crate::models::Network;
use crate::train::checkpoint::Checkpoint;

pub struct Teacher {
    pub net: Network,
    pub head: Option<TeacherHead>,
    pub checkpoint: Checkpoint,
    /// Where the adapted extractors came from (when loaded).
    pub extractors_path: Option<PathBuf>,
}

impl Teacher {
    /// Loads the teacher backbone, and its adapted extractors when `with_extractors`.
    pub fn load(
        cfg: &TeacherConfig,
        extractor: &ExtractorConfig,
        taps: usize,
        with_extractors: bool,
        device: &Device,
    ) -> Result<Self> {
        let checkpoint = Checkpoint::load(&cfg.checkpoint).context("teacher.checkpoint")?;
        // Frozen and only ever run in inference mode: its batch norms fold away.
        let net = checkpoint
            .network(device)
            .context("teacher.checkpoint")?
            .valid()
            .fold_bn();
        let path = cfg.extractors_path();
        let head = if with_extractors {
            if !path.exists() {
                anyhow::bail!(
                    "teacher.extractors: {} does not exist; fit the teacher's extractors first with `lstmkd adapt --config <this config>`",
                    path.display()
                );
            }
            let adapted = Checkpoint::load(&path).context("teacher.extractors")?;
            let head = TeacherHead::init(&net, &checkpoint, extractor, taps, device);
            Some(
                adapted
                    .apply(head)
                    .context("teacher.extractors (does distill.extractor match the adaptation's?)")?
                    .valid(),
            )
        } else {
            None
        };
        Ok(Self {
            net,
            head,
            checkpoint,
            extractors_path: with_extractors.then_some(path),
        })
    }
}
