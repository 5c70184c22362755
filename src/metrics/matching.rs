//! Matching of one image's predictions to its labels at the 10 IoU thresholds, as Ultralytics 8.4's
//! `BaseValidator.match_predictions` does by default (greedy, no SciPy):
//!
//! predictions are visited in the given (descending confidence) order; at every threshold each one takes the
//! unclaimed label of its own class with the highest IoU (first on ties) and is a true positive when that IoU is
//! `>=` the threshold, in which case the label becomes claimed at that threshold.

use super::{IOU_THRESHOLDS, NIOU};
use crate::postprocess::boxes::iou_matrix;

/// True-positive flags `[pred][threshold]` for one image.
///
/// `iou` is the row-major `true_classes.len() x pred_classes.len()` IoU matrix (labels are rows), as produced by
/// [`iou_matrix`]`(labels, predictions)`.
pub fn match_predictions(pred_classes: &[usize], true_classes: &[usize], iou: &[f32]) -> Vec<[bool; NIOU]> {
    let n = pred_classes.len();
    let m = true_classes.len();
    let mut correct = vec![[false; NIOU]; n];
    if n == 0 || m == 0 || iou.len() != n * m {
        return correct;
    }
    // zero out wrong-class pairs
    let cls_iou = |g: usize, j: usize| -> f32 {
        if true_classes[g] == pred_classes[j] {
            iou[g * n + j]
        } else {
            0.0
        }
    };
    let tmin = IOU_THRESHOLDS[0];
    let mut matched = vec![[false; NIOU]; m];
    for (j, correct_j) in correct.iter_mut().enumerate() {
        if !(0..m).any(|g| cls_iou(g, j) >= tmin) {
            continue;
        }
        for t in 0..NIOU {
            let avail = |g: usize| if matched[g][t] { 0.0 } else { cls_iou(g, j) };
            let mut k = 0;
            let mut best = avail(0);
            for g in 1..m {
                let v = avail(g);
                if v > best {
                    best = v;
                    k = g;
                }
            }
            if best >= IOU_THRESHOLDS[t] {
                correct_j[t] = true;
                matched[k][t] = true;
            }
        }
    }
    correct
}

/// Convenience: IoU of labels vs predictions, then [`match_predictions`].
pub fn match_boxes(
    pred_boxes: &[[f32; 4]],
    pred_classes: &[usize],
    gt_boxes: &[[f32; 4]],
    gt_classes: &[usize],
) -> Vec<[bool; NIOU]> {
    if pred_boxes.is_empty() || gt_boxes.is_empty() {
        return vec![[false; NIOU]; pred_boxes.len()];
    }
    let iou = iou_matrix(gt_boxes, pred_boxes);
    match_predictions(pred_classes, gt_classes, &iou)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn higher_confidence_claims_first() {
        let gt = [[0.0, 0.0, 10.0, 10.0]];
        let preds = [[0.0, 0.0, 10.0, 9.0], [0.0, 0.0, 10.0, 10.0]];
        let tp = match_boxes(&preds, &[0, 0], &gt, &[0]);
        assert!(tp[0][0]);
        assert!(!tp[1][0]); // duplicate
                            // the first one has IoU 0.9: false at 0.95, so the second (IoU 1) claims it there
        assert!(!tp[0][9]);
        assert!(tp[1][9]);
    }

    #[test]
    fn wrong_class_never_matches() {
        let gt = [[0.0, 0.0, 10.0, 10.0]];
        let tp = match_boxes(&[[0.0, 0.0, 10.0, 10.0]], &[1], &gt, &[0]);
        assert_eq!(tp[0], [false; NIOU]);
    }
}
