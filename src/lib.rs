//! lstmkd: knowledge distillation for image classifiers on burn.

pub mod bench;
pub mod cli;
pub mod config;
pub mod data;
pub mod deploy;
pub mod device;
pub mod distill;
pub mod eval;
pub mod experiment;
pub mod interop;
pub mod models;
pub mod optim;
pub mod predict;
pub mod profile;
pub mod stats;
pub mod train;
