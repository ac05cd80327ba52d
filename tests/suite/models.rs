use std::path::Path;

use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::{Device, Distribution, Tensor};
use lstmkd::config::RunConfig;

use crate::common::toml_config;
use lstmkd::models::{ModelConfig, ZOO, count_params, flops, summarize};

#[test]
fn torchvision_parameter_counts_match() {
    let device = Device::flex();
    for (name, want) in [
        ("resnet18", 11_689_512),
        ("resnet34", 21_797_672),
        ("resnet50", 25_557_032),
        ("mobilenetv2", 3_504_872),
    ] {
        let net = ModelConfig::new(name).init(3, 1000, &device).unwrap();
        assert_eq!(count_params(&net), want, "{name}");
    }
}

/// (name, expected tap shapes [C, H, W] for a 3x32x32 input)
const CIFAR_TAPS: &[(&str, &[[usize; 3]])] = &[
    ("resnet8", &[[16, 32, 32], [32, 16, 16], [64, 8, 8]]),
    ("resnet20", &[[16, 32, 32], [32, 16, 16], [64, 8, 8]]),
    ("resnet32", &[[16, 32, 32], [32, 16, 16], [64, 8, 8]]),
    ("resnet56", &[[16, 32, 32], [32, 16, 16], [64, 8, 8]]),
    ("resnet110", &[[16, 32, 32], [32, 16, 16], [64, 8, 8]]),
    ("resnet8x4", &[[64, 32, 32], [128, 16, 16], [256, 8, 8]]),
    ("resnet32x4", &[[64, 32, 32], [128, 16, 16], [256, 8, 8]]),
    ("wrn_16_2", &[[32, 32, 32], [64, 16, 16], [128, 8, 8]]),
    ("wrn_40_2", &[[32, 32, 32], [64, 16, 16], [128, 8, 8]]),
    (
        "vgg8",
        &[
            [64, 32, 32],
            [128, 16, 16],
            [256, 8, 8],
            [512, 4, 4],
            [512, 4, 4],
        ],
    ),
    (
        "vgg13",
        &[
            [64, 32, 32],
            [128, 16, 16],
            [256, 8, 8],
            [512, 4, 4],
            [512, 4, 4],
        ],
    ),
    (
        "mobilenetv2_cifar",
        &[[24, 32, 32], [32, 16, 16], [96, 8, 8], [320, 4, 4]],
    ),
    (
        "mobilenetv2",
        &[
            [16, 16, 16],
            [24, 8, 8],
            [32, 4, 4],
            [96, 2, 2],
            [320, 1, 1],
        ],
    ),
    (
        "resnet18",
        &[[64, 8, 8], [128, 4, 4], [256, 2, 2], [512, 1, 1]],
    ),
    (
        "resnet34",
        &[[64, 8, 8], [128, 4, 4], [256, 2, 2], [512, 1, 1]],
    ),
    (
        "resnet50",
        &[[256, 8, 8], [512, 4, 4], [1024, 2, 2], [2048, 1, 1]],
    ),
];

#[test]
fn every_zoo_model_gives_logits_and_taps_of_the_right_shape() {
    let device = Device::flex();
    let named: Vec<&str> = CIFAR_TAPS.iter().map(|(n, _)| *n).collect();
    for (name, _) in ZOO {
        let family_checked =
            named.contains(name) || ["resnet14", "resnet44", "vgg11"].contains(name);
        assert!(family_checked, "{name} has no shape test");
    }
    for (name, taps) in CIFAR_TAPS {
        let net = ModelConfig::new(name).init(3, 7, &device).unwrap();
        let out = net.valid().forward(Tensor::zeros([2, 3, 32, 32], &device));
        assert_eq!(out.logits.dims(), [2, 7], "{name}");
        let got: Vec<[usize; 3]> = out
            .taps
            .iter()
            .map(|t| {
                let [b, c, h, w] = t.dims();
                assert_eq!(b, 2);
                [c, h, w]
            })
            .collect();
        assert_eq!(&got, taps, "{name}");
    }
}

#[test]
fn input_channels_and_classes_are_configurable() {
    let device = Device::flex();
    for name in [
        "resnet14",
        "resnet44",
        "vgg11",
        "wrn_16_2",
        "mobilenetv2_cifar",
    ] {
        let net = ModelConfig::new(name).init(1, 3, &device).unwrap();
        let s = summarize(&net, [1, 1, 28, 28], &device);
        assert_eq!(s.logits, [1, 3], "{name}");
    }
}

#[test]
fn flops_are_counted_from_the_layers() {
    let device = Device::flex();
    // resnet8 on 1x8x8, 2 classes, by hand: stem 1->16 3x3 at 8x8; layer1: two 16->16 3x3 at
    // 8x8; layer2: 16->32 3x3 s2 + 32->32 3x3 at 4x4 + 1x1 16->32 shortcut at 4x4; layer3
    // likewise 32->64 at 2x2; fc 64->2.
    let want: u64 = 16 * 9 * 64
        + 2 * 16 * 16 * 9 * 64
        + (32 * 16 * 9 + 32 * 32 * 9 + 32 * 16) * 16
        + (64 * 32 * 9 + 64 * 64 * 9 + 64 * 32) * 4
        + 64 * 2;
    let net = ModelConfig::new("resnet8").init(1, 2, &device).unwrap();
    assert_eq!(summarize(&net, [1, 1, 8, 8], &device).macs, want);
    // Outside `count` nothing is recorded.
    let (_, macs) = flops::count(|| ());
    assert_eq!(macs, 0);
}

#[test]
fn width_multiplier_scales_mobilenet_and_cifar_resnets_and_is_rejected_elsewhere() {
    let device = Device::flex();
    // torchvision 0.24: sum(p.numel() for p in mobilenet_v2(width_mult=w).parameters()).
    for (width, torchvision) in [(0.5, 1_968_680), (0.75, 2_636_424), (1.0, 3_504_872)] {
        let net = ModelConfig {
            width,
            ..ModelConfig::new("mobilenetv2")
        };
        let p = count_params(&net.init(3, 1000, &device).unwrap());
        assert_eq!(p, torchvision, "width {width}");
    }
    // scripts/torch/zoo.py: param_count(build(name, 10, width)), channels max(1, round(c * width)).
    for (name, width, torch) in [
        ("resnet8", 0.5, 19_954),
        ("resnet8", 0.25, 5_214),
        ("resnet20", 0.75, 153_766),
        ("resnet8x4", 0.5, 304_154),
    ] {
        let net = ModelConfig {
            width,
            ..ModelConfig::new(name)
        };
        let p = count_params(&net.init(3, 10, &device).unwrap());
        assert_eq!(p, torch, "{name} width {width}");
    }
    for name in ["resnet18", "vgg8", "wrn_16_2"] {
        let bad = ModelConfig {
            width: 0.5,
            ..ModelConfig::new(name)
        };
        let err = format!("{:#}", bad.validate().unwrap_err());
        assert!(
            err.contains("CIFAR ResNets only") && err.contains(name),
            "{err}"
        );
    }
    let unknown = ModelConfig::new("resnet9000");
    assert!(
        format!("{:#}", unknown.validate().unwrap_err()).contains("unknown model 'resnet9000'")
    );
}

#[test]
fn folding_batch_norm_keeps_the_inference_outputs() {
    let device = Device::flex().autodiff();
    let cfg = RunConfig::parse(
        &toml_config(Path::new("/data"), Path::new("/out"), ""),
        "t",
        &[],
    )
    .unwrap();
    for name in [
        "resnet8",
        "wrn_16_2",
        "vgg8",
        "mobilenetv2_cifar",
        "resnet18",
        "resnet50",
    ] {
        device.seed(1);
        let mut net = ModelConfig::new(name).init(3, 5, &device).unwrap();
        // Running statistics and affine parameters away from their initial 0/1, so that
        // every term of the folding formula matters.
        let mut optim = cfg.optim.init();
        for _ in 0..2 {
            let x = Tensor::<4>::random([4, 3, 32, 32], Distribution::Normal(0.5, 2.0), &device);
            let loss = net.forward(x).logits.tanh().mean();
            let grads = GradientsParams::from_grads(loss.backward(), &net);
            net = optim.step(0.05, net, grads);
        }
        let plain = net.valid();
        let x = Tensor::<4>::random(
            [3, 3, 32, 32],
            Distribution::Normal(0.5, 2.0),
            &plain.devices()[0],
        );
        let a = plain.forward(x.clone());
        let b = plain.clone().fold_bn().forward(x);
        let scale = a.logits.clone().abs().max().into_scalar::<f32>().max(1.0);
        let diff = (a.logits - b.logits).abs().max().into_scalar::<f32>();
        assert!(
            diff / scale < 1e-4,
            "{name}: logits differ by {diff} (scale {scale})"
        );
        assert!(
            count_params(&plain.clone().fold_bn()) < count_params(&plain),
            "{name}: nothing folded"
        );
    }
}
