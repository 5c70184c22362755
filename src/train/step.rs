//! One optimizer step with everything around it: unscale the gradients, check them, clip the true
//! norm, update, move the EMA, adapt the loss scale. A step whose gradients are not all finite changes
//! nothing but the loss scale. The step reads the device once: the gradients' sum of squares (whose
//! finiteness decides the step and whose root is clipped), with whatever the caller needs on the host
//! at the same moment (the batch's loss values).

use burn::module::{AutodiffModule, Module};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::Tensor;

use super::ema::ModelEma;
use super::loss_scale::{LossScaler, ScaleEvent};
use super::optimizer::{gradient_sum_squares, DetectorOptimizer};
use crate::readback::{read_f32, Purpose};

/// Gradient-norm clip, as Ultralytics' trainer applies it.
pub const MAX_GRAD_NORM: f64 = 10.0;

/// What a step did.
#[derive(Debug, Clone, PartialEq)]
pub struct StepReport {
    /// The gradients were finite and the optimizer and EMA moved; false: the step was skipped.
    pub applied: bool,
    /// Norm of the unscaled gradients (before clipping), when finite.
    pub grad_norm: Option<f64>,
    /// What the loss scaler did after this step; `None` without a scaler (no AMP).
    pub scale_event: Option<ScaleEvent>,
    /// The values of `read_along`, read with the gradient statistics.
    pub read_along: Vec<f32>,
}

/// Applies the flat gradients `grads` (in the optimizer's layout, computed from a loss multiplied by the
/// scaler's scale, if any) to `model`; `read_along` (a `[n]` f32 tensor on the same device) comes back in the
/// report.
pub fn optimizer_step<AB, M>(
    model: M,
    grads: Tensor<AB::InnerBackend, 1>,
    optimizer: &mut DetectorOptimizer<AB::InnerBackend>,
    ema: &mut ModelEma<AB::InnerBackend, M::InnerModule>,
    scaler: Option<&mut LossScaler>,
    read_along: Option<Tensor<AB::InnerBackend, 1>>,
) -> (M, StepReport)
where
    AB: AutodiffBackend,
    M: AutodiffModule<AB>,
    M::InnerModule: Module<AB::InnerBackend> + Clone,
{
    let scale = scaler.as_ref().map_or(1.0, |s| s.scale);
    let sum_sq = gradient_sum_squares(&grads);
    let values = match read_along {
        Some(r) => read_f32(Tensor::cat(vec![sum_sq, r], 0), Purpose::Other),
        None => read_f32(sum_sq, Purpose::Other),
    };
    let (sum_sq, finite) = (values[0] as f64, values[0].is_finite());
    let mut report =
        StepReport { applied: false, grad_norm: None, scale_event: None, read_along: values[1..].to_vec() };
    let model = if finite {
        // Unscale before clipping: the clip applies to the true gradient norm.
        let norm = sum_sq.sqrt() / scale;
        let clip = if norm > MAX_GRAD_NORM { MAX_GRAD_NORM / (norm + 1e-6) } else { 1.0 };
        let model = optimizer.step(model, grads, clip / scale);
        ema.update_from(&model.valid(), optimizer.weights(), optimizer.layout());
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
