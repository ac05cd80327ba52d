//! Stopping a run cleanly: SIGINT or SIGTERM during training asks the loop to save
//! `last.ckpt` at the step it has reached and to end with exit status 128 + the signal (130 /
//! 143); a second signal ends the process at once with that status.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use anyhow::Result;

struct Flags {
    requested: Arc<AtomicBool>,
    signal: Arc<AtomicUsize>,
    /// `LSTMKD_INTERRUPT_AFTER_STEPS=N` acts as a SIGINT after the N-th step this process
    /// runs: the tests' way to stop a run at an exact step.
    after_steps: Option<usize>,
    steps: AtomicUsize,
}

static FLAGS: OnceLock<Flags> = OnceLock::new();

/// Installs the handlers (once per process).
pub(crate) fn install() -> Result<()> {
    if FLAGS.get().is_none() {
        let requested = Arc::new(AtomicBool::new(false));
        let signal = Arc::new(AtomicUsize::new(0));
        for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            // Registered first, so it sees the flag as the previous signal left it.
            signal_hook::flag::register_conditional_shutdown(sig, 128 + sig, requested.clone())?;
            signal_hook::flag::register_usize(sig, signal.clone(), sig as usize)?;
            signal_hook::flag::register(sig, requested.clone())?;
        }
        let after_steps = std::env::var("LSTMKD_INTERRUPT_AFTER_STEPS")
            .ok()
            .and_then(|v| v.parse().ok());
        let _ = FLAGS.set(Flags {
            requested,
            signal,
            after_steps,
            steps: AtomicUsize::new(0),
        });
    }
    Ok(())
}

/// Called after every training step: the signal to stop for, if one was asked for.
pub(crate) fn after_step() -> Option<i32> {
    let f = FLAGS.get()?;
    let steps = f.steps.fetch_add(1, Ordering::SeqCst) + 1;
    if f.after_steps == Some(steps) {
        f.signal
            .store(signal_hook::consts::SIGINT as usize, Ordering::SeqCst);
        f.requested.store(true, Ordering::SeqCst);
    }
    f.requested
        .load(Ordering::SeqCst)
        .then(|| f.signal.load(Ordering::SeqCst) as i32)
}

/// The error an interrupted run ends with; the process exits with `128 + signal`.
#[derive(Debug)]
pub struct Interrupted {
    pub(crate) signal: i32,
    pub(crate) checkpoint: PathBuf,
    pub(crate) epoch: usize,
    pub(crate) step: usize,
}

impl Interrupted {
    pub fn exit_code(&self) -> u8 {
        (128 + self.signal).clamp(0, 255) as u8
    }
}

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let dir = self
            .checkpoint
            .parent()
            .map_or_else(|| ".".into(), |d| d.display().to_string());
        write!(
            f,
            "interrupted (signal {}) at epoch {}, step {}: saved {}; continue with --resume {dir}",
            self.signal,
            self.epoch + 1,
            self.step,
            self.checkpoint.display()
        )
    }
}

impl std::error::Error for Interrupted {}
