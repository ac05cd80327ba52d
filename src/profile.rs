//! Where a training step spends its time, for `lstmkd bench`. The step's code marks its parts
//! with `part`; only inside `record` are they timed (and their multiply-accumulates taken from
//! `flops` when it counts), so training pays one flag check per part. And how often it waits
//! for the device: every read of a tensor to the host goes through `read`, which counts them.

use std::cell::RefCell;
use std::time::Instant;

use burn::tensor::{Device, Tensor, TensorData, kind::Basic};

use crate::models::flops;

/// Totals of one named part over the recorded steps.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Part {
    pub(crate) name: &'static str,
    pub(crate) seconds: f64,
    /// Forward multiply-accumulates counted inside the part (0 unless `flops::count` was on).
    pub(crate) macs: u64,
}

struct Recorder {
    parts: Vec<Part>,
    /// Waited on at the end of each part, so that backends that queue work (GPUs) are timed
    /// by what they did, not by what they were asked to do.
    device: Device,
}

thread_local! {
    static RECORDER: RefCell<Option<Recorder>> = const { RefCell::new(None) };
    static HOST_READS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Reads `t` to the host. On a GPU each read waits for the queued work to finish, so the
/// training step reads through here and a test holds it to what the progress bar needs.
pub(crate) fn read<const D: usize, K: Basic>(t: Tensor<D, K>) -> TensorData {
    HOST_READS.with(|n| n.set(n.get() + 1));
    t.into_data()
}

/// The reads `read` made on this thread so far.
pub fn host_reads() -> usize {
    HOST_READS.with(|n| n.get())
}

/// Runs `f` as the part `name` of the step being recorded (if any).
pub(crate) fn part<T>(name: &'static str, f: impl FnOnce() -> T) -> T {
    let device = RECORDER.with(|r| r.borrow().as_ref().map(|r| r.device.clone()));
    let Some(device) = device else {
        return f();
    };
    let macs0 = flops::current();
    let t0 = Instant::now();
    let out = f();
    // A failed sync means the device is gone; the step itself will report it.
    let _ = device.sync();
    let seconds = t0.elapsed().as_secs_f64();
    let macs = flops::current().saturating_sub(macs0);
    RECORDER.with(|r| {
        if let Some(r) = r.borrow_mut().as_mut() {
            match r.parts.iter_mut().find(|p| p.name == name) {
                Some(p) => {
                    p.seconds += seconds;
                    p.macs += macs;
                }
                None => r.parts.push(Part {
                    name,
                    seconds,
                    macs,
                }),
            }
        }
    });
    out
}

/// Runs `f` with part timing on and returns the parts it went through, in first-seen order.
pub(crate) fn record<T>(device: &Device, f: impl FnOnce() -> T) -> (T, Vec<Part>) {
    RECORDER.with(|r| {
        *r.borrow_mut() = Some(Recorder {
            parts: Vec::new(),
            device: device.clone(),
        })
    });
    let out = f();
    let parts = RECORDER.with(|r| r.borrow_mut().take().map(|r| r.parts).unwrap_or_default());
    (out, parts)
}
