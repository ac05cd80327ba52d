//! Training: the shared loop, optimisers and schedules, checkpoints, metrics, progress.

pub mod checkpoint;
pub mod classify;
pub mod interrupt;
pub mod metrics;
pub mod optim;
pub mod progress;
pub mod run;
pub mod trainer;
