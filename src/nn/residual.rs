//! The residual sum `x + f(x)` of bottlenecks and attention blocks.
//!
//! On flex burn adds on one thread, and backward hands the gradient to `x`, which already has one from
//! `f`: another single-threaded add. The two were about 4% of a yolo26n training step at 320 (profile in
//! BENCHMARKS.md). On flex in FP32 ember adds on all threads both ways; elsewhere it is burn's `+`.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::tensor::backend::{Backend, BackendTypes};
use burn::tensor::{DType, Tensor, TensorPrimitive};

use super::flex::{accumulate_grad, own_kernels, retype, sum};
use crate::backend::{Cpu, CpuAutodiff};

/// `a + b` for same-shaped tensors.
pub fn residual<B: Backend, const D: usize>(a: Tensor<B, D>, b: Tensor<B, D>) -> Tensor<B, D> {
    if a.dtype() == DType::F32 && b.dtype() == DType::F32 && a.dims() == b.dims() && own_kernels() {
        if let (Some(a), Some(b)) =
            (retype::<_, Tensor<CpuAutodiff, D>>(a.clone()), retype::<_, Tensor<CpuAutodiff, D>>(b.clone()))
        {
            return retype(autodiff(a, b)).expect("dispatched on this type");
        }
        if let (Some(a), Some(b)) = (retype::<_, Tensor<Cpu, D>>(a.clone()), retype::<_, Tensor<Cpu, D>>(b.clone())) {
            let (a, b) = (a.into_primitive().tensor(), b.into_primitive().tensor());
            return retype(Tensor::<Cpu, D>::from_primitive(TensorPrimitive::Float(sum(&a, &b))))
                .expect("dispatched on this type");
        }
    }
    a + b
}

#[derive(Debug)]
struct ResidualBackward;

type Input = <CpuAutodiff as BackendTypes>::FloatTensorPrimitive;

impl Backward<Cpu, 2> for ResidualBackward {
    /// Both inputs (their autodiff nodes, to accumulate their gradients).
    type State = (Input, Input);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let [node_a, node_b] = ops.parents;
        let grad = grads.consume::<Cpu>(&ops.node);
        let (a, b) = ops.state;
        if node_a.is_some() {
            accumulate_grad(grads, &a, grad.clone());
        }
        if node_b.is_some() {
            accumulate_grad(grads, &b, grad);
        }
    }
}

fn autodiff<const D: usize>(a: Tensor<CpuAutodiff, D>, b: Tensor<CpuAutodiff, D>) -> Tensor<CpuAutodiff, D> {
    let (a, b) = (a.into_primitive().tensor(), b.into_primitive().tensor());
    let y = sum(&a.primitive, &b.primitive);
    let y = match ResidualBackward
        .prepare::<NoCheckpointing>([a.node.clone(), b.node.clone()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish((a, b), y),
        OpsKind::UnTracked(prep) => prep.finish(y),
    };
    Tensor::from_primitive(TensorPrimitive::Float(y))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    /// `x + f(x)` with `x` also read elsewhere (a second residual, an exponential of a view): value and
    /// gradient as burn's `+` gives them.
    #[test]
    fn matches_burns_sum_and_accumulates() {
        let device = Default::default();
        let x = Tensor::<Cpu, 4>::random([2, 3, 5, 7], Distribution::Normal(0.0, 1.0), &device);
        let run = |ours: bool| {
            let xa = Tensor::<CpuAutodiff, 4>::from_inner(x.clone()).require_grad();
            let add = |a: Tensor<CpuAutodiff, 4>, b| if ours { residual(a, b) } else { a + b };
            let y = add(xa.clone(), xa.clone().sin() * 3.0);
            let z = add(xa.clone().cos(), xa.clone()); // a second residual reading x: its gradient accumulates
            let other = xa.clone().swap_dims(2, 3).exp().sum();
            let grads = ((y.clone() * y.clone()).sum() + (z * 0.5).powi_scalar(3).sum() + other).backward();
            let v = |t: Tensor<Cpu, 4>| -> Vec<f32> { t.into_data().to_vec().unwrap() };
            (v(y.inner()), v(xa.grad(&grads).unwrap()))
        };
        let (ours, burns) = (run(true), run(false));
        assert_eq!(ours.0, burns.0);
        let diff = ours.1.iter().zip(&burns.1).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(diff < 1e-4, "gradient differs by {diff:e}");
        let plain: Vec<f32> = residual(x.clone(), x.clone()).into_data().to_vec().unwrap();
        assert_eq!(plain, (x.clone() + x).into_data().to_vec::<f32>().unwrap());
    }
}
