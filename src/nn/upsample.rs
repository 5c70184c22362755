//! Nearest-neighbour upsampling by an integer factor (`nn.Upsample(None, s, "nearest")`).
//!
//! Written as reshape + repeat rather than `interpolate` so it is exact, cheap, and its gradient is a plain
//! sum over each `s x s` block on every backend.

use burn::tensor::{backend::Backend, Tensor};

pub fn upsample_nearest<B: Backend>(x: Tensor<B, 4>, scale: usize) -> Tensor<B, 4> {
    if scale == 1 {
        return x;
    }
    let [b, c, h, w] = x.dims();
    x.reshape([b, c, h, 1, w, 1])
        .repeat_dim(3, scale)
        .repeat_dim(5, scale)
        .reshape([b, c, h * scale, w * scale])
}
