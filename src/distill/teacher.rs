//! The frozen teacher: backbone and adapted extractors on the plain (non-autodiff) device in
//! inference mode, so batch norm uses running statistics and nothing records a graph.

use burn::module::Module;
use burn::tensor::{Device, Tensor};

use super::extractor::{Extractor, ExtractorConfig, mean_logits};
use crate::models::{Network, summarize};
use crate::precision::Precision;

pub struct Teacher {
    /// Batch norms folded: it only ever runs in inference mode.
    pub net: Network,
    /// The adapted extractors, when the losses read them.
    pub head: Option<TeacherHead>,
    /// [C, H, W] of its inputs.
    pub input: [usize; 3],
    pub classes: usize,
}

impl Teacher {
    /// The teacher computing in the student's `train.precision`, as under PyTorch's autocast;
    /// its extractors stay f32.
    pub fn in_precision(self, precision: Precision) -> Teacher {
        Teacher {
            net: precision.view(self.net),
            ..self
        }
    }
}

/// The extractors (with their aux heads) on the teacher's distilled taps.
#[derive(Module, Debug)]
pub struct TeacherHead {
    pub extractors: Vec<Extractor>,
}

/// Shapes of the last `taps` taps of `net` for inputs of shape `input`.
pub(crate) fn tap_shapes(
    net: &Network,
    input: [usize; 3],
    taps: usize,
    device: &Device,
) -> Vec<[usize; 4]> {
    let all = summarize(net, [1, input[0], input[1], input[2]], device).taps;
    all[all.len().saturating_sub(taps)..].to_vec()
}

impl TeacherHead {
    /// Untrained extractors for the deepest `taps` taps of `net`.
    pub(crate) fn init(
        net: &Network,
        input: [usize; 3],
        classes: usize,
        cfg: &ExtractorConfig,
        taps: usize,
        device: &Device,
    ) -> Self {
        let extractors = tap_shapes(net, input, taps, device)
            .iter()
            .map(|s| cfg.init(s[1], classes, net.frames(), device))
            .collect();
        Self { extractors }
    }

    /// Mean of the aux heads' logits over the taps.
    pub(crate) fn logits(&self, taps: &[Tensor<4>]) -> Tensor<2> {
        mean_logits(
            self.extractors
                .iter()
                .zip(taps)
                .map(|(e, t)| e.forward(t.clone(), None).aux_logits),
        )
    }
}
