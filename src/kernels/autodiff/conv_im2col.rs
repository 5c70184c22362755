//! The im2col convolution (`kernels::columns::conv2d_im2col`, `nn::conv_lowp`'s FP16/BF16 route) that keeps its input
//! rather than its columns for the backward.
//!
//! Through plain autodiff the matrix product saves its operand, the column matrix: `k * k` times the input
//! (9x for a 3x3 convolution), held for every convolution of the forward until its backward. Under AMP
//! that made a training step hold more device memory than FP32, whose direct convolution saves only its
//! input (BENCHMARKS.md). Here the forward saves the input and the weight, and the backward builds the
//! columns again, one convolution at a time: the same products, so the same FP32-accumulated sums.

use std::any::TypeId;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::Autodiff;
use burn::tensor::backend::Backend;
use burn::tensor::ops::FloatTensor;
use burn::tensor::{Tensor, TensorPrimitive};

use crate::kernels::columns::{col2im, conv2d_im2col, im2col, out_size};

/// `conv2d_im2col(x, weight, stride, padding)` saving `x` instead of its columns, when `B` is burn's
/// autodiff over a backend ember builds (flex, and CUDA and Vulkan when compiled in) and its kernels are on.
pub fn try_conv2d_im2col<B: Backend>(
    x: &Tensor<B, 4>,
    weight: &Tensor<B, 4>,
    stride: usize,
    padding: usize,
) -> Option<Tensor<B, 4>> {
    if !crate::kernels::own_kernels() {
        return None;
    }
    let geometry = Geometry { stride, padding };
    let y = on::<B, crate::backend::Cpu>(x, weight, geometry);
    #[cfg(feature = "vulkan")]
    let y = y.or_else(|| on::<B, crate::backend::Vulkan>(x, weight, geometry));
    #[cfg(feature = "cuda")]
    let y = y.or_else(|| on::<B, crate::backend::Gpu>(x, weight, geometry));
    y
}

#[derive(Debug, Clone, Copy)]
struct Geometry {
    stride: usize,
    padding: usize,
}

/// The op on `Autodiff<I>`, when that is what `B` is.
fn on<B: Backend, I: Backend>(x: &Tensor<B, 4>, weight: &Tensor<B, 4>, g: Geometry) -> Option<Tensor<B, 4>> {
    if TypeId::of::<B>() != TypeId::of::<Autodiff<I>>() {
        return None;
    }
    let x = crate::kernels::retype::<_, Tensor<Autodiff<I>, 4>>(x.clone())?;
    let weight = crate::kernels::retype::<_, Tensor<Autodiff<I>, 4>>(weight.clone())?;
    crate::kernels::retype(conv2d_keeping_input(x, weight, g))
}

fn conv2d_keeping_input<I: Backend>(
    x: Tensor<Autodiff<I>, 4>,
    weight: Tensor<Autodiff<I>, 4>,
    g: Geometry,
) -> Tensor<Autodiff<I>, 4> {
    let x = x.into_primitive().tensor();
    let weight = weight.into_primitive().tensor();
    let forward = |x: &FloatTensor<I>, weight: &FloatTensor<I>| {
        conv2d_im2col(inner::<I>(x.clone()), inner::<I>(weight.clone()), g.stride, g.padding).into_primitive().tensor()
    };
    let y = match Im2colBackward
        .prepare::<NoCheckpointing>([x.node.clone(), weight.node.clone()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let y = forward(&x.primitive, &weight.primitive);
            prep.finish((x.primitive, weight.primitive, g), y)
        }
        OpsKind::UnTracked(prep) => prep.finish(forward(&x.primitive, &weight.primitive)),
    };
    Tensor::from_primitive(TensorPrimitive::Float(y))
}

fn inner<I: Backend>(t: FloatTensor<I>) -> Tensor<I, 4> {
    Tensor::from_primitive(TensorPrimitive::Float(t))
}

#[derive(Debug)]
struct Im2colBackward;

impl<I: Backend> Backward<I, 2> for Im2colBackward {
    /// The input and the weight (inner tensors, in the compute dtype), and the geometry.
    type State = (FloatTensor<I>, FloatTensor<I>, Geometry);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let [node_x, node_weight] = ops.parents;
        let dy = inner::<I>(grads.consume::<I>(&ops.node));
        let (x, weight, g) = ops.state;
        let (x, weight) = (inner::<I>(x), inner::<I>(weight));
        let [b, c, h, w] = x.dims();
        let [co, ci, kh, kw] = weight.dims();
        let [ho, wo] = out_size([h, w], [kh, kw], g.stride, g.padding);
        let dy = dy.reshape([b, co, ho * wo]);
        // As autodiff differentiates `weight[1, co, K] x columns[b, K, P]`: products per image, the broadcast
        // summed over the batch.
        if let Some(node) = node_weight {
            let columns = im2col(x, [kh, kw], g.stride, g.padding);
            let dw = dy.clone().matmul(columns.swap_dims(1, 2)).sum_dim(0).reshape([co, ci, kh, kw]);
            grads.register::<I>(node.id, dw.into_primitive().tensor());
        }
        if let Some(node) = node_x {
            let dcolumns = weight.reshape([1, co, ci * kh * kw]).swap_dims(1, 2).matmul(dy);
            let dx = col2im(dcolumns, [b, c, h, w], [kh, kw], g.stride, g.padding);
            grads.register::<I>(node.id, dx.into_primitive().tensor());
        }
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Distribution, FloatDType, Tolerance};

    use super::*;
    use crate::backend::{Cpu, CpuAutodiff};

    /// Output and both gradients equal autodiff through the generic definition, FP32 and FP16, dense
    /// 3x3 and stride-2 shapes and a 1x1 with padding, with a downstream loss that weighs every output.
    #[test]
    fn equals_autodiff_through_the_definition() {
        let device = Default::default();
        for (dtype, tolerance) in [(FloatDType::F32, 1e-5), (FloatDType::F16, 1e-2)] {
            for (size, k, stride, padding) in [(9, 3, 1, 1), (10, 3, 2, 1), (7, 1, 1, 1), (8, 3, 1, 0)] {
                let x = Tensor::<Cpu, 4>::random([2, 3, size, size + 1], Distribution::Normal(0.0, 1.0), &device);
                let w = Tensor::<Cpu, 4>::random([5, 3, k, k], Distribution::Normal(0.0, 0.3), &device);
                let run = |lean: bool| {
                    let xa = Tensor::<CpuAutodiff, 4>::from_inner(x.clone()).require_grad();
                    let wa = Tensor::<CpuAutodiff, 4>::from_inner(w.clone()).require_grad();
                    let (xc, wc) = (xa.clone().cast(dtype), wa.clone().cast(dtype));
                    let y = if lean {
                        try_conv2d_im2col(&xc, &wc, stride, padding).expect("taken on Autodiff<Flex>")
                    } else {
                        conv2d_im2col(xc, wc, stride, padding)
                    };
                    let y = y.cast(FloatDType::F32);
                    let weights = y.clone().inner().sin();
                    let grads = (y.clone() * Tensor::from_inner(weights)).sum().backward();
                    (y.inner(), xa.grad(&grads).unwrap(), wa.grad(&grads).unwrap())
                };
                let (want, got) = (run(false), run(true));
                // FP16: sums in another order differ by a few ulps (1e-3 relative each); a wrong tap or sum is O(1).
                let tol = Tolerance::rel_abs(tolerance, tolerance);
                want.0.into_data().assert_approx_eq::<f32>(&got.0.into_data(), tol);
                want.1.into_data().assert_approx_eq::<f32>(&got.1.into_data(), tol);
                want.2.into_data().assert_approx_eq::<f32>(&got.2.into_data(), tol);
            }
        }
    }

    #[test]
    fn not_taken_without_autodiff() {
        let device = Default::default();
        let x = Tensor::<Cpu, 4>::zeros([1, 2, 4, 4], &device);
        let w = Tensor::<Cpu, 4>::zeros([3, 2, 3, 3], &device);
        assert!(try_conv2d_im2col(&x, &w, 1, 1).is_none());
    }
}
