//! The residual sum on flex in FP32: added on all threads both ways (burn adds on one thread, and the
//! backward's accumulation into `x`, which already has a gradient from `f`, is another single-threaded
//! add). The definition every other backend runs is `nn::residual::residual`, burn's `+`.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::tensor::backend::{Backend, BackendTypes};
use burn::tensor::{Tensor, TensorPrimitive};

use super::{accumulate_grad, on_flex, retype, sum, On};
use crate::backend::{Cpu, CpuAutodiff};

/// `a + b` when ember's flex kernel handles it (same shapes), else `None`.
pub fn try_residual<B: Backend, const D: usize>(a: &Tensor<B, D>, b: &Tensor<B, D>) -> Option<Tensor<B, D>> {
    if a.dims() != b.dims() {
        return None;
    }
    match on_flex::<B>(&[a.dtype(), b.dtype()])? {
        On::Training => retype(autodiff::<D>(retype(a.clone())?, retype(b.clone())?)),
        On::Inference => {
            let a = retype::<_, Tensor<Cpu, D>>(a.clone())?.into_primitive().tensor();
            let b = retype::<_, Tensor<Cpu, D>>(b.clone())?.into_primitive().tensor();
            retype(Tensor::<Cpu, D>::from_primitive(TensorPrimitive::Float(sum(&a, &b))))
        }
    }
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
