//! One optimizer step with everything around it: unscale the gradients, check them, clip the true
//! norm, update, move the EMA, adapt the loss scale. A step whose gradients are not all finite changes
//! nothing but the loss scale.

use burn::module::{AutodiffModule, Module};
use burn::optim::GradientsParams;
use burn::tensor::backend::AutodiffBackend;

use super::ema::ModelEma;
use super::loss_scale::{LossScaler, ScaleEvent};
use super::optimizer::{gradient_stats, DetectorOptimizer};

/// Gradient-norm clip, as Ultralytics' trainer applies it.
pub const MAX_GRAD_NORM: f64 = 10.0;

/// What a step did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepReport {
    pub applied: bool,
    /// Norm of the unscaled gradients (before clipping), when finite.
    pub grad_norm: Option<f64>,
    pub scale_event: Option<ScaleEvent>,
}

/// Applies `grads` (computed from a loss multiplied by the scaler's scale, if any) to `model`.
pub fn optimizer_step<AB, M>(
    model: M,
    grads: GradientsParams,
    optimizer: &mut DetectorOptimizer<AB::InnerBackend>,
    ema: &mut ModelEma<M::InnerModule>,
    scaler: Option<&mut LossScaler>,
) -> (M, StepReport)
where
    AB: AutodiffBackend,
    M: AutodiffModule<AB>,
    M::InnerModule: Module<AB::InnerBackend> + Clone,
{
    let scale = scaler.as_ref().map_or(1.0, |s| s.scale);
    let (sum_sq, finite) = gradient_stats(&model, &grads);
    let mut report = StepReport { applied: false, grad_norm: None, scale_event: None };
    let model = if finite {
        // Unscale before clipping: the clip applies to the true gradient norm.
        let norm = sum_sq.sqrt() / scale;
        let clip = if norm > MAX_GRAD_NORM { MAX_GRAD_NORM / (norm + 1e-6) } else { 1.0 };
        let model = optimizer.step(model, grads, clip / scale);
        ema.update(&model.valid());
        (report.applied, report.grad_norm) = (true, Some(norm));
        model
    } else {
        model
    };
    if let Some(scaler) = scaler {
        report.scale_event = Some(scaler.update(finite));
    }
    (model, report)
}
