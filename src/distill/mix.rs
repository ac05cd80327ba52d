//! The paper's temporal augmentations read for images: TMix (a band of full-width rows from
//! another image of the batch, labels mixed in proportion to the rows) and the random temporal
//! crop (RTC) of window positions shared by teacher and student.

use burn::tensor::{Int, Tensor, TensorData};
use rand::Rng;
use rand::rngs::StdRng;

use super::extractor::{Crop, positions};

/// Returns the (possibly mixed) images and the target distributions [B, K].
pub fn tmix(
    images: Tensor<4>,
    targets: Tensor<1, Int>,
    classes: usize,
    probability: f64,
    rng: &mut StdRng,
) -> (Tensor<4>, Tensor<2>) {
    let one_hot = targets.clone().one_hot(classes).float();
    let [b, _, h, _] = images.dims();
    if probability <= 0.0 || b < 2 || h < 2 || !rng.random_bool(probability) {
        return (images, one_hot);
    }
    let len = rng.random_range(1..=h / 2);
    let start = rng.random_range(0..=h - len);
    // Pair each image with the next one (a rotation keeps it cheap and deterministic).
    let partner: Vec<i64> = (0..b).map(|i| ((i + 1) % b) as i64).collect();
    let device = images.device();
    let partner = Tensor::<1, Int>::from_data(TensorData::new(partner, [b]), &device);
    let other = images.clone().select(0, partner.clone());
    let band: Vec<f32> = (0..h)
        .map(|r| {
            if (start..start + len).contains(&r) {
                1.0
            } else {
                0.0
            }
        })
        .collect();
    let band = Tensor::<4>::from_data(TensorData::new(band, [1, 1, h, 1]), &device);
    let mixed = images * band.clone().neg().add_scalar(1.0) + other * band;
    let lam = len as f64 / h as f64;
    let soft = one_hot.clone().mul_scalar(1.0 - lam) + one_hot.select(0, partner).mul_scalar(lam);
    (mixed, soft)
}

/// One crop per tap (of heights `heights`), drawn once and applied to both sides: the same
/// fractions of each tap's window sequence, at least half of it.
pub fn random_crops(heights: &[usize], window: usize, rng: &mut StdRng) -> Vec<Crop> {
    let keep: f64 = rng.random_range(0.5..=1.0);
    let offset: f64 = rng.random_range(0.0..=1.0);
    heights
        .iter()
        .map(|&h| {
            let n = positions(h, window);
            let len = ((n as f64 * keep).ceil() as usize).clamp(n.div_ceil(2), n);
            let start = ((n - len) as f64 * offset).round() as usize;
            Crop { start, len }
        })
        .collect()
}
