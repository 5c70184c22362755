//! BatchNorm2d with PyTorch's semantics.
//!
//! burn-nn's `BatchNorm` updates the running variance with the biased batch variance; PyTorch (and so every
//! Ultralytics checkpoint) uses the unbiased one. This copy matches PyTorch, names its affine parameters
//! `weight`/`bias` like `nn.BatchNorm2d`, and keeps statistics in f32 whatever the input dtype.

use burn::config::Config;
use burn::module::{Module, Param, RunningState};
use burn::tensor::{backend::Backend, DType, Tensor};

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
    pub weight: Param<Tensor<B, 1>>,
    pub bias: Param<Tensor<B, 1>>,
    pub running_mean: RunningState<Tensor<B, 1>>,
    pub running_var: RunningState<Tensor<B, 1>>,
    pub eps: f64,
    pub momentum: f64,
}

impl BatchNorm2dConfig {
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
    pub fn num_features(&self) -> usize {
        self.weight.dims()[0]
    }

    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        if B::ad_enabled(&x.device()) {
            self.forward_train(x)
        } else {
            self.forward_eval(x)
        }
    }

    /// Per-channel `(scale, shift)` such that `bn(x) = x * scale + shift` with the running statistics.
    pub fn folded(&self) -> (Tensor<B, 1>, Tensor<B, 1>) {
        let std = self.running_var.value().add_scalar(self.eps).sqrt();
        let scale = self.weight.val().div(std);
        let shift = self
            .bias
            .val()
            .sub(self.running_mean.value().mul(scale.clone()));
        (scale, shift)
    }

    fn forward_eval(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let dtype = x.dtype();
        let [b, c, h, w] = x.dims();
        let (scale, shift) = self.folded();
        let y = rows(x) * per_row(cast(scale, dtype), b) + per_row(cast(shift, dtype), b);
        y.reshape([b, c, h, w])
    }

    fn forward_train(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let dtype = x.dtype();
        let [b, c, h, w] = x.dims();
        let count = b * h * w;
        // Statistics in f32 even for f16 activations.
        let x = rows(cast(x, DType::F32)); // [b * c, h * w]
        let mean = x
            .clone()
            .mean_dim(1)
            .reshape([b, c])
            .mean_dim(0)
            .reshape([c]);
        let centered = x - per_row(mean.clone(), b);
        let var = centered
            .clone()
            .square()
            .mean_dim(1)
            .reshape([b, c])
            .mean_dim(0)
            .reshape([c]); // biased

        let unbiased = var
            .clone()
            .detach()
            .mul_scalar(count as f64 / (count.max(2) - 1) as f64);
        let m = self.momentum;
        let rm = self
            .running_mean
            .value_sync()
            .mul_scalar(1.0 - m)
            .add(mean.detach().mul_scalar(m));
        let rv = self
            .running_var
            .value_sync()
            .mul_scalar(1.0 - m)
            .add(unbiased.mul_scalar(m));
        self.running_mean.update(rm.detach());
        self.running_var.update(rv.detach());
        // Flush the per-thread update now, so readers that do not sync (module visitors: saving, EMA
        // copies) see the current statistics.
        let _ = (
            self.running_mean.value_sync(),
            self.running_var.value_sync(),
        );

        let scale = self
            .weight
            .val()
            .mul(var.add_scalar(self.eps).sqrt().recip());
        let y = centered * per_row(scale, b) + per_row(self.bias.val(), b);
        cast(y.reshape([b, c, h, w]), dtype)
    }
}

/// `[b, c, h, w]` as `[b * c, h * w]`: flex broadcasts a `[n, 1]` column over rows about 20x faster than a
/// `[1, c, 1, 1]` tensor over NCHW (measured, forward + backward), and BatchNorm is all such products.
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
