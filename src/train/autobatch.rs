//! AutoBatch, as Ultralytics 8.4.190's `utils/autobatch.py` fits it: trial batches of 1, 2, 4, 8, 16 (and 32, 64
//! on a device of 16 GiB or more) train one forward and backward pass each on the device, their device memory is
//! measured, a line through (batch, memory) is solved for the batch that takes `fraction` of the device's
//! memory, and the result is kept within the batches that worked, 1024, and the dataset's size. On the CPU, or
//! where the device's size is unknown, the default batch of 16 is used, as Ultralytics does where it cannot
//! measure.

use burn::tensor::backend::AutodiffBackend;
use burn::tensor::Tensor;

use super::oom::catch_out_of_memory;
use super::precision::to_compute;
use crate::backend::device_memory;
use crate::config::{AmpMode, DEFAULT_BATCH};
use crate::model::Yolo;

/// What AutoBatch is asked to fit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AutoBatchRequest {
    /// Fraction of the device's memory the training step may take (0.6 for `batch=-1`).
    pub fraction: f64,
    /// Side of the square training images, in pixels (the largest multi-scale size).
    pub imgsz: usize,
    /// The precision the run trains in.
    pub precision: AmpMode,
    /// The device's memory in bytes, if known.
    pub device_bytes: Option<u64>,
    /// Training images: the batch never exceeds it.
    pub dataset_size: usize,
    /// Most labelled boxes in one training image, times 4 for mosaic (Ultralytics' bound for the loss's memory).
    pub max_objects: usize,
}

/// What AutoBatch decided.
#[derive(Debug, Clone, PartialEq)]
pub enum AutoBatch {
    /// It could not measure: the default batch.
    Default {
        /// Why (the CPU, an unknown device size, no trial batch fitted).
        reason: String,
    },
    /// A batch fitted to the device's memory.
    Fitted {
        /// The batch chosen.
        batch: u32,
        /// The memory the line predicts for it, in bytes.
        predicted_bytes: f64,
        /// The device's memory, in bytes.
        device_bytes: u64,
        /// Each trial batch and the device memory it took in bytes (with the loss's estimate), or `None` if it
        /// failed.
        trials: Vec<(u32, Option<f64>)>,
    },
}

impl AutoBatch {
    /// The batch to train with.
    pub fn batch(&self) -> u32 {
        match self {
            AutoBatch::Default { .. } => DEFAULT_BATCH,
            AutoBatch::Fitted { batch, .. } => *batch,
        }
    }
}

/// Fits the batch for a fresh `model` (its copy is trained on zeros; the model itself is not changed).
pub fn fit_batch<AB: AutodiffBackend>(model: &Yolo<AB>, request: &AutoBatchRequest, device: &AB::Device) -> AutoBatch {
    let Some(before) = device_memory::<AB>(device) else {
        return AutoBatch::Default { reason: "intended for GPU devices".into() };
    };
    let Some(total) = request.device_bytes else {
        return AutoBatch::Default { reason: "the device does not report its memory size".into() };
    };
    let gib = (1u64 << 30) as f64;
    let mut sizes: Vec<u32> =
        if (total as f64) < 16.0 * gib { vec![1, 2, 4, 8, 16] } else { vec![1, 2, 4, 8, 16, 32, 64] };
    sizes.retain(|&b| b as usize <= request.dataset_size.max(1));
    let anchors: f64 =
        model.strides().iter().map(|&s| (request.imgsz as f64 / s as f64) * (request.imgsz as f64 / s as f64)).sum();
    let nc = model.nc() as f64;
    let mut trials = Vec::with_capacity(sizes.len());
    for &b in &sizes {
        let used = trial::<AB>(model, b as usize, request, device).map(|reserved| {
            // Ultralytics' envelope for the loss (assigner state and the class path, at up to twice the batch).
            let loss = b as f64 * anchors * 6.0 * (request.max_objects as f64 + 2.0 * nc) * 4.0;
            reserved.saturating_sub(before.reserved) as f64 + loss
        });
        trials.push((b, used));
        if used.is_none() {
            break; // a failure is the memory's ceiling
        }
    }
    fit(&trials, total, request.fraction, request.dataset_size)
        .unwrap_or_else(|| AutoBatch::Default { reason: "no trial batch gave a usable measurement".into() })
}

/// The line through the trials that used increasing memory below the device's size, solved for `fraction` of it.
fn fit(trials: &[(u32, Option<f64>)], total: u64, fraction: f64, dataset_size: usize) -> Option<AutoBatch> {
    let mut points: Vec<(f64, f64)> = Vec::new();
    for (i, &(b, used)) in trials.iter().enumerate() {
        let Some(y) = used else { continue };
        let increasing = i == 0 || trials[i - 1].1.is_none_or(|prev| y > prev);
        if y > 0.0 && y < total as f64 && increasing {
            points.push((b as f64, y));
        }
    }
    let smallest = points.first()?.0;
    let (slope, intercept) = if points.len() == 1 {
        (points[0].1 / points[0].0, 0.0)
    } else {
        let n = points.len() as f64;
        let (mx, my) = (points.iter().map(|p| p.0).sum::<f64>() / n, points.iter().map(|p| p.1).sum::<f64>() / n);
        let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
        let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
        let slope = sxy / sxx;
        (slope, my - slope * mx)
    };
    if slope.is_nan() || slope <= 0.0 {
        return None;
    }
    let mut batch = ((total as f64 * fraction - intercept) / slope).floor();
    // The first failure above a success is the ceiling: stay at the batch before it.
    if let Some(failed) = trials.iter().position(|t| t.1.is_none()).filter(|&i| trials[i].0 as f64 > smallest) {
        if batch >= trials[failed].0 as f64 {
            batch = trials[failed - 1].0 as f64;
        }
    }
    let mut batch = batch.clamp(smallest, 1024.0) as u32;
    if dataset_size > 0 {
        batch = batch.min(dataset_size as u32).max(1);
    }
    let trials = trials.to_vec();
    Some(AutoBatch::Fitted { batch, predicted_bytes: slope * batch as f64 + intercept, device_bytes: total, trials })
}

/// The device memory held after one forward and backward pass of a copy of `model` on a zero batch of `batch`
/// images; `None` when the device ran out of memory.
fn trial<AB: AutodiffBackend>(
    model: &Yolo<AB>,
    batch: usize,
    request: &AutoBatchRequest,
    device: &AB::Device,
) -> Option<u64> {
    let run = || {
        let x = Tensor::<AB, 4>::zeros([batch, 3, request.imgsz, request.imgsz], device);
        let out = model.forward(to_compute(x, request.precision));
        let mut sum = out.one2many.boxes.sum() + out.one2many.scores.sum();
        if let Some(o2o) = out.one2one {
            sum = sum + o2o.boxes.sum() + o2o.scores.sum();
        }
        let _grads = sum.cast(burn::tensor::FloatDType::F32).backward();
        device_memory::<AB>(device).map(|m| m.reserved)
    };
    catch_out_of_memory(run).ok().flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: f64 = (1u64 << 30) as f64;

    #[test]
    fn the_line_through_the_trials_gives_the_batch_at_the_fraction() {
        // 1 GiB fixed plus 0.5 GiB an image on a 24 GiB device: 0.6 * 24 = 14.4 GiB fits 26 images.
        let trials: Vec<_> = [1u32, 2, 4, 8, 16].iter().map(|&b| (b, Some(GIB + 0.5 * GIB * b as f64))).collect();
        let fitted = fit(&trials, 24 << 30, 0.6, 0).unwrap();
        assert_eq!(fitted.batch(), 26);
        assert_eq!(fit(&trials, 24 << 30, 0.6, 10).unwrap().batch(), 10, "never more than the dataset");
    }

    #[test]
    fn a_failed_trial_is_the_ceiling_and_nothing_usable_is_none() {
        let trials = vec![(1, Some(GIB)), (2, Some(1.5 * GIB)), (4, Some(2.5 * GIB)), (8, None)];
        // The line would allow 0.6 * 24 GiB / 0.5 GiB ~ 27 images, but 8 failed: the batch before it.
        assert_eq!(fit(&trials, 24 << 30, 0.6, 0).unwrap().batch(), 4);
        assert_eq!(fit(&[(1, None)], 24 << 30, 0.6, 0), None);
        assert_eq!(fit(&[(1, Some(30.0 * GIB))], 24 << 30, 0.6, 0), None, "a trial above the device's size");
    }
}
