//! Training-mode BatchNorm, then SiLU when asked (`nn::batchnorm`'s generic definition), that keeps only its
//! input for the backward.
//!
//! Through plain autodiff the definition holds, for every Conv block until its backward, the centered input
//! in FP32 (its square and its product with the scale save it), the normalised output and SiLU's sigmoid:
//! three tensors of the activation's size, one of them FP32 even under AMP. Here the forward saves the
//! input (in the compute dtype) and per-channel mean and inverse deviation (FP32), and the backward
//! rebuilds the normalised values from them in FP32, as cuDNN's BatchNorm does.

use std::any::TypeId;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::Autodiff;
use burn::tensor::backend::Backend;
use burn::tensor::ops::FloatTensor;
use burn::tensor::{activation, DType, FloatDType, Tensor, TensorPrimitive};

use super::channel_sum;
use crate::kernels::retype;

/// A BatchNorm's running statistics (untracked, FP32 `[c]`) and the weight a batch's get in their update.
#[derive(Debug, Clone)]
pub struct Running<B: Backend> {
    /// Running mean.
    pub mean: Tensor<B, 1>,
    /// Running variance, unbiased as PyTorch keeps it.
    pub var: Tensor<B, 1>,
    /// `running = (1 - momentum) * running + momentum * batch`.
    pub momentum: f64,
}

impl<B: Backend> Running<B> {
    /// The statistics after a batch of `count` values per channel with this mean and biased variance.
    pub fn updated(self, mean: Tensor<B, 1>, biased_var: Tensor<B, 1>, count: usize) -> Running<B> {
        let unbiased = biased_var.detach().mul_scalar(count as f64 / (count.max(2) - 1) as f64);
        let m = self.momentum;
        Running {
            mean: self.mean.mul_scalar(1.0 - m).add(mean.detach().mul_scalar(m)).detach(),
            var: self.var.mul_scalar(1.0 - m).add(unbiased.mul_scalar(m)).detach(),
            momentum: m,
        }
    }
}

/// Training-mode BatchNorm of `x` (batch statistics in FP32 whatever `x`'s dtype), then SiLU when `silu`,
/// with the running statistics updated, when `B` is burn's autodiff over a backend ember builds and its
/// kernels are on. `weight` and `bias` are FP32.
pub fn try_train<B: Backend>(
    x: &Tensor<B, 4>,
    weight: &Tensor<B, 1>,
    bias: &Tensor<B, 1>,
    running: &Running<B>,
    eps: f64,
    silu: bool,
) -> Option<(Tensor<B, 4>, Running<B>)> {
    if !crate::kernels::own_kernels() || weight.dtype() != DType::F32 || bias.dtype() != DType::F32 {
        return None;
    }
    let norm = Norm { eps, silu };
    let y = on::<B, crate::backend::Cpu>(x, weight, bias, running, norm);
    #[cfg(feature = "vulkan")]
    let y = y.or_else(|| on::<B, crate::backend::Vulkan>(x, weight, bias, running, norm));
    #[cfg(feature = "cuda")]
    let y = y.or_else(|| on::<B, crate::backend::Gpu>(x, weight, bias, running, norm));
    y
}

#[derive(Debug, Clone, Copy)]
struct Norm {
    eps: f64,
    silu: bool,
}

/// The op on `Autodiff<I>`, when that is what `B` is.
fn on<B: Backend, I: Backend>(
    x: &Tensor<B, 4>,
    weight: &Tensor<B, 1>,
    bias: &Tensor<B, 1>,
    running: &Running<B>,
    norm: Norm,
) -> Option<(Tensor<B, 4>, Running<B>)> {
    if TypeId::of::<B>() != TypeId::of::<Autodiff<I>>() {
        return None;
    }
    let running = Running::<Autodiff<I>> {
        mean: retype(running.mean.clone())?,
        var: retype(running.var.clone())?,
        momentum: running.momentum,
    };
    let (y, running) =
        train_keeping_input::<I>(retype(x.clone())?, retype(weight.clone())?, retype(bias.clone())?, running, norm);
    Some((retype(y)?, Running { mean: retype(running.mean)?, var: retype(running.var)?, momentum: running.momentum }))
}

fn train_keeping_input<I: Backend>(
    x: Tensor<Autodiff<I>, 4>,
    weight: Tensor<Autodiff<I>, 1>,
    bias: Tensor<Autodiff<I>, 1>,
    running: Running<Autodiff<I>>,
    norm: Norm,
) -> (Tensor<Autodiff<I>, 4>, Running<Autodiff<I>>) {
    let (x, weight, bias) =
        (x.into_primitive().tensor(), weight.into_primitive().tensor(), bias.into_primitive().tensor());
    let running = Running { mean: running.mean.inner(), var: running.var.inner(), momentum: running.momentum };
    let (y, mean, inv_std, running) = forward::<I>(&x.primitive, &weight.primitive, &bias.primitive, running, norm);
    let y = match BatchNormBackward
        .prepare::<NoCheckpointing>([x.node.clone(), weight.node.clone(), bias.node.clone()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            prep.finish((x.primitive, prim(mean.clone()), prim(inv_std), weight.primitive, bias.primitive, norm), y)
        }
        OpsKind::UnTracked(prep) => prep.finish(y),
    };
    let running = Running {
        mean: Tensor::from_inner(running.mean),
        var: Tensor::from_inner(running.var),
        momentum: running.momentum,
    };
    (Tensor::from_primitive(TensorPrimitive::Float(y)), running)
}

/// The output, the batch mean and inverse deviation, and the running statistics updated: CubeCL's kernels
/// where `I` is a CubeCL backend, else burn's tensor operations.
fn forward<I: Backend>(
    x: &FloatTensor<I>,
    gamma: &FloatTensor<I>,
    beta: &FloatTensor<I>,
    running: Running<I>,
    norm: Norm,
) -> (FloatTensor<I>, Tensor<I, 1>, Tensor<I, 1>, Running<I>) {
    #[cfg(any(feature = "vulkan", feature = "cuda"))]
    {
        let (rm, rv) = (prim(running.mean.clone()), prim(running.var.clone()));
        if let Some((y, [mean, inv_std, rm, rv])) = crate::kernels::cube::try_batch_norm_forward::<I>(
            x,
            [gamma, beta],
            (&rm, &rv, running.momentum),
            norm.eps,
            norm.silu,
        ) {
            return (y, inner(mean), inner(inv_std), Running { mean: inner(rm), var: inner(rv), ..running });
        }
    }
    let xi = inner::<I, 4>(x.clone());
    let dtype = xi.dtype();
    let [b, _, h, w] = xi.dims();
    let (mean, var) = statistics(xi.clone());
    let inv_std = var.clone().add_scalar(norm.eps).sqrt().recip();
    let (gamma, beta) = (inner::<I, 1>(gamma.clone()), inner::<I, 1>(beta.clone()));
    let z = normalised(xi, &mean, &inv_std).mul(channel(gamma)).add(channel(beta)).cast(dtype);
    let y = if norm.silu { activation::silu(z) } else { z }.into_primitive().tensor();
    (y, mean.clone(), inv_std, running.updated(mean, var, b * h * w))
}

/// Per-channel mean and biased variance of `x`, in FP32.
fn statistics<I: Backend>(x: Tensor<I, 4>) -> (Tensor<I, 1>, Tensor<I, 1>) {
    let x = x.cast(FloatDType::F32);
    let mean = channel_mean(x.clone());
    let centered = x - channel(mean.clone());
    (mean, channel_mean(centered.square()))
}

/// Mean over every axis but the channel's, `[b, c, h, w]` to `[c]`, in two reductions as [`channel_sum`] (each
/// reduction divides, so no kernel is added for the mean).
fn channel_mean<I: Backend>(t: Tensor<I, 4>) -> Tensor<I, 1> {
    let [b, c, h, w] = t.dims();
    t.reshape([b, c, h * w]).mean_dim(2).mean_dim(0).reshape([c])
}

/// `(x - mean) * inv_std` in FP32.
fn normalised<I: Backend>(x: Tensor<I, 4>, mean: &Tensor<I, 1>, inv_std: &Tensor<I, 1>) -> Tensor<I, 4> {
    (x.cast(FloatDType::F32) - channel(mean.clone())) * channel(inv_std.clone())
}

/// A per-channel vector `[c]` broadcast over NCHW.
fn channel<I: Backend>(v: Tensor<I, 1>) -> Tensor<I, 4> {
    let [c] = v.dims();
    v.reshape([1, c, 1, 1])
}

fn inner<I: Backend, const D: usize>(t: FloatTensor<I>) -> Tensor<I, D> {
    Tensor::from_primitive(TensorPrimitive::Float(t))
}

fn prim<I: Backend, const D: usize>(t: Tensor<I, D>) -> FloatTensor<I> {
    t.into_primitive().tensor()
}

#[derive(Debug)]
struct BatchNormBackward;

impl<I: Backend> Backward<I, 3> for BatchNormBackward {
    /// The input (compute dtype), the batch mean and inverse deviation, gamma and beta (FP32), the options.
    type State = (FloatTensor<I>, FloatTensor<I>, FloatTensor<I>, FloatTensor<I>, FloatTensor<I>, Norm);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let [node_x, node_weight, node_bias] = ops.parents;
        let (x, mean, inv_std, gamma, beta, norm) = ops.state;
        let dy = grads.consume::<I>(&ops.node);
        let [dx, dgamma, dbeta] = gradients::<I>(x, dy, [mean, inv_std, gamma, beta], norm);
        if let Some(node) = node_x {
            grads.register::<I>(node.id, dx);
        }
        if let Some(node) = node_weight {
            grads.register::<I>(node.id, dgamma);
        }
        if let Some(node) = node_bias {
            grads.register::<I>(node.id, dbeta);
        }
    }
}

/// The gradients of the input (in its dtype), gamma and beta: CubeCL's kernels where `I` is a CubeCL backend,
/// else burn's tensor operations.
fn gradients<I: Backend>(
    x: FloatTensor<I>,
    dy: FloatTensor<I>,
    [mean, inv_std, gamma, beta]: [FloatTensor<I>; 4],
    norm: Norm,
) -> [FloatTensor<I>; 3] {
    #[cfg(any(feature = "vulkan", feature = "cuda"))]
    if let Some(grads) =
        crate::kernels::cube::try_batch_norm_backward::<I>(&x, &dy, [&mean, &inv_std, &gamma, &beta], norm.silu)
    {
        return grads;
    }
    let x = inner::<I, 4>(x);
    let [b, _, h, w] = x.dims();
    let dtype = x.dtype();
    let (mean, inv_std, gamma) = (inner::<I, 1>(mean), inner::<I, 1>(inv_std), inner::<I, 1>(gamma));
    let dy = inner::<I, 4>(dy).cast(FloatDType::F32);
    let x_hat = normalised(x, &mean, &inv_std);
    // SiLU's derivative at the normalised output z: s * (1 + z * (1 - s)), s = sigmoid(z).
    let dz = if norm.silu {
        let z = x_hat.clone() * channel(gamma.clone()) + channel(inner::<I, 1>(beta));
        let s = activation::sigmoid(z.clone());
        dy * s.clone() * (z * (s.neg().add_scalar(1.0))).add_scalar(1.0)
    } else {
        dy
    };
    let dbeta = channel_sum(dz.clone());
    let dgamma = channel_sum(dz.clone() * x_hat.clone());
    // dx = gamma * inv_std * (dz - mean(dz) - x_hat * mean(dz * x_hat)), the means over b * h * w.
    let n = (b * h * w) as f64;
    let centered_dz = dz - channel(dbeta.clone().div_scalar(n)) - x_hat * channel(dgamma.clone().div_scalar(n));
    let dx = centered_dz * channel(gamma * inv_std);
    [prim(dx.cast(dtype)), prim(dgamma), prim(dbeta)]
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Distribution, Tolerance};

    use super::*;
    use crate::backend::{Cpu, CpuAutodiff};

    /// Output, running statistics and the three gradients equal autodiff through `nn::batchnorm`'s generic
    /// definition (and [`Running::updated`]), FP32 and FP16, with and without SiLU, with a downstream loss that
    /// weighs every output.
    #[test]
    fn equals_autodiff_through_the_definition() {
        let device = Default::default();
        let x = Tensor::<Cpu, 4>::random([3, 4, 5, 6], Distribution::Normal(0.5, 2.0), &device);
        let gamma = Tensor::<Cpu, 1>::random([4], Distribution::Normal(1.0, 0.5), &device);
        let beta = Tensor::<Cpu, 1>::random([4], Distribution::Normal(0.0, 0.5), &device);
        let running = Running::<CpuAutodiff> {
            mean: Tensor::from_floats([0.1, -0.2, 0.3, 0.0], &device),
            var: Tensor::from_floats([1.0, 2.0, 0.5, 1.5], &device),
            momentum: 0.1,
        };
        for (dtype, tolerance) in [(FloatDType::F32, 1e-5), (FloatDType::F16, 1e-2)] {
            for silu in [false, true] {
                let run = |lean: bool| {
                    let xa = Tensor::<CpuAutodiff, 4>::from_inner(x.clone()).require_grad();
                    let ga = Tensor::<CpuAutodiff, 1>::from_inner(gamma.clone()).require_grad();
                    let ba = Tensor::<CpuAutodiff, 1>::from_inner(beta.clone()).require_grad();
                    let (y, after) = if lean {
                        try_train(&xa.clone().cast(dtype), &ga, &ba, &running, 1e-3, silu)
                            .expect("taken on Autodiff<Flex>")
                    } else {
                        let (y, mean, var) = crate::nn::batchnorm::train_definition(
                            xa.clone().cast(dtype),
                            ga.clone(),
                            ba.clone(),
                            1e-3,
                        );
                        (if silu { activation::silu(y) } else { y }, running.clone().updated(mean, var, 3 * 5 * 6))
                    };
                    let y = y.cast(FloatDType::F32);
                    let weights = y.clone().inner().cos();
                    let grads = (y.clone() * Tensor::from_inner(weights)).sum().backward();
                    let grad = |t: Option<Tensor<Cpu, 4>>| t.unwrap();
                    (
                        y.inner(),
                        grad(xa.grad(&grads)),
                        ga.grad(&grads).unwrap(),
                        ba.grad(&grads).unwrap(),
                        after.mean.inner(),
                        after.var.inner(),
                    )
                };
                let (want, got) = (run(false), run(true));
                // FP16: sums in another order differ by a few ulps (1e-3 relative each); a wrong term is O(1).
                let tol = Tolerance::rel_abs(tolerance, tolerance);
                want.0.into_data().assert_approx_eq::<f32>(&got.0.into_data(), tol);
                want.1.into_data().assert_approx_eq::<f32>(&got.1.into_data(), tol);
                want.2.into_data().assert_approx_eq::<f32>(&got.2.into_data(), tol);
                want.3.into_data().assert_approx_eq::<f32>(&got.3.into_data(), tol);
                want.4.into_data().assert_approx_eq::<f32>(&got.4.into_data(), Tolerance::absolute(1e-5));
                want.5.into_data().assert_approx_eq::<f32>(&got.5.into_data(), Tolerance::rel_abs(1e-5, 1e-5));
            }
        }
    }
}
