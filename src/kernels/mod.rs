//! Kernels written for one backend, reached through one dispatch: each function exported here returns the
//! fast result when the backend (and dtype) has a kernel of ember's own, else `None`, and the caller then
//! computes the generic definition (in nn/ or loss/) that every other backend runs and that each kernel is
//! tested against. Today there are kernels for burn-flex in FP32 (`flex/`, each `try_*` checking
//! `flex::on_flex`); a kernel for another backend (a cubecl kernel for CUDA and Vulkan, say) would live in a
//! folder of its own beside it and be tried by the same functions.

pub mod flex;

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
