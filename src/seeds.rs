//! The per-step and per-sample seeds: every random draw of a run follows (seed, epoch, step)
//! or (seed, epoch, position), never a stream that depends on how many steps or threads ran
//! before, so that a resumed run draws what the uninterrupted one drew.

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// (epoch, step) as one number.
fn position(epoch: usize, step: usize) -> u64 {
    (epoch as u64) << 32 | step as u64
}

/// SplitMix64's output function: a well-mixed 64-bit value from any 64-bit state.
fn finish(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// SplitMix64's step from `z`: the seed of the next item of a sequence.
pub(crate) fn next(z: u64) -> u64 {
    finish(z.wrapping_add(GOLDEN))
}

/// The seed of a step's own draws (mixing, crops, second views).
pub(crate) fn step(seed: u64, epoch: usize, index: usize) -> u64 {
    seed ^ position(epoch, index).wrapping_mul(GOLDEN)
}

/// The seed a step's losses draw from (CRD's negatives), apart from `step`'s draws. Kept as it
/// was first written rather than folded into `step`: the recorded runs were drawn with it.
pub(crate) fn step_losses(seed: u64, epoch: usize, index: usize) -> u64 {
    seed ^ position(epoch, index).rotate_left(17)
}

/// The seed of the model's own randomness (dropout) in a step.
pub(crate) fn step_model(seed: u64, epoch: usize, index: usize) -> u64 {
    finish(step(seed, epoch, index))
}
