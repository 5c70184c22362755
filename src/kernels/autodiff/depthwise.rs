//! The depthwise convolution (`groups == c_in == c_out`: Ultralytics' `DWConv` with equal channels, and PSA's
//! positional convolution) with a weight gradient of its own.
//!
//! burn-cubecl computes a grouped convolution's weight gradient one group at a time: a slice of the input and of
//! the output gradient, a convolution and a slice-assign per channel. yolo26n's heads hold 1,376 depthwise
//! channels, so that loop was most of a training step's 15,900 kernels on Vulkan (BENCHMARKS.md). Here the
//! weight gradient is one product and one sum per kernel tap (`k * k` of them), whatever the channel count:
//! `dw[c, i, j] = sum over b, y, x of dy[b, c, y, x] * x_padded[b, c, y + i, x + j]`. The forward and the input
//! gradient stay burn's (a grouped convolution and a grouped transposed convolution, one kernel each). Computed
//! in FP32 for any input dtype, as `nn::conv_lowp::conv2d_widened` computes reduced-precision grouped
//! convolutions.

use std::any::TypeId;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::Autodiff;
use burn::tensor::backend::Backend;
use burn::tensor::module;
use burn::tensor::ops::{ConvOptions, ConvTransposeOptions, FloatTensor};
use burn::tensor::{DType, FloatDType, Tensor, TensorPrimitive};

use super::channel_sum;

/// A stride-1 depthwise `conv2d(x, weight, 1, padding, c)` (`weight` `[c, 1, k, k]`) with the weight gradient
/// above, when `B` is burn's autodiff over a backend ember builds (flex, and CUDA and Vulkan when compiled in)
/// and its kernels are on; `None` for anything else (other strides included), which burn then computes.
pub fn try_conv2d_depthwise<B: Backend>(
    x: &Tensor<B, 4>,
    weight: &Tensor<B, 4>,
    stride: usize,
    padding: usize,
) -> Option<Tensor<B, 4>> {
    let [c, per_group, kh, kw] = weight.dims();
    if !crate::kernels::own_kernels() || stride != 1 || per_group != 1 || kh != kw || x.dims()[1] != c {
        return None;
    }
    let y = on::<B, crate::backend::Cpu>(x, weight, padding);
    #[cfg(feature = "vulkan")]
    let y = y.or_else(|| on::<B, crate::backend::Vulkan>(x, weight, padding));
    #[cfg(feature = "cuda")]
    let y = y.or_else(|| on::<B, crate::backend::Gpu>(x, weight, padding));
    y
}

/// The op on `Autodiff<I>`, when that is what `B` is.
fn on<B: Backend, I: Backend>(x: &Tensor<B, 4>, weight: &Tensor<B, 4>, padding: usize) -> Option<Tensor<B, 4>> {
    if TypeId::of::<B>() != TypeId::of::<Autodiff<I>>() {
        return None;
    }
    let x = crate::kernels::retype::<_, Tensor<Autodiff<I>, 4>>(x.clone())?;
    let weight = crate::kernels::retype::<_, Tensor<Autodiff<I>, 4>>(weight.clone())?;
    crate::kernels::retype(depthwise::<I>(x, weight, padding))
}

fn depthwise<I: Backend>(
    x: Tensor<Autodiff<I>, 4>,
    weight: Tensor<Autodiff<I>, 4>,
    padding: usize,
) -> Tensor<Autodiff<I>, 4> {
    let x = x.into_primitive().tensor();
    let weight = weight.into_primitive().tensor();
    let forward = |x: &FloatTensor<I>, weight: &FloatTensor<I>| {
        let (x, weight) = (inner::<I>(x.clone()), inner::<I>(weight.clone()));
        let (dtype, c) = (x.dtype(), weight.dims()[0]);
        let options = ConvOptions::new([1, 1], [padding, padding], [1, 1], c);
        let y = module::conv2d(to(x, DType::F32), to(weight, DType::F32), None, options);
        to(y, dtype).into_primitive().tensor()
    };
    let y = match DepthwiseBackward
        .prepare::<NoCheckpointing>([x.node.clone(), weight.node.clone()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let y = forward(&x.primitive, &weight.primitive);
            prep.finish((x.primitive, weight.primitive, padding), y)
        }
        OpsKind::UnTracked(prep) => prep.finish(forward(&x.primitive, &weight.primitive)),
    };
    Tensor::from_primitive(TensorPrimitive::Float(y))
}

#[derive(Debug)]
struct DepthwiseBackward;

impl<I: Backend> Backward<I, 2> for DepthwiseBackward {
    /// The input and the weight (compute dtype), and the padding.
    type State = (FloatTensor<I>, FloatTensor<I>, usize);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let [node_x, node_weight] = ops.parents;
        let (x, weight, p) = ops.state;
        let (x, weight) = (inner::<I>(x), inner::<I>(weight));
        let (x_dtype, w_dtype) = (x.dtype(), weight.dtype());
        let dy = to(inner::<I>(grads.consume::<I>(&ops.node)), DType::F32);
        let [b, c, h, w] = x.dims();
        let k = weight.dims()[2];
        let [_, _, oh, ow] = dy.dims();
        if let Some(node) = node_x {
            // The adjoint of the convolution; `padding_out` restores the rows and columns the forward's
            // window never reached.
            let out = [h + 2 * p - (oh - 1) - k, w + 2 * p - (ow - 1) - k];
            let options = ConvTransposeOptions::new([1, 1], [p, p], out, [1, 1], c);
            let dx = module::conv_transpose2d(dy.clone(), to(weight, DType::F32), None, options);
            grads.register::<I>(node.id, to(dx, x_dtype).into_primitive().tensor());
        }
        if let Some(node) = node_weight {
            let x = to(x, DType::F32);
            let padded = if p == 0 {
                x
            } else {
                Tensor::zeros([b, c, h + 2 * p, w + 2 * p], &x.device())
                    .slice_assign([0..b, 0..c, p..p + h, p..p + w], x)
            };
            let taps: Vec<Tensor<I, 1>> = (0..k * k)
                .map(|tap| {
                    let (i, j) = (tap / k, tap % k);
                    let window = padded.clone().slice([0..b, 0..c, i..i + oh, j..j + ow]);
                    channel_sum(window * dy.clone())
                })
                .collect();
            let dw = Tensor::stack::<2>(taps, 1).reshape([c, 1, k, k]);
            grads.register::<I>(node.id, to(dw, w_dtype).into_primitive().tensor());
        }
    }
}

fn inner<I: Backend>(t: FloatTensor<I>) -> Tensor<I, 4> {
    Tensor::from_primitive(TensorPrimitive::Float(t))
}

/// `t` in `dtype`, without a cast kernel when it already is.
fn to<I: Backend, const D: usize>(t: Tensor<I, D>, dtype: DType) -> Tensor<I, D> {
    match dtype {
        _ if t.dtype() == dtype => t,
        DType::F16 => t.cast(FloatDType::F16),
        DType::BF16 => t.cast(FloatDType::BF16),
        _ => t.cast(FloatDType::F32),
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::Distribution;

    use super::*;
    use crate::backend::{Cpu, CpuAutodiff};

    /// Output and both gradients equal autodiff through burn's grouped convolution (in FP32, as
    /// `nn::conv_lowp::conv2d_widened`), for FP32 and FP16 inputs, 3x3 and 5x5 kernels, with and without padding.
    #[test]
    fn equals_autodiff_through_the_grouped_convolution() {
        let device = Default::default();
        CpuAutodiff::seed(&device, 3);
        for (k, p) in [(3, 1), (3, 0), (5, 2)] {
            let x = Tensor::<CpuAutodiff, 4>::random([2, 6, 9, 7], Distribution::Normal(0.2, 1.0), &device);
            let w = Tensor::<CpuAutodiff, 4>::random([6, 1, k, k], Distribution::Normal(0.0, 0.3), &device);
            for (dtype, tolerance) in [(FloatDType::F32, 1e-5), (FloatDType::F16, 2e-2)] {
                let run = |own: bool| {
                    let (x, w) = (x.clone().detach().require_grad(), w.clone().detach().require_grad());
                    let (xc, wc) = (x.clone().cast(dtype), w.clone().cast(dtype));
                    let y = if own {
                        try_conv2d_depthwise(&xc, &wc, 1, p).expect("taken on Autodiff<Flex>")
                    } else {
                        let options = ConvOptions::new([1, 1], [p, p], [1, 1], 6);
                        module::conv2d(xc.cast(FloatDType::F32), wc.cast(FloatDType::F32), None, options).cast(dtype)
                    };
                    let y = y.cast(FloatDType::F32);
                    let upstream = y.clone().detach().cos();
                    let grads = (y.clone() * upstream).sum().backward();
                    [y.inner(), x.grad(&grads).unwrap(), w.grad(&grads).unwrap().reshape([6, 1, k, k])]
                        .map(|t: Tensor<Cpu, 4>| t.into_data().to_vec::<f32>().unwrap())
                };
                let (want, got) = (run(false), run(true));
                for (name, (a, b)) in ["output", "input grad", "weight grad"].iter().zip(got.iter().zip(&want)) {
                    assert_eq!(a.len(), b.len(), "{name}");
                    let scale = b.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
                    let err = a.iter().zip(b).fold(0f32, |m, (a, b)| m.max((a - b).abs())) / scale;
                    assert!(err <= tolerance, "k {k} p {p} {dtype:?} {name}: relative error {err:e}");
                }
            }
        }
    }
}
