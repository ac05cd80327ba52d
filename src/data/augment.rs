//! Training-time augmentation and normalisation of one CHW u8 image into f32.

use rand::Rng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AugmentConfig {
    /// Random crop back to the original size after zero-padding this many pixels per side
    /// (0 = off).
    #[serde(default)]
    pub pad_crop: usize,
    /// Random horizontal flip with probability 1/2.
    #[serde(default)]
    pub hflip: bool,
}

/// Per-channel lookup tables from byte value to normalised float.
#[derive(Clone)]
pub struct Normalize {
    lut: Vec<[f32; 256]>,
}

impl Normalize {
    pub fn new(mean: &[f32], std: &[f32]) -> Self {
        let lut = mean
            .iter()
            .zip(std)
            .map(|(&m, &s)| std::array::from_fn(|v| (v as f32 / 255.0 - m) / s))
            .collect();
        Self { lut }
    }
}

/// Where each output pixel reads from: crop offsets and a flip flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Placement {
    pub(crate) dy: isize,
    pub(crate) dx: isize,
    pub(crate) flip: bool,
}

impl Placement {
    pub(crate) const IDENTITY: Placement = Placement {
        dy: 0,
        dx: 0,
        flip: false,
    };

    pub(crate) fn sample(cfg: &AugmentConfig, rng: &mut StdRng) -> Self {
        let p = cfg.pad_crop as isize;
        let (dy, dx) = if p > 0 {
            let p = p as i64;
            (
                rng.random_range(-p..=p) as isize,
                rng.random_range(-p..=p) as isize,
            )
        } else {
            (0, 0)
        };
        Placement {
            dy,
            dx,
            flip: cfg.hflip && rng.random_bool(0.5),
        }
    }
}

/// Writes `src` (CHW bytes) into `dst` (CHW floats), shifted by the placement; pixels that fall
/// in the padding read as byte 0, as with torchvision's zero padding before normalisation.
pub(crate) fn render(
    src: &[u8],
    shape: [usize; 3],
    at: Placement,
    norm: &Normalize,
    dst: &mut [f32],
) {
    let [c, h, w] = shape;
    for ch in 0..c {
        let lut = &norm.lut[ch];
        let plane = &src[ch * h * w..(ch + 1) * h * w];
        for y in 0..h {
            let sy = y as isize + at.dy;
            let row = &mut dst[(ch * h + y) * w..(ch * h + y + 1) * w];
            if sy < 0 || sy >= h as isize {
                row.fill(lut[0]);
                continue;
            }
            let srow = &plane[sy as usize * w..(sy as usize + 1) * w];
            for (x, out) in row.iter_mut().enumerate() {
                let xx = if at.flip { w - 1 - x } else { x };
                let sx = xx as isize + at.dx;
                *out = if sx < 0 || sx >= w as isize {
                    lut[0]
                } else {
                    lut[srow[sx as usize] as usize]
                };
            }
        }
    }
}

#[cfg(test)]
mod tests;
