//! Counts the multiply-accumulates of one forward pass. The zoo's layers report to a
//! thread-local counter that is only active inside `count`, so normal runs pay one flag check.

use std::cell::Cell;

thread_local! {
    static COUNTER: Cell<Option<u64>> = const { Cell::new(None) };
}

pub(crate) fn is_counting() -> bool {
    COUNTER.with(|c| c.get().is_some())
}

pub(crate) fn add(macs: u64) {
    COUNTER.with(|c| {
        if let Some(total) = c.get() {
            c.set(Some(total + macs));
        }
    });
}

/// Multiply-accumulates counted so far in the enclosing `count` (0 outside one).
pub(crate) fn current() -> u64 {
    COUNTER.with(|c| c.get().unwrap_or(0))
}

/// Runs `f` and returns its result with the multiply-accumulates (per image) it performed in
/// zoo layers and extractors. Tools disagree on whether "FLOPs" means MACs (fvcore, ptflops) or
/// 2 x MACs, so `info` prints both.
pub fn count<T>(f: impl FnOnce() -> T) -> (T, u64) {
    COUNTER.with(|c| c.set(Some(0)));
    let out = f();
    let macs = COUNTER.with(|c| c.replace(None)).unwrap_or(0);
    (out, macs)
}
