//! PyTorch state_dicts: read from `.pth`/`.pt` (burn-store's PyTorch reader) or
//! `.safetensors`, unwrapped from the containers training scripts save them in, and loaded
//! into or written from a zoo network under PyTorch's names (`torch_names`).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use burn::store::{ModuleSnapshot, PathFilter, bridge};
use burn::tensor::{DType, TensorData};

use super::torch_names::TorchNames;
use crate::models::Network;

/// Tensor name -> data, as `model.state_dict()` names them.
pub(crate) type StateDict = BTreeMap<String, TensorData>;

fn is_safetensors(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "safetensors")
}

/// Reads every tensor of a PyTorch checkpoint or safetensors file.
pub fn read(path: &Path) -> Result<StateDict> {
    if !path.is_file() {
        bail!("{}: no such file", path.display());
    }
    let raw = if is_safetensors(path) {
        read_safetensors(path)?
    } else {
        let reader = burn::store::pytorch_reader::PytorchReader::new(path).map_err(|e| {
            anyhow::anyhow!(
                "{}: not a readable PyTorch checkpoint ({e}); save it with torch.save(model.state_dict(), ...) or as .safetensors",
                path.display()
            )
        })?;
        reader
            .into_tensors()
            .into_values()
            .map(|t| {
                let name = t.name.clone();
                let data = bridge::into_data(bridge::from_pytorch(t))
                    .map_err(|e| anyhow::anyhow!("{}: tensor '{name}': {e}", path.display()))?;
                Ok((name, data))
            })
            .collect::<Result<_>>()?
    };
    if raw.is_empty() {
        bail!("{}: holds no tensors", path.display());
    }
    Ok(unwrap(raw))
}

fn read_safetensors(path: &Path) -> Result<StateDict> {
    let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
    let st = safetensors::SafeTensors::deserialize(&bytes)
        .map_err(|e| anyhow::anyhow!("{}: not a safetensors file ({e})", path.display()))?;
    let mut out = StateDict::new();
    for (name, view) in st.tensors() {
        use safetensors::Dtype as S;
        let dtype = match view.dtype() {
            S::F64 => DType::F64,
            S::F32 => DType::F32,
            S::F16 => DType::F16,
            S::BF16 => DType::BF16,
            S::I64 => DType::I64,
            S::I32 => DType::I32,
            other => bail!(
                "{}: tensor '{name}' has type {other:?}, which no zoo model holds",
                path.display()
            ),
        };
        let data = TensorData::from_bytes_vec(view.data().to_vec(), view.shape().to_vec(), dtype);
        out.insert(name, data);
    }
    Ok(out)
}

/// The state_dict inside the containers training scripts save (`{"state_dict": ...}`,
/// `{"model": ...}` beside epoch and optimiser entries: Lightning, RepDistiller), without the
/// prefixes every name can carry (a wrapping `model.` module, DataParallel's `module.`).
fn unwrap(mut sd: StateDict) -> StateDict {
    let strip = |sd: StateDict, prefix: &str| -> StateDict {
        sd.into_iter()
            .filter_map(|(k, v)| k.strip_prefix(prefix).map(|k| (k.to_string(), v)))
            .collect()
    };
    if let Some(key) = ["state_dict.", "model_state_dict.", "model.", "net."]
        .into_iter()
        .find(|p| sd.keys().any(|k| k.starts_with(p)))
    {
        sd = strip(sd, key);
    }
    while let Some(prefix) = ["module.", "model.", "net."]
        .into_iter()
        .find(|p| !sd.is_empty() && sd.keys().all(|k| k.starts_with(p)))
    {
        sd = strip(sd, prefix);
    }
    sd
}

/// The classifier's weight in PyTorch's naming for `model` (its rows are the classes).
pub(crate) fn classifier_key(model: &str) -> &'static str {
    if model.starts_with("mobilenetv2") {
        "classifier.1.weight"
    } else if model.starts_with("vgg") {
        "classifier.weight"
    } else {
        "fc.weight"
    }
}

/// The first convolution's weight (its second axis is the input channels).
pub(crate) fn stem_key(model: &str) -> &'static str {
    if model.starts_with("mobilenetv2") {
        "features.0.0.weight"
    } else if model.starts_with("vgg") {
        "block0.0.weight"
    } else {
        "conv1.weight"
    }
}

/// A 2-D [rows, cols] f32 matrix transposed (PyTorch keeps linear weights as [out, in],
/// burn as [in, out]).
fn transpose(data: TensorData) -> Result<TensorData> {
    let [r, c] = <[usize; 2]>::try_from(data.shape().to_vec()).expect("2-D");
    let v: Vec<f32> = data
        .try_to_vec::<f32>()
        .map_err(|e| anyhow::anyhow!("linear weight: {e:?}"))?;
    let t: Vec<f32> = (0..c)
        .flat_map(|j| v.iter().skip(j).step_by(c).take(r).copied())
        .collect();
    Ok(TensorData::new(t, [c, r]))
}

/// A linear layer's weight (the zoo's only 2-D `weight`s), which PyTorch keeps transposed.
fn is_linear_weight(name: &str, ndim: usize) -> bool {
    ndim == 2 && name.ends_with(".weight")
}

/// lstmkd's tensor names and shapes in `net`.
fn tensors_of(net: &Network) -> Vec<(String, Vec<usize>)> {
    net.collect(None::<PathFilter>, None, true)
        .into_iter()
        .map(|t| (t.name.clone(), t.shape.to_vec()))
        .collect()
}

/// Lists at most 12 names of a category, then how many more.
fn listing(what: &str, items: &[String]) -> String {
    let mut s = format!("\n  {what} ({}):", items.len());
    for i in items.iter().take(12) {
        s.push_str(&format!("\n    {i}"));
    }
    if items.len() > 12 {
        s.push_str(&format!("\n    ... and {} more", items.len() - 12));
    }
    s
}

/// Loads `sd` (PyTorch names and layout) into `net`: every tensor of the network must be in
/// the file with its shape, and every tensor of the file must belong to the network (batch
/// norms' `num_batches_tracked` aside). Otherwise nothing is loaded and the error lists the
/// missing, unexpected and mis-shaped keys.
pub fn load(mut net: Network, sd: &StateDict, origin: &str) -> Result<Network> {
    let own = tensors_of(&net);
    let names = TorchNames::new(
        &net,
        &own.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>(),
    );
    let (mut missing, mut misshaped, mut tensors) = (Vec::new(), Vec::new(), Vec::new());
    for (name, shape) in &own {
        let torch = names.torch(name);
        let Some(data) = sd.get(&torch) else {
            missing.push(torch);
            continue;
        };
        // Compared in PyTorch's terms: linear weights are [out, in] in the file.
        let linear = is_linear_weight(&torch, shape.len());
        let expected: Vec<usize> = if linear {
            shape.iter().rev().copied().collect()
        } else {
            shape.clone()
        };
        if !matches!(
            data.dtype(),
            DType::F64 | DType::F32 | DType::F16 | DType::BF16
        ) {
            misshaped.push(format!(
                "{torch}: {:?} values, the model's are floats",
                data.dtype()
            ));
            continue;
        }
        if data.shape().to_vec() != expected {
            misshaped.push(format!(
                "{torch}: file {:?}, model {expected:?}",
                data.shape().to_vec()
            ));
            continue;
        }
        let data = data.clone().convert::<f32>();
        let data = if linear { transpose(data)? } else { data };
        tensors.push(bridge::from_data(data, name.clone(), None));
    }
    let unexpected: Vec<String> = sd
        .keys()
        .filter(|k| names.lstmkd(k).is_none())
        .filter(|k| {
            !k.strip_suffix(".num_batches_tracked")
                .is_some_and(|m| names.batch_norms.iter().any(|b| b == m))
        })
        .cloned()
        .collect();
    if !(missing.is_empty() && unexpected.is_empty() && misshaped.is_empty()) {
        let mut msg = format!("{origin}: the state_dict does not fit this model");
        if !missing.is_empty() {
            msg += &listing("missing keys", &missing);
        }
        if !unexpected.is_empty() {
            msg += &listing("unexpected keys", &unexpected);
        }
        if !misshaped.is_empty() {
            msg += &listing("mis-shaped keys", &misshaped);
        }
        bail!(
            "{msg}\n  (is --model the architecture these weights were trained as, and --classes / --input / --width right?)"
        );
    }
    let result = net.apply(tensors, None, None, true);
    if !(result.errors.is_empty() && result.missing.is_empty() && result.unused.is_empty()) {
        bail!("{origin}: loading failed: {result}");
    }
    Ok(net)
}

/// `net`'s unfolded weights as a PyTorch state_dict (PyTorch names, linear weights as
/// [out, in], batch norms with `num_batches_tracked` as int64).
pub fn of(net: &Network) -> Result<StateDict> {
    let own = net.collect(None::<PathFilter>, None, true);
    let names = TorchNames::new(net, &own.iter().map(|t| t.name.clone()).collect::<Vec<_>>());
    let mut sd = StateDict::new();
    for t in own {
        let torch = names.torch(&t.name);
        let data = bridge::into_data(t).map_err(|e| anyhow::anyhow!("{torch}: {e}"))?;
        let data = if is_linear_weight(&torch, data.shape().len()) {
            transpose(data)?
        } else {
            data
        };
        sd.insert(torch, data);
    }
    for bn in &names.batch_norms {
        sd.insert(
            format!("{bn}.num_batches_tracked"),
            TensorData::new(vec![0i64], Vec::<usize>::new()),
        );
    }
    Ok(sd)
}

/// A state_dict as a safetensors file's bytes.
pub fn safetensors_bytes(sd: &StateDict, metadata: BTreeMap<String, String>) -> Result<Vec<u8>> {
    use safetensors::tensor::TensorView;
    let views: Vec<(String, TensorView)> = sd
        .iter()
        .map(|(name, data)| {
            let dtype = match data.dtype() {
                DType::F32 => safetensors::Dtype::F32,
                DType::I64 => safetensors::Dtype::I64,
                other => bail!("{name}: cannot write {other:?} tensors"),
            };
            let view = TensorView::new(dtype, data.shape().to_vec(), data.as_bytes())
                .map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
            Ok((name.clone(), view))
        })
        .collect::<Result<_>>()?;
    // The crate writes the metadata from a HashMap, in an order that changes from call to
    // call: the same checkpoint would export to other bytes each time. Written first in the
    // header, it is put back in key order (the same entries, so the same length).
    let sorted = serde_json::to_string(&metadata)?;
    let metadata: std::collections::HashMap<String, String> = metadata.into_iter().collect();
    let mut bytes = safetensors::serialize(views, Some(metadata))
        .map_err(|e| anyhow::anyhow!("cannot serialise safetensors: {e}"))?;
    let at = 8 + br#"{"__metadata__":"#.len();
    let written = bytes
        .get(8..at + sorted.len())
        .filter(|h| h.starts_with(br#"{"__metadata__":"#))
        .and_then(|h| serde_json::from_slice::<BTreeMap<String, String>>(&h[at - 8..]).ok());
    if written.is_none_or(|w| serde_json::to_string(&w).ok().as_ref() != Some(&sorted)) {
        bail!("safetensors: the header does not start with its metadata; cannot put it in order");
    }
    bytes[at..at + sorted.len()].copy_from_slice(sorted.as_bytes());
    Ok(bytes)
}
