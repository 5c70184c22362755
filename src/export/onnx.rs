//! The ONNX graph writer: the operations the blocks emit (each block writes itself beside its `forward`, through
//! [`OnnxGraph`]) collected into ONNX's protobuf, with BatchNorm folded into the convolutions. The contract is
//! Ultralytics' detection export:
//! * input `images`, `[batch, 3, height, width]`, RGB in 0..1, letterboxed;
//! * output `output0`, either `[batch, 4 + nc, anchors]` (boxes `xywh` in input pixels, then the sigmoid class
//!   scores; needs NMS) or, with `end2end`, `[batch, k, 6]` rows `x1, y1, x2, y2, score, class` from the one-to-one
//!   head with `k = min(max_det, anchors)` (no NMS; rows are in descending score order);
//! * metadata properties `names`, `stride`, `imgsz`, `task`, `batch`, `end2end` (Python literals, like
//!   Ultralytics writes them).

use anyhow::{bail, Result};
use burn::tensor::backend::Backend;
use prost::Message;

use super::proto::*;
use crate::model::Yolo;
use crate::nn::onnx::{Attr, OnnxGraph};
use crate::nn::HeadExport;

/// What to export.
#[derive(Debug, Clone)]
pub struct OnnxOptions {
    /// Input height and width (multiples of the largest stride); with `dynamic` only the metadata default.
    pub imgsz: [usize; 2],
    /// Batch size of the static input (ignored with `dynamic`).
    pub batch: usize,
    /// FP16 weights, input, computation and output.
    pub half: bool,
    /// Symbolic batch, height and width.
    pub dynamic: bool,
    /// NMS-free `[batch, k, 6]` output from the one-to-one head (end-to-end models only).
    pub end2end: bool,
    /// With `end2end`, the most detections per image the graph returns (its `k` is `min(max_det, anchors)`);
    /// unused otherwise (Ultralytics max_det, default 300).
    pub max_det: usize,
    /// ONNX default-domain opset to declare; must lie in [`OPSETS`].
    pub opset: i64,
    /// Class names, index = class id, one per model class; written to the `names` metadata.
    pub names: Vec<String>,
}

impl OnnxOptions {
    /// Square `imgsz` x `imgsz` input, batch 1, FP32, static shapes, NMS output, `max_det` 300, opset 17.
    pub fn new(imgsz: usize, names: Vec<String>) -> Self {
        OnnxOptions {
            imgsz: [imgsz, imgsz],
            batch: 1,
            half: false,
            dynamic: false,
            end2end: false,
            max_det: 300,
            opset: 17,
            names,
        }
    }
}

/// The exported graph: its bytes and the output shape (`None` for symbolic axes).
pub struct OnnxModel {
    /// The serialised `ModelProto`, ready to write as a `.onnx` file.
    pub bytes: Vec<u8>,
    /// Shape of `output0`: `[batch, 4 + nc, anchors]`, or `[batch, k, 6]` with `end2end`.
    pub output_shape: Vec<Option<usize>>,
}

/// Lowest and highest opset the exporter writes (`Split`, `Unsqueeze`, `ReduceSum` take their axes as inputs).
pub const OPSETS: std::ops::RangeInclusive<i64> = 13..=21;

fn attribute(attr: Attr) -> AttributeProto {
    let mut a = AttributeProto::default();
    match attr {
        Attr::Int(name, v) => {
            a.name = Some(name.into());
            a.i = Some(v);
            a.r#type = Some(attribute_type::INT);
        }
        Attr::Ints(name, v) => {
            a.name = Some(name.into());
            a.ints = v;
            a.r#type = Some(attribute_type::INTS);
        }
        Attr::Str(name, v) => {
            a.name = Some(name.into());
            a.s = Some(v.as_bytes().to_vec());
            a.r#type = Some(attribute_type::STRING);
        }
    }
    a
}

/// Accumulates nodes and initializers with unique names.
struct Graph {
    nodes: Vec<NodeProto>,
    inits: Vec<TensorProto>,
    count: usize,
    half: bool,
    opset: i64,
}

impl Graph {
    fn fresh(&mut self, hint: &str) -> String {
        self.count += 1;
        format!("{hint}_{}", self.count)
    }

    fn float_type(&self) -> i32 {
        if self.half {
            data_type::FLOAT16
        } else {
            data_type::FLOAT
        }
    }

    fn initializer(&mut self, hint: &str, dims: &[usize], data_type: i32, raw: Vec<u8>) -> String {
        let name = self.fresh(hint);
        self.inits.push(TensorProto {
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: Some(data_type),
            name: Some(name.clone()),
            raw_data: Some(raw),
        });
        name
    }
}

impl OnnxGraph for Graph {
    fn op_n(&mut self, op: &str, inputs: &[&str], outputs: usize, attrs: Vec<Attr>) -> Vec<String> {
        let outs: Vec<String> = (0..outputs).map(|_| self.fresh(&op.to_ascii_lowercase())).collect();
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outs.clone(),
            name: Some(format!("/{}", outs[0])),
            op_type: Some(op.into()),
            attribute: attrs.into_iter().map(attribute).collect(),
            domain: None,
        });
        outs
    }

    fn weight(&mut self, hint: &str, dims: &[usize], data: &[f32]) -> String {
        debug_assert_eq!(dims.iter().product::<usize>(), data.len());
        let raw: Vec<u8> = if self.half {
            data.iter().flat_map(|&v| half::f16::from_f32(v).to_le_bytes()).collect()
        } else {
            data.iter().flat_map(|v| v.to_le_bytes()).collect()
        };
        let float_type = self.float_type();
        self.initializer(hint, dims, float_type, raw)
    }

    fn f32_constant(&mut self, hint: &str, dims: &[usize], data: &[f32]) -> String {
        self.initializer(hint, dims, data_type::FLOAT, data.iter().flat_map(|v| v.to_le_bytes()).collect())
    }

    fn ints(&mut self, hint: &str, data: &[i64]) -> String {
        self.initializer(hint, &[data.len()], data_type::INT64, data.iter().flat_map(|v| v.to_le_bytes()).collect())
    }

    fn int_scalar(&mut self, hint: &str, v: i64) -> String {
        self.initializer(hint, &[], data_type::INT64, v.to_le_bytes().to_vec())
    }

    fn cast_to_float(&mut self, x: &str) -> String {
        let to = self.float_type() as i64;
        self.op("Cast", &[x], vec![Attr::Int("to", to)])
    }

    fn opset(&self) -> i64 {
        self.opset
    }
}

fn dim_value(v: usize) -> Dimension {
    Dimension { dim_value: Some(v as i64), dim_param: None }
}
fn dim_param(p: &str) -> Dimension {
    Dimension { dim_value: None, dim_param: Some(p.into()) }
}

fn value_info(name: &str, elem_type: i32, dims: Vec<Dimension>) -> ValueInfoProto {
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            tensor_type: Some(TypeProtoTensor {
                elem_type: Some(elem_type),
                shape: Some(TensorShapeProto { dim: dims }),
            }),
        }),
    }
}

/// A Python string literal (what `str()` of a dict of names prints).
fn py_str(s: &str) -> String {
    if s.contains('\'') && !s.contains('"') {
        format!("\"{s}\"")
    } else {
        format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
    }
}

/// Ultralytics' metadata properties, as Python literals.
fn metadata<B: Backend>(model: &Yolo<B>, opts: &OnnxOptions) -> Vec<(String, String)> {
    let names =
        opts.names.iter().enumerate().map(|(i, n)| format!("{i}: {}", py_str(n))).collect::<Vec<_>>().join(", ");
    let stride = model.strides().iter().cloned().fold(0.0f32, f32::max) as usize;
    let py_bool = |b: bool| if b { "True" } else { "False" }.to_string();
    vec![
        ("description".into(), format!("ember {} model", model.name())),
        ("author".into(), "ember".into()),
        ("version".into(), env!("CARGO_PKG_VERSION").into()),
        ("task".into(), "detect".into()),
        ("stride".into(), stride.to_string()),
        ("batch".into(), opts.batch.to_string()),
        ("imgsz".into(), format!("[{}, {}]", opts.imgsz[0], opts.imgsz[1])),
        ("names".into(), format!("{{{names}}}")),
        ("channels".into(), "3".into()),
        ("end2end".into(), py_bool(opts.end2end)),
        ("half".into(), py_bool(opts.half)),
        ("dynamic".into(), py_bool(opts.dynamic)),
    ]
}

fn check_options<B: Backend>(model: &Yolo<B>, opts: &OnnxOptions) -> Result<()> {
    if !OPSETS.contains(&opts.opset) {
        bail!("ONNX opset {} is not supported: ember writes opsets {} to {}", opts.opset, OPSETS.start(), OPSETS.end());
    }
    if opts.end2end && !model.end2end() {
        bail!("--end2end needs an end-to-end model (YOLO26); {} has no one-to-one head", model.name());
    }
    let max_stride = model.strides().iter().cloned().fold(0.0f32, f32::max) as usize;
    if opts.imgsz.iter().any(|&s| s == 0 || s % max_stride != 0) {
        bail!("--imgsz must be a positive multiple of the model stride {max_stride}, got {:?}", opts.imgsz);
    }
    if opts.names.len() != model.nc() {
        bail!("{} class names given for a model with {} classes", opts.names.len(), model.nc());
    }
    if opts.batch == 0 || opts.max_det == 0 {
        bail!("batch and max_det must be at least 1");
    }
    Ok(())
}

/// The declared input and output dimensions, and the output shape (`None` for symbolic axes).
fn io_shapes<B: Backend>(model: &Yolo<B>, opts: &OnnxOptions) -> (Vec<Dimension>, Vec<Dimension>, Vec<Option<usize>>) {
    let nc = model.nc();
    if opts.dynamic {
        let (output_dims, output_shape) = if opts.end2end {
            (vec![dim_param("batch"), dim_param("detections"), dim_value(6)], vec![None, None, Some(6)])
        } else {
            (vec![dim_param("batch"), dim_value(4 + nc), dim_param("anchors")], vec![None, Some(4 + nc), None])
        };
        let input_dims = vec![dim_param("batch"), dim_value(3), dim_param("height"), dim_param("width")];
        return (input_dims, output_dims, output_shape);
    }
    let anchors: usize =
        model.strides().iter().map(|&s| (opts.imgsz[0] / s as usize) * (opts.imgsz[1] / s as usize)).sum();
    let shape =
        if opts.end2end { vec![opts.batch, opts.max_det.min(anchors), 6] } else { vec![opts.batch, 4 + nc, anchors] };
    (
        vec![dim_value(opts.batch), dim_value(3), dim_value(opts.imgsz[0]), dim_value(opts.imgsz[1])],
        shape.iter().map(|&d| dim_value(d)).collect(),
        shape.into_iter().map(Some).collect(),
    )
}

/// Build the ONNX model for `model` (evaluation weights: BatchNorm uses its running statistics).
pub fn export_onnx<B: Backend>(model: &Yolo<B>, opts: &OnnxOptions) -> Result<OnnxModel> {
    check_options(model, opts)?;
    let mut g = Graph { nodes: Vec::new(), inits: Vec::new(), count: 0, half: opts.half, opset: opts.opset };
    let head =
        HeadExport { imgsz: (!opts.dynamic).then_some(opts.imgsz), end2end: opts.end2end, max_det: opts.max_det };
    let last = model.to_onnx(&mut g, "images", &head);
    // Name the final value `output0`.
    for node in g.nodes.iter_mut().rev() {
        if let Some(o) = node.output.iter_mut().find(|o| **o == last) {
            *o = "output0".into();
            break;
        }
    }
    let (input_dims, output_dims, output_shape) = io_shapes(model, opts);
    let ft = g.float_type();
    let graph = GraphProto {
        node: g.nodes,
        name: Some(format!("ember_{}", model.name())),
        initializer: g.inits,
        doc_string: None,
        input: vec![value_info("images", ft, input_dims)],
        output: vec![value_info("output0", ft, output_dims)],
    };
    let proto = ModelProto {
        ir_version: Some(8),
        producer_name: Some("ember".into()),
        producer_version: Some(env!("CARGO_PKG_VERSION").into()),
        domain: None,
        model_version: None,
        doc_string: Some(format!("{} exported by ember", model.name())),
        graph: Some(graph),
        opset_import: vec![OperatorSetIdProto { domain: Some(String::new()), version: Some(opts.opset) }],
        metadata_props: metadata(model, opts)
            .into_iter()
            .map(|(k, v)| StringStringEntryProto { key: Some(k), value: Some(v) })
            .collect(),
    };
    Ok(OnnxModel { bytes: proto.encode_to_vec(), output_shape })
}
