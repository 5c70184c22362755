//! Kernels of ember's own, reached through one dispatch: each function exported here returns the result
//! when the backend (and dtype) has a kernel of ember's own, else `None`, and the caller then computes the
//! generic definition (in nn/ or loss/) that every other backend runs and that each kernel is tested
//! against. Today there are kernels for burn-flex in FP32 (`flex/`, each `try_*` checking
//! `flex::on_flex`), CubeCL kernels for CUDA and Vulkan (`cube/`, reached from the autodiff passes), and
//! backward passes for burn's autodiff over any backend (`autodiff/`).

pub mod autodiff;
pub mod columns;
#[cfg(any(feature = "vulkan", feature = "cuda"))]
pub mod cube;
pub mod flex;

/// `conv2d` as im2col x matmul (the FP16/BF16 route), keeping its input rather than its columns for the backward.
pub use autodiff::conv_im2col::try_conv2d_im2col as conv2d_im2col;

/// Training-mode BatchNorm, then SiLU when asked, keeping only its input for the backward: the output with the
/// running statistics updated (on the device).
pub use autodiff::batchnorm::try_train as batch_norm_train_lean;
/// A BatchNorm's running statistics, which its training forward updates.
pub use autodiff::batchnorm::Running as BatchNormRunning;
/// A stride-1 depthwise `conv2d` whose weight gradient is one product and sum per kernel tap, not a
/// convolution per channel.
pub use autodiff::depthwise::try_conv2d_depthwise as conv2d_depthwise;
/// `buffer[range] = values`, in place when the caller holds the only handle to `buffer`.
pub use flex::assign::try_assign_range as assign_range;
/// `x * scale[c] + shift[c]` (inference BatchNorm folded), then SiLU when asked.
pub use flex::batchnorm::try_affine as channel_affine;
/// Training-mode BatchNorm (batch statistics), then SiLU when asked, with the statistics for the running ones.
pub use flex::batchnorm::try_train as batch_norm_train;
pub use flex::batchnorm::BatchStatistics;
/// `conv2d(x, weight, stride, padding, groups)` with no bias and no dilation.
pub use flex::conv::try_conv2d as conv2d;
/// Whether `B` is a backend ember has its own kernels for (flex): layouts chosen for those kernels' speed
/// (per-channel vectors as `[n, 1]` columns) are used there only.
pub use flex::is_flex;
pub use flex::own_kernels;
/// `a + b` for same-shaped tensors.
pub use flex::residual::try_residual as residual;
/// `sum(softplus(x))` as a one-element tensor.
pub use flex::softplus_sum::try_softplus_sum as softplus_sum;
/// Nearest upsampling of `x` by an integer factor.
pub use flex::upsample::try_upsample_nearest as upsample_nearest;

/// `t` under its concrete type `U`, when that is what `T` is: how a kernel for one backend is reached
/// from code generic over backends.
pub(crate) fn retype<T: 'static, U: 'static>(t: T) -> Option<U> {
    (Box::new(t) as Box<dyn std::any::Any>).downcast::<U>().ok().map(|u| *u)
}
