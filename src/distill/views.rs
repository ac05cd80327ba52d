//! A second augmented view of a batch, for the contrastive loss `ntxent`: the data's random
//! crop after padding and its horizontal flip, drawn anew for each image on the batch the
//! loader already augmented and normalised once. Padding reads as black, the normalised value
//! of pixel 0, as the loader's padding does.

use burn::tensor::Tensor;
use rand::Rng;
use rand::rngs::StdRng;

#[derive(Debug, Clone)]
pub struct ViewAugment {
    pub pad: usize,
    pub hflip: bool,
    /// Per channel: the normalised value of a black pixel, (0 - mean) / std.
    pub black: Vec<f32>,
}

/// A new random placement of every image of `images` [B, C, H, W]; the same images when the
/// data configure no crop or flip.
pub fn second_view(images: Tensor<4>, aug: &ViewAugment, rng: &mut StdRng) -> Tensor<4> {
    if aug.pad == 0 && !aug.hflip {
        return images;
    }
    let [b, c, h, w] = images.dims();
    let p = aug.pad;
    let device = images.device();
    let black = Tensor::<1>::from_floats(aug.black.as_slice(), &device).reshape([1, c, 1, 1]);
    let canvas = (Tensor::<4>::ones([b, c, h + 2 * p, w + 2 * p], &device) * black)
        .slice_assign([0..b, 0..c, p..p + h, p..p + w], images);
    let views = (0..b)
        .map(|i| {
            let (dy, dx) = (rng.random_range(0..=2 * p), rng.random_range(0..=2 * p));
            let v = canvas
                .clone()
                .slice([i..i + 1, 0..c, dy..dy + h, dx..dx + w]);
            if aug.hflip && rng.random_bool(0.5) {
                v.flip([3])
            } else {
                v
            }
        })
        .collect();
    Tensor::cat(views, 0)
}
