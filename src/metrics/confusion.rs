//! Detection confusion matrix as Ultralytics 8.4 `ConfusionMatrix.process_batch` builds it.
//!
//! The matrix is indexed `[predicted][true]`, `(nc + 1) x (nc + 1)`, the last row/column being background.
//! Predictions with `score > conf` are kept; then, class-agnostically and in descending confidence order, each
//! prediction takes the label with the highest IoU if that IoU is `> iou_thres` and the label is still free.

use crate::postprocess::boxes::iou_matrix;
use crate::postprocess::Detection;

/// Detection confusion matrix.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfusionMatrix {
    /// Number of classes.
    pub nc: usize,
    /// Confidence threshold (the 8.4 validator passes its `conf`, 0.001 for val).
    pub conf: f32,
    /// IoU threshold for a match (0.45 in the validator).
    pub iou_thres: f32,
    /// Counts, row-major `(nc + 1) x (nc + 1)`, `[predicted][true]`.
    pub matrix: Vec<f64>,
}

impl ConfusionMatrix {
    /// An empty matrix.
    pub fn new(nc: usize, conf: f32, iou_thres: f32) -> Self {
        Self { nc, conf, iou_thres, matrix: vec![0.0; (nc + 1) * (nc + 1)] }
    }

    /// Count at `[predicted][true]` (index `nc` is background).
    pub fn get(&self, pred: usize, truth: usize) -> f64 {
        if pred > self.nc || truth > self.nc {
            return 0.0;
        }
        self.matrix[pred * (self.nc + 1) + truth]
    }

    fn bump(&mut self, pred: usize, truth: usize) {
        let n = self.nc + 1;
        self.matrix[pred.min(self.nc) * n + truth.min(self.nc)] += 1.0;
    }

    /// Adds one image. Classes `>= nc` are counted as background; labels beyond the shorter of `gt_boxes` and
    /// `gt_classes` are ignored.
    pub fn process_image(&mut self, preds: &[Detection], gt_boxes: &[[f32; 4]], gt_classes: &[usize]) {
        let n_gt = gt_boxes.len().min(gt_classes.len());
        let (gt_boxes, gt_classes) = (&gt_boxes[..n_gt], &gt_classes[..n_gt]);
        let nc = self.nc;
        if gt_classes.is_empty() {
            let conf = self.conf;
            for d in preds.iter().filter(|d| d.score > conf) {
                self.bump(d.class, nc);
            }
            return;
        }
        if preds.is_empty() {
            for &g in gt_classes {
                self.bump(nc, g);
            }
            return;
        }
        let dets: Vec<&Detection> = preds.iter().filter(|d| d.score > self.conf).collect();
        let boxes: Vec<[f32; 4]> = dets.iter().map(|d| d.xyxy).collect();
        let mut iou = iou_matrix(gt_boxes, &boxes); // gt rows
        let nd = dets.len();
        let mut gt_match: Vec<Option<usize>> = vec![None; gt_classes.len()];
        let mut cands: Vec<usize> =
            (0..nd).filter(|&j| (0..gt_classes.len()).any(|g| iou[g * nd + j] > self.iou_thres)).collect();
        cands.sort_by(|&a, &b| dets[b].score.total_cmp(&dets[a].score));
        for j in cands {
            let mut g_best = 0;
            for g in 1..gt_classes.len() {
                if iou[g * nd + j] > iou[g_best * nd + j] {
                    g_best = g;
                }
            }
            if iou[g_best * nd + j] > self.iou_thres {
                gt_match[g_best] = Some(j);
                for v in &mut iou[g_best * nd..(g_best + 1) * nd] {
                    *v = 0.0;
                }
            }
        }
        let mut det_matched = vec![false; nd];
        for (g, &gc) in gt_classes.iter().enumerate() {
            match gt_match[g] {
                Some(j) => {
                    det_matched[j] = true;
                    self.bump(dets[j].class, gc);
                }
                None => self.bump(nc, gc),
            }
        }
        for (j, d) in dets.iter().enumerate() {
            if !det_matched[j] {
                self.bump(d.class, nc);
            }
        }
    }

    /// Column-normalised copy (each true class sums to 1), as in Ultralytics' normalised plot.
    pub fn normalized(&self) -> Vec<f64> {
        let n = self.nc + 1;
        let mut out = self.matrix.clone();
        for j in 0..n {
            let s: f64 = (0..n).map(|i| self.matrix[i * n + j]).sum::<f64>() + 1e-9;
            for i in 0..n {
                out[i * n + j] /= s;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn det(b: [f32; 4], s: f32, c: usize) -> Detection {
        Detection { xyxy: b, score: s, class: c }
    }

    #[test]
    fn counts() {
        let mut cm = ConfusionMatrix::new(2, 0.25, 0.45);
        let gt = [[0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0], [50.0, 50.0, 60.0, 60.0]];
        let preds = [
            det([0.0, 0.0, 10.0, 10.0], 0.9, 0),   // TP class 0
            det([20.0, 20.0, 30.0, 30.0], 0.8, 0), // class confusion: pred 0, true 1
            det([80.0, 80.0, 90.0, 90.0], 0.7, 1), // FP
            det([0.0, 0.0, 10.0, 10.0], 0.1, 1),   // below conf: ignored
        ];
        cm.process_image(&preds, &gt, &[0, 1, 1]);
        assert_eq!(cm.get(0, 0), 1.0);
        assert_eq!(cm.get(0, 1), 1.0);
        assert_eq!(cm.get(2, 1), 1.0); // missed
        assert_eq!(cm.get(1, 2), 1.0); // FP
        assert_eq!(cm.matrix.iter().sum::<f64>(), 4.0);
    }
}
