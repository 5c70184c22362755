//! Convolutions in FP16/BF16 with FP32 accumulation, the definition every backend without a kernel of
//! ember's own computes reduced-precision convolutions with.
//!
//! burn's convolution on its cubecl backends (CUDA, Vulkan), with autotune off as ember builds burn, is
//! cubecl's direct kernel, whose sums have the input's type: on Vulkan an FP16 3x3 convolution over
//! 256 channels lands an order of magnitude further from FP32 than rounding its operands alone costs
//! (BENCHMARKS.md, tests/it/vulkan.rs), and its weight gradient sums over every pixel of the batch in FP16. Matrix products there accumulate
//! in FP32, which is what mixed precision means (cuDNN's and PyTorch's behaviour). So a dense
//! convolution becomes im2col x matmul: the k*k shifted views of the padded input (exact in any
//! precision) stacked as columns, one batched product with the filter bank. Autodiff derives the
//! backward from those operations: the weight and column gradients are products again (FP32
//! accumulation), and each input element sums at most k*k column gradients.
//!
//! Grouped (depthwise) convolutions sum only k*k products forward, but their weight gradient sums over
//! all pixels of the batch in one direct kernel, so they compute in FP32 (operands widened, the result
//! rounded back): a small share of a YOLO's arithmetic.

use burn::tensor::backend::Backend;
use burn::tensor::{FloatDType, Slice, Tensor};

/// `conv2d(x, weight)` (no bias, no dilation, one group) as im2col x matmul in `x`'s dtype, FP32 sums.
pub fn conv2d_im2col<B: Backend>(x: Tensor<B, 4>, weight: Tensor<B, 4>, stride: usize, padding: usize) -> Tensor<B, 4> {
    let [b, c, h, w] = x.dims();
    let [co, ci, kh, kw] = weight.dims();
    assert_eq!(c, ci, "conv2d_im2col: input has {c} channels, weight expects {ci}");
    let (ho, wo) = ((h + 2 * padding - kh) / stride + 1, (w + 2 * padding - kw) / stride + 1);
    let padded = if padding == 0 {
        x
    } else {
        let (hp, wp) = (h + 2 * padding, w + 2 * padding);
        let zeros = Tensor::<B, 4>::zeros([b, c, hp, wp], (&x.device(), x.dtype()));
        zeros.slice_assign([0..b, 0..c, padding..padding + h, padding..padding + w], x)
    };
    // Tap (i, j) of every output pixel: rows i, i + stride, ..., columns j, j + stride, ...
    let span = |start: usize, n: usize| {
        Slice::new(start as isize, Some((start + stride * (n - 1) + 1) as isize), stride as isize)
    };
    let mut taps = Vec::with_capacity(kh * kw);
    for i in 0..kh {
        for j in 0..kw {
            taps.push(padded.clone().slice([Slice::full(), Slice::full(), span(i, ho), span(j, wo)]));
        }
    }
    // [b, c, kh * kw, ho, wo] -> [b, c * kh * kw, ho * wo]: row order (channel, tap) matches the weight's.
    let columns = Tensor::stack::<5>(taps, 2).reshape([b, c * kh * kw, ho * wo]);
    weight.reshape([1, co, ci * kh * kw]).matmul(columns).reshape([b, co, ho, wo])
}

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
