//! PyTorch's names for lstmkd's modules: torchvision's layout for the ImageNet ResNets and
//! MobileNetV2 (both stems), RepDistiller's for the CIFAR ResNets, WRN and VGG. Import and
//! safetensors export both go through this one table, so what one writes the other reads.
//!
//! Names are module paths (`layer1.0.downsample.conv`), the part before a tensor's own name;
//! burn-store's PyTorch adapters handle what differs inside a module (batch norm's
//! `gamma/beta` against `weight/bias`, linear weights transposed).

use std::collections::BTreeMap;

use crate::models::Network;

/// PyTorch's path for the lstmkd module at `path` in `net`.
fn torch_path(net: &Network, path: &str) -> String {
    let seg: Vec<&str> = path.split('.').collect();
    let join = |v: Vec<String>| v.join(".");
    match net {
        // nn.Sequential(conv, bn) shortcuts.
        Network::CifarResNet(_) | Network::ResNet(_) => path
            .replace("downsample.conv", "downsample.0")
            .replace("downsample.bn", "downsample.1"),
        Network::WideResNet(_) | Network::Clip(_) => path.to_string(),
        // Each block is nn.Sequential(conv, bn, relu, conv, bn, relu, ...): layer i's conv is
        // entry 3i, its batch norm 3i + 1.
        Network::Vgg(_) => match seg.as_slice() {
            [block, i, part] if block.starts_with("block") => {
                let i: usize = i.parse().unwrap_or(0);
                let k = if *part == "conv" { 3 * i } else { 3 * i + 1 };
                format!("{block}.{k}")
            }
            _ => path.to_string(),
        },
        Network::MobileNetV2(m) => {
            let conv_bn = |base: String, part: &str| {
                let k = if part == "conv" { 0 } else { 1 };
                format!("{base}.{k}")
            };
            match seg.as_slice() {
                ["stem", part] => conv_bn("features.0".into(), part),
                ["last", part] => conv_bn(format!("features.{}", m.blocks.len() + 1), part),
                ["classifier"] => "classifier.1".into(),
                ["blocks", i, layer, part] => {
                    let Ok(i) = i.parse::<usize>() else {
                        return path.to_string();
                    };
                    // torchvision's InvertedResidual.conv: [expand ConvBNReLU,] depthwise
                    // ConvBNReLU, project conv, project bn.
                    let offset = usize::from(m.blocks.get(i).is_some_and(|b| b.expand.is_some()));
                    let base = format!("features.{}.conv", i + 1);
                    match *layer {
                        "expand" => conv_bn(format!("{base}.0"), part),
                        "depthwise" => conv_bn(format!("{base}.{offset}"), part),
                        "project" => {
                            let k = offset + if *part == "conv" { 1 } else { 2 };
                            format!("{base}.{k}")
                        }
                        _ => path.to_string(),
                    }
                }
                _ => join(seg.iter().map(|s| s.to_string()).collect()),
            }
        }
    }
}

/// The tensors of `net` by lstmkd name, each with its PyTorch name (batch-norm parameters
/// and buffers under PyTorch's names).
pub(crate) struct TorchNames {
    to_torch: BTreeMap<String, String>,
    to_lstmkd: BTreeMap<String, String>,
    /// PyTorch names of the batch norms' modules, which own a `num_batches_tracked` buffer.
    pub(crate) batch_norms: Vec<String>,
}

/// burn's batch-norm tensor names and PyTorch's.
const NORM_PARAMS: [(&str, &str); 4] = [
    ("gamma", "weight"),
    ("beta", "bias"),
    ("running_mean", "running_mean"),
    ("running_var", "running_var"),
];

impl TorchNames {
    /// `tensors`: lstmkd's tensor names in `net` (module path + tensor name).
    pub(crate) fn new(net: &Network, tensors: &[String]) -> Self {
        let mut to_torch = BTreeMap::new();
        let mut batch_norms = Vec::new();
        for name in tensors {
            let (module, param) = name.rsplit_once('.').unwrap_or(("", name));
            let torch_module = torch_path(net, module);
            let torch_param = NORM_PARAMS
                .iter()
                .find(|(b, _)| *b == param)
                .map_or(param, |(_, t)| t);
            if param == "running_var" {
                batch_norms.push(torch_module.clone());
            }
            to_torch.insert(name.clone(), format!("{torch_module}.{torch_param}"));
        }
        let to_lstmkd = to_torch
            .iter()
            .map(|(l, t)| (t.clone(), l.clone()))
            .collect();
        Self {
            to_torch,
            to_lstmkd,
            batch_norms,
        }
    }

    pub(crate) fn torch(&self, lstmkd: &str) -> String {
        self.to_torch
            .get(lstmkd)
            .cloned()
            .unwrap_or_else(|| lstmkd.to_string())
    }

    pub(crate) fn lstmkd(&self, torch: &str) -> Option<&str> {
        self.to_lstmkd.get(torch).map(String::as_str)
    }
}
