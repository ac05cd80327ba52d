//! `optimise` under mixed precision against the same step in f32.

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::{Device, Int, Tensor, TensorData};

use super::optimise;
use crate::models::{ModelConfig, Network};
use crate::optim::OptimConfig;
use crate::precision::{LossScale, MixedPrecision, Precision};
use crate::train::classify::Classify;

/// Float parameters in visiting order: each one's dtype name and values.
type Weights = Vec<(String, Vec<f32>)>;

fn weights(net: &Network) -> Weights {
    struct All(Weights);
    impl ModuleVisitor for All {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            let t = p.val();
            let dtype = format!("{:?}", t.dtype());
            self.0
                .push((dtype, crate::profile::read(t).try_to_vec::<f32>().unwrap()));
        }
    }
    let mut all = All(Vec::new());
    net.visit(&mut all);
    all.0
}

/// One SGD step of a fresh resnet8 (seed 7) on a fixed batch: the weights before and after,
/// the loss, and the precision's state after the step.
fn one_step(amp: &mut MixedPrecision) -> (Weights, Weights, f32) {
    // The device's generator is the process's: tests seeding it at once would interleave.
    static SEEDING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = SEEDING.lock().unwrap_or_else(|e| e.into_inner());
    let device = Device::flex().autodiff();
    device.seed(7);
    let net = ModelConfig::new("resnet8").init(1, 10, &device).unwrap();
    let before = weights(&net);
    let images: Vec<f32> = (0..8 * 16 * 16)
        .map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0)
        .collect();
    let images = Tensor::<4>::from_data(TensorData::new(images, [8, 1, 16, 16]), &device);
    let targets = Tensor::<1, Int>::from_data(TensorData::new((0..8i64).collect(), [8]), &device);
    let optim: OptimConfig = toml::from_str("name = \"sgd\"\nlr = 0.1").unwrap();
    let mut optim = optim.init();
    let samples: Vec<usize> = (0..8).collect();
    let (net, stepped) = optimise(
        &mut Classify,
        net,
        &mut optim,
        amp,
        images,
        targets,
        &samples,
        0.1,
        0,
        0,
    )
    .unwrap();
    (before, weights(&net), stepped.total)
}

/// Per parameter tensor: the norm of the difference between two steps' updates, relative
/// to the norm of the first's.
fn update_errors(before: &Weights, a: &Weights, b: &Weights) -> Vec<f64> {
    let mut errors = Vec::new();
    for ((w0, wa), wb) in before.iter().zip(a).zip(b) {
        let (mut err, mut norm) = (0f64, 0f64);
        for ((x0, xa), xb) in w0.1.iter().zip(&wa.1).zip(&wb.1) {
            let (da, db) = ((xa - x0) as f64, (xb - x0) as f64);
            err += (da - db).powi(2);
            norm += da.powi(2);
        }
        errors.push((err / norm).sqrt());
    }
    errors
}

/// f16 keeps 11 significant bits, bf16 8. The loss moves by a few units of their last place
/// (measured: 9e-7 and 8e-5 relative). A convolution's weight gradient sums 2048 products of
/// rounded activations and gradients whose terms largely cancel, so its update moves far
/// more: measured 0.05-8.6% (f16) and 0.4-32% (bf16) of each tensor's update norm, the
/// bounds below about twice that. Nonzero differences show the step really ran in low
/// precision; the master weights stay f32 (the optimiser updates them, not the cast view).
#[test]
fn f16_and_bf16_steps_follow_the_f32_step_within_their_rounding() {
    let (before, exact, loss) = one_step(&mut MixedPrecision::f32());
    for (precision, loss_tol, update_tol) in
        [(Precision::F16, 1e-4, 0.15), (Precision::Bf16, 1e-3, 0.5)]
    {
        let mut amp = MixedPrecision::new(precision, None);
        let (before_low, after, low_loss) = one_step(&mut amp);
        assert!(before_low == before, "same initial weights");
        assert!(
            after.iter().all(|(dtype, _)| dtype == "F32"),
            "{precision:?}: master weights stay f32"
        );
        let rel = (low_loss - loss).abs() / loss;
        assert!(
            rel < loss_tol && rel > 0.0,
            "{precision:?}: loss {low_loss} vs f32 {loss} ({rel:e})"
        );
        let errs = update_errors(&before, &exact, &after);
        // Running statistics do not move in a step (0 / 0).
        let err = errs
            .iter()
            .cloned()
            .filter(|e| !e.is_nan())
            .fold(0.0, f64::max);
        eprintln!("{precision:?}: loss {rel:e} update {err:e}");
        assert!(
            err < update_tol && err > 0.0,
            "{precision:?}: weight update differs by {err:e} of the largest"
        );
    }
}

/// A loss scale so large that f16 gradients overflow: the step leaves every weight as it
/// was and halves the scale, as PyTorch's GradScaler does; a finite step counts towards growth.
#[test]
fn an_overflowing_f16_step_is_skipped_and_halves_the_scale() {
    let huge = LossScale {
        scale: 1e30,
        good_steps: 5,
    };
    let mut amp = MixedPrecision::new(Precision::F16, Some(huge));
    let (before, after, loss) = one_step(&mut amp);
    assert!(loss.is_finite());
    assert!(after == before, "skipped step");
    assert_eq!(
        amp.loss_scale,
        Some(LossScale {
            scale: 5e29,
            good_steps: 0
        })
    );
    let mut amp = MixedPrecision::new(Precision::F16, None);
    let (before, after, _) = one_step(&mut amp);
    assert!(after != before, "taken step");
    assert_eq!(
        amp.loss_scale,
        Some(LossScale {
            scale: 65536.0,
            good_steps: 1
        })
    );
}
