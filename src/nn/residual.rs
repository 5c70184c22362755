//! The residual sum `x + f(x)` of bottlenecks and attention blocks: burn's `+`, and on flex in FP32 ember's
//! multi-threaded kernel (src/kernels/flex/residual.rs).

use burn::tensor::{backend::Backend, Tensor};

/// `a + b` for same-shaped tensors.
pub fn residual<B: Backend, const D: usize>(a: Tensor<B, D>, b: Tensor<B, D>) -> Tensor<B, D> {
    if let Some(y) = crate::kernels::residual(&a, &b) {
        return y;
    }
    a + b
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{Cpu, CpuAutodiff};
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
