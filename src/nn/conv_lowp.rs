//! Convolutions in FP16/BF16 with FP32 accumulation, the definition every backend without a kernel of
//! ember's own computes reduced-precision convolutions with.
//!
//! burn's convolution on its cubecl backends (CUDA, Vulkan), with autotune off as ember builds burn, is
//! cubecl's direct kernel, whose sums have the input's type: on Vulkan an FP16 3x3 convolution over
//! 256 channels lands an order of magnitude further from FP32 than rounding its operands alone costs
//! (BENCHMARKS.md, tests/it/vulkan.rs), and its weight gradient sums over every pixel of the batch in FP16. Matrix products there accumulate
//! in FP32, which is what mixed precision means (cuDNN's and PyTorch's behaviour). So a dense
//! convolution becomes im2col x matmul: the k*k shifted views of the padded input (exact in any
//! precision) stacked as columns, one batched product with the filter bank (`kernels::columns`). The
//! backward's weight and column gradients are products again (FP32 accumulation), and each input element
//! sums at most k*k column gradients; on autodiff backends that backward is ember's own, which rebuilds the
//! columns rather than keeping them (`kernels::autodiff::conv_im2col`).
//!
//! Grouped (depthwise) convolutions sum only k*k products forward, but their weight gradient sums over
//! all pixels of the batch in one direct kernel, so they compute in FP32 (operands widened, the result
//! rounded back): a small share of a YOLO's arithmetic.

use burn::tensor::backend::Backend;
use burn::tensor::{FloatDType, Tensor};

pub use crate::kernels::columns::conv2d_im2col;

/// `conv2d` computed in FP32 and rounded back to `x`'s dtype.
pub fn conv2d_widened<B: Backend>(
    x: Tensor<B, 4>,
    weight: Tensor<B, 4>,
    stride: usize,
    padding: usize,
    groups: usize,
) -> Tensor<B, 4> {
    let dtype = x.dtype();
    let options = burn::tensor::ops::ConvOptions::new([stride, stride], [padding, padding], [1, 1], groups);
    let y = burn::tensor::module::conv2d(x.cast(FloatDType::F32), weight.cast(FloatDType::F32), None, options);
    y.cast(dtype)
}
