//! Training runs: the shared loop, run directories, checkpoints, metrics, progress, and the
//! tasks that use them (plain training, teacher adaptation, distillation).

pub mod adapt;
pub mod checkpoint;
pub mod classify;
pub mod distill;
pub mod folder_lock;
pub mod interrupt;
pub mod metrics;
pub mod progress;
pub mod run;
pub mod trainer;
