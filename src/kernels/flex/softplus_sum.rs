//! `sum(softplus(x))` on flex in FP32 in one multi-threaded pass each way (the gradient is `sigmoid(x)` times
//! the upstream scalar), where burn's `x - log_sigmoid(x)` and sum are three single-threaded passes each way.
//! The definition every other backend runs is `loss::softplus_sum::softplus_sum`.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{unary, Backward, Ops, OpsKind};
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorPrimitive};
use burn_flex::FlexTensor;
use rayon::prelude::*;

use super::math::{exp, sigmoid};
use super::{on_flex, retype, tensor, values, On};
use crate::backend::{Cpu, CpuAutodiff};

/// `sum(softplus(x))` as a one-element tensor when ember's flex kernel handles it, else `None`.
pub fn try_softplus_sum<B: Backend, const D: usize>(x: &Tensor<B, D>) -> Option<Tensor<B, 1>> {
    match on_flex::<B>(&[x.dtype()])? {
        On::Training => retype(autodiff::<D>(retype(x.clone())?)),
        On::Inference => {
            let x = retype::<_, Tensor<Cpu, D>>(x.clone())?.into_primitive().tensor();
            retype(Tensor::<Cpu, 1>::from_primitive(TensorPrimitive::Float(forward(&x))))
        }
    }
}

#[derive(Debug)]
struct SoftplusSumBackward;

impl Backward<Cpu, 1> for SoftplusSumBackward {
    /// The input.
    type State = FlexTensor;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let x = ops.state;
        unary::<Cpu, _>(ops.parents, ops.node, grads, |grad| {
            let upstream = values(&grad)[0];
            let src = values(&x);
            let mut dx = vec![0f32; src.len()];
            dx.par_chunks_mut(CHUNK).zip(src.par_chunks(CHUNK)).for_each(|(d, x)| {
                for (d, &v) in d.iter_mut().zip(x) {
                    *d = upstream * sigmoid(v);
                }
            });
            tensor(dx, x.layout().shape().clone())
        });
    }
}

fn autodiff<const D: usize>(x: Tensor<CpuAutodiff, D>) -> Tensor<CpuAutodiff, 1> {
    let x = x.into_primitive().tensor();
    let y = forward(&x.primitive);
    let y = match SoftplusSumBackward.prepare::<NoCheckpointing>([x.node.clone()]).compute_bound().stateful() {
        OpsKind::Tracked(prep) => prep.finish(x.primitive, y),
        OpsKind::UnTracked(prep) => prep.finish(y),
    };
    Tensor::from_primitive(TensorPrimitive::Float(y))
}

/// Elements per parallel task.
const CHUNK: usize = 1 << 14;

fn forward(x: &FlexTensor) -> FlexTensor {
    let src = values(x);
    let total: f64 = src
        .par_chunks(CHUNK)
        .map(|chunk| {
            // Eight f32 lanes so the loop vectorises, folded into f64 per chunk.
            let mut lanes = [0f32; 8];
            let mut it = chunk.chunks_exact(8);
            for v in &mut it {
                for k in 0..8 {
                    lanes[k] += softplus(v[k]);
                }
            }
            lanes.iter().map(|&v| v as f64).sum::<f64>()
                + it.remainder().iter().map(|&v| softplus(v) as f64).sum::<f64>()
        })
        .sum();
    tensor(vec![total as f32], [1])
}

/// `log(1 + e^x) = max(x, 0) + log(1 + e^-|x|)`, stable for any `x`.
#[inline(always)]
fn softplus(x: f32) -> f32 {
    x.max(0.0) + ln_1_to_2(1.0 + exp(-x.abs()))
}

/// Natural logarithm on `[1, 2]` (Cephes' `logf` polynomial, relative error about 1e-7), branch-free
/// enough to vectorise, which libm's `log1pf` does not.
#[inline(always)]
fn ln_1_to_2(y: f32) -> f32 {
    let high = y > std::f32::consts::SQRT_2;
    let (x, e) = if high { (0.5 * y - 1.0, 1.0f32) } else { (y - 1.0, 0.0f32) };
    let z = x * x;
    let p = ((((((((7.037_683_6e-2 * x - 1.151_461e-1) * x + 1.167_699_9e-1) * x - 1.242_014_1e-1) * x
        + 1.424_932_3e-1)
        * x
        - 1.666_805_8e-1)
        * x
        + 2.000_071_4e-1)
        * x
        - 2.499_999_4e-1)
        * x
        + 3.333_333e-1)
        * x
        * z;
    let r = p + e * -2.121_944_4e-4 - 0.5 * z + x;
    r + e * 0.693_359_4
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logarithm_is_accurate_on_its_range() {
        for i in 0..=10_000 {
            let y = 1.0 + i as f32 / 10_000.0;
            let (ours, std) = (ln_1_to_2(y), y.ln());
            assert!((ours - std).abs() <= 2e-7 * std.max(1e-3) + 1e-8, "ln({y}) = {ours} vs {std}");
        }
    }
}
