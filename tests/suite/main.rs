//! One integration-test binary (one link of burn instead of one per file).

mod adaptive_window;
mod batch_norm_ops;
mod bench;
mod clips;
mod common;
mod config;
mod conv_ops;
mod data_readers;
mod distill;
mod elementwise_ops;
mod formats;
mod fuzz;
#[cfg(any(feature = "vulkan", feature = "wgpu"))]
mod gpu;
mod interop;
mod label_free;
mod layout;
mod ledger;
mod models;
mod qrnn;
#[path = "../support/reference.rs"]
mod reference;
mod training;
mod vendored_flex;
