//! ONNX export: ember's layer graph written as an ONNX graph, node by node, with BatchNorm folded into the
//! convolutions. The contract is Ultralytics' detection export:
//! * input `images`, `[batch, 3, height, width]`, RGB in 0..1, letterboxed;
//! * output `output0`, either `[batch, 4 + nc, anchors]` (boxes `xywh` in input pixels, then the sigmoid class
//!   scores; needs NMS) or, with `end2end`, `[batch, k, 6]` rows `x1, y1, x2, y2, score, class` from the one-to-one
//!   head with `k = min(max_det, anchors)` (no NMS; rows are in descending score order);
//! * metadata properties `names`, `stride`, `imgsz`, `task`, `batch`, `end2end` (Python literals, like
//!   Ultralytics writes them).

use anyhow::{bail, Result};
use burn::tensor::{backend::Backend, Tensor};
use prost::Message;

use super::proto::*;
use crate::model::graph::{Layer, INPUT};
use crate::model::Yolo;
use crate::nn::attention::{Attention, C2psa, PsaBlock};
use crate::nn::bottleneck::Bottleneck;
use crate::nn::c3k2::{C3k, C3k2Block};
use crate::nn::detect::{BoxBranch, ClsBranch, Detect};
use crate::nn::{Conv, Conv2d, Sppf};

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
    pub max_det: usize,
    pub opset: i64,
    pub names: Vec<String>,
}

impl OnnxOptions {
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
    pub bytes: Vec<u8>,
    pub output_shape: Vec<Option<usize>>,
}

/// Lowest and highest opset the exporter writes (`Split`, `Unsqueeze`, `ReduceSum` take their axes as inputs).
pub const OPSETS: std::ops::RangeInclusive<i64> = 13..=21;

fn values<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    crate::readback::read_f32(t, crate::readback::Purpose::Other)
}

fn attr_i(name: &str, v: i64) -> AttributeProto {
    AttributeProto { name: Some(name.into()), i: Some(v), r#type: Some(attribute_type::INT), ..Default::default() }
}
fn attr_ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        ints: v.to_vec(),
        r#type: Some(attribute_type::INTS),
        ..Default::default()
    }
}
fn attr_s(name: &str, v: &str) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        s: Some(v.as_bytes().to_vec()),
        r#type: Some(attribute_type::STRING),
        ..Default::default()
    }
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

    /// A float initializer (stored as FP16 when exporting half).
    fn weight(&mut self, hint: &str, dims: &[usize], data: &[f32]) -> String {
        debug_assert_eq!(dims.iter().product::<usize>(), data.len());
        let name = self.fresh(hint);
        let raw: Vec<u8> = if self.half {
            data.iter().flat_map(|&v| half::f16::from_f32(v).to_le_bytes()).collect()
        } else {
            data.iter().flat_map(|v| v.to_le_bytes()).collect()
        };
        self.inits.push(TensorProto {
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: Some(self.float_type()),
            name: Some(name.clone()),
            raw_data: Some(raw),
        });
        name
    }

    /// A 1-D int64 initializer.
    fn ints(&mut self, hint: &str, data: &[i64]) -> String {
        let name = self.fresh(hint);
        self.inits.push(TensorProto {
            dims: vec![data.len() as i64],
            data_type: Some(data_type::INT64),
            name: Some(name.clone()),
            raw_data: Some(data.iter().flat_map(|v| v.to_le_bytes()).collect()),
        });
        name
    }

    /// A 0-D int64 initializer.
    fn int_scalar(&mut self, hint: &str, v: i64) -> String {
        let name = self.fresh(hint);
        self.inits.push(TensorProto {
            dims: vec![],
            data_type: Some(data_type::INT64),
            name: Some(name.clone()),
            raw_data: Some(v.to_le_bytes().to_vec()),
        });
        name
    }

    fn op_n(&mut self, op: &str, inputs: &[&str], outputs: usize, attribute: Vec<AttributeProto>) -> Vec<String> {
        let outs: Vec<String> = (0..outputs).map(|_| self.fresh(&op.to_ascii_lowercase())).collect();
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outs.clone(),
            name: Some(format!("/{}", outs[0])),
            op_type: Some(op.into()),
            attribute,
            domain: None,
        });
        outs
    }

    fn op(&mut self, op: &str, inputs: &[&str], attribute: Vec<AttributeProto>) -> String {
        self.op_n(op, inputs, 1, attribute).remove(0)
    }

    fn silu(&mut self, x: &str) -> String {
        let s = self.op("Sigmoid", &[x], vec![]);
        self.op("Mul", &[x, &s], vec![])
    }

    fn add(&mut self, a: &str, b: &str) -> String {
        self.op("Add", &[a, b], vec![])
    }

    fn concat(&mut self, xs: &[&str], axis: i64) -> String {
        self.op("Concat", xs, vec![attr_i("axis", axis)])
    }

    fn split(&mut self, x: &str, sizes: &[usize], axis: i64) -> Vec<String> {
        let s = self.ints("split", &sizes.iter().map(|&v| v as i64).collect::<Vec<_>>());
        self.op_n("Split", &[x, &s], sizes.len(), vec![attr_i("axis", axis)])
    }

    fn reshape(&mut self, x: &str, shape: &[i64]) -> String {
        let s = self.ints("shape", shape);
        self.op("Reshape", &[x, &s], vec![])
    }

    fn unsqueeze(&mut self, x: &str, axes: &[i64]) -> String {
        let a = self.ints("axes", axes);
        self.op("Unsqueeze", &[x, &a], vec![])
    }

    fn transpose(&mut self, x: &str, perm: &[i64]) -> String {
        self.op("Transpose", &[x], vec![attr_ints("perm", perm)])
    }

    fn scalar(&mut self, v: f32) -> String {
        self.weight("const", &[], &[v])
    }

    /// Elements `start..end` of a 1-D int64 tensor.
    fn slice1(&mut self, x: &str, start: i64, end: i64) -> String {
        let s = self.ints("starts", &[start]);
        let e = self.ints("ends", &[end]);
        self.op("Slice", &[x, &s, &e], vec![])
    }

    fn cast_to_float(&mut self, x: &str) -> String {
        let to = self.float_type() as i64;
        self.op("Cast", &[x], vec![attr_i("to", to)])
    }

    // ----- ember's blocks -----

    fn conv2d<B: Backend>(&mut self, c: &Conv2d<B>, x: &str, fold: Option<(&[f32], &[f32])>) -> String {
        let dims = c.weight_dims();
        let mut w = values(c.weight.val());
        let mut bias = c.bias.as_ref().map(|b| values(b.val()));
        if let Some((scale, shift)) = fold {
            let per = w.len() / dims[0];
            for (o, chunk) in w.chunks_mut(per).enumerate() {
                chunk.iter_mut().for_each(|v| *v *= scale[o]);
            }
            let b = bias.get_or_insert_with(|| vec![0.0; dims[0]]);
            for o in 0..dims[0] {
                b[o] = b[o] * scale[o] + shift[o];
            }
        }
        let wn = self.weight("w", &dims, &w);
        let mut inputs = vec![x.to_string(), wn];
        if let Some(b) = bias {
            inputs.push(self.weight("b", &[dims[0]], &b));
        }
        let (k, p, s) = (dims[2] as i64, c.padding as i64, c.stride as i64);
        let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        self.op(
            "Conv",
            &refs,
            vec![
                attr_ints("kernel_shape", &[k, dims[3] as i64]),
                attr_ints("strides", &[s, s]),
                attr_ints("pads", &[p, p, p, p]),
                attr_ints("dilations", &[1, 1]),
                attr_i("group", c.groups as i64),
            ],
        )
    }

    fn conv<B: Backend>(&mut self, c: &Conv<B>, x: &str) -> String {
        let (scale, shift) = c.bn.folded();
        let (scale, shift) = (values(scale), values(shift));
        let y = self.conv2d(&c.conv, x, Some((&scale, &shift)));
        if c.act {
            self.silu(&y)
        } else {
            y
        }
    }

    fn bottleneck<B: Backend>(&mut self, b: &Bottleneck<B>, x: &str) -> String {
        let y = self.conv(&b.cv1, x);
        let y = self.conv(&b.cv2, &y);
        if b.add {
            self.add(x, &y)
        } else {
            y
        }
    }

    /// C2f / C3k2 body: split `cv1`'s output in two, chain the blocks on the last part, concatenate all.
    fn split_chain(
        &mut self,
        y: &str,
        hidden: usize,
        n: usize,
        mut block: impl FnMut(&mut Self, usize, &str) -> String,
    ) -> String {
        let mut parts = self.split(y, &[hidden, hidden], 1);
        for i in 0..n {
            let last = parts.last().expect("two halves").clone();
            let out = block(self, i, &last);
            parts.push(out);
        }
        let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
        self.concat(&refs, 1)
    }

    fn c3k<B: Backend>(&mut self, m: &C3k<B>, x: &str) -> String {
        let mut a = self.conv(&m.cv1, x);
        for b in &m.m {
            a = self.bottleneck(b, &a);
        }
        let b = self.conv(&m.cv2, x);
        let cat = self.concat(&[&a, &b], 1);
        self.conv(&m.cv3, &cat)
    }

    fn attention<B: Backend>(&mut self, m: &Attention<B>, x: &str) -> String {
        let (nh, kd, hd) = (m.num_heads, m.key_dim, m.head_dim);
        let shape = self.op("Shape", &[x], vec![]);
        let qkv = self.conv(&m.qkv, x);
        let qkv = self.reshape(&qkv, &[0, nh as i64, (2 * kd + hd) as i64, -1]);
        let parts = self.split(&qkv, &[kd, kd, hd], 2);
        let (q, k, v) = (&parts[0], &parts[1], &parts[2]);
        let scale = self.scalar((kd as f64).powf(-0.5) as f32);
        let q = self.op("Mul", &[q, &scale], vec![]);
        let qt = self.transpose(&q, &[0, 1, 3, 2]);
        let logits = self.op("MatMul", &[&qt, k], vec![]);
        let attn = self.op("Softmax", &[&logits], vec![attr_i("axis", 3)]);
        let attn_t = self.transpose(&attn, &[0, 1, 3, 2]);
        let y = self.op("MatMul", &[v, &attn_t], vec![]);
        let y = self.op("Reshape", &[&y, &shape], vec![]);
        let v_img = self.op("Reshape", &[v, &shape], vec![]);
        let pe = self.conv(&m.pe, &v_img);
        let y = self.add(&y, &pe);
        self.conv(&m.proj, &y)
    }

    fn psa<B: Backend>(&mut self, m: &PsaBlock<B>, x: &str) -> String {
        let a = self.attention(&m.attn, x);
        let x = if m.add { self.add(x, &a) } else { a };
        let f = self.conv(&m.ffn.0, &x);
        let f = self.conv(&m.ffn.1, &f);
        if m.add {
            self.add(&x, &f)
        } else {
            f
        }
    }

    fn c2psa<B: Backend>(&mut self, m: &C2psa<B>, x: &str) -> String {
        let y = self.conv(&m.cv1, x);
        let parts = self.split(&y, &[m.hidden, m.hidden], 1);
        let mut b = parts[1].clone();
        for block in &m.m {
            b = self.psa(block, &b);
        }
        let cat = self.concat(&[&parts[0], &b], 1);
        self.conv(&m.cv2, &cat)
    }

    fn sppf<B: Backend>(&mut self, m: &Sppf<B>, x: &str) -> String {
        let k = m.kernel as i64;
        let mut ys = vec![self.conv(&m.cv1, x)];
        for _ in 0..m.n {
            let last = ys.last().expect("cv1").clone();
            let p = k / 2;
            ys.push(self.op(
                "MaxPool",
                &[&last],
                vec![
                    attr_ints("kernel_shape", &[k, k]),
                    attr_ints("strides", &[1, 1]),
                    attr_ints("pads", &[p, p, p, p]),
                ],
            ));
        }
        let refs: Vec<&str> = ys.iter().map(String::as_str).collect();
        let cat = self.concat(&refs, 1);
        let y = self.conv(&m.cv2, &cat);
        if m.add {
            self.add(&y, x)
        } else {
            y
        }
    }

    fn upsample(&mut self, x: &str, s: usize) -> String {
        // Resize's scales are float32 whatever the data type.
        let name = self.fresh("scales");
        self.inits.push(TensorProto {
            dims: vec![4],
            data_type: Some(data_type::FLOAT),
            name: Some(name.clone()),
            raw_data: Some([1.0f32, 1.0, s as f32, s as f32].iter().flat_map(|v| v.to_le_bytes()).collect()),
        });
        self.op(
            "Resize",
            &[x, "", &name],
            vec![
                attr_s("mode", "nearest"),
                attr_s("coordinate_transformation_mode", "asymmetric"),
                attr_s("nearest_mode", "floor"),
            ],
        )
    }

    fn layer<B: Backend>(&mut self, layer: &Layer<B>, inputs: &[String]) -> Result<String> {
        let x = inputs[0].as_str();
        Ok(match layer {
            Layer::Conv(m) => self.conv(m, x),
            Layer::C3k2(m) => {
                let y = self.conv(&m.cv1, x);
                let cat = self.split_chain(&y, m.hidden, m.m.len(), |g, i, t| match &m.m[i] {
                    C3k2Block::Bottleneck(b) => g.bottleneck(b, t),
                    C3k2Block::C3k(b) => g.c3k(b, t),
                    C3k2Block::Attn((b, psa)) => {
                        let y = g.bottleneck(b, t);
                        g.psa(psa, &y)
                    }
                });
                self.conv(&m.cv2, &cat)
            }
            Layer::Sppf(m) => self.sppf(m, x),
            Layer::C2psa(m) => self.c2psa(m, x),
            Layer::Upsample(s) => self.upsample(x, *s),
            Layer::Concat(dim) => {
                let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
                self.concat(&refs, *dim as i64)
            }
            Layer::Detect(_) => bail!("Detect is handled by the exporter itself"),
        })
    }

    // ----- the head -----

    fn cls_branch<B: Backend>(&mut self, c: &ClsBranch<B>, x: &str) -> String {
        match c {
            ClsBranch::Legacy((a, b, last)) => {
                let y = self.conv(a, x);
                let y = self.conv(b, &y);
                self.conv2d(last, &y, None)
            }
            ClsBranch::Light(((a1, a2), (b1, b2), last)) => {
                let mut y = x.to_string();
                for c in [a1, a2, b1, b2] {
                    y = self.conv(c, &y);
                }
                self.conv2d(last, &y, None)
            }
        }
    }

    /// Raw `[b, 4 * reg_max, A]` box and `[b, nc, A]` class logits of one branch.
    fn branch<B: Backend>(
        &mut self,
        d: &Detect<B>,
        feats: &[String],
        boxes: &[BoxBranch<B>],
        cls: &[ClsBranch<B>],
    ) -> (String, String) {
        let (mut bs, mut ss) = (Vec::new(), Vec::new());
        for (i, x) in feats.iter().enumerate() {
            let b = self.conv(&boxes[i].0, x);
            let b = self.conv(&boxes[i].1, &b);
            let b = self.conv2d(&boxes[i].2, &b, None);
            bs.push(self.reshape(&b, &[0, 4 * d.reg_max as i64, -1]));
            let s = self.cls_branch(&cls[i], x);
            ss.push(self.reshape(&s, &[0, d.nc as i64, -1]));
        }
        let br: Vec<&str> = bs.iter().map(String::as_str).collect();
        let sr: Vec<&str> = ss.iter().map(String::as_str).collect();
        (self.concat(&br, 2), self.concat(&sr, 2))
    }

    /// Anchor points `[1, 2, A]` and strides `[1, 1, A]`: constants for a static graph, computed from the feature
    /// map shapes for a dynamic one.
    fn anchors(&mut self, feats: &[String], strides: &[f32], static_sizes: Option<&[[usize; 2]]>) -> (String, String) {
        if let Some(sizes) = static_sizes {
            let grid = crate::model::make_anchors(sizes, strides, 0.5);
            let (n, st) = (grid.len(), grid.strides);
            // [1, 2, A]: all x, then all y.
            let xs: Vec<f32> = grid.points.iter().map(|p| p[0]).chain(grid.points.iter().map(|p| p[1])).collect();
            return (self.weight("anchors", &[1, 2, n], &xs), self.weight("strides", &[1, 1, n], &st));
        }
        let (mut points, mut stride_rows) = (Vec::new(), Vec::new());
        let zero = self.int_scalar("zero", 0);
        let one = self.int_scalar("one", 1);
        let half_px = self.scalar(0.5);
        for (x, &s) in feats.iter().zip(strides) {
            let shape = self.op("Shape", &[x], vec![]);
            let h = self.slice1(&shape, 2, 3);
            let w = self.slice1(&shape, 3, 4);
            let axis0 = self.ints("axes", &[0]);
            let hs = self.op("Squeeze", &[&h, &axis0], vec![]);
            let ws = self.op("Squeeze", &[&w, &axis0], vec![]);
            let ry = self.op("Range", &[&zero, &hs, &one], vec![]);
            let rx = self.op("Range", &[&zero, &ws, &one], vec![]);
            let fy = self.cast_to_float(&ry);
            let fx = self.cast_to_float(&rx);
            let fy = self.add(&fy, &half_px);
            let fx = self.add(&fx, &half_px);
            let hw = self.concat(&[&h, &w], 0);
            let gx = self.unsqueeze(&fx, &[0]); // [1, w]
            let gy = self.unsqueeze(&fy, &[1]); // [h, 1]
            let gx = self.op("Expand", &[&gx, &hw], vec![]);
            let gy = self.op("Expand", &[&gy, &hw], vec![]);
            let gx = self.reshape(&gx, &[1, -1]);
            let gy = self.reshape(&gy, &[1, -1]);
            points.push(self.concat(&[&gx, &gy], 0)); // [2, h*w]
            let sc = self.weight("stride", &[1, 1], &[s]);
            let zero_f = self.scalar(0.0);
            let st = self.op("Mul", &[&gx, &zero_f], vec![]);
            stride_rows.push(self.add(&st, &sc)); // [1, h*w]
        }
        let pr: Vec<&str> = points.iter().map(String::as_str).collect();
        let sr: Vec<&str> = stride_rows.iter().map(String::as_str).collect();
        let p = self.concat(&pr, 1);
        let s = self.concat(&sr, 1);
        (self.unsqueeze(&p, &[0]), self.unsqueeze(&s, &[0]))
    }

    /// `[b, 4 + nc, A]`: decoded boxes (xywh or xyxy, input pixels) and sigmoid scores.
    fn decode(
        &mut self,
        boxes: &str,
        scores: &str,
        reg_max: usize,
        anchors: &str,
        strides: &str,
        xyxy: bool,
    ) -> String {
        let dist = if reg_max > 1 {
            let r = reg_max as i64;
            let p = self.reshape(boxes, &[0, 4, r, -1]);
            let p = self.op("Softmax", &[&p], vec![attr_i("axis", 2)]);
            let bins: Vec<f32> = (0..reg_max).map(|i| i as f32).collect();
            let bins = self.weight("bins", &[1, 1, reg_max, 1], &bins);
            let p = self.op("Mul", &[&p, &bins], vec![]);
            let axes = self.ints("axes", &[2]);
            self.op("ReduceSum", &[&p, &axes], vec![attr_i("keepdims", 0)])
        } else {
            boxes.to_string()
        };
        let parts = self.split(&dist, &[2, 2], 1);
        let x1y1 = self.op("Sub", &[anchors, &parts[0]], vec![]);
        let x2y2 = self.op("Add", &[anchors, &parts[1]], vec![]);
        let b = if xyxy {
            self.concat(&[&x1y1, &x2y2], 1)
        } else {
            let sum = self.add(&x1y1, &x2y2);
            let two = self.scalar(2.0);
            let c = self.op("Div", &[&sum, &two], vec![]);
            let wh = self.op("Sub", &[&x2y2, &x1y1], vec![]);
            self.concat(&[&c, &wh], 1)
        };
        let b = self.op("Mul", &[&b, strides], vec![]);
        let s = self.op("Sigmoid", &[scores], vec![]);
        self.concat(&[&b, &s], 1)
    }

    /// Ultralytics' end-to-end top-k: the `k` anchors with the highest best-class score, then the `k` highest
    /// (anchor, class) scores among them. `preds` is `[b, 4 + nc, A]` with xyxy boxes.
    fn topk(&mut self, preds: &str, nc: usize, max_det: usize) -> String {
        let p = self.transpose(preds, &[0, 2, 1]); // [b, A, 4 + nc]
        let parts = self.split(&p, &[4, nc], 2);
        let (boxes, scores) = (&parts[0], &parts[1]);
        let best = if self.opset >= 18 {
            let axes = self.ints("axes", &[2]);
            self.op("ReduceMax", &[scores, &axes], vec![attr_i("keepdims", 0)])
        } else {
            self.op("ReduceMax", &[scores], vec![attr_ints("axes", &[2]), attr_i("keepdims", 0)])
        }; // [b, A]
        let shape = self.op("Shape", &[&best], vec![]);
        let anchors = self.slice1(&shape, 1, 2);
        let md = self.ints("max_det", &[max_det as i64]);
        let k = self.op("Min", &[&anchors, &md], vec![]);
        let topk_attrs = || vec![attr_i("axis", -1), attr_i("largest", 1), attr_i("sorted", 1)];
        let top = self.op_n("TopK", &[&best, &k], 2, topk_attrs());
        let ori = self.unsqueeze(&top[1], &[2]); // [b, k, 1]
        let rep_nc = self.ints("repeats", &[1, 1, nc as i64]);
        let ori_nc = self.op("Tile", &[&ori, &rep_nc], vec![]);
        let cand = self.op("GatherElements", &[scores, &ori_nc], vec![attr_i("axis", 1)]); // [b, k, nc]
        let flat = self.reshape(&cand, &[0, -1]);
        let top2 = self.op_n("TopK", &[&flat, &k], 2, topk_attrs());
        let nc_i = self.ints("nc", &[nc as i64]);
        let which = self.op("Div", &[&top2[1], &nc_i], vec![]);
        let class = self.op("Mod", &[&top2[1], &nc_i], vec![]);
        let idx = self.op("GatherElements", &[&top[1], &which], vec![attr_i("axis", 1)]); // [b, k]
        let idx = self.unsqueeze(&idx, &[2]);
        let rep4 = self.ints("repeats", &[1, 1, 4]);
        let idx4 = self.op("Tile", &[&idx, &rep4], vec![]);
        let sel = self.op("GatherElements", &[boxes, &idx4], vec![attr_i("axis", 1)]); // [b, k, 4]
        let score = self.unsqueeze(&top2[0], &[2]);
        let class = self.cast_to_float(&class);
        let class = self.unsqueeze(&class, &[2]);
        self.concat(&[&sel, &score, &class], 2)
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
pub fn metadata<B: Backend>(model: &Yolo<B>, opts: &OnnxOptions) -> Vec<(String, String)> {
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

/// Build the ONNX model for `model` (evaluation weights: BatchNorm uses its running statistics).
pub fn export_onnx<B: Backend>(model: &Yolo<B>, opts: &OnnxOptions) -> Result<OnnxModel> {
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
    let mut g = Graph { nodes: Vec::new(), inits: Vec::new(), count: 0, half: opts.half, opset: opts.opset };
    let spec = &model.spec;
    let mut outs: Vec<String> = Vec::with_capacity(model.model.len());
    let mut output = None;
    for (i, (layer, info)) in model.model.iter().zip(&spec.layers).enumerate() {
        let inputs: Vec<String> =
            info.from.iter().map(|&f| if f == INPUT { "images".to_string() } else { outs[f].clone() }).collect();
        if let Layer::Detect(d) = layer {
            let strides = d.strides.clone();
            let sizes: Vec<[usize; 2]> =
                strides.iter().map(|&s| [opts.imgsz[0] / s as usize, opts.imgsz[1] / s as usize]).collect();
            let (anchors, stride_row) = g.anchors(&inputs, &strides, (!opts.dynamic).then_some(sizes.as_slice()));
            let y = match (&d.one2one_cv2, &d.one2one_cv3) {
                (Some(b), Some(c)) if opts.end2end => {
                    let (bx, sc) = g.branch(d, &inputs, b, c);
                    let decoded = g.decode(&bx, &sc, d.reg_max, &anchors, &stride_row, true);
                    g.topk(&decoded, d.nc, opts.max_det)
                }
                _ => {
                    let (bx, sc) = g.branch(d, &inputs, &d.cv2, &d.cv3);
                    g.decode(&bx, &sc, d.reg_max, &anchors, &stride_row, false)
                }
            };
            output = Some(y);
            outs.push(String::new());
            break;
        }
        let y = g.layer(layer, &inputs).map_err(|e| e.context(format!("layer {i}")))?;
        outs.push(y);
    }
    let Some(last) = output else { bail!("the model has no Detect layer") };
    // Name the final value `output0`.
    for node in g.nodes.iter_mut().rev() {
        if let Some(o) = node.output.iter_mut().find(|o| **o == last) {
            *o = "output0".into();
            break;
        }
    }
    let nc = model.nc();
    let anchors: usize =
        model.strides().iter().map(|&s| (opts.imgsz[0] / s as usize) * (opts.imgsz[1] / s as usize)).sum();
    let (input_dims, output_dims, output_shape) = if opts.dynamic {
        let out = if opts.end2end {
            (vec![dim_param("batch"), dim_param("detections"), dim_value(6)], vec![None, None, Some(6)])
        } else {
            (vec![dim_param("batch"), dim_value(4 + nc), dim_param("anchors")], vec![None, Some(4 + nc), None])
        };
        (vec![dim_param("batch"), dim_value(3), dim_param("height"), dim_param("width")], out.0, out.1)
    } else {
        let shape = if opts.end2end {
            vec![opts.batch, opts.max_det.min(anchors), 6]
        } else {
            vec![opts.batch, 4 + nc, anchors]
        };
        (
            vec![dim_value(opts.batch), dim_value(3), dim_value(opts.imgsz[0]), dim_value(opts.imgsz[1])],
            shape.iter().map(|&d| dim_value(d)).collect(),
            shape.into_iter().map(Some).collect(),
        )
    };
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
