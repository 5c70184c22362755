//! Nearest-neighbour upsampling by an integer factor (`nn.Upsample(None, s, "nearest")`).
//!
//! Defined as reshape + repeat, so it is exact and its gradient is a plain sum over each `s x s` block on
//! every backend; flex in FP32 runs ember's kernel for it (src/kernels/flex/upsample.rs).

use burn::tensor::{backend::Backend, Tensor};

use super::onnx::{Attr, OnnxGraph};

/// Nearest-neighbour upsampling of `x` `[b, c, h, w]` by `scale` on both axes: `[b, c, h * scale, w * scale]`,
/// each value repeated over a `scale x scale` block.
pub fn upsample_nearest<B: Backend>(x: Tensor<B, 4>, scale: usize) -> Tensor<B, 4> {
    if scale == 1 {
        return x;
    }
    if let Some(y) = crate::kernels::upsample_nearest(&x, scale) {
        return y;
    }
    let [b, c, h, w] = x.dims();
    x.reshape([b, c, h, 1, w, 1]).repeat_dim(3, scale).repeat_dim(5, scale).reshape([b, c, h * scale, w * scale])
}

/// [`upsample_nearest`] in an ONNX graph: `Resize` in nearest mode, flooring the asymmetric source coordinate.
pub fn upsample_nearest_onnx(g: &mut dyn OnnxGraph, x: &str, scale: usize) -> String {
    let scales = g.f32_constant("scales", &[4], &[1.0, 1.0, scale as f32, scale as f32]);
    let attrs = vec![
        Attr::Str("mode", "nearest"),
        Attr::Str("coordinate_transformation_mode", "asymmetric"),
        Attr::Str("nearest_mode", "floor"),
    ];
    g.op("Resize", &[x, "", &scales], attrs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{Cpu, CpuAutodiff};
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
