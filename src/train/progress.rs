//! Progress reporting: an indicatif bar per epoch on a terminal, one plain line per epoch
//! otherwise (logs, CI).

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

pub(crate) struct Progress {
    bar: Option<ProgressBar>,
}

impl Progress {
    pub(crate) fn epoch(epoch: usize, epochs: usize, steps: usize) -> Self {
        if !std::io::stdout().is_terminal() {
            return Self { bar: None };
        }
        let bar = ProgressBar::new(steps as u64);
        bar.set_style(
            ProgressStyle::with_template("epoch {prefix} [{bar:30}] {pos}/{len} {msg} eta {eta}")
                .expect("static template")
                .progress_chars("=> "),
        );
        bar.set_prefix(format!("{epoch}/{epochs}"));
        Self { bar: Some(bar) }
    }

    pub(crate) fn step(&self, msg: impl FnOnce() -> String) {
        if let Some(bar) = &self.bar {
            bar.set_message(msg());
            bar.inc(1);
        }
    }

    /// Ends the epoch with its summary line (kept on screen on a terminal).
    pub(crate) fn finish(&self, line: String) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        println!("{line}");
    }
}
