//! Training in reduced precision: the model input cast to the compute type, and the check that the
//! reduced-precision forward agrees with FP32 on a real batch before a run relies on it.

use anyhow::Result;
use burn::module::AutodiffModule;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{FloatDType, Tensor};

use super::events::AmpCheck;
use crate::config::AmpMode;
use crate::data::{batch_tensor, BatchLoader};
use crate::model::Yolo;
use crate::nn::device_of;
use crate::readback::{read_f32, Purpose};

/// Model input in the compute precision: FP16/BF16 activations flow through the network from here,
/// each convolution casting its FP32 master weights to the input's type.
pub fn to_compute<B: Backend>(x: Tensor<B, 4>, precision: AmpMode) -> Tensor<B, 4> {
    match precision {
        AmpMode::Fp32 => x,
        AmpMode::Fp16 => x.cast(FloatDType::F16),
        AmpMode::Bf16 => x.cast(FloatDType::BF16),
    }
}

/// Before training in reduced precision, compares FP32 and reduced-precision forward passes of the
/// user's own model on a real batch (offline: no reference weights are downloaded). A mismatch beyond
/// tolerance means this device or model is not safe in that precision: the run trains in FP32. `None` when
/// the loader has no images to check on.
pub fn amp_self_check<AB: AutodiffBackend>(
    model: &Yolo<AB>,
    loader: &BatchLoader,
    precision: AmpMode,
) -> Result<Option<AmpCheck>> {
    let Some(batch) = loader.epoch(0).find(|b| !b.is_empty()) else { return Ok(None) };
    // A fresh model's BatchNorm statistics are the identity, which leaves little for rounding to act on:
    // a copy first sees the batch in training mode, so the comparison runs at realistic activations.
    let calibrated = model.deep_clone()?;
    let device = device_of(&calibrated)?;
    for _ in 0..3 {
        let _ = calibrated.forward(batch_tensor::<AB>(&batch, &device));
    }
    let model = calibrated.valid();
    let x = batch_tensor::<AB::InnerBackend>(&batch, &device);
    let reference = read_f32(model.predict(x.clone()), Purpose::Other);
    let reduced = read_f32(model.predict(to_compute(x, precision)), Purpose::Other);
    let max_ref = reference.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
    let max_diff =
        reference
            .iter()
            .zip(&reduced)
            .fold(0f32, |m, (a, b)| if b.is_finite() { m.max((a - b).abs()) } else { f32::INFINITY });
    // Leaves an order of magnitude above what FP16 rounding costs a healthy model (BENCHMARKS.md);
    // BF16 keeps 3 fewer mantissa bits than FP16.
    let tolerance = if precision == AmpMode::Bf16 { 5e-2 } else { 1e-2 };
    Ok(Some(AmpCheck { precision, relative_error: max_diff / max_ref, tolerance }))
}
