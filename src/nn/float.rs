//! Changing a tensor's float type only when it differs: reduced-precision activations are widened to FP32
//! where sums must keep their small terms (softmax, box decoding, the loss).

use burn::tensor::{backend::Backend, DType, FloatDType, Tensor};

/// `t` in `dtype` (no cast when it already is).
pub fn cast_to<B: Backend, const D: usize>(t: Tensor<B, D>, dtype: FloatDType) -> Tensor<B, D> {
    if t.dtype() == DType::from(dtype) {
        t
    } else {
        t.cast(dtype)
    }
}

/// `t` in FP32 (no cast when it already is).
pub fn to_f32<B: Backend, const D: usize>(t: Tensor<B, D>) -> Tensor<B, D> {
    cast_to(t, FloatDType::F32)
}
