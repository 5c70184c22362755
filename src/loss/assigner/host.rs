//! The task-aligned assigner as a host loop: per image and box, over the anchors inside that box. The
//! predictions are read back once per branch (boxes, and the class scores of the classes present).

use burn::tensor::{backend::Backend, Int, Tensor, TensorData};
use rayon::prelude::*;

use super::{AssignedTargets, AssignerConfig, Predictions};
use crate::loss::boxes::ciou_host;
use crate::loss::targets::PaddedTargets;
use crate::readback::{read_f32, Purpose};

/// Result of one assignment, host side, indexed `b * num_anchors + a`.
#[derive(Debug, Clone, PartialEq)]
pub struct Assignment {
    /// Images in the batch (`b`).
    pub batch_size: usize,
    /// Anchors per image over all levels (`A`).
    pub num_anchors: usize,
    /// Foreground (positive) anchors.
    pub fg: Vec<bool>,
    /// Index of the assigned box within its image (0 for background anchors, as Ultralytics).
    pub target_gt_idx: Vec<usize>,
    /// Class of the assigned box.
    pub target_labels: Vec<usize>,
    /// Assigned box, pixel `x1y1x2y2`.
    pub target_boxes: Vec<[f32; 4]>,
    /// Soft target of the assigned class (normalised alignment); 0 for background. Ultralytics'
    /// `target_scores` is this value at `target_labels` and 0 at the other classes.
    pub target_scores: Vec<f32>,
}

impl Assignment {
    pub(super) fn background(batch_size: usize, num_anchors: usize) -> Self {
        let n = batch_size * num_anchors;
        Self {
            batch_size,
            num_anchors,
            fg: vec![false; n],
            target_gt_idx: vec![0; n],
            target_labels: vec![0; n],
            target_boxes: vec![[0.0; 4]; n],
            target_scores: vec![0.0; n],
        }
    }

    /// Number of foreground anchors over the whole batch.
    pub fn num_fg(&self) -> usize {
        self.fg.iter().filter(|&&f| f).count()
    }

    /// Flat indices `b * num_anchors + a` of the foreground anchors, in order.
    pub fn fg_indices(&self) -> Vec<usize> {
        self.fg.iter().enumerate().filter(|(_, &f)| f).map(|(i, _)| i).collect()
    }

    /// Sum of all target scores (the class-loss normaliser before `max(.., 1)`).
    pub fn target_scores_sum(&self) -> f32 {
        self.target_scores.iter().sum()
    }

    /// The same assignment as the device's dense tensors (two uploads).
    pub fn to_device<B: Backend>(&self, device: &B::Device) -> AssignedTargets<B> {
        let (b, a) = (self.batch_size, self.num_anchors);
        // Per image, six rows of anchors: foreground, score, x1, y1, x2, y2.
        let mut floats = Vec::with_capacity(b * 6 * a);
        let mut ints = Vec::with_capacity(b * 2 * a);
        for im in 0..b {
            let r = im * a..(im + 1) * a;
            floats.extend(self.fg[r.clone()].iter().map(|&f| if f { 1.0f32 } else { 0.0 }));
            floats.extend_from_slice(&self.target_scores[r.clone()]);
            for c in 0..4 {
                floats.extend(self.target_boxes[r.clone()].iter().map(|bx| bx[c]));
            }
            ints.extend(self.target_gt_idx[r.clone()].iter().map(|&i| i as i64));
            ints.extend(self.target_labels[r].iter().map(|&l| l as i64));
        }
        let floats = Tensor::<B, 3>::from_data(TensorData::new(floats, [b, 6, a]), device);
        let ints = Tensor::<B, 3, Int>::from_data(TensorData::new(ints, [b, 2, a]), device);
        let row = |i| floats.clone().narrow(1, i, 1);
        AssignedTargets {
            fg: row(0),
            scores: row(1),
            boxes: [row(2), row(3), row(4), row(5)],
            gt_idx: ints.clone().narrow(1, 0, 1),
            labels: ints.narrow(1, 1, 1),
        }
    }
}

/// The task-aligned assigner.
#[derive(Debug, Clone)]
pub struct TaskAlignedAssigner {
    /// Top-k, exponents and stride of the assignment.
    pub config: AssignerConfig,
}

impl TaskAlignedAssigner {
    /// An assigner with these settings (see [`AssignerConfig::new`] for Ultralytics' defaults).
    pub fn new(config: AssignerConfig) -> Self {
        Self { config }
    }

    /// Reads the predictions (two device reads) and assigns on the host.
    pub fn assign_read<B: Backend>(&self, preds: &Predictions<B>, gt: &PaddedTargets) -> Assignment {
        let [b, _, a] = preds.scores.dims();
        if gt.max_boxes == 0 {
            return Assignment::background(b, a);
        }
        let lookup = GtClassScores::read(preds.scores.clone(), gt);
        let corners = Tensor::cat(preds.boxes.to_vec(), 1);
        let flat = read_f32(corners.detach(), Purpose::Assigner);
        let boxes: Vec<[f32; 4]> = (0..b * a)
            .map(|i| {
                let (im, k) = (i / a, i % a);
                [0, 1, 2, 3].map(|c| flat[(im * 4 + c) * a + k])
            })
            .collect();
        self.assign_with(|b, m, a| lookup.get(b, m, a), &boxes, &preds.anchor_points, gt)
    }

    /// Assign on the host. `gt_scores`: `[b, M, A]` predicted probability of box `m`'s class at anchor `a`;
    /// `pred_boxes_px`: `[b * A]` pixel xyxy; `anchor_points_px`: `[A]` pixel centres.
    pub fn assign(
        &self,
        gt_scores: &[f32],
        pred_boxes_px: &[[f32; 4]],
        anchor_points_px: &[[f32; 2]],
        gt: &PaddedTargets,
    ) -> Assignment {
        let (m_max, na) = (gt.max_boxes, anchor_points_px.len());
        assert_eq!(gt_scores.len(), gt.batch_size * m_max * na, "gt_scores must be [b, M, A]");
        self.assign_with(|b, m, a| gt_scores[(b * m_max + m) * na + a], pred_boxes_px, anchor_points_px, gt)
    }

    /// Assign on the host with a score lookup `score(b, m, a)`: the predicted probability of box `m`'s class at
    /// anchor `a` of image `b` (only called for candidate anchors).
    pub fn assign_with<F: Fn(usize, usize, usize) -> f32 + Sync>(
        &self,
        score: F,
        pred_boxes_px: &[[f32; 4]],
        anchor_points_px: &[[f32; 2]],
        gt: &PaddedTargets,
    ) -> Assignment {
        let (bs, m_max, na) = (gt.batch_size, gt.max_boxes, anchor_points_px.len());
        assert_eq!(pred_boxes_px.len(), bs * na, "pred boxes must be [b, A]");
        let mut out = Assignment::background(bs, na);
        if m_max == 0 {
            return out;
        }
        // Images are independent: assign them in parallel.
        let images: Vec<Assignment> = (0..bs)
            .into_par_iter()
            .map(|b| self.assign_image(b, &score, &pred_boxes_px[b * na..(b + 1) * na], anchor_points_px, gt))
            .collect();
        for (b, im) in images.into_iter().enumerate() {
            let r = b * na..(b + 1) * na;
            out.fg[r.clone()].copy_from_slice(&im.fg);
            out.target_gt_idx[r.clone()].copy_from_slice(&im.target_gt_idx);
            out.target_labels[r.clone()].copy_from_slice(&im.target_labels);
            out.target_boxes[r.clone()].copy_from_slice(&im.target_boxes);
            out.target_scores[r].copy_from_slice(&im.target_scores);
        }
        out
    }

    /// Assignment of image `b` alone (an [`Assignment`] with batch size 1).
    fn assign_image<F: Fn(usize, usize, usize) -> f32>(
        &self,
        b: usize,
        score: &F,
        pred_boxes_px: &[[f32; 4]],
        anchor_points_px: &[[f32; 2]],
        gt: &PaddedTargets,
    ) -> Assignment {
        let cfg = &self.config;
        let (m_max, na) = (gt.max_boxes, anchor_points_px.len());
        let mut out = Assignment::background(1, na);
        let topk = cfg.topk.min(na);
        let topk2 = cfg.topk2.unwrap_or(cfg.topk).min(na);
        let second_filter = cfg.topk2.is_some_and(|k2| k2 != cfg.topk);
        let eps = cfg.eps;

        // Dense [M, A] overlaps, metrics and the positive mask of this image.
        let mut overlaps = vec![0f32; m_max * na];
        let mut align = vec![0f32; m_max * na];
        let mut pos = vec![false; m_max * na];
        let mut cand: Vec<(usize, f32)> = Vec::new();
        for m in 0..m_max {
            let r = b * m_max + m;
            if !gt.mask[r] {
                continue;
            }
            let g = gt.boxes_xyxy[r];
            let e = cfg.enlarged(g);
            cand.clear();
            for (a, p) in anchor_points_px.iter().enumerate() {
                let inside = p[0] - e[0] > eps && p[1] - e[1] > eps && e[2] - p[0] > eps && e[3] - p[1] > eps;
                if !inside {
                    continue;
                }
                let ov = ciou_host(g, pred_boxes_px[a]).max(0.0);
                let s = score(b, m, a);
                let sa = if cfg.alpha == 0.5 { s.sqrt() } else { s.powf(cfg.alpha) };
                let metric = sa * ov.powf(cfg.beta);
                overlaps[m * na + a] = ov;
                align[m * na + a] = metric;
                cand.push((a, metric));
            }
            // Top-k by metric (descending, lower anchor index first on ties). Candidates with a zero metric
            // are never taken: Ultralytics may pick them among tied zeros, but as positives they would carry
            // a zero target score, so the losses do not depend on it.
            cand.retain(|&(_, v)| v > 0.0);
            cand.sort_by(|x, y| y.1.total_cmp(&x.1).then(x.0.cmp(&y.0)));
            for &(a, _) in cand.iter().take(topk) {
                pos[m * na + a] = true;
            }
        }

        // An anchor positive for several boxes goes to the box it overlaps most (among all boxes it is
        // a candidate of, positive or not), first box on ties.
        for a in 0..na {
            let count = (0..m_max).filter(|&m| pos[m * na + a]).count();
            if count > 1 {
                let mut best = 0;
                for m in 1..m_max {
                    if overlaps[m * na + a] > overlaps[best * na + a] {
                        best = m;
                    }
                }
                for m in 0..m_max {
                    pos[m * na + a] = m == best;
                }
            }
        }

        // One-to-one branch: keep only the best `topk2` positives per box by metric.
        if second_filter {
            for m in 0..m_max {
                cand.clear();
                cand.extend((0..na).filter(|&a| pos[m * na + a]).map(|a| (a, align[m * na + a])));
                cand.sort_by(|x, y| y.1.total_cmp(&x.1).then(x.0.cmp(&y.0)));
                for &(a, _) in cand.iter().skip(topk2) {
                    pos[m * na + a] = false;
                }
            }
        }

        // Normalisation per box: metric * (max IoU of its positives) / (max metric of its positives).
        let mut pos_align = vec![0f32; m_max];
        let mut pos_ov = vec![0f32; m_max];
        for m in 0..m_max {
            for a in 0..na {
                if pos[m * na + a] {
                    pos_align[m] = pos_align[m].max(align[m * na + a]);
                    pos_ov[m] = pos_ov[m].max(overlaps[m * na + a]);
                }
            }
        }
        for a in 0..na {
            if let Some(m) = (0..m_max).find(|&m| pos[m * na + a]) {
                let r = b * m_max + m;
                out.fg[a] = true;
                out.target_gt_idx[a] = m;
                out.target_labels[a] = gt.classes[r];
                out.target_boxes[a] = gt.boxes_xyxy[r];
                out.target_scores[a] = align[m * na + a] * pos_ov[m] / (pos_align[m] + eps);
            } else {
                let r = b * m_max;
                out.target_labels[a] = gt.classes[r];
                out.target_boxes[a] = gt.boxes_xyxy[r];
            }
        }
        out
    }
}

/// Class logits of the batch's ground-truth classes, read back once: `[b, U, A]` for the `U` distinct classes
/// present, so the host never copies all `nc` rows.
pub struct GtClassScores {
    logits: Vec<f32>,
    /// Column of each padded box's class (`b * M + m`).
    column: Vec<usize>,
    max_boxes: usize,
    num_cols: usize,
    num_anchors: usize,
}

impl GtClassScores {
    /// `scores`: class logits `[b, nc, A]` (detached here).
    pub fn read<B: Backend>(scores: Tensor<B, 3>, gt: &PaddedTargets) -> Self {
        let [_, nc, na] = scores.dims();
        let mut present: Vec<usize> = gt.classes.iter().zip(&gt.mask).filter(|(_, &v)| v).map(|(&c, _)| c).collect();
        present.sort_unstable();
        present.dedup();
        if let Some(&c) = present.last() {
            assert!(c < nc, "class id {c} out of range for {nc} classes");
        }
        let column: Vec<usize> = gt
            .classes
            .iter()
            .zip(&gt.mask)
            .map(|(c, &v)| if v { present.binary_search(c).unwrap() } else { 0 })
            .collect();
        let device = scores.device();
        let idx: Vec<i64> = present.iter().map(|&c| c as i64).collect();
        let u = idx.len();
        let logits = if u == 0 {
            Vec::new()
        } else {
            let idx = Tensor::<B, 1, Int>::from_data(TensorData::new(idx, [u]), &device);
            read_f32(scores.detach().select(1, idx), Purpose::Assigner)
        };
        Self { logits, column, max_boxes: gt.max_boxes, num_cols: u, num_anchors: na }
    }

    /// Sigmoid probability of box `m`'s class at anchor `a` of image `b`.
    pub fn get(&self, b: usize, m: usize, a: usize) -> f32 {
        let col = self.column[b * self.max_boxes + m];
        let x = self.logits[(b * self.num_cols + col) * self.num_anchors + a];
        1.0 / (1.0 + (-x).exp())
    }
}
