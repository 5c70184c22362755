//! The column matrix of a convolution (im2col) and its adjoint (col2im), as tensor operations on any backend:
//! the FP16/BF16 convolution's definition (`nn::conv_lowp`) and the backward of ember's own that rebuilds the
//! columns instead of keeping them (`autodiff::conv_im2col`) are both made of them. On CUDA and Vulkan (not
//! their autodiff) one CubeCL kernel each computes them (`cube::columns`).

use burn::tensor::backend::Backend;
use burn::tensor::{Slice, Tensor};

/// `conv2d(x, weight)` (no bias, no dilation, one group) as im2col x matmul in `x`'s dtype, FP32 sums.
pub fn conv2d_im2col<B: Backend>(x: Tensor<B, 4>, weight: Tensor<B, 4>, stride: usize, padding: usize) -> Tensor<B, 4> {
    let [b, c, h, w] = x.dims();
    let [co, ci, kh, kw] = weight.dims();
    assert_eq!(c, ci, "conv2d_im2col: input has {c} channels, weight expects {ci}");
    let [ho, wo] = out_size([h, w], [kh, kw], stride, padding);
    let columns = im2col(x, [kh, kw], stride, padding);
    weight.reshape([1, co, ci * kh * kw]).matmul(columns).reshape([b, co, ho, wo])
}

/// The output size of a `kernel` convolution over `size` with `stride` and `padding`.
pub fn out_size(size: [usize; 2], kernel: [usize; 2], stride: usize, padding: usize) -> [usize; 2] {
    [0, 1].map(|d| (size[d] + 2 * padding - kernel[d]) / stride + 1)
}

/// The columns of `x` `[b, c, h, w]` for a `kernel` convolution: `[b, c * kh * kw, ho * wo]`, row
/// `(channel, i, j)` holding the pixel tap `(i, j)` sees at every output position (zero in the padding),
/// the row order of a `[co, c, kh, kw]` weight.
pub fn im2col<B: Backend>(x: Tensor<B, 4>, kernel: [usize; 2], stride: usize, padding: usize) -> Tensor<B, 3> {
    #[cfg(any(feature = "vulkan", feature = "cuda"))]
    if let Some(columns) = crate::kernels::cube::try_im2col(&x, kernel, stride, padding) {
        return columns;
    }
    let [b, c, h, w] = x.dims();
    let [kh, kw] = kernel;
    let [ho, wo] = out_size([h, w], kernel, stride, padding);
    let padded = if padding == 0 {
        x
    } else {
        let zeros = Tensor::<B, 4>::zeros([b, c, h + 2 * padding, w + 2 * padding], (&x.device(), x.dtype()));
        zeros.slice_assign([0..b, 0..c, padding..padding + h, padding..padding + w], x)
    };
    let mut taps = Vec::with_capacity(kh * kw);
    for i in 0..kh {
        for j in 0..kw {
            taps.push(padded.clone().slice(tap_window(i, j, [ho, wo], stride)));
        }
    }
    // [b, c, kh * kw, ho, wo] -> [b, c * kh * kw, ho * wo]
    Tensor::stack::<5>(taps, 2).reshape([b, c * kh * kw, ho * wo])
}

/// The adjoint of [`im2col`]: column gradients `[b, c * kh * kw, ho * wo]` summed back onto the pixels of an
/// input of `size` `[b, c, h, w]` (each pixel gathers at most `kh * kw` of them, in the columns' dtype).
pub fn col2im<B: Backend>(
    columns: Tensor<B, 3>,
    size: [usize; 4],
    kernel: [usize; 2],
    stride: usize,
    padding: usize,
) -> Tensor<B, 4> {
    #[cfg(any(feature = "vulkan", feature = "cuda"))]
    if let Some(pixels) = crate::kernels::cube::try_col2im(&columns, size, kernel, stride, padding) {
        return pixels;
    }
    let [b, c, h, w] = size;
    let [kh, kw] = kernel;
    let [ho, wo] = out_size([h, w], kernel, stride, padding);
    let taps = columns.reshape([b, c, kh * kw, ho, wo]);
    let mut padded = Tensor::<B, 4>::zeros([b, c, h + 2 * padding, w + 2 * padding], (&taps.device(), taps.dtype()));
    for i in 0..kh {
        for j in 0..kw {
            let t = i * kw + j;
            let tap = taps.clone().slice([0..b, 0..c, t..t + 1]).reshape([b, c, ho, wo]);
            let window = tap_window(i, j, [ho, wo], stride);
            let sum = padded.clone().slice(window) + tap;
            padded = padded.slice_assign(window, sum);
        }
    }
    if padding == 0 {
        padded
    } else {
        padded.slice([0..b, 0..c, padding..padding + h, padding..padding + w])
    }
}

/// The pixels of a padded input that tap `(i, j)` sees: rows `i, i + stride, ...`, columns `j, j + stride, ...`.
fn tap_window(i: usize, j: usize, [ho, wo]: [usize; 2], stride: usize) -> [Slice; 4] {
    let span = |start: usize, n: usize| {
        Slice::new(start as isize, Some((start + stride * (n - 1) + 1) as isize), stride as isize)
    };
    [Slice::full(), Slice::full(), span(i, ho), span(j, wo)]
}
