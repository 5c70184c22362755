//! Validation: run a model over a split, post-process (NMS or the NMS-free top-k), map boxes back to
//! the original images and score them. `ember val` and the trainer's per-epoch check share it.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use burn::tensor::backend::Backend;

use crate::config::{Mode, Settings};
use crate::data::{batch_tensor, BatchLoader};
use crate::loss::criterion::{targets_of, Criterion};
use crate::metrics::{ConfusionMatrix, DetectionAccumulator, DetectionMetrics};
use crate::model::Yolo;
use crate::nn::device_of;
use crate::postprocess::{select_detections, Caller, Detection, SelectOptions};
use crate::readback::{read_f32, Purpose};

/// Post-processing settings of a validation run.
#[derive(Debug, Clone)]
pub struct ValOptions {
    /// Score threshold, 0-1 (Ultralytics conf; 0.001 for val unless given); also the confusion matrix's.
    pub conf: f32,
    /// NMS IoU threshold, 0-1 (Ultralytics iou, 0.7).
    pub iou: f64,
    /// Maximum detections per image (Ultralytics max_det, 300).
    pub max_det: usize,
    /// Class-agnostic NMS or top-k (Ultralytics agnostic_nms).
    pub agnostic: bool,
    /// Use the one-to-one branch without NMS (end-to-end models only).
    pub end2end: bool,
    /// Run the network in FP16 (`--half`).
    pub half: bool,
}

impl ValOptions {
    /// `ember val`'s options, which training's validation uses too.
    pub fn for_val(settings: &Settings, model_end2end: bool) -> ValOptions {
        ValOptions {
            conf: settings.conf_for(Mode::Val) as f32,
            iou: settings.iou,
            max_det: settings.max_det as usize,
            agnostic: settings.agnostic_nms,
            // As Ultralytics (`nms=False`): the NMS-free one-to-one branch only when asked for.
            end2end: model_end2end && settings.nms_free(),
            half: settings.half,
        }
    }
}

/// What a validation run found.
#[derive(Debug, Clone)]
pub struct ValOutcome {
    /// Precision, recall and mAP over the split, per class and overall.
    pub metrics: DetectionMetrics,
    /// Confusion matrix at `conf` and IoU 0.45, as Ultralytics' validator builds it ([`validate`] always fills it).
    pub confusion: Option<ConfusionMatrix>,
    /// Mean loss components over the batches, when a criterion was given.
    pub loss: Option<[f64; 3]>,
    /// Milliseconds per image: preprocess, inference, postprocess.
    pub speed_ms: [f64; 3],
    /// Detections per image, in original-image pixels.
    pub detections: Vec<(PathBuf, Vec<Detection>)>,
    /// Images the loader could not load, with the error; they are left out of the metrics.
    pub failures: Vec<(PathBuf, String)>,
}

/// Runs `model` (an inference module) over every batch of `loader`.
pub fn validate<B: Backend>(
    model: &Yolo<B>,
    loader: &BatchLoader,
    options: &ValOptions,
    criterion: Option<(&Criterion, usize)>,
) -> Result<ValOutcome> {
    let device = &device_of(model)?;
    let nc = model.nc();
    // The confusion matrix as Ultralytics' validator fills it: its own conf, IoU 0.45.
    let mut acc = DetectionAccumulator::new(nc).with_confusion_matrix(options.conf, 0.45);
    let (mut t_pre, mut t_inf, mut t_post) = (0.0, 0.0, 0.0);
    let mut loss_sum = [0f64; 3];
    let mut batches = 0usize;
    let mut detections = Vec::new();
    let mut failures = Vec::new();
    let mut images = 0usize;
    let select = SelectOptions {
        caller: Caller::Val,
        end2end: options.end2end,
        conf: options.conf,
        iou: options.iou,
        max_det: options.max_det,
        agnostic: options.agnostic,
        classes: None,
    };
    let mut waited = Instant::now();
    for batch in loader.epoch(0) {
        failures.extend(batch.failures.iter().cloned());
        if batch.is_empty() {
            continue;
        }
        let t0 = Instant::now();
        t_pre += (t0 - waited).as_secs_f64();
        let x = batch_tensor::<B>(&batch, device);
        let x = if options.half { x.cast(burn::tensor::FloatDType::F16) } else { x };
        let out = model.forward(x);
        let (preds, format) = out.decode_for_postprocess(options.end2end);
        let [b, channels, anchors] = preds.dims();
        let values = read_f32(preds, Purpose::Other);
        let t1 = Instant::now();
        t_inf += (t1 - t0).as_secs_f64();
        if let Some((criterion, epoch)) = criterion {
            let [h, w] = [batch.shape[2], batch.shape[3]];
            let components = criterion.compute(out, &targets_of(&batch.labels, [h, w]), epoch).components();
            for k in 0..3 {
                loss_sum[k] += components[k] as f64;
            }
            batches += 1;
        }
        let t2 = Instant::now();
        let per_image = channels * anchors;
        for i in 0..b {
            let slice = &values[i * per_image..(i + 1) * per_image];
            let dets = select_detections(slice, nc, anchors, format, &select)?;
            // Scored in input (canvas) pixels, as Ultralytics' validator does; reported in original pixels.
            // Corners first, then scaled (`xywh2xyxy(bbox) * imgsz`), the validator's order; the loss scales
            // first (loss/targets.rs), as Ultralytics' loss does, and the two round differently in f32.
            let side = [batch.shape[3] as f32, batch.shape[2] as f32];
            let (gt_boxes, gt_classes): (Vec<[f32; 4]>, Vec<usize>) = batch.labels[i]
                .iter()
                .map(|l| {
                    let [cx, cy, w, h] = l.xywh;
                    (
                        [
                            (cx - w / 2.0) * side[0],
                            (cy - h / 2.0) * side[1],
                            (cx + w / 2.0) * side[0],
                            (cy + h / 2.0) * side[1],
                        ],
                        l.class,
                    )
                })
                .unzip();
            acc.add_image(&dets, &gt_boxes, &gt_classes)?;
            let lb = &batch.letterboxes[i];
            detections.push((
                batch.paths[i].clone(),
                dets.into_iter().map(|d| Detection { xyxy: lb.inverse_xyxy(d.xyxy), ..d }).collect(),
            ));
        }
        t_post += t2.elapsed().as_secs_f64();
        images += b;
        waited = Instant::now();
    }
    let per = |t: f64| if images == 0 { 0.0 } else { t * 1000.0 / images as f64 };
    Ok(ValOutcome {
        metrics: acc.finish(),
        confusion: acc.confusion_matrix().cloned(),
        loss: (batches > 0).then(|| loss_sum.map(|s| s / batches as f64)),
        speed_ms: [per(t_pre), per(t_inf), per(t_post)],
        detections,
        failures,
    })
}
