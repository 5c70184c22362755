//! How a block writes itself into an ONNX graph: each block implements [`ToOnnx`] beside its `forward`, over the
//! operations [`OnnxGraph`] offers; `export::onnx` implements that trait over ONNX's protobuf and assembles the
//! file. Values are named by strings, as ONNX names them.

use burn::tensor::{backend::Backend, Tensor};

/// A node attribute.
#[derive(Debug, Clone, PartialEq)]
pub enum Attr {
    /// An `INT` attribute: name, value.
    Int(&'static str, i64),
    /// An `INTS` attribute: name, values.
    Ints(&'static str, Vec<i64>),
    /// A `STRING` attribute: name, value.
    Str(&'static str, &'static str),
}

/// An ONNX graph under construction: the primitives a writer provides, and the compound operations built on them.
pub trait OnnxGraph {
    /// Adds a node with `outputs` fresh output names.
    fn op_n(&mut self, op: &str, inputs: &[&str], outputs: usize, attrs: Vec<Attr>) -> Vec<String>;
    /// A float initializer, in the graph's float type (FP16 when exporting half).
    fn weight(&mut self, hint: &str, dims: &[usize], data: &[f32]) -> String;
    /// An FP32 initializer whatever the graph's float type (operands ONNX defines as float32, such as `Resize`'s
    /// scales).
    fn f32_constant(&mut self, hint: &str, dims: &[usize], data: &[f32]) -> String;
    /// A 1-D int64 initializer.
    fn ints(&mut self, hint: &str, data: &[i64]) -> String;
    /// A 0-D int64 initializer.
    fn int_scalar(&mut self, hint: &str, v: i64) -> String;
    /// `x` cast to the graph's float type.
    fn cast_to_float(&mut self, x: &str) -> String;
    /// The opset the graph is written for.
    fn opset(&self) -> i64;

    /// Adds a single-output node and returns its output's name.
    fn op(&mut self, op: &str, inputs: &[&str], attrs: Vec<Attr>) -> String {
        self.op_n(op, inputs, 1, attrs).remove(0)
    }

    /// SiLU as `x * Sigmoid(x)`.
    fn silu(&mut self, x: &str) -> String {
        let s = self.op("Sigmoid", &[x], vec![]);
        self.op("Mul", &[x, &s], vec![])
    }

    /// `a + b`, with ONNX's broadcasting.
    fn add(&mut self, a: &str, b: &str) -> String {
        self.op("Add", &[a, b], vec![])
    }

    /// `xs` concatenated along `axis`.
    fn concat(&mut self, xs: &[&str], axis: i64) -> String {
        self.op("Concat", xs, vec![Attr::Int("axis", axis)])
    }

    /// `x` split along `axis` into parts of `sizes` (the sizes as an input, as from opset 13).
    fn split(&mut self, x: &str, sizes: &[usize], axis: i64) -> Vec<String> {
        let s = self.ints("split", &sizes.iter().map(|&v| v as i64).collect::<Vec<_>>());
        self.op_n("Split", &[x, &s], sizes.len(), vec![Attr::Int("axis", axis)])
    }

    /// `x` reshaped to `shape` (ONNX's rules: 0 keeps that input dimension, -1 is inferred).
    fn reshape(&mut self, x: &str, shape: &[i64]) -> String {
        let s = self.ints("shape", shape);
        self.op("Reshape", &[x, &s], vec![])
    }

    /// `x` with size-1 dimensions inserted at `axes` (the axes as an input, as from opset 13).
    fn unsqueeze(&mut self, x: &str, axes: &[i64]) -> String {
        let a = self.ints("axes", axes);
        self.op("Unsqueeze", &[x, &a], vec![])
    }

    /// `x` with its dimensions permuted by `perm`.
    fn transpose(&mut self, x: &str, perm: &[i64]) -> String {
        self.op("Transpose", &[x], vec![Attr::Ints("perm", perm.to_vec())])
    }

    /// A 0-D float constant, in the graph's float type.
    fn scalar(&mut self, v: f32) -> String {
        self.weight("const", &[], &[v])
    }

    /// Elements `start..end` of a 1-D int64 tensor.
    fn slice1(&mut self, x: &str, start: i64, end: i64) -> String {
        let s = self.ints("starts", &[start]);
        let e = self.ints("ends", &[end]);
        self.op("Slice", &[x, &s, &e], vec![])
    }

    /// `ReduceMax` over `axis`, without keeping it (its axes moved from an attribute to an input in opset 18).
    fn reduce_max(&mut self, x: &str, axis: i64) -> String {
        if self.opset() >= 18 {
            let axes = self.ints("axes", &[axis]);
            self.op("ReduceMax", &[x, &axes], vec![Attr::Int("keepdims", 0)])
        } else {
            self.op("ReduceMax", &[x], vec![Attr::Ints("axes", vec![axis]), Attr::Int("keepdims", 0)])
        }
    }
}

/// A block with one input and one output that writes itself into an ONNX graph, computing what its
/// `forward` computes (in evaluation mode: BatchNorm with its running statistics).
pub trait ToOnnx {
    /// Emits the block applied to `x` and returns its output's name.
    fn to_onnx(&self, g: &mut dyn OnnxGraph, x: &str) -> String;
}

/// A tensor's values, for an initializer.
pub fn values<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    crate::readback::read_f32(t, crate::readback::Purpose::Other)
}
