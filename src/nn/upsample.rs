//! Nearest-neighbour upsampling by an integer factor (`nn.Upsample(None, s, "nearest")`).
//!
//! Defined as reshape + repeat, so it is exact and its gradient is a plain sum over each `s x s` block on
//! every backend. On flex that repeat is a single-threaded strided copy each way (about 2% of a yolo26n
//! training step at 320); there, in FP32, ember copies and sums plane by plane on all threads.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::tensor::backend::BackendTypes;
use burn::tensor::{backend::Backend, DType, Tensor, TensorPrimitive};
use burn_flex::FlexTensor;
use rayon::prelude::*;

use super::flex::{own_kernels, register_input_grad, retype, tensor, values};
use crate::backend::{Cpu, CpuAutodiff};

pub fn upsample_nearest<B: Backend>(x: Tensor<B, 4>, scale: usize) -> Tensor<B, 4> {
    if scale == 1 {
        return x;
    }
    if x.dtype() == DType::F32 && own_kernels() {
        if let Some(x) = retype::<_, Tensor<CpuAutodiff, 4>>(x.clone()) {
            return retype(autodiff(x, scale)).expect("dispatched on this type");
        }
        if let Some(x) = retype::<_, Tensor<Cpu, 4>>(x.clone()) {
            let x = x.into_primitive().tensor();
            return retype(Tensor::<Cpu, 4>::from_primitive(TensorPrimitive::Float(forward(&x, scale))))
                .expect("dispatched on this type");
        }
    }
    let [b, c, h, w] = x.dims();
    x.reshape([b, c, h, 1, w, 1]).repeat_dim(3, scale).repeat_dim(5, scale).reshape([b, c, h * scale, w * scale])
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

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    fn composed<B: Backend>(x: Tensor<B, 4>, s: usize) -> Tensor<B, 4> {
        let [b, c, h, w] = x.dims();
        x.reshape([b, c, h, 1, w, 1]).repeat_dim(3, s).repeat_dim(5, s).reshape([b, c, h * s, w * s])
    }

    /// Values and the input gradient (with a second reader of the input, so it accumulates) as the
    /// reshape + repeat definition gives them, for factors 2 and 3.
    #[test]
    fn matches_the_repeat_definition() {
        let device = Default::default();
        let x = Tensor::<Cpu, 4>::random([2, 3, 5, 7], Distribution::Normal(0.0, 1.0), &device);
        for s in [2, 3] {
            assert_eq!(upsample_nearest(x.clone(), s).into_data(), composed(x.clone(), s).into_data());
            let run = |ours: bool| -> Vec<f32> {
                let xa = Tensor::<CpuAutodiff, 4>::from_inner(x.clone()).require_grad();
                let up = if ours { upsample_nearest(xa.clone(), s) } else { composed(xa.clone(), s) };
                let up2 = if ours { upsample_nearest(xa.clone(), s) } else { composed(xa.clone(), s) };
                let weights = Tensor::<CpuAutodiff, 4>::from_inner(up.clone().inner().cos());
                let grads = ((up * weights).sum() + up2.powi_scalar(2).sum()).backward();
                xa.grad(&grads).unwrap().into_data().to_vec().unwrap()
            };
            let (ours, theirs) = (run(true), run(false));
            let diff = ours.iter().zip(&theirs).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
            assert!(diff < 1e-5, "factor {s}: gradient differs by {diff:e}");
        }
    }
}
