//! `lstmkd export`: a checkpoint as a file other programs run: ONNX (the deployed network,
//! checked against lstmkd's own logits in tract before it is written) or safetensors (the
//! unfolded network in PyTorch's names and layout, for `load_state_dict(strict=True)`).

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use burn::tensor::{Device, Distribution, Tensor, TensorData};
use prost::Message;

use super::onnx::{Graph, network};
use super::state_dict;
use crate::deploy::Deployed;
use crate::distill::teacher::tap_shapes;
use crate::train::checkpoint::{Checkpoint, Meta};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum ExportFormat {
    Onnx,
    Safetensors,
}

/// What `export` writes where. `run` names the flags of `lstmkd export`, where these come
/// from.
#[derive(Debug, Clone)]
pub(crate) struct ExportOptions {
    pub(crate) checkpoint: PathBuf,
    pub(crate) format: ExportFormat,
    pub(crate) out: PathBuf,
    /// Replace `out` if it exists.
    pub(crate) force: bool,
}

/// What an export wrote.
pub(crate) struct Exported {
    pub(crate) bytes: usize,
    /// ONNX: the largest |tract - lstmkd| logit difference on a random batch, and the logits'
    /// largest magnitude.
    pub(crate) check: Option<(f32, f32)>,
}

/// The header's facts a deployer needs, as ONNX/safetensors metadata strings.
fn metadata(meta: &Meta) -> Vec<(String, String)> {
    let [c, h, w] = meta.input;
    let json = |v: &[String]| serde_json::to_string(v).expect("strings serialise");
    let floats = |v: &[f32]| serde_json::to_string(v).expect("floats serialise");
    vec![
        ("model".into(), meta.model.name.clone()),
        ("input".into(), format!("{c}x{h}x{w}")),
        (
            "input_format".into(),
            "float32 NCHW, RGB (or grey) pixels in [0, 1]; normalisation is inside the graph"
                .into(),
        ),
        ("classes".into(), json(&meta.classes)),
        ("mean".into(), floats(&meta.mean)),
        ("std".into(), floats(&meta.std)),
        ("resize".into(), meta.resize.to_string()),
        ("origin".into(), meta.origin.clone()),
    ]
}

/// The ONNX model of `net`, the deployed network (batch norm folded) of a checkpoint with
/// header `meta`.
pub(crate) fn onnx_model(
    meta: &Meta,
    net: &Deployed,
    device: &Device,
) -> tract_onnx::pb::ModelProto {
    let mut g = Graph::default();
    let [c, h, w] = meta.input;
    let frames = net.frames();
    // Clips come in as [N, frames, C, H, W]; the network reads their frames as one batch.
    let input = if frames > 1 {
        let shape = g.constant_i64("frames_shape", &[-1, c as i64, h as i64, w as i64]);
        g.node("Reshape", &["input", &shape], vec![])
    } else {
        "input".to_string()
    };
    let x = g.normalize(&input, &meta.mean, &meta.std);
    match net {
        Deployed::Plain(net) => {
            network(&mut g, net, &x, meta.input[1]);
        }
        Deployed::Fused(f) => {
            let (logits, taps) = network(&mut g, &f.net, &x, meta.input[1]);
            let k = f.head.extractors.len();
            let shapes = tap_shapes(&f.net, meta.input, k, device);
            let taps = &taps[taps.len() - k..];
            let mut sum = logits;
            for (i, e) in f.head.extractors.iter().enumerate() {
                let tap = match f.head.adapters.get(i) {
                    Some(a) => g.conv_bn(a, &taps[i]),
                    None => taps[i].clone(),
                };
                let [_, _, h, w] = shapes[i];
                let channels = e.conv.weight.dims()[1];
                let aux = super::onnx::extractor(&mut g, e, &tap, [channels, h, w]);
                sum = g.add(&sum, &aux);
            }
            let n = g.constant("count", &[(k + 1) as f32], &[]);
            g.node("Div", &[&sum, &n], vec![]);
        }
    }
    // The prediction is the last node: its output is the graph's.
    g.rename_last("logits");
    let dims = if frames > 1 {
        vec![frames, c, h, w]
    } else {
        vec![c, h, w]
    };
    g.model(
        ("input", &dims),
        ("logits", meta.classes.len()),
        metadata(meta),
    )
}

/// Runs an ONNX model in tract on `images` ([N, C, H, W], pixels in [0, 1]); the logits.
pub fn run_tract(model_bytes: &[u8], images: &TensorData) -> Result<Vec<f32>> {
    use tract_onnx::prelude::*;
    let shape = images.shape().to_vec();
    let v: Vec<f32> = images
        .try_to_vec::<f32>()
        .map_err(|e| anyhow::anyhow!("images: {e:?}"))?;
    let model = tract_onnx::onnx()
        .model_for_read(&mut &model_bytes[..])
        .map_err(|e| anyhow::anyhow!("tract cannot read the ONNX model: {e:?}"))?
        .with_input_fact(0, f32::fact(&shape).into())
        .and_then(|m| m.into_optimized())
        .and_then(|m| m.into_runnable())
        .map_err(|e| anyhow::anyhow!("tract cannot run the ONNX model: {e:?}"))?;
    let input = tract_ndarray::ArrayD::from_shape_vec(shape, v)?;
    let out = model
        .run(tvec!(Tensor::from(input).into()))
        .map_err(|e| anyhow::anyhow!("tract: {e:?}"))?;
    let logits = out[0]
        .to_plain_array_view::<f32>()
        .map_err(|e| anyhow::anyhow!("tract output: {e:?}"))?;
    Ok(logits.iter().copied().collect())
}

/// `net`'s logits for `images` (pixels in [0, 1]), normalised as `meta` says.
pub fn lstmkd_logits(
    meta: &Meta,
    net: &Deployed,
    images: &TensorData,
    device: &Device,
) -> Vec<f32> {
    let c = meta.input[0];
    let x = Tensor::<4>::from_data(images.clone(), device);
    let mean = Tensor::<1>::from_floats(meta.mean.as_slice(), device).reshape([1, c, 1, 1]);
    let std = Tensor::<1>::from_floats(meta.std.as_slice(), device).reshape([1, c, 1, 1]);
    let logits = net.forward((x - mean) / std);
    super::onnx::values(logits).0
}

/// Largest absolute difference and the reference's largest magnitude.
pub(crate) fn max_diff(a: &[f32], reference: &[f32]) -> (f32, f32) {
    let diff = a
        .iter()
        .zip(reference)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    let scale = reference.iter().map(|x| x.abs()).fold(0f32, f32::max);
    (diff, scale)
}

pub(crate) fn run(opts: &ExportOptions) -> Result<Exported> {
    if opts.out.exists() && !opts.force {
        bail!(
            "--out {}: already exists; choose another path or pass --force",
            opts.out.display()
        );
    }
    let ckpt = Checkpoint::load(&opts.checkpoint)?;
    let device = Device::flex();
    let (bytes, check) = match opts.format {
        ExportFormat::Onnx => {
            let net = Deployed::load(&ckpt, &device)?.fold_bn();
            if let Deployed::Fused(f) = &net
                && f.head.extractors.iter().any(|e| !e.qrnn.is_empty())
            {
                bail!(
                    "{}: a fused student with QRNN extractors has no ONNX form (ONNX has no QRNN operator); export the plain student of a non-fused run, or use the LSTM core",
                    opts.checkpoint.display()
                );
            }
            let bytes = onnx_model(&ckpt.meta, &net, &device).encode_to_vec();
            let [c, h, w] = ckpt.meta.input;
            let frames = net.frames();
            let images = Tensor::<4>::random(
                [2 * frames, c, h, w],
                Distribution::Uniform(0.0, 1.0),
                &device,
            )
            .into_data();
            let ours = lstmkd_logits(&ckpt.meta, &net, &images, &device);
            // The graph takes clips as [N, frames, C, H, W]: the same values, another shape.
            let clips = match frames {
                1 => images,
                f => {
                    let v = images
                        .try_to_vec::<f32>()
                        .map_err(|e| anyhow::anyhow!("test images: {e:?}"))?;
                    TensorData::new(v, [2, f, c, h, w])
                }
            };
            let theirs = run_tract(&bytes, &clips).context("checking the exported model")?;
            let (diff, scale) = max_diff(&theirs, &ours);
            if diff.is_nan() || diff > 1e-3 * scale.max(1.0) {
                bail!(
                    "the exported graph's logits differ from lstmkd's by {diff:e} (scale {scale:e}); nothing written"
                );
            }
            (bytes, Some((diff, scale)))
        }
        ExportFormat::Safetensors => {
            if ckpt.meta.fused.is_some() {
                bail!(
                    "{}: a fused student's extractors have no PyTorch definition to load into; export it with --format onnx",
                    opts.checkpoint.display()
                );
            }
            let net = ckpt.network(&device)?;
            let sd = state_dict::of(&net)?;
            let mut meta: BTreeMap<String, String> = metadata(&ckpt.meta).into_iter().collect();
            meta.insert("format".into(), "pt".into());
            (state_dict::safetensors_bytes(&sd, meta)?, None)
        }
    };
    if let Some(dir) = opts.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("{}: cannot create", dir.display()))?;
    }
    crate::train::checkpoint::write_atomic(&opts.out, &bytes)?;
    Ok(Exported {
        bytes: bytes.len(),
        check,
    })
}
