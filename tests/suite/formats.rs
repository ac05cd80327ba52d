//! Saved formats pinned byte for byte or key for key: what files written today must keep
//! saying, so that checkpoints and exports written by earlier versions, and the tools that read
//! them, keep working. A change here is a format change: bump the format's version and keep a
//! reader for the old one (as checkpoints do for version 1).

use lstmkd::train::checkpoint::Checkpoint;

use crate::common::meta;

/// A resnet8 of 3 classes on 1x12x12 images, with `meta`'s header and a run's state (a
/// distillation, stopped mid-epoch), saved at `path`.
fn checkpoint(path: &std::path::Path) -> Checkpoint {
    let net = lstmkd::models::ModelConfig::new("resnet8")
        .init(1, 3, &burn::tensor::Device::flex())
        .unwrap();
    let text = crate::common::toml_config(
        std::path::Path::new("/data/x"),
        std::path::Path::new("/runs/x"),
        "[teacher]\ncheckpoint = \"/runs/t/best.ckpt\"\n\n[distill]\nweights = { ce = 1.0, kd = 1.0, dkd = 1.0 }\ndkd = { warmup = 0.1 }\n",
    );
    let config = lstmkd::config::RunConfig::parse(&text, "x.toml", &[]).unwrap();
    let run = lstmkd::train::checkpoint::RunState {
        config,
        epoch: 2,
        best_val_acc: 0.75,
        val_acc: 0.5,
        partial: Some(lstmkd::train::checkpoint::PartialEpoch {
            steps: 3,
            loss_sum: 1.5,
            correct: 2.0,
            seen: 48,
            parts: [("kd".to_string(), 0.25)].into(),
            lr: 0.05,
            seconds: 1.25,
        }),
        loss_scale: None,
    };
    let header = lstmkd::train::checkpoint::Meta {
        run: Some(run),
        ..meta("resnet8", [1, 12, 12], 3)
    };
    let ckpt = Checkpoint::new(header, &net, None).unwrap();
    ckpt.save(path).unwrap();
    ckpt
}

#[test]
fn the_checkpoint_header_is_pinned() {
    let d = tempfile::tempdir().unwrap();
    let bytes = checkpoint(&d.path().join("n.ckpt")).to_bytes().unwrap();
    // Magic, then the header section: its length (u64, little-endian) and its JSON.
    assert_eq!(&bytes[..8], b"LSTMKD02");
    let len = u64::from_le_bytes(bytes[8..16].try_into().unwrap()) as usize;
    let header = std::str::from_utf8(&bytes[16..16 + len]).unwrap();
    assert_eq!(header, HEADER);
}

/// The header of `checkpoint`, as version 2 writes it (JSON, no spaces).
const HEADER: &str = r##"{"model":{"name":"resnet8","width":1.0},"input":[1,12,12],"classes":["c0","c1","c2"],"mean":[0.3],"std":[0.2],"resize":0,"origin":"a test","run":{"config":{"data":{"format":"idx","root":"/data/x","val_fraction":0.2,"cifar100_labels":"fine","resize":0,"crop":0,"random_resized_crop":false,"pad_crop":1,"hflip":false,"mean":null,"std":null,"limit_train":null,"prefetch":4},"model":{"name":"resnet8","width":1.0},"optim":{"name":"sgd","lr":0.05,"momentum":0.9,"nesterov":false,"weight_decay":0.0,"betas":[0.9,0.999],"eps":1e-8},"schedule":{"name":"constant","warmup_epochs":0.0,"milestones":[],"gamma":0.1,"min_lr":0.0},"train":{"epochs":3,"batch_size":16,"eval_batch_size":null,"seed":3,"out_dir":"/runs/x","device":"flex"},"teacher":{"checkpoint":"/runs/t/best.ckpt","extractors":null},"distill":{"weights":{"ce":1.0,"dkd":1.0,"kd":1.0},"taps":2,"extractor":{"window":3,"conv_channels":256,"hidden":512,"layers":2},"temporal_init":"shared_lens","freeze_student_extractor":false,"temperature":{"policy":"dynamic","value":4.0,"table":[[0.7,1.0],[0.9,3.0]],"top":5.0},"phases":null,"end_to_end":false,"rtc":false,"tmix":0.0,"fused":false,"adapt_epochs":2,"adapt_lr":0.001,"logit_standardization":false,"dkd":{"warmup":0.1}}},"epoch":2,"best_val_acc":0.75,"val_acc":0.5,"partial":{"steps":3,"loss_sum":1.5,"correct":2.0,"seen":48,"parts":{"kd":0.25},"lr":0.05,"seconds":1.25}}}"##;

#[test]
fn the_onnx_exports_metadata_is_pinned() {
    let d = tempfile::tempdir().unwrap();
    let ckpt = d.path().join("n.ckpt");
    checkpoint(&ckpt);
    let model = crate::common::exported_onnx(&ckpt, &d.path().join("n.onnx"));
    let props: Vec<(&str, &str)> = model
        .metadata_props
        .iter()
        .map(|p| (p.key.as_str(), p.value.as_str()))
        .collect();
    let opsets: Vec<(&str, i64)> = model
        .opset_import
        .iter()
        .map(|o| (o.domain.as_str(), o.version))
        .collect();
    assert_eq!(props, METADATA);
    assert_eq!(opsets, [("", 17)], "ONNX opset 17");
    assert_eq!(
        (model.ir_version, model.producer_name.as_str()),
        (8, "lstmkd")
    );
}

const METADATA: &[(&str, &str)] = &[
    ("model", "resnet8"),
    ("input", "1x12x12"),
    (
        "input_format",
        "float32 NCHW, RGB (or grey) pixels in [0, 1]; normalisation is inside the graph",
    ),
    ("classes", r#"["c0","c1","c2"]"#),
    ("mean", "[0.3]"),
    ("std", "[0.2]"),
    ("resize", "0"),
    ("origin", "a test"),
];
