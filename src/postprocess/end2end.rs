//! NMS-free post-processing for end-to-end (one-to-one) heads such as YOLO26, with the semantics of Ultralytics 8.4
//! `Detect.postprocess` / `Detect.get_topk_index` followed by the end-to-end branch of `non_max_suppression`.
//!
//! With `k = min(topk, anchors)`, where `topk` is the head's `max_det` (the validator sets it to its own `max_det`,
//! which [`end2end_postprocess`] does; the predictor uses `max(max_det, 300)`, which
//! [`end2end_postprocess_predict`] does):
//! * class-aware (default): the `k` anchors with the highest best-class score are taken, then the `k` highest
//!   (anchor, class) scores among those `k * nc` pairs;
//! * agnostic: the `k` anchors with the highest best-class score, each with its best class;
//!
//! Then detections with `score > conf_thres` (and in `classes`, if given) are kept, at most `max_det`.
//!
//! Ties in top-k are broken by the lower index (torch leaves that order unspecified).
//! Note: Ultralytics' one-to-one head decodes boxes as corners (`xyxy`), unlike the one-to-many head (`xywh`).

use anyhow::Result;

use super::boxes::xywh_to_xyxy;
use super::detection::{BoxFormat, Detection};
use super::nms::{argsort_desc, check_layout};

/// Settings for [`end2end_postprocess`].
#[derive(Debug, Clone, PartialEq)]
pub struct End2EndOptions {
    /// Keep detections whose score is strictly greater than this.
    pub conf_thres: f32,
    /// Maximum number of detections returned, and the head's top-k for [`end2end_postprocess`] (default 300).
    pub max_det: usize,
    /// Class-agnostic top-k (one class per anchor).
    pub agnostic: bool,
    /// Keep only these classes (None: all).
    pub classes: Option<Vec<usize>>,
}

impl Default for End2EndOptions {
    fn default() -> Self {
        Self { conf_thres: 0.25, max_det: 300, agnostic: false, classes: None }
    }
}

impl End2EndOptions {
    /// Validator settings (`conf=0.001`, `max_det=300`).
    pub fn val() -> Self {
        Self { conf_thres: 0.001, ..Self::default() }
    }
    /// Predictor settings (`conf=0.25`, `max_det=300`).
    pub fn predict() -> Self {
        Self::default()
    }
}

/// Top-k selection without NMS for one image, as the validator runs it (head top-k = `max_det`). `preds` is the flat
/// `[4 + nc, anchors]` slice (box channels in `format`, then sigmoided class scores). Returns detections sorted by
/// descending score.
pub fn end2end_postprocess(
    preds: &[f32],
    nc: usize,
    anchors: usize,
    format: BoxFormat,
    opts: &End2EndOptions,
) -> Result<Vec<Detection>> {
    end2end_topk(preds, nc, anchors, format, opts, opts.max_det)
}

/// As [`end2end_postprocess`], as the predictor runs it: the head takes the top `max(max_det, 300)` candidates,
/// then at most `max_det` detections above `conf_thres` are returned.
pub fn end2end_postprocess_predict(
    preds: &[f32],
    nc: usize,
    anchors: usize,
    format: BoxFormat,
    opts: &End2EndOptions,
) -> Result<Vec<Detection>> {
    end2end_topk(preds, nc, anchors, format, opts, opts.max_det.max(300))
}

/// The shared body: head top-k with `topk` candidates, then the confidence/class filter and `max_det` cap.
pub fn end2end_topk(
    preds: &[f32],
    nc: usize,
    anchors: usize,
    format: BoxFormat,
    opts: &End2EndOptions,
    topk: usize,
) -> Result<Vec<Detection>> {
    check_layout(preds, nc, anchors)?;
    if !(0.0..=1.0).contains(&opts.conf_thres) {
        anyhow::bail!("invalid confidence threshold {}: expected a value in [0, 1]", opts.conf_thres);
    }
    let at = |c: usize, a: usize| preds[c * anchors + a];
    let k = topk.min(anchors);
    if k == 0 || opts.max_det == 0 {
        return Ok(Vec::new());
    }
    // best score and class per anchor (first maximum)
    let mut best = vec![0f32; anchors];
    let mut best_c = vec![0usize; anchors];
    for a in 0..anchors {
        let mut b = at(4, a);
        let mut bc = 0;
        for c in 1..nc {
            let s = at(4 + c, a);
            if s > b {
                b = s;
                bc = c;
            }
        }
        best[a] = b;
        best_c[a] = bc;
    }
    let top_anchors: Vec<usize> = argsort_desc(&best).into_iter().take(k).collect();

    // (anchor, class, score) picks in descending score order
    let picks: Vec<(usize, usize, f32)> = if opts.agnostic {
        top_anchors.iter().map(|&a| (a, best_c[a], best[a])).collect()
    } else {
        let flat: Vec<f32> = top_anchors.iter().flat_map(|&a| (0..nc).map(move |c| at(4 + c, a))).collect();
        argsort_desc(&flat).into_iter().take(k).map(|i| (top_anchors[i / nc], i % nc, flat[i])).collect()
    };

    let mut out = Vec::new();
    for (a, c, s) in picks {
        if s.is_nan() || s <= opts.conf_thres {
            continue;
        }
        if let Some(classes) = &opts.classes {
            if !classes.contains(&c) {
                continue;
            }
        }
        let raw = [at(0, a), at(1, a), at(2, a), at(3, a)];
        let xyxy = match format {
            BoxFormat::Xywh => xywh_to_xyxy(raw),
            BoxFormat::Xyxy => raw,
        };
        out.push(Detection { xyxy, score: s, class: c });
        if out.len() == opts.max_det {
            break;
        }
    }
    Ok(out)
}
