//! ONNX export (opset 17) of a deployed zoo network: one float32 NCHW input with a dynamic
//! batch, pixels in [0, 1] with the checkpoint's normalisation as the graph's first nodes,
//! one output, the logits. The graph is written node by node from the same burn modules the
//! network runs (batch norm already folded), with the protobuf types tract-onnx ships.

use burn::nn::conv::{Conv2d, Conv3d};
use burn::nn::pool::MaxPool2d;
use burn::nn::{BatchNorm, BiLstm, GateController, Linear, Lstm, PaddingConfig2d};
use burn::tensor::Tensor;
use tract_onnx::pb;

use crate::distill::extractor::{Extractor, positions};
use crate::models::layers::ConvBn;
use crate::models::{Network, clip, mobilenetv2, resnet, resnet_cifar, vgg, wrn};

pub(crate) const OPSET: i64 = 17;

/// A graph under construction: nodes in execution order, weights as initializers.
#[derive(Default)]
pub(crate) struct Graph {
    nodes: Vec<pb::NodeProto>,
    initializers: Vec<pb::TensorProto>,
    count: usize,
}

pub(crate) fn attr_int(name: &str, i: i64) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.into(),
        r#type: pb::attribute_proto::AttributeType::Int as i32,
        i,
        ..Default::default()
    }
}

pub(crate) fn attr_ints(name: &str, ints: &[i64]) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.into(),
        r#type: pb::attribute_proto::AttributeType::Ints as i32,
        ints: ints.to_vec(),
        ..Default::default()
    }
}

pub(crate) fn attr_float(name: &str, f: f32) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.into(),
        r#type: pb::attribute_proto::AttributeType::Float as i32,
        f,
        ..Default::default()
    }
}

pub(crate) fn attr_str(name: &str, s: &str) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.into(),
        r#type: pb::attribute_proto::AttributeType::String as i32,
        s: s.as_bytes().to_vec(),
        ..Default::default()
    }
}

fn to_i64(v: &[usize]) -> Vec<i64> {
    v.iter().map(|&x| x as i64).collect()
}

/// A tensor's values, read back from the device.
pub(crate) fn values<const D: usize>(t: Tensor<D>) -> (Vec<f32>, Vec<usize>) {
    let dims = t.dims().to_vec();
    let v = t
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .expect("f32 after convert");
    (v, dims)
}

fn value_info(name: &str, elem_type: i32, dims: &[Option<i64>], batch: &str) -> pb::ValueInfoProto {
    use pb::tensor_shape_proto::{Dimension, dimension::Value};
    let dim = dims
        .iter()
        .map(|d| Dimension {
            value: Some(match d {
                Some(n) => Value::DimValue(*n),
                None => Value::DimParam(batch.into()),
            }),
            ..Default::default()
        })
        .collect();
    pb::ValueInfoProto {
        name: name.into(),
        r#type: Some(pb::TypeProto {
            value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                elem_type,
                shape: Some(pb::TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

const FLOAT: i32 = pb::tensor_proto::DataType::Float as i32;
const INT64: i32 = pb::tensor_proto::DataType::Int64 as i32;

impl Graph {
    fn fresh(&mut self, hint: &str) -> String {
        self.count += 1;
        format!("{hint}_{}", self.count)
    }

    /// A float initializer.
    pub(crate) fn constant(&mut self, hint: &str, v: &[f32], dims: &[usize]) -> String {
        let name = self.fresh(hint);
        self.initializers.push(pb::TensorProto {
            name: name.clone(),
            dims: to_i64(dims),
            data_type: FLOAT,
            raw_data: v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            ..Default::default()
        });
        name
    }

    pub(crate) fn constant_i64(&mut self, hint: &str, v: &[i64]) -> String {
        let name = self.fresh(hint);
        self.initializers.push(pb::TensorProto {
            name: name.clone(),
            dims: vec![v.len() as i64],
            data_type: INT64,
            raw_data: v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            ..Default::default()
        });
        name
    }

    pub(crate) fn tensor<const D: usize>(&mut self, hint: &str, t: Tensor<D>) -> String {
        let (v, dims) = values(t);
        self.constant(hint, &v, &dims)
    }

    /// A node with `outputs` outputs; returns their names.
    pub(crate) fn node_n(
        &mut self,
        op: &str,
        inputs: &[&str],
        attrs: Vec<pb::AttributeProto>,
        outputs: usize,
    ) -> Vec<String> {
        let out: Vec<String> = (0..outputs)
            .map(|_| self.fresh(&op.to_lowercase()))
            .collect();
        self.nodes.push(pb::NodeProto {
            name: out[0].clone(),
            op_type: op.into(),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: out.clone(),
            attribute: attrs,
            ..Default::default()
        });
        out
    }

    pub(crate) fn node(
        &mut self,
        op: &str,
        inputs: &[&str],
        attrs: Vec<pb::AttributeProto>,
    ) -> String {
        self.node_n(op, inputs, attrs, 1).remove(0)
    }

    pub(crate) fn relu(&mut self, x: &str) -> String {
        self.node("Relu", &[x], vec![])
    }

    pub(crate) fn relu6(&mut self, x: &str) -> String {
        let lo = self.constant("zero", &[0.0], &[]);
        let hi = self.constant("six", &[6.0], &[]);
        self.node("Clip", &[x, &lo, &hi], vec![])
    }

    pub(crate) fn add(&mut self, a: &str, b: &str) -> String {
        self.node("Add", &[a, b], vec![])
    }

    pub(crate) fn conv(&mut self, c: &Conv2d, x: &str) -> String {
        let w = self.tensor("conv_w", c.weight.val());
        let mut inputs = vec![x.to_string(), w];
        if let Some(b) = &c.bias {
            inputs.push(self.tensor("conv_b", b.val()));
        }
        let pads = match c.padding {
            PaddingConfig2d::Explicit(t, l, b, r) => [t, l, b, r],
            PaddingConfig2d::Valid => [0; 4],
            PaddingConfig2d::Same => unreachable!("the zoo uses explicit padding"),
        };
        let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        self.node(
            "Conv",
            &refs,
            vec![
                attr_ints("kernel_shape", &to_i64(&c.kernel_size)),
                attr_ints("strides", &to_i64(&c.stride)),
                attr_ints("dilations", &to_i64(&c.dilation)),
                attr_ints("pads", &to_i64(&[pads[0], pads[1], pads[2], pads[3]])),
                attr_int("group", c.groups as i64),
            ],
        )
    }

    /// A 3-D convolution with symmetric padding `pad` on every axis.
    pub(crate) fn conv3d(&mut self, c: &Conv3d, pad: [usize; 3], x: &str) -> String {
        let w = self.tensor("conv3d_w", c.weight.val());
        let mut inputs = vec![x.to_string(), w];
        if let Some(b) = &c.bias {
            inputs.push(self.tensor("conv3d_b", b.val()));
        }
        let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        let pads: Vec<usize> = pad.iter().chain(pad.iter()).copied().collect();
        self.node(
            "Conv",
            &refs,
            vec![
                attr_ints("kernel_shape", &to_i64(&c.kernel_size)),
                attr_ints("strides", &to_i64(&c.stride)),
                attr_ints("pads", &to_i64(&pads)),
            ],
        )
    }

    pub(crate) fn conv_bn(&mut self, c: &ConvBn, x: &str) -> String {
        let y = self.conv(&c.conv, x);
        match &c.bn {
            Some(bn) => self.batch_norm(bn, &y),
            None => y,
        }
    }

    pub(crate) fn norm(&mut self, bn: &Option<BatchNorm>, x: &str) -> String {
        match bn {
            Some(bn) => self.batch_norm(bn, x),
            None => x.to_string(),
        }
    }

    pub(crate) fn batch_norm(&mut self, bn: &BatchNorm, x: &str) -> String {
        let g = self.tensor("bn_gamma", bn.gamma.val());
        let b = self.tensor("bn_beta", bn.beta.val());
        let m = self.tensor("bn_mean", bn.running_mean.value());
        let v = self.tensor("bn_var", bn.running_var.value());
        self.node(
            "BatchNormalization",
            &[x, &g, &b, &m, &v],
            vec![attr_float("epsilon", bn.epsilon as f32)],
        )
    }

    pub(crate) fn max_pool(&mut self, p: &MaxPool2d, x: &str) -> String {
        let pads = match p.padding {
            PaddingConfig2d::Explicit(t, l, b, r) => [t, l, b, r],
            _ => [0; 4],
        };
        self.node(
            "MaxPool",
            &[x],
            vec![
                attr_ints("kernel_shape", &to_i64(&p.kernel_size)),
                attr_ints("strides", &to_i64(&p.stride)),
                attr_ints("pads", &to_i64(&pads)),
            ],
        )
    }

    /// Global average pooling to [N, C].
    pub(crate) fn pool_flat(&mut self, x: &str) -> String {
        let p = self.node("GlobalAveragePool", &[x], vec![]);
        self.node("Flatten", &[&p], vec![attr_int("axis", 1)])
    }

    /// burn keeps linear weights as [in, out]: Gemm without transposing B.
    pub(crate) fn linear(&mut self, l: &Linear, x: &str) -> String {
        let w = self.tensor("fc_w", l.weight.val());
        let mut inputs = vec![x.to_string(), w];
        if let Some(b) = &l.bias {
            inputs.push(self.tensor("fc_b", b.val()));
        }
        let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        self.node("Gemm", &refs, vec![])
    }

    /// `(x - mean) / std` per channel, for inputs in [0, 1].
    pub(crate) fn normalize(&mut self, x: &str, mean: &[f32], std: &[f32]) -> String {
        let c = mean.len();
        let m = self.constant("mean", mean, &[1, c, 1, 1]);
        let s = self.constant("std", std, &[1, c, 1, 1]);
        let y = self.node("Sub", &[x, &m], vec![]);
        self.node("Div", &[&y, &s], vec![])
    }

    /// The finished model: `input` [N, C, H, W] -> `output` [N, K].
    /// `input` names the graph's input and its dimensions after the batch: [C, H, W], or
    /// [frames, C, H, W] for clips.
    pub(crate) fn model(
        self,
        input: (&str, &[usize]),
        output: (&str, usize),
        metadata: Vec<(String, String)>,
    ) -> pb::ModelProto {
        let (name, dims) = input;
        let dims: Vec<Option<i64>> = std::iter::once(None)
            .chain(dims.iter().map(|&d| Some(d as i64)))
            .collect();
        let graph = pb::GraphProto {
            name: "lstmkd".into(),
            node: self.nodes,
            initializer: self.initializers,
            input: vec![value_info(name, FLOAT, &dims, "N")],
            output: vec![value_info(
                output.0,
                FLOAT,
                &[None, Some(output.1 as i64)],
                "N",
            )],
            ..Default::default()
        };
        pb::ModelProto {
            ir_version: 8,
            opset_import: vec![pb::OperatorSetIdProto {
                domain: String::new(),
                version: OPSET,
            }],
            producer_name: "lstmkd".into(),
            producer_version: env!("CARGO_PKG_VERSION").into(),
            graph: Some(graph),
            metadata_props: metadata
                .into_iter()
                .map(|(key, value)| pb::StringStringEntryProto { key, value })
                .collect(),
            ..Default::default()
        }
    }

    /// Renames the last node's output (the graph's outputs need fixed names).
    pub(crate) fn rename_last(&mut self, name: &str) {
        let node = self.nodes.last_mut().expect("a node");
        node.output[0] = name.into();
    }
}

/// A Linear's weight as PyTorch/ONNX keep it, [out, in] (burn: [in, out]).
fn out_in(l: &Linear) -> Vec<f32> {
    let (v, dims) = values(l.weight.val());
    let (din, dout) = (dims[0], dims[1]);
    (0..dout)
        .flat_map(|o| (0..din).map(move |i| (o, i)))
        .map(|(o, i)| v[i * dout + o])
        .collect()
}

fn bias(l: &Linear) -> Vec<f32> {
    match &l.bias {
        Some(b) => values(b.val()).0,
        None => vec![0.0; l.weight.dims()[1]],
    }
}

/// ONNX's LSTM operator (bidirectional, sequence-major) for burn's BiLstm: gates in ONNX's
/// order i, o, f, c.
fn bilstm(g: &mut Graph, l: &BiLstm, x: &str) -> String {
    let h = l.d_hidden;
    fn gates(d: &Lstm) -> [&GateController; 4] {
        let forget = d
            .forget_gate
            .as_ref()
            .expect("the extractor's LSTMs have a forget gate");
        [&d.input_gate, &d.output_gate, forget, &d.cell_gate]
    }
    let (mut w, mut r, mut b) = (Vec::new(), Vec::new(), Vec::new());
    for d in [&l.forward, &l.reverse] {
        let gs = gates(d);
        for gc in gs {
            w.extend(out_in(&gc.input_transform));
            r.extend(out_in(&gc.hidden_transform));
        }
        for gc in gs {
            b.extend(bias(&gc.input_transform));
        }
        for gc in gs {
            b.extend(bias(&gc.hidden_transform));
        }
    }
    let d_in = w.len() / (2 * 4 * h);
    let w = g.constant("lstm_w", &w, &[2, 4 * h, d_in]);
    let r = g.constant("lstm_r", &r, &[2, 4 * h, h]);
    let b = g.constant("lstm_b", &b, &[2, 8 * h]);
    let y = g.node_n(
        "LSTM",
        &[x, &w, &r, &b],
        vec![
            attr_int("hidden_size", h as i64),
            attr_str("direction", "bidirectional"),
        ],
        1,
    );
    // Y is [N, 2, B, H]; the next layer reads [N, B, 2H] with the forward half first.
    let y = g.node(
        "Transpose",
        &[&y[0]],
        vec![attr_ints("perm", &[0, 2, 1, 3])],
    );
    let shape = g.constant_i64("shape", &[0, 0, -1]);
    g.node("Reshape", &[&y, &shape], vec![])
}

/// The extractor on a tap of `[c, h, w]` (its definition: the stack of row windows, the
/// Conv3d, ReLU, the mean over window and width, the BiLSTMs over positions, the mean over
/// time); returns the aux head's logits.
pub(crate) fn extractor(g: &mut Graph, e: &Extractor, x: &str, [_, h, _]: [usize; 3]) -> String {
    let t = e.window;
    let x = if h < t {
        let pads = g.constant_i64("pads", &[0, 0, 0, 0, 0, 0, (t - h) as i64, 0]);
        g.node("Pad", &[x, &pads], vec![])
    } else {
        x.to_string()
    };
    let n = positions(h, t);
    let axis = g.constant_i64("axis", &[2]);
    let windows: Vec<String> = (0..t)
        .map(|k| {
            let start = g.constant_i64("start", &[k as i64]);
            let end = g.constant_i64("end", &[(k + n) as i64]);
            let rows = g.node("Slice", &[&x, &start, &end, &axis], vec![]);
            g.node("Unsqueeze", &[&rows, &axis], vec![])
        })
        .collect();
    let refs: Vec<&str> = windows.iter().map(String::as_str).collect();
    let stack = g.node("Concat", &refs, vec![attr_int("axis", 2)]);
    let y = g.conv3d(&e.conv, [1, 1, 1], &stack);
    let y = g.relu(&y);
    let y = g.node(
        "ReduceMean",
        &[&y],
        vec![attr_ints("axes", &[2, 4]), attr_int("keepdims", 0)],
    );
    let mut y = g.node("Transpose", &[&y], vec![attr_ints("perm", &[2, 0, 1])]);
    for layer in &e.lstm {
        y = bilstm(g, layer, &y);
    }
    let z = g.node(
        "ReduceMean",
        &[&y],
        vec![attr_ints("axes", &[0]), attr_int("keepdims", 0)],
    );
    g.linear(&e.head, &z)
}

/// Emits `net`'s forward pass from `x` (images `height` pixels high): the logits and the
/// taps, shallow to deep.
pub(crate) fn network(
    g: &mut Graph,
    net: &Network,
    x: &str,
    height: usize,
) -> (String, Vec<String>) {
    match net {
        Network::CifarResNet(m) => cifar_resnet(g, m, x),
        Network::ResNet(m) => imagenet_resnet(g, m, x),
        Network::WideResNet(m) => wide_resnet(g, m, x),
        Network::Vgg(m) => vgg_net(g, m, x, height),
        Network::MobileNetV2(m) => mobilenet(g, m, x),
        Network::Clip(m) => clip_net(g, m, x, height),
    }
}

/// `x` is [B x frames, C, H, W] as in `ClipNet::forward`; the taps stay per frame.
fn clip_net(g: &mut Graph, m: &clip::ClipNet, x: &str, height: usize) -> (String, Vec<String>) {
    let (embedding, taps) = network(g, &m.backbone[0], x, height);
    let f = m.frames as i64;
    let e = m.fc.weight.dims()[0] as i64 - m.motion.last().map_or(0, |l| l.weight.dims()[0] as i64);
    let shape = g.constant_i64("clip_embed_shape", &[-1, f, e]);
    let per_clip = g.node("Reshape", &[&embedding, &shape], vec![]);
    let appearance = g.node(
        "ReduceMean",
        &[&per_clip],
        vec![attr_ints("axes", &[1]), attr_int("keepdims", 0)],
    );
    // The deepest tap [B x frames, C, h, w] as [B, C, frames, h, w], its C, h, w read from
    // the tap's own shape.
    let deepest = taps.last().expect("a model has taps").clone();
    let dims = g.node("Shape", &[&deepest], vec![]);
    let (from, to) = (g.constant_i64("from1", &[1]), g.constant_i64("to4", &[4]));
    let chw = g.node("Slice", &[&dims, &from, &to], vec![]);
    let lead = g.constant_i64("clip_lead", &[-1, f]);
    let shape = g.node("Concat", &[&lead, &chw], vec![attr_int("axis", 0)]);
    let y = g.node("Reshape", &[&deepest, &shape], vec![]);
    let mut y = g.node(
        "Transpose",
        &[&y],
        vec![attr_ints("perm", &[0, 2, 1, 3, 4])],
    );
    for layer in &m.motion {
        let c = g.conv3d(layer, [1, 1, 1], &y);
        y = g.relu(&c);
    }
    let motion = g.node(
        "ReduceMean",
        &[&y],
        vec![attr_ints("axes", &[2, 3, 4]), attr_int("keepdims", 0)],
    );
    let both = g.node("Concat", &[&appearance, &motion], vec![attr_int("axis", 1)]);
    (g.linear(&m.fc, &both), taps)
}

fn basic_block(g: &mut Graph, b: &resnet_cifar::BasicBlock, x: &str) -> String {
    let identity = match &b.downsample {
        Some(d) => g.conv_bn(d, x),
        None => x.to_string(),
    };
    let y = g.conv(&b.conv1, x);
    let y = g.norm(&b.bn1, &y);
    let y = g.relu(&y);
    let y = g.conv(&b.conv2, &y);
    let y = g.norm(&b.bn2, &y);
    let y = g.add(&y, &identity);
    g.relu(&y)
}

fn bottleneck(g: &mut Graph, b: &resnet::Bottleneck, x: &str) -> String {
    let identity = match &b.downsample {
        Some(d) => g.conv_bn(d, x),
        None => x.to_string(),
    };
    let mut y = x.to_string();
    for (conv, bn, act) in [
        (&b.conv1, &b.bn1, true),
        (&b.conv2, &b.bn2, true),
        (&b.conv3, &b.bn3, false),
    ] {
        y = g.conv(conv, &y);
        y = g.norm(bn, &y);
        if act {
            y = g.relu(&y);
        }
    }
    let y = g.add(&y, &identity);
    g.relu(&y)
}

fn cifar_resnet(g: &mut Graph, m: &resnet_cifar::CifarResNet, x: &str) -> (String, Vec<String>) {
    let y = g.conv(&m.conv1, x);
    let y = g.norm(&m.bn1, &y);
    let mut y = g.relu(&y);
    let mut taps = Vec::new();
    for stage in [&m.layer1, &m.layer2, &m.layer3] {
        for b in stage {
            y = basic_block(g, b, &y);
        }
        taps.push(y.clone());
    }
    let p = g.pool_flat(&y);
    (g.linear(&m.fc, &p), taps)
}

fn imagenet_resnet(g: &mut Graph, m: &resnet::ResNet, x: &str) -> (String, Vec<String>) {
    let y = g.conv(&m.conv1, x);
    let y = g.norm(&m.bn1, &y);
    let y = g.relu(&y);
    let mut y = g.max_pool(&m.maxpool, &y);
    let mut taps = Vec::new();
    for stage in [&m.layer1, &m.layer2, &m.layer3, &m.layer4] {
        match stage {
            resnet::Stage::Basic(blocks) => {
                for b in blocks {
                    y = basic_block(g, b, &y);
                }
            }
            resnet::Stage::Bottleneck(blocks) => {
                for b in blocks {
                    y = bottleneck(g, b, &y);
                }
            }
        }
        taps.push(y.clone());
    }
    let p = g.pool_flat(&y);
    (g.linear(&m.fc, &p), taps)
}

fn wide_resnet(g: &mut Graph, m: &wrn::WideResNet, x: &str) -> (String, Vec<String>) {
    let mut y = g.conv(&m.conv1, x);
    let mut taps = Vec::new();
    for group in [&m.block1, &m.block2, &m.block3] {
        for b in &group.layer {
            let pre = g.batch_norm(&b.bn1, &y);
            let pre = g.relu(&pre);
            let shortcut = match &b.convShortcut {
                Some(proj) => g.conv(proj, &pre),
                None => y.clone(),
            };
            let z = g.conv(&b.conv1, &pre);
            let z = g.norm(&b.bn2, &z);
            let z = g.relu(&z);
            let z = g.conv(&b.conv2, &z);
            y = g.add(&z, &shortcut);
        }
        taps.push(y.clone());
    }
    let last = taps.pop().expect("three groups");
    let last = g.batch_norm(&m.bn1, &last);
    let last = g.relu(&last);
    taps.push(last.clone());
    let p = g.pool_flat(&last);
    (g.linear(&m.fc, &p), taps)
}

fn vgg_net(g: &mut Graph, m: &vgg::Vgg, x: &str, height: usize) -> (String, Vec<String>) {
    // The fourth pooling depends on the input height, as in `Vgg::forward`; the exported
    // graph has a fixed input size, so it is decided here.
    let run = |g: &mut Graph, block: &[ConvBn], x: &str| {
        block.iter().fold(x.to_string(), |y, l| {
            let y = g.conv_bn(l, &y);
            g.relu(&y)
        })
    };
    let mut taps = Vec::new();
    let mut y = x.to_string();
    for (i, block) in [&m.block0, &m.block1, &m.block2, &m.block3, &m.block4]
        .into_iter()
        .enumerate()
    {
        if i > 0 && (i < 4 || height >= 64) {
            y = g.max_pool(&m.pool, &y);
        }
        y = run(g, block, &y);
        taps.push(y.clone());
    }
    let p = g.pool_flat(&y);
    (g.linear(&m.classifier, &p), taps)
}

fn mobilenet(g: &mut Graph, m: &mobilenetv2::MobileNetV2, x: &str) -> (String, Vec<String>) {
    let y = g.conv_bn(&m.stem, x);
    let mut y = g.relu6(&y);
    let mut taps = Vec::new();
    for (i, b) in m.blocks.iter().enumerate() {
        let inp = y.clone();
        let mut z = y.clone();
        if let Some(e) = &b.expand {
            z = g.conv_bn(e, &z);
            z = g.relu6(&z);
        }
        z = g.conv_bn(&b.depthwise, &z);
        z = g.relu6(&z);
        z = g.conv_bn(&b.project, &z);
        y = if b.use_residual { g.add(&z, &inp) } else { z };
        if m.tap_after.contains(&i) {
            taps.push(y.clone());
        }
    }
    let z = g.conv_bn(&m.last, &y);
    let z = g.relu6(&z);
    let p = g.pool_flat(&z);
    (g.linear(&m.classifier, &p), taps)
}
