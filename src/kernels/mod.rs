//! Kernels written for one backend, reached through one dispatch: each function here returns the fast
//! result when the backend (and dtype) has a kernel of ember's own, else `None`, and the caller then
//! computes the generic definition (in nn/ or loss/) that every other backend runs and that each kernel is
//! tested against. Today there are kernels for burn-flex in FP32 (`flex/`); a kernel for another backend
//! (a cubecl kernel for CUDA and Vulkan, say) would live in a folder of its own beside it and be tried here.

pub mod flex;

use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

pub use flex::batchnorm::BatchStatistics;
pub use flex::own_kernels;

/// `conv2d(x, weight)` with no bias and no dilation.
pub fn conv2d<B: Backend>(
    x: &Tensor<B, 4>,
    weight: &Tensor<B, 4>,
    stride: usize,
    padding: usize,
    groups: usize,
) -> Option<Tensor<B, 4>> {
    flex::conv::try_conv2d(x, weight, stride, padding, groups)
}

/// Training-mode BatchNorm of `x` (batch statistics, biased variance), then SiLU when `silu`, with the
/// batch statistics for the running ones.
pub fn batch_norm_train<B: Backend>(
    x: &Tensor<B, 4>,
    weight: &Tensor<B, 1>,
    bias: &Tensor<B, 1>,
    eps: f64,
    silu: bool,
) -> Option<(Tensor<B, 4>, BatchStatistics)> {
    flex::batchnorm::try_train(x, weight, bias, eps, silu)
}

/// `x * scale[c] + shift[c]` (inference BatchNorm folded), then SiLU when `silu`.
pub fn channel_affine<B: Backend>(
    x: &Tensor<B, 4>,
    scale: &Tensor<B, 1>,
    shift: &Tensor<B, 1>,
    silu: bool,
) -> Option<Tensor<B, 4>> {
    flex::batchnorm::try_affine(x, scale, shift, silu)
}

/// `a + b` for same-shaped tensors.
pub fn residual<B: Backend, const D: usize>(a: &Tensor<B, D>, b: &Tensor<B, D>) -> Option<Tensor<B, D>> {
    flex::residual::try_residual(a, b)
}

/// Nearest upsampling of `x` by `scale`.
pub fn upsample_nearest<B: Backend>(x: &Tensor<B, 4>, scale: usize) -> Option<Tensor<B, 4>> {
    flex::upsample::try_upsample_nearest(x, scale)
}

/// `sum(softplus(x))` as a one-element tensor.
pub fn softplus_sum<B: Backend, const D: usize>(x: &Tensor<B, D>) -> Option<Tensor<B, 1>> {
    flex::softplus_sum::try_softplus_sum(x)
}

/// Whether `B` is a backend ember has its own kernels for (flex): layouts chosen for those kernels' speed
/// (per-channel vectors as `[n, 1]` columns) are used there only.
pub fn is_flex<B: Backend>() -> bool {
    flex::is_flex::<B>()
}
