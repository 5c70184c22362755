//! Non-maximum suppression with the semantics of Ultralytics 8.4 `utils/nms.py::non_max_suppression`
//! (detection task, torchvision NMS kernel).
//!
//! Behaviour matched on purpose:
//! * candidates: anchors whose best class score is `> conf_thres` (compared in `f32`);
//! * `multi_label` (what the validator uses): one candidate per `(anchor, class)` with score `> conf_thres`,
//!   ordered by anchor then class; otherwise one candidate per anchor with its best class (first maximum);
//! * optional class filter, then at most `max_nms` candidates (highest scores);
//! * class-aware NMS through the per-class coordinate offset `class * max_wh` (IoU computed on the offset boxes in
//!   `f32`, like torchvision), suppression when `IoU > iou_thres` (compared in `f64`, like torchvision);
//! * kept boxes in descending score order (stable: ties keep candidate order), truncated to `max_det`.
//!
//! Boxes of different classes are never compared when `agnostic` is false (equivalent to the offset trick for any
//! box that lies within `max_wh` pixels), which makes the loop cost `O(n log n + sum_c n_c * k_c)`.

use anyhow::{bail, Result};

use super::boxes::xywh_to_xyxy;
use super::detection::{BoxFormat, Detection};

/// Settings for [`non_max_suppression`].
#[derive(Debug, Clone, PartialEq)]
pub struct NmsOptions {
    /// Keep candidates whose score is strictly greater than this (0.001 for val, 0.25 for predict).
    pub conf_thres: f32,
    /// Suppress a box whose IoU with a kept box of the same class is strictly greater than this (default 0.7).
    pub iou_thres: f64,
    /// Class-agnostic NMS (boxes of different classes suppress each other).
    pub agnostic: bool,
    /// One candidate per (box, class) pair above `conf_thres` instead of one per box (the validator sets this).
    pub multi_label: bool,
    /// Maximum number of detections returned (default 300).
    pub max_det: usize,
    /// Maximum number of candidates entering NMS (default 30000).
    pub max_nms: usize,
    /// Per-class coordinate offset in pixels (default 7680).
    pub max_wh: f32,
    /// Keep only these classes (None: all).
    pub classes: Option<Vec<usize>>,
}

impl Default for NmsOptions {
    fn default() -> Self {
        Self {
            conf_thres: 0.25,
            iou_thres: 0.7,
            agnostic: false,
            multi_label: false,
            max_det: 300,
            max_nms: 30000,
            max_wh: 7680.0,
            classes: None,
        }
    }
}

impl NmsOptions {
    /// Settings used by Ultralytics' `DetectionValidator` (`conf=0.001`, `iou=0.7`, `multi_label=True`).
    pub fn val() -> Self {
        Self { conf_thres: 0.001, multi_label: true, ..Self::default() }
    }

    /// Settings used by Ultralytics' `DetectionPredictor` (`conf=0.25`, `iou=0.7`, best class only).
    pub fn predict() -> Self {
        Self::default()
    }

    fn check(&self) -> Result<()> {
        if !(0.0..=1.0).contains(&self.conf_thres) {
            bail!("invalid confidence threshold {}: expected a value in [0, 1]", self.conf_thres);
        }
        if !(0.0..=1.0).contains(&self.iou_thres) {
            bail!("invalid IoU threshold {}: expected a value in [0, 1]", self.iou_thres);
        }
        Ok(())
    }
}

/// Checks that a flat `[channels, anchors]` prediction slice has the announced shape.
pub(crate) fn check_layout(preds: &[f32], nc: usize, anchors: usize) -> Result<()> {
    if nc == 0 {
        bail!("number of classes must be at least 1");
    }
    let expected = (4 + nc)
        .checked_mul(anchors)
        .ok_or_else(|| anyhow::anyhow!("prediction shape [4+{nc}, {anchors}] overflows"))?;
    if preds.len() != expected {
        bail!(
            "prediction slice has {} values, expected (4 + nc) * anchors = (4 + {nc}) * {anchors} = {expected}",
            preds.len()
        );
    }
    Ok(())
}

/// Index order sorting `scores` descending; ties keep their original order.
pub(crate) fn argsort_desc(scores: &[f32]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    order
}

/// Runs NMS on one image's decoded predictions.
///
/// `preds` is the flat `[4 + nc, anchors]` (channel-major) slice of Ultralytics' eval layout: four box channels in
/// input pixels (`format`, normally [`BoxFormat::Xywh`]) followed by `nc` class scores already passed through the
/// sigmoid. Returns detections sorted by descending score.
pub fn non_max_suppression(
    preds: &[f32],
    nc: usize,
    anchors: usize,
    format: BoxFormat,
    opts: &NmsOptions,
) -> Result<Vec<Detection>> {
    check_layout(preds, nc, anchors)?;
    opts.check()?;
    let at = |c: usize, a: usize| preds[c * anchors + a];
    let conf = opts.conf_thres;
    let multi_label = opts.multi_label && nc > 1;

    // Candidates in anchor order (then class order for multi-label).
    let mut cands: Vec<Detection> = Vec::new();
    for a in 0..anchors {
        // best class: first maximum; a NaN score makes torch's amax NaN, which fails the threshold
        let mut best = at(4, a);
        let mut best_c = 0usize;
        let mut has_nan = best.is_nan();
        for c in 1..nc {
            let s = at(4 + c, a);
            has_nan |= s.is_nan();
            if s > best {
                best = s;
                best_c = c;
            }
        }
        if has_nan || best <= conf {
            continue;
        }
        let raw = [at(0, a), at(1, a), at(2, a), at(3, a)];
        let xyxy = match format {
            BoxFormat::Xywh => xywh_to_xyxy(raw),
            BoxFormat::Xyxy => raw,
        };
        if multi_label {
            for c in 0..nc {
                let s = at(4 + c, a);
                if s > conf {
                    cands.push(Detection { xyxy, score: s, class: c });
                }
            }
        } else {
            cands.push(Detection { xyxy, score: best, class: best_c });
        }
    }
    if let Some(classes) = &opts.classes {
        cands.retain(|d| classes.contains(&d.class));
    }
    Ok(nms_detections(cands, opts.iou_thres, opts.agnostic, opts.max_det, opts.max_nms, opts.max_wh))
}

/// Greedy NMS over already-decoded candidates (any order). Returns kept detections by descending score
/// (stable on ties), at most `max_det`.
pub fn nms_detections(
    mut cands: Vec<Detection>,
    iou_thres: f64,
    agnostic: bool,
    max_det: usize,
    max_nms: usize,
    max_wh: f32,
) -> Vec<Detection> {
    if cands.is_empty() || max_det == 0 {
        return Vec::new();
    }
    if cands.len() > max_nms {
        let scores: Vec<f32> = cands.iter().map(|d| d.score).collect();
        let order = argsort_desc(&scores);
        cands = order[..max_nms].iter().map(|&i| cands[i]).collect();
    }
    let scores: Vec<f32> = cands.iter().map(|d| d.score).collect();
    let order = argsort_desc(&scores);

    // Offset boxes and areas, as torchvision sees them.
    let boxes: Vec<[f32; 4]> = cands
        .iter()
        .map(|d| {
            let off = if agnostic { 0.0 } else { d.class as f32 * max_wh };
            [d.xyxy[0] + off, d.xyxy[1] + off, d.xyxy[2] + off, d.xyxy[3] + off]
        })
        .collect();
    let areas: Vec<f32> = boxes.iter().map(|b| (b[2] - b[0]) * (b[3] - b[1])).collect();

    // Group sorted candidates by class (one group when agnostic); each group stays in global score order.
    let mut groups: std::collections::BTreeMap<usize, Vec<usize>> = std::collections::BTreeMap::new();
    for &i in &order {
        let key = if agnostic { 0 } else { cands[i].class };
        groups.entry(key).or_default().push(i);
    }
    let mut keep = vec![false; cands.len()];
    for members in groups.values() {
        let mut suppressed = vec![false; members.len()];
        for p in 0..members.len() {
            if suppressed[p] {
                continue;
            }
            let i = members[p];
            keep[i] = true;
            let bi = &boxes[i];
            for q in p + 1..members.len() {
                if suppressed[q] {
                    continue;
                }
                let j = members[q];
                let bj = &boxes[j];
                let w = (bi[2].min(bj[2]) - bi[0].max(bj[0])).max(0.0);
                let h = (bi[3].min(bj[3]) - bi[1].max(bj[1])).max(0.0);
                let inter = w * h;
                let ovr = inter / (areas[i] + areas[j] - inter);
                if (ovr as f64) > iou_thres {
                    suppressed[q] = true;
                }
            }
        }
    }
    order.into_iter().filter(|&i| keep[i]).take(max_det).map(|i| cands[i]).collect()
}
