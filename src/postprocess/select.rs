//! The one choice `val` and `predict` share: NMS over the one-to-many branch, or the top-k of the
//! NMS-free one-to-one branch, with the settings Ultralytics' validator or predictor uses for it.

use anyhow::Result;

use super::detection::{BoxFormat, Detection};
use super::end2end::{end2end_postprocess, end2end_postprocess_predict, End2EndOptions};
use super::nms::{non_max_suppression, NmsOptions};

/// Who asks. Ultralytics' validator runs multi-label NMS and takes the end-to-end head's top `max_det`;
/// its predictor keeps the best class per box and takes the top `max(max_det, 300)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    /// `val`: multi-label NMS, or the head's top `max_det` on the one-to-one branch.
    Val,
    /// `predict`: best class per box in NMS, or the head's top `max(max_det, 300)` on the one-to-one branch.
    Predict,
}

/// The thresholds of one `val` or `predict` run.
#[derive(Debug, Clone)]
pub struct SelectOptions {
    /// Whose Ultralytics settings (validator or predictor) fill in what is not set here.
    pub caller: Caller,
    /// The one-to-one branch and top-k, rather than the one-to-many branch and NMS.
    pub end2end: bool,
    /// Keep detections whose score is strictly greater than this, 0-1 (Ultralytics conf).
    pub conf: f32,
    /// NMS IoU threshold, 0-1 (Ultralytics iou); unused on the end-to-end branch.
    pub iou: f64,
    /// Maximum number of detections per image (Ultralytics max_det).
    pub max_det: usize,
    /// Class-agnostic: NMS across classes, or top-k with one class per anchor (Ultralytics agnostic_nms).
    pub agnostic: bool,
    /// Keep only these classes (None: all).
    pub classes: Option<Vec<usize>>,
}

/// Detections of one image from its `[4 + nc, anchors]` predictions (boxes in `format`).
pub fn select_detections(
    preds: &[f32],
    nc: usize,
    anchors: usize,
    format: BoxFormat,
    o: &SelectOptions,
) -> Result<Vec<Detection>> {
    if o.end2end {
        let opts =
            End2EndOptions { conf_thres: o.conf, max_det: o.max_det, agnostic: o.agnostic, classes: o.classes.clone() };
        match o.caller {
            Caller::Val => end2end_postprocess(preds, nc, anchors, format, &opts),
            Caller::Predict => end2end_postprocess_predict(preds, nc, anchors, format, &opts),
        }
    } else {
        let base = match o.caller {
            Caller::Val => NmsOptions::val(),
            Caller::Predict => NmsOptions::predict(),
        };
        let opts = NmsOptions {
            conf_thres: o.conf,
            iou_thres: o.iou,
            agnostic: o.agnostic,
            max_det: o.max_det,
            classes: o.classes.clone(),
            ..base
        };
        non_max_suppression(preds, nc, anchors, format, &opts)
    }
}
