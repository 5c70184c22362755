//! Nearest upsampling on flex in FP32: every input pixel copied to its `s x s` block plane by plane on all
//! threads, and the gradient summed block by block (burn's reshape + repeat is a single-threaded strided
//! copy each way on flex). The definition every other backend runs is `nn::upsample::upsample_nearest`.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::tensor::backend::{Backend, BackendTypes};
use burn::tensor::{Tensor, TensorPrimitive};
use burn_flex::FlexTensor;
use rayon::prelude::*;

use super::{on_flex, register_input_grad, retype, tensor, values, On};
use crate::backend::{Cpu, CpuAutodiff};

/// `x` upsampled by `scale` when ember's flex kernel handles it, else `None`.
pub fn try_upsample_nearest<B: Backend>(x: &Tensor<B, 4>, scale: usize) -> Option<Tensor<B, 4>> {
    match on_flex::<B>(&[x.dtype()])? {
        On::Training => retype(autodiff(retype(x.clone())?, scale)),
        On::Inference => {
            let x = retype::<_, Tensor<Cpu, 4>>(x.clone())?.into_primitive().tensor();
            retype(Tensor::<Cpu, 4>::from_primitive(TensorPrimitive::Float(forward(&x, scale))))
        }
    }
}

#[derive(Debug)]
struct UpsampleBackward;

impl Backward<Cpu, 1> for UpsampleBackward {
    /// The input (its autodiff node, to accumulate its gradient) and the factor.
    type State = (<CpuAutodiff as BackendTypes>::FloatTensorPrimitive, usize);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let [node_x] = ops.parents;
        let grad = grads.consume::<Cpu>(&ops.node);
        let (x, s) = ops.state;
        if node_x.is_none() {
            return;
        }
        let dims = x.primitive.layout().shape().to_vec();
        let (h, w) = (dims[2], dims[3]);
        let g = values(&grad);
        let mut dx = vec![0f32; dims.iter().product()];
        dx.par_chunks_mut(h * w).zip(g.par_chunks(h * w * s * s)).for_each(|(dst, src)| {
            for (row, out) in dst.chunks_mut(w).enumerate() {
                for i in 0..s {
                    let line = &src[(row * s + i) * w * s..][..w * s];
                    for (o, block) in out.iter_mut().zip(line.chunks(s)) {
                        *o += block.iter().sum::<f32>();
                    }
                }
            }
        });
        register_input_grad(grads, &x, dx);
    }
}

fn autodiff(x: Tensor<CpuAutodiff, 4>, scale: usize) -> Tensor<CpuAutodiff, 4> {
    let x = x.into_primitive().tensor();
    let y = forward(&x.primitive, scale);
    let y = match UpsampleBackward.prepare::<NoCheckpointing>([x.node.clone()]).compute_bound().stateful() {
        OpsKind::Tracked(prep) => prep.finish((x, scale), y),
        OpsKind::UnTracked(prep) => prep.finish(y),
    };
    Tensor::from_primitive(TensorPrimitive::Float(y))
}

/// Every input pixel copied to its `s x s` block, one plane per task.
fn forward(x: &FlexTensor, s: usize) -> FlexTensor {
    let dims = x.layout().shape().to_vec();
    let (b, c, h, w) = (dims[0], dims[1], dims[2], dims[3]);
    let src = values(x);
    let mut out = vec![0f32; b * c * h * w * s * s];
    out.par_chunks_mut(h * w * s * s).zip(src.par_chunks(h * w)).for_each(|(dst, plane)| {
        for (row, line) in plane.chunks(w).enumerate() {
            let first = &mut dst[row * s * w * s..][..w * s];
            for (block, &v) in first.chunks_mut(s).zip(line) {
                block.fill(v);
            }
            let (first, rest) = dst[row * s * w * s..][..s * w * s].split_at_mut(w * s);
            for copy in rest.chunks_mut(w * s) {
                copy.copy_from_slice(first);
            }
        }
    });
    tensor(out, [b, c, h * s, w * s])
}
