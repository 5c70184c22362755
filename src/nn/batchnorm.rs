//! BatchNorm2d with PyTorch's semantics.
//!
//! burn-nn's `BatchNorm` updates the running variance with the biased batch variance; PyTorch (and so every
//! Ultralytics checkpoint) uses the unbiased one. This copy matches PyTorch, names its affine parameters
//! `weight`/`bias` like `nn.BatchNorm2d`, and keeps statistics in f32 whatever the input dtype.

use burn::config::Config;
use burn::module::{Module, Param, RunningState};
use burn::tensor::{backend::Backend, DType, Tensor, TensorData};

use super::frozen_norm::is_frozen_norm;
use crate::kernels::BatchNormRunning as Running;

/// [`BatchNorm2d`] configuration. Defaults are Ultralytics' (`initialize_weights`), not PyTorch's.
#[derive(Config, Debug)]
pub struct BatchNorm2dConfig {
    /// Number of channels.
    pub num_features: usize,
    /// Added to the variance before the square root. Default: 1e-3.
    #[config(default = 1e-3)]
    pub eps: f64,
    /// PyTorch convention: `running = (1 - momentum) * running + momentum * batch`. Default: 0.03.
    #[config(default = 0.03)]
    pub momentum: f64,
}

/// Batch normalisation over `[batch, channels, h, w]`.
///
/// Training mode (batch statistics, running-statistics update) is used on autodiff backends, inference mode
/// (running statistics) otherwise: burn's convention, so `model.valid()` gives the evaluation model.
#[derive(Module, Debug)]
pub struct BatchNorm2d<B: Backend> {
    /// Per-channel scale (gamma) `[c]`, initialised to 1.
    pub weight: Param<Tensor<B, 1>>,
    /// Per-channel shift (beta) `[c]`, initialised to 0.
    pub bias: Param<Tensor<B, 1>>,
    /// Running mean `[c]`, used in evaluation and updated by every training-mode forward.
    pub running_mean: RunningState<Tensor<B, 1>>,
    /// Running variance `[c]` (unbiased, as PyTorch keeps it), used in evaluation and updated by every
    /// training-mode forward.
    pub running_var: RunningState<Tensor<B, 1>>,
    /// Added to the variance before the square root (Ultralytics: 1e-3).
    pub eps: f64,
    /// Weight of the batch statistics in the running update:
    /// `running = (1 - momentum) * running + momentum * batch`.
    pub momentum: f64,
}

impl BatchNorm2dConfig {
    /// A new [`BatchNorm2d`] on `device`: weight 1, bias 0, running mean 0, running variance 1.
    pub fn init<B: Backend>(&self, device: &B::Device) -> BatchNorm2d<B> {
        let n = self.num_features;
        BatchNorm2d {
            weight: Param::from_tensor(Tensor::ones([n], device)),
            bias: Param::from_tensor(Tensor::zeros([n], device)),
            running_mean: RunningState::new(Tensor::zeros([n], device)),
            running_var: RunningState::new(Tensor::ones([n], device)),
            eps: self.eps,
            momentum: self.momentum,
        }
    }
}

impl<B: Backend> BatchNorm2d<B> {
    /// Number of channels `c`.
    pub fn num_features(&self) -> usize {
        self.weight.dims()[0]
    }

    /// Normalises `x` `[b, c, h, w]`, same shape out: with the batch statistics (updating the running ones) on
    /// autodiff backends unless frozen, else with the running statistics.
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        self.forward_then(x, false)
    }

    /// BatchNorm followed by SiLU (Ultralytics' `Conv`): one fused pass each way on flex in FP32.
    pub fn forward_silu(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        self.forward_then(x, true)
    }

    fn forward_then(&self, x: Tensor<B, 4>, silu: bool) -> Tensor<B, 4> {
        // A frozen BatchNorm (`freeze`) normalises with its running statistics and keeps them, as Ultralytics
        // puts frozen BatchNorm layers in eval mode.
        let y = if B::ad_enabled(&x.device()) && !is_frozen_norm(self.weight.id) {
            if let Some((y, stats)) =
                crate::kernels::batch_norm_train(&x, &self.weight.val(), &self.bias.val(), self.eps, silu)
            {
                let [b, _, h, w] = x.dims();
                let vector =
                    |v: Vec<f32>| Tensor::<B, 1>::from_data(TensorData::new(v, [self.num_features()]), &x.device());
                self.update_running(vector(stats.mean), vector(stats.var), b * h * w);
                return y;
            }
            // Any other autodiff backend: the definition's values, holding only the input for the backward.
            if let Some((y, running)) = crate::kernels::batch_norm_train_lean(
                &x,
                &self.weight.val(),
                &self.bias.val(),
                &self.running(),
                self.eps,
                silu,
            ) {
                self.set_running(running);
                return y;
            }
            self.forward_train(x)
        } else {
            let (scale, shift) = self.folded();
            if let Some(y) = crate::kernels::channel_affine(&x, &scale, &shift, silu) {
                return y;
            }
            self.forward_eval(x, scale, shift)
        };
        if silu {
            burn::tensor::activation::silu(y)
        } else {
            y
        }
    }

    /// Per-channel `(scale, shift)` such that `bn(x) = x * scale + shift` with the running statistics.
    pub fn folded(&self) -> (Tensor<B, 1>, Tensor<B, 1>) {
        let std = self.running_var.value().add_scalar(self.eps).sqrt();
        let scale = self.weight.val().div(std);
        let shift = self.bias.val().sub(self.running_mean.value().mul(scale.clone()));
        (scale, shift)
    }

    fn forward_eval(&self, x: Tensor<B, 4>, scale: Tensor<B, 1>, shift: Tensor<B, 1>) -> Tensor<B, 4> {
        let dtype = x.dtype();
        let [b, c, h, w] = x.dims();
        let (scale, shift) = (cast(scale, dtype), cast(shift, dtype));
        if crate::kernels::is_flex::<B>() {
            (rows(x) * per_row(scale, b) + per_row(shift, b)).reshape([b, c, h, w])
        } else {
            x * scale.reshape([1, c, 1, 1]) + shift.reshape([1, c, 1, 1])
        }
    }

    fn forward_train(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let dtype = x.dtype();
        let [b, c, h, w] = x.dims();
        // Statistics in f32 even for f16 activations.
        let x = cast(x, DType::F32);
        let (mean, var, y) = if crate::kernels::is_flex::<B>() {
            let x = rows(x); // [b * c, h * w]
            let mean = x.clone().mean_dim(1).reshape([b, c]).mean_dim(0).reshape([c]);
            let centered = x - per_row(mean.clone(), b);
            let var = centered.clone().square().mean_dim(1).reshape([b, c]).mean_dim(0).reshape([c]); // biased
            let scale = self.weight.val().mul(var.clone().add_scalar(self.eps).sqrt().recip());
            let y = centered * per_row(scale, b) + per_row(self.bias.val(), b);
            (mean, var, y.reshape([b, c, h, w]))
        } else {
            let (y, mean, var) = train_definition(x, self.weight.val(), self.bias.val(), self.eps);
            (mean, var, y)
        };
        self.update_running(mean, var, b * h * w);
        cast(y, dtype)
    }

    /// Running statistics from one batch's mean and biased variance over `count` values per channel,
    /// the running variance with the unbiased estimate as PyTorch keeps it.
    fn update_running(&self, mean: Tensor<B, 1>, biased_var: Tensor<B, 1>, count: usize) {
        self.set_running(self.running().updated(mean, biased_var, count));
    }

    /// The running statistics and momentum, for the training kernels that update them.
    fn running(&self) -> Running<B> {
        Running { mean: self.running_mean.value_sync(), var: self.running_var.value_sync(), momentum: self.momentum }
    }

    fn set_running(&self, running: Running<B>) {
        self.running_mean.update(running.mean.detach());
        self.running_var.update(running.var.detach());
        // Flush the per-thread update now, so readers that do not sync (module visitors: saving, EMA
        // copies) see the current statistics.
        let _ = (self.running_mean.value_sync(), self.running_var.value_sync());
    }
}

/// Training-mode BatchNorm of `x` over NCHW, statistics in FP32: the output (in `x`'s dtype), the batch mean
/// and the biased batch variance. The definition every backend without a kernel of ember's own computes.
pub fn train_definition<B: Backend>(
    x: Tensor<B, 4>,
    weight: Tensor<B, 1>,
    bias: Tensor<B, 1>,
    eps: f64,
) -> (Tensor<B, 4>, Tensor<B, 1>, Tensor<B, 1>) {
    let dtype = x.dtype();
    let c = x.dims()[1];
    let x = cast(x, DType::F32);
    let channel = |v: Tensor<B, 1>| v.reshape([1, c, 1, 1]);
    let mean = x.clone().mean_dim(3).mean_dim(2).mean_dim(0).reshape([c]);
    let centered = x - channel(mean.clone());
    let var = centered.clone().square().mean_dim(3).mean_dim(2).mean_dim(0).reshape([c]); // biased
    let scale = weight.mul(var.clone().add_scalar(eps).sqrt().recip());
    (cast(centered * channel(scale) + channel(bias), dtype), mean, var)
}

/// `[b, c, h, w]` as `[b * c, h * w]`: flex broadcasts a `[n, 1]` column over rows much faster than a
/// `[1, c, 1, 1]` tensor over NCHW (forward + backward; BENCHMARKS.md), and BatchNorm is all such products. Used on
/// flex only (its generic path runs in FP16 or with `EMBER_BURN_KERNELS=1`); cubecl backends broadcast
/// `[1, c, 1, 1]` directly, with no repeat kernel per vector.
fn rows<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 2> {
    let [b, c, h, w] = x.dims();
    x.reshape([b * c, h * w])
}

/// A per-channel vector `[c]` as the `[b * c, 1]` column matching [`rows`].
fn per_row<B: Backend>(v: Tensor<B, 1>, b: usize) -> Tensor<B, 2> {
    let [c] = v.dims();
    v.reshape([1, c]).repeat_dim(0, b).reshape([b * c, 1])
}

fn cast<B: Backend, const D: usize>(t: Tensor<B, D>, dtype: DType) -> Tensor<B, D> {
    if t.dtype() == dtype {
        t
    } else {
        t.cast(dtype)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{Cpu, CpuAutodiff};
    use burn::tensor::Distribution;

    fn worst(a: &Tensor<Cpu, 4>, b: &Tensor<Cpu, 4>) -> f32 {
        let (a, b): (Vec<f32>, Vec<f32>) = (a.to_data().to_vec().unwrap(), b.to_data().to_vec().unwrap());
        a.iter().zip(&b).map(|(a, b)| (a - b).abs() / b.abs().max(1.0)).fold(0f32, f32::max)
    }

    fn worst1(a: Tensor<Cpu, 1>, b: Tensor<Cpu, 1>) -> f32 {
        worst(&a.reshape([1, 1, 1, -1]), &b.reshape([1, 1, 1, -1]))
    }

    fn channels(offset: [f32; 5], spread: [f32; 5]) -> Tensor<Cpu, 4> {
        let device = Default::default();
        let base = Tensor::<Cpu, 4>::random([3, 5, 7, 9], Distribution::Normal(0.0, 1.0), &device);
        base * Tensor::<Cpu, 1>::from_floats(spread, &device).reshape([1, 5, 1, 1])
            + Tensor::<Cpu, 1>::from_floats(offset, &device).reshape([1, 5, 1, 1])
    }

    /// The fused flex kernels (src/kernels/flex/batchnorm.rs) against the composed definition above: output,
    /// running statistics and all three gradients, with and without SiLU, on odd plane sizes.
    #[test]
    fn fused_kernels_match_the_composed_definition() {
        let device = Default::default();
        let x = channels([0.0, 4.0, -3.0, 0.5, 1.0], [1.0, 0.5, 2.0, 0.1, 0.5]);
        let upstream = Tensor::<Cpu, 4>::random([3, 5, 7, 9], Distribution::Normal(0.0, 1.0), &device);
        for silu in [false, true] {
            let run = |fused: bool| {
                // A new module per run: clones share their running statistics.
                let mut bn = BatchNorm2dConfig::new(5).init::<CpuAutodiff>(&device);
                bn.weight = Param::from_tensor(Tensor::from_floats([1.0, 0.5, 2.0, -1.0, 0.8], &device));
                bn.bias = Param::from_tensor(Tensor::from_floats([0.0, 0.1, -0.3, 1.0, 0.2], &device));
                let xa = Tensor::<CpuAutodiff, 4>::from_inner(x.clone()).require_grad();
                let y = if fused {
                    bn.forward_then(xa.clone(), silu)
                } else {
                    let y = bn.forward_train(xa.clone());
                    if silu {
                        burn::tensor::activation::silu(y)
                    } else {
                        y
                    }
                };
                let grads = (y.clone() * Tensor::from_inner(upstream.clone())).sum().backward();
                let running = (bn.running_mean.value().inner(), bn.running_var.value().inner());
                (
                    y.inner(),
                    xa.grad(&grads).unwrap(),
                    bn.weight.grad(&grads).unwrap(),
                    bn.bias.grad(&grads).unwrap(),
                    running,
                )
            };
            let (fused, composed) = (run(true), run(false));
            assert!(
                worst(&fused.0, &composed.0) < 2e-5,
                "output (silu {silu}) differs by {:e}",
                worst(&fused.0, &composed.0)
            );
            assert!(
                worst(&fused.1, &composed.1) < 2e-3,
                "input gradient (silu {silu}) differs by {:e}",
                worst(&fused.1, &composed.1)
            );
            assert!(worst1(fused.2.clone(), composed.2.clone()) < 1e-4, "weight gradient (silu {silu}) differs");
            assert!(worst1(fused.3.clone(), composed.3.clone()) < 1e-4, "bias gradient (silu {silu}) differs");
            let (mean, var) =
                (worst1(fused.4 .0.clone(), composed.4 .0.clone()), worst1(fused.4 .1.clone(), composed.4 .1.clone()));
            assert!(mean < 1e-6 && var < 1e-5, "running mean differs by {mean:e}, variance by {var:e}");
        }
    }

    /// Channels whose mean is large next to their spread, against statistics computed in f64.
    #[test]
    fn fused_statistics_hold_for_offset_channels() {
        let device = Default::default();
        let x = channels([0.0, 40.0, -3.0, 1e3, 1e4], [1.0, 0.05, 2.0, 0.5, 3.0]);
        let bn = BatchNorm2dConfig::new(5).init::<CpuAutodiff>(&device);
        let y: Vec<f32> = bn.forward_then(Tensor::from_inner(x.clone()), false).inner().into_data().to_vec().unwrap();
        let values: Vec<f32> = x.into_data().to_vec().unwrap();
        let plane = 7 * 9;
        for c in 0..5 {
            let of_channel: Vec<(usize, f64)> = (0..3)
                .flat_map(|b| ((b * 5 + c) * plane..(b * 5 + c + 1) * plane).map(|i| (i, values[i] as f64)))
                .collect();
            let n = of_channel.len() as f64;
            let mean = of_channel.iter().map(|v| v.1).sum::<f64>() / n;
            let var = of_channel.iter().map(|v| (v.1 - mean).powi(2)).sum::<f64>() / n;
            for &(i, v) in &of_channel {
                let want = (v - mean) / (var + 1e-3).sqrt();
                // The mean is rounded to f32 before centring: half an ulp of 1e4 over a spread of 3 is 1.6e-4.
                assert!((y[i] as f64 - want).abs() < 3e-4, "channel {c}: {} vs {want}", y[i]);
            }
        }
    }

    /// FP16 activations (AMP) take the composed path and stay FP16, with burn's SiLU after it.
    #[test]
    fn other_dtypes_take_the_composed_path() {
        let device = Default::default();
        let bn = BatchNorm2dConfig::new(2).init::<Cpu>(&device);
        let x = Tensor::<Cpu, 4>::from_floats([[[[-3.0, -0.5]], [[0.5, 3.0]]]], &device)
            .cast(burn::tensor::FloatDType::F16);
        let y = bn.forward_silu(x.clone());
        assert_eq!(y.dtype(), DType::F16);
        let (scale, shift) = bn.folded();
        let want: Vec<f32> = burn::tensor::activation::silu(bn.forward_eval(x, scale, shift))
            .cast(burn::tensor::FloatDType::F32)
            .into_data()
            .to_vec()
            .unwrap();
        let got: Vec<f32> = y.cast(burn::tensor::FloatDType::F32).into_data().to_vec().unwrap();
        assert_eq!(got, want);
    }

    #[test]
    fn fused_inference_matches_the_composed_definition() {
        let device = Default::default();
        let mut bn = BatchNorm2dConfig::new(4).init::<Cpu>(&device);
        bn.weight = Param::from_tensor(Tensor::from_floats([1.0, 0.5, 2.0, -1.0], &device));
        bn.bias = Param::from_tensor(Tensor::from_floats([0.0, 0.1, -0.3, 1.0], &device));
        bn.running_mean = RunningState::new(Tensor::from_floats([0.3, -2.0, 5.0, 0.0], &device));
        bn.running_var = RunningState::new(Tensor::from_floats([1.0, 0.2, 4.0, 9.0], &device));
        let x = Tensor::<Cpu, 4>::random([2, 4, 5, 3], Distribution::Normal(0.0, 3.0), &device);
        for silu in [false, true] {
            let fused = bn.forward_then(x.clone(), silu);
            let (scale, shift) = bn.folded();
            let plain = bn.forward_eval(x.clone(), scale, shift);
            let composed = if silu { burn::tensor::activation::silu(plain) } else { plain };
            assert!(worst(&fused, &composed) < 1e-6, "silu {silu}: {:e}", worst(&fused, &composed));
        }
    }
}
