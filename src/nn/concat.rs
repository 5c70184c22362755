//! Channel concatenation of several earlier layers (Ultralytics' `Concat`, dimension 1).

use burn::tensor::{backend::Backend, Tensor};

pub fn concat<B: Backend>(inputs: Vec<Tensor<B, 4>>, dim: usize) -> Tensor<B, 4> {
    Tensor::cat(inputs, dim)
}
