//! SiLU, the activation after every convolution block.
//!
//! burn writes SiLU as `x * sigmoid(x)`; on burn-flex the sigmoid is a single-threaded scalar loop, and
//! autodiff evaluates it again in the backward pass, so SiLU cost about as much as the convolutions
//! around it (BENCHMARKS.md). On flex in FP32 ember computes it as one fused, multi-threaded pass each
//! way, with a hand-written backward (`grad * s * (1 + x * (1 - s))`, PyTorch's formula). Every other
//! backend and dtype (FP16 under AMP, CUDA) takes burn's definition.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{unary, Backward, Ops, OpsKind};
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Tensor, TensorPrimitive};
use burn_flex::FlexTensor;
use rayon::prelude::*;

use super::flex::{own_kernels, retype, values};
use crate::backend::{Cpu, CpuAutodiff};

/// `x * sigmoid(x)`.
pub fn silu<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    if x.dtype() != DType::F32 || !own_kernels() {
        return burn::tensor::activation::silu(x);
    }
    if let Some(x) = retype::<_, Tensor<CpuAutodiff, D>>(x.clone()) {
        return retype(silu_flex_autodiff(x)).expect("dispatched on this type");
    }
    if let Some(x) = retype::<_, Tensor<Cpu, D>>(x.clone()) {
        return retype(silu_flex(x)).expect("dispatched on this type");
    }
    burn::tensor::activation::silu(x)
}

fn silu_flex<const D: usize>(x: Tensor<Cpu, D>) -> Tensor<Cpu, D> {
    let x = x.into_primitive().tensor();
    Tensor::from_primitive(TensorPrimitive::Float(forward(&x)))
}

#[derive(Debug)]
struct SiluBackward;

impl Backward<Cpu, 1> for SiluBackward {
    /// The input.
    type State = FlexTensor;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let x = ops.state;
        unary::<Cpu, _>(ops.parents, ops.node, grads, |grad| backward(&x, &grad));
    }
}

fn silu_flex_autodiff<const D: usize>(x: Tensor<CpuAutodiff, D>) -> Tensor<CpuAutodiff, D> {
    let x = x.into_primitive().tensor();
    let y = match SiluBackward.prepare::<NoCheckpointing>([x.node.clone()]).compute_bound().stateful() {
        OpsKind::Tracked(prep) => {
            let y = forward(&x.primitive);
            prep.finish(x.primitive, y)
        }
        OpsKind::UnTracked(prep) => prep.finish(forward(&x.primitive)),
    };
    Tensor::from_primitive(TensorPrimitive::Float(y))
}

/// Elements per parallel task: large enough to amortise scheduling, small enough to balance.
const CHUNK: usize = 1 << 15;

/// `1 / (1 + e^-x)` with a branch-free exponential, so the loops below vectorise (libm's `exp` does not).
#[inline(always)]
pub(crate) fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

/// Cephes' single-precision `expf` (relative error about 2e-7 over the clamped range), written with
/// round-by-magic-number and exponent bit arithmetic instead of `floor` and `ldexp`.
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const ROUND: f32 = 12_582_912.0; // 1.5 * 2^23: adding it rounds to an integer in the low mantissa bits
    let x = x.clamp(-87.3, 88.0); // 2^n stays a normal float
    let shifted = x * LOG2E + ROUND;
    let n = shifted - ROUND;
    let r = x - n * 0.693_359_4 - n * -2.121_944_4e-4;
    let p = ((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r + 1.666_666_5e-1) * r + 5.000_000_1e-1;
    let e = p * r * r + r + 1.0;
    let k = (shifted.to_bits() as i32).wrapping_sub(ROUND.to_bits() as i32);
    e * f32::from_bits(((k + 127) << 23) as u32)
}

fn forward(x: &FlexTensor) -> FlexTensor {
    let src = values(x);
    let mut out = vec![0f32; src.len()];
    out.par_chunks_mut(CHUNK).zip(src.par_chunks(CHUNK)).for_each(|(dst, src)| {
        for (y, &v) in dst.iter_mut().zip(src) {
            *y = v * sigmoid(v);
        }
    });
    owned(out, x)
}

/// A new tensor shaped like `like`. Built from a `Vec<f32>` rather than `FlexTensor::empty`, which
/// allocates bytes and then copies them once more to align them.
fn owned(data: Vec<f32>, like: &FlexTensor) -> FlexTensor {
    FlexTensor::from_data(burn::tensor::TensorData::new(data, like.layout().shape().clone()))
}

fn backward(x: &FlexTensor, grad: &FlexTensor) -> FlexTensor {
    let (src, g) = (values(x), values(grad));
    let mut out = vec![0f32; src.len()];
    out.par_chunks_mut(CHUNK).zip(src.par_chunks(CHUNK)).zip(g.par_chunks(CHUNK)).for_each(|((dst, src), g)| {
        for ((d, &v), &g) in dst.iter_mut().zip(src).zip(g) {
            let s = sigmoid(v);
            *d = g * s * (1.0 + v * (1.0 - s));
        }
    });
    owned(out, x)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    #[test]
    fn matches_burns_silu_forward_and_backward() {
        let device = Default::default();
        let x = Tensor::<Cpu, 4>::random([2, 3, 50, 70], Distribution::Normal(0.0, 4.0), &device);
        let ours: Vec<f32> = silu(x.clone()).into_data().to_vec().unwrap();
        let burns: Vec<f32> = burn::tensor::activation::silu(x.clone()).into_data().to_vec().unwrap();
        let worst = ours.iter().zip(&burns).map(|(a, b)| (a - b).abs() / b.abs().max(1e-3)).fold(0f32, f32::max);
        assert!(worst < 1e-6, "forward differs by {worst:e}");

        let grad_of = |f: fn(Tensor<CpuAutodiff, 4>) -> Tensor<CpuAutodiff, 4>| -> Vec<f32> {
            let xa = Tensor::<CpuAutodiff, 4>::from_inner(x.clone()).require_grad();
            // A non-uniform upstream gradient, through a non-contiguous view.
            let weights = Tensor::<CpuAutodiff, 4>::from_inner(x.clone().cos());
            let grads = (f(xa.clone().swap_dims(2, 3)).swap_dims(2, 3) * weights).sum().backward();
            xa.grad(&grads).unwrap().into_data().to_vec().unwrap()
        };
        let ours = grad_of(silu);
        let burns = grad_of(burn::tensor::activation::silu);
        let worst = ours.iter().zip(&burns).map(|(a, b)| (a - b).abs() / b.abs().max(1.0)).fold(0f32, f32::max);
        assert!(worst < 1e-5, "gradient differs by {worst:e}");
    }

    #[test]
    fn exponential_is_accurate_and_saturates() {
        for i in -1740..=1760 {
            let x = i as f32 * 0.05;
            let (ours, std) = (exp(x), x.exp());
            assert!(((ours - std) / std).abs() < 5e-7, "exp({x}) = {ours} vs {std}"); // -87..88.5: normal floats
        }
        assert!(exp(-1000.0) > 0.0 && exp(1000.0).is_finite());
        assert_eq!(sigmoid(1000.0), 1.0);
        assert!(sigmoid(-1000.0) < 1e-37);
    }

    #[test]
    fn other_dtypes_take_burns_path() {
        let device = Default::default();
        let x = Tensor::<Cpu, 2>::from_floats([[-3.0, -0.5, 0.0, 0.5, 3.0]], &device).cast(burn::tensor::FloatDType::F16);
        let y = silu(x.clone());
        assert_eq!(y.dtype(), DType::F16);
        let want: Vec<f32> = burn::tensor::activation::silu(x).cast(burn::tensor::FloatDType::F32).into_data().to_vec().unwrap();
        let got: Vec<f32> = y.cast(burn::tensor::FloatDType::F32).into_data().to_vec().unwrap();
        assert_eq!(got, want);
    }
}
