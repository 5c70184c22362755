//! `sum(softplus(x))`, the class loss's BCE-with-logits of every score against a zero target.
//!
//! burn's definition, `x - log_sigmoid(x)` and a sum, is what every backend computes; flex in FP32 runs
//! ember's one-pass kernel for it (src/kernels/flex/softplus_sum.rs).

use burn::tensor::activation::log_sigmoid;
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

/// `sum(softplus(x)) = sum(log(1 + e^x))`, as a one-element tensor.
pub fn softplus_sum<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, 1> {
    if let Some(y) = crate::kernels::softplus_sum(&x) {
        return y;
    }
    (x.clone() - log_sigmoid(x)).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{Cpu, CpuAutodiff};
    use burn::tensor::Distribution;

    #[test]
    fn matches_burns_definition_value_and_gradient() {
        let device = Default::default();
        let x = Tensor::<Cpu, 3>::random([3, 7, 50], Distribution::Normal(0.0, 6.0), &device);
        let composed = |x: Tensor<CpuAutodiff, 3>| (x.clone() - log_sigmoid(x)).sum();
        let run = |fused: bool| {
            let xa = Tensor::<CpuAutodiff, 3>::from_inner(x.clone()).require_grad();
            let y = if fused { softplus_sum(xa.clone()) } else { composed(xa.clone()) };
            // A non-trivial upstream gradient.
            let grads = y.clone().mul_scalar(0.37).backward();
            let v: Vec<f32> = y.inner().into_data().to_vec().unwrap();
            (v[0], xa.grad(&grads).unwrap().into_data().to_vec::<f32>().unwrap())
        };
        let ((ours, g_ours), (theirs, g_theirs)) = (run(true), run(false));
        assert!(((ours - theirs) / theirs).abs() < 1e-5, "value {ours} vs {theirs}");
        let worst = g_ours.iter().zip(&g_theirs).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(worst < 1e-6, "gradient differs by {worst:e}");
        // Inference path, and saturation at large |x|.
        let plain: Vec<f32> = softplus_sum(x.clone()).into_data().to_vec().unwrap();
        assert!(((plain[0] - theirs) / theirs).abs() < 1e-5);
        let big = Tensor::<Cpu, 1>::from_floats([-200.0, 200.0, 0.0], &device);
        let v: Vec<f32> = softplus_sum(big).into_data().to_vec().unwrap();
        assert!((v[0] - (200.0 + std::f32::consts::LN_2)).abs() < 1e-4, "{}", v[0]);
    }
}
