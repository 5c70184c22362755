//! Backward passes of ember's own on burn's autodiff, for every inner backend (flex, CUDA, Vulkan alike):
//! the values of the generic definition they stand for, with less held between the forward and the
//! backward. Each is tested against autodiff through that definition.

pub mod batchnorm;
pub mod conv_im2col;
pub mod depthwise;

use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

/// Sum over every axis but the channel's, `[b, c, h, w]` to `[c]`: the spatial axes as one (a reshape of
/// contiguous NCHW, no copy), then the batch, so two reductions rather than three.
fn channel_sum<I: Backend>(t: Tensor<I, 4>) -> Tensor<I, 1> {
    let [b, c, h, w] = t.dims();
    t.reshape([b, c, h * w]).sum_dim(2).sum_dim(0).reshape([c])
}
