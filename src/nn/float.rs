//! Widening reduced-precision tensors to FP32 where sums must keep their small terms (softmax, box
//! decoding, the loss), with no cast when the tensor already is FP32.

use burn::tensor::{backend::Backend, DType, FloatDType, Tensor};

/// `t` in FP32 (no cast when it already is).
pub fn to_f32<B: Backend, const D: usize>(t: Tensor<B, D>) -> Tensor<B, D> {
    if t.dtype() == DType::F32 {
        t
    } else {
        t.cast(FloatDType::F32)
    }
}
