//! Backward passes of ember's own on burn's autodiff, for every inner backend (flex, CUDA, Vulkan alike):
//! the values of the generic definition they stand for, with less held between the forward and the
//! backward. Each is tested against autodiff through that definition.

pub mod batchnorm;
pub mod conv_im2col;
pub mod depthwise;
