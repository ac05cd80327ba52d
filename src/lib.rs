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
pub mod precision;
pub mod predict;
pub mod profile;
pub mod seeds;
pub mod stats;
pub mod train;

#[cfg(test)]
#[path = "../tests/support/reference.rs"]
mod test_util;

/// A file-system name for a label: lowercase letters and digits, runs of anything else as
/// one dash (suite rows' folders, generated class folders).
pub fn slug(label: &str) -> String {
    let s: String = label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    s.split('-')
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join("-")
}
