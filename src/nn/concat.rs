//! Channel concatenation of several earlier layers (Ultralytics' `Concat`, dimension 1).

use burn::tensor::{backend::Backend, Tensor};

use super::onnx::OnnxGraph;

/// Concatenates `inputs` along `dim` (1 for channels, as the model's `Concat` layers use it); every other
/// dimension must match.
pub fn concat<B: Backend>(inputs: Vec<Tensor<B, 4>>, dim: usize) -> Tensor<B, 4> {
    Tensor::cat(inputs, dim)
}

/// [`concat`] in an ONNX graph.
pub fn concat_onnx(g: &mut dyn OnnxGraph, inputs: &[String], dim: usize) -> String {
    let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
    g.concat(&refs, dim as i64)
}
