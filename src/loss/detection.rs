//! The YOLOv8-style detection loss (Ultralytics `v8DetectionLoss`, 8.4 behaviour).
//!
//! Inputs are one branch's raw head outputs: `boxes` `[b, 4 * reg_max, A]` and class logits `scores`
//! `[b, nc, A]`, anchors ordered level by level, row-major. Steps:
//! 1. decode the boxes of all anchors (detached) and run the [`TaskAlignedAssigner`] on the host;
//! 2. class loss: BCE with logits summed over all anchors and classes, against the soft one-hot targets,
//!    divided by `max(sum of target scores, 1)`;
//! 3. box loss on the foreground anchors: `(1 - CIoU)` weighted by the target score, plus DFL (`reg_max > 1`) or
//!    the L1 loss on normalised `ltrb` (`reg_max == 1`), same normaliser;
//! 4. gains `box`, `cls`, `dfl`; the loss to differentiate is `(box + cls + dfl) * batch_size`
//!    (Ultralytics returns `loss * batch_size` and the trainer sums it), the printed items are the gain-scaled
//!    components without the batch factor.
//!
//! The maths runs in f32 whatever the prediction dtype (inputs are cast to f32 first).

use burn::tensor::{activation::log_sigmoid, backend::Backend, Int, Tensor, TensorData};

use rayon::prelude::*;

use crate::nn::anchors::make_anchors;
use crate::nn::float::to_f32;
use crate::nn::{DetectOutput, HeadOutput};
use crate::readback::{read_f32, Purpose};

use super::assigner::{AssignerConfig, Assignment, GtClassScores, TaskAlignedAssigner};
use super::bbox_loss::{BboxLoss, FgTargets};
use super::softplus_sum::softplus_sum;
use super::targets::TargetBatch;

/// Settings of [`DetectionLoss`]; defaults are Ultralytics' for detection.
#[derive(Debug, Clone, PartialEq)]
pub struct DetectionLossConfig {
    pub num_classes: usize,
    pub reg_max: usize,
    /// Assigner top-k (10; 7 for YOLO26's one-to-one branch).
    pub topk: usize,
    /// Second top-k of the assigner (`Some(1)` for YOLO26's one-to-one branch).
    pub topk2: Option<usize>,
    pub alpha: f32,
    pub beta: f32,
    /// Gains (`box`, `cls`, `dfl` hyperparameters).
    pub box_gain: f32,
    pub cls_gain: f32,
    pub dfl_gain: f32,
    /// Per-class weights of the class loss (Ultralytics `cls_pw > 0`, see [`class_weights_from_counts`]);
    /// `None`: all 1.
    pub class_weights: Option<Vec<f32>>,
}

impl DetectionLossConfig {
    pub fn new(num_classes: usize, reg_max: usize) -> Self {
        Self {
            num_classes,
            reg_max,
            topk: 10,
            topk2: None,
            alpha: 0.5,
            beta: 6.0,
            box_gain: 7.5,
            cls_gain: 0.5,
            dfl_gain: 1.5,
            class_weights: None,
        }
    }

    pub fn with_class_weights(mut self, weights: Option<Vec<f32>>) -> Self {
        if let Some(w) = &weights {
            assert_eq!(w.len(), self.num_classes, "one class weight per class");
        }
        self.class_weights = weights;
        self
    }

    pub fn with_topk(mut self, topk: usize, topk2: Option<usize>) -> Self {
        self.topk = topk;
        self.topk2 = topk2;
        self
    }

    pub fn with_gains(mut self, box_gain: f32, cls_gain: f32, dfl_gain: f32) -> Self {
        self.box_gain = box_gain;
        self.cls_gain = cls_gain;
        self.dfl_gain = dfl_gain;
        self
    }
}

/// Class weights as Ultralytics 8.4 derives them from the training labels' per-class instance counts with
/// `cls_pw` in `[0, 1]`: `(1 / count)^cls_pw`, classes without labels get the mean weight of the others, then
/// everything is scaled to mean 1. `None` when `cls_pw == 0` or no class has a label (weights off).
pub fn class_weights_from_counts(counts: &[f32], cls_pw: f32) -> Option<Vec<f32>> {
    assert!((0.0..=1.0).contains(&cls_pw), "cls_pw must be in [0, 1]");
    if cls_pw == 0.0 || !counts.iter().any(|&c| c > 0.0) {
        return None;
    }
    // f64 as numpy does, rounded to f32 at the end
    let w: Vec<f64> =
        counts.iter().map(|&c| (1.0 / if c > 0.0 { c as f64 } else { 1.0 }).powf(cls_pw as f64)).collect();
    let present: Vec<f64> = w.iter().zip(counts).filter(|(_, &c)| c > 0.0).map(|(&w, _)| w).collect();
    let fill = present.iter().sum::<f64>() / present.len() as f64;
    let w: Vec<f64> = w.iter().zip(counts).map(|(&w, &c)| if c > 0.0 { w } else { fill }).collect();
    let mean = w.iter().sum::<f64>() / w.len() as f64;
    Some(w.iter().map(|&v| (v / mean) as f32).collect())
}

/// Names of the three loss columns as Ultralytics prints them: the third is `dfl_loss` with DFL
/// (`reg_max > 1`) and `l1_loss` without (YOLO26).
pub fn loss_names(reg_max: usize) -> [&'static str; 3] {
    if reg_max > 1 {
        ["box_loss", "cls_loss", "dfl_loss"]
    } else {
        ["box_loss", "cls_loss", "l1_loss"]
    }
}

/// Result of a loss evaluation.
#[derive(Debug, Clone)]
pub struct LossOutput<B: Backend> {
    /// Scalar `[1]` to call `backward` on: sum of the gain-scaled components times the batch size.
    pub total: Tensor<B, 1>,
    /// Gain-scaled `(box, cls, dfl|l1)` components `[3]`, without the batch factor (what Ultralytics
    /// prints), detached and left on the device: the trainer reads them together with its gradient
    /// statistics, in one read.
    pub parts: Tensor<B, 1>,
    /// Column names of the components.
    pub names: [&'static str; 3],
    /// Number of foreground anchors (diagnostics).
    pub num_fg: usize,
    /// `max(sum of target scores, 1)` (diagnostics).
    pub target_scores_sum: f32,
}

impl<B: Backend> LossOutput<B> {
    /// The components on the host (one device read).
    pub fn components(&self) -> [f32; 3] {
        let v = read_f32(self.parts.clone(), Purpose::Other);
        [v[0], v[1], v[2]]
    }
}

/// One branch's loss as a differentiable `[3]` tensor (gain-scaled, no batch factor) plus diagnostics.
#[derive(Debug, Clone)]
pub struct BranchLoss<B: Backend> {
    pub parts: Tensor<B, 1>,
    pub batch_size: usize,
    pub num_fg: usize,
    pub target_scores_sum: f32,
    pub assignment: Assignment,
}

/// The detection loss of one head branch.
#[derive(Debug, Clone)]
pub struct DetectionLoss {
    pub config: DetectionLossConfig,
}

impl DetectionLoss {
    pub fn new(config: DetectionLossConfig) -> Self {
        Self { config }
    }

    pub fn names(&self) -> [&'static str; 3] {
        loss_names(self.config.reg_max)
    }

    /// Loss of the head's one-to-many branch, as Ultralytics' `loss(preds, batch)`.
    pub fn forward<B: Backend>(&self, preds: DetectOutput<B>, targets: &TargetBatch) -> LossOutput<B> {
        let br = self.branch(preds.one2many, &preds.feature_sizes, &preds.strides, targets);
        LossOutput {
            total: br.parts.clone().sum().mul_scalar(br.batch_size as f32),
            parts: br.parts.detach(),
            names: self.names(),
            num_fg: br.num_fg,
            target_scores_sum: br.target_scores_sum,
        }
    }

    /// The loss components of one branch as a tensor, before the batch factor. `head.boxes`:
    /// `[b, 4 * reg_max, A]`; `head.scores`: class logits `[b, nc, A]`; `feature_sizes`: `(h, w)` per level.
    pub fn branch<B: Backend>(
        &self,
        head: HeadOutput<B>,
        feature_sizes: &[[usize; 2]],
        strides: &[f32],
        targets: &TargetBatch,
    ) -> BranchLoss<B> {
        let cfg = &self.config;
        let boxes = to_f32(head.boxes);
        let scores = to_f32(head.scores);
        let [bs, c, na] = boxes.dims();
        let [bs2, nc, na2] = scores.dims();
        let r = cfg.reg_max;
        assert_eq!(c, 4 * r, "boxes must have 4 * reg_max channels");
        assert_eq!((bs, na), (bs2, na2), "boxes and scores disagree on batch or anchors");
        assert_eq!(nc, cfg.num_classes, "scores must have num_classes channels");
        assert_eq!(targets.batch_size(), bs, "targets and predictions disagree on batch size");
        let device = boxes.device();

        let anchors = make_anchors(feature_sizes, strides, 0.5);
        assert_eq!(anchors.len(), na, "feature sizes do not match the number of anchors");
        // Input size as Ultralytics derives it: first level's size times its stride.
        let imgsz = [feature_sizes[0][0] as f32 * strides[0], feature_sizes[0][1] as f32 * strides[0]];
        let gt = targets.padded(imgsz);
        let m = gt.max_boxes;

        // Assignment (no gradient).
        let assigner = TaskAlignedAssigner::new(AssignerConfig {
            alpha: cfg.alpha,
            beta: cfg.beta,
            ..AssignerConfig::new(cfg.topk, cfg.topk2, nc, strides)
        });
        let assignment = if m == 0 {
            assigner.assign(&[], &vec![[0.0; 4]; bs * na], &vec![[0.0; 2]; na], &gt)
        } else {
            // Decoded boxes of all anchors, pixel xyxy, on the host.
            let ltrb = decode_host(&read_f32(boxes.clone().detach(), Purpose::Assigner), bs, r, na);
            let mut pred_px = Vec::with_capacity(bs * na);
            for b in 0..bs {
                let d = &ltrb[b * 4 * na..(b + 1) * 4 * na];
                for a in 0..na {
                    let [ax, ay] = anchors.points[a];
                    let s = anchors.strides[a];
                    let (l, t, rr, bb) = (d[a], d[na + a], d[2 * na + a], d[3 * na + a]);
                    pred_px.push([(ax - l) * s, (ay - t) * s, (ax + rr) * s, (ay + bb) * s]);
                }
            }
            let anchor_px: Vec<[f32; 2]> =
                anchors.points.iter().zip(&anchors.strides).map(|(p, &s)| [p[0] * s, p[1] * s]).collect();
            let lookup = GtClassScores::read(scores.clone(), &gt);
            assigner.assign_with(|b, m, a| lookup.get(b, m, a), &pred_px, &anchor_px, &gt)
        };

        let fg_idx = assignment.fg_indices();
        let tss = assignment.target_scores_sum().max(1.0);

        // Class loss: sum of BCE-with-logits = sum(x - log_sigmoid(x)) - sum over targets of t * x,
        // each term times its class weight when there are class weights.
        let weights = cfg.class_weights.as_ref();
        let mut cls_sum = match weights {
            Some(w) => {
                let w = Tensor::<B, 3>::from_data(TensorData::new(w.clone(), [1, nc, 1]), &device);
                ((scores.clone() - log_sigmoid(scores.clone())) * w).sum()
            }
            None => softplus_sum(scores.clone()),
        };
        if !fg_idx.is_empty() {
            let pos: Vec<i64> = fg_idx
                .iter()
                .map(|&i| {
                    let (b, a) = (i / na, i % na);
                    ((b * nc + assignment.target_labels[i]) * na + a) as i64
                })
                .collect();
            let t: Vec<f32> = fg_idx
                .iter()
                .map(|&i| {
                    let t = assignment.target_scores[i];
                    weights.map_or(t, |w| t * w[assignment.target_labels[i]])
                })
                .collect();
            let n = pos.len();
            let pos = Tensor::<B, 1, Int>::from_data(TensorData::new(pos, [n]), &device);
            let t = Tensor::<B, 1>::from_data(TensorData::new(t, [n]), &device);
            let flat_scores = scores.clone().reshape([bs * nc * na]);
            cls_sum = cls_sum - (flat_scores.select(0, pos) * t).sum();
        }
        let loss_cls = cls_sum.div_scalar(tss);

        // Box losses on the foreground anchors.
        let (loss_box, loss_dfl) = if fg_idx.is_empty() {
            (Tensor::<B, 1>::zeros([1], &device), Tensor::<B, 1>::zeros([1], &device))
        } else {
            let n = fg_idx.len();
            let mut fg = FgTargets::default();
            for &i in &fg_idx {
                let a = i % na;
                let s = anchors.strides[a];
                let tb = assignment.target_boxes[i];
                fg.anchors.push(anchors.points[a]);
                fg.strides.push(s);
                fg.boxes.push([tb[0] / s, tb[1] / s, tb[2] / s, tb[3] / s]);
                fg.weights.push(assignment.target_scores[i]);
            }
            // Gather the foreground columns straight from the flat [b, c, A] layout (no transpose of the
            // whole tensor): row i of `pred` holds the c channels of foreground anchor i.
            let mut idx: Vec<i64> = Vec::with_capacity(n * c);
            for &i in &fg_idx {
                let (b, a) = (i / na, i % na);
                idx.extend((0..c).map(|k| ((b * c + k) * na + a) as i64));
            }
            let idx = Tensor::<B, 1, Int>::from_data(TensorData::new(idx, [n * c]), &device);
            let pred = boxes.reshape([bs * c * na]).select(0, idx).reshape([n, c]);
            BboxLoss::new(r).forward(pred, &fg, tss, imgsz)
        };

        let parts = Tensor::cat(
            vec![
                loss_box.mul_scalar(cfg.box_gain),
                loss_cls.mul_scalar(cfg.cls_gain),
                loss_dfl.mul_scalar(cfg.dfl_gain),
            ],
            0,
        );
        BranchLoss { parts, batch_size: bs, num_fg: fg_idx.len(), target_scores_sum: tss, assignment }
    }
}

/// Decode raw box outputs `[b, 4 * reg_max, A]` (host copy) to `ltrb` distances `[b, 4, A]` in grid units:
/// softmax over the bins then the expectation (as Ultralytics' `softmax(3).matmul(proj)`), or the raw values
/// when `reg_max == 1`.
pub fn decode_host(raw: &[f32], bs: usize, reg_max: usize, na: usize) -> Vec<f32> {
    assert_eq!(raw.len(), bs * 4 * reg_max * na);
    if reg_max == 1 {
        return raw.to_vec();
    }
    let r = reg_max;
    let mut out = vec![0f32; bs * 4 * na];
    // One (image, side) group at a time, in parallel: max, exp, normalise, expectation over the bins.
    out.par_chunks_mut(na).zip(raw.par_chunks(r * na)).for_each(|(o, group)| {
        let mut mx = vec![f32::NEG_INFINITY; na];
        for row in group.chunks_exact(na) {
            for (m, &x) in mx.iter_mut().zip(row) {
                *m = m.max(x);
            }
        }
        let mut z = vec![0f32; na];
        let mut ex = vec![0f32; r * na];
        for (row, e) in group.chunks_exact(na).zip(ex.chunks_exact_mut(na)) {
            for a in 0..na {
                e[a] = (row[a] - mx[a]).exp();
                z[a] += e[a];
            }
        }
        for (j, e) in ex.chunks_exact(na).enumerate() {
            for a in 0..na {
                o[a] += (e[a] / z[a]) * j as f32;
            }
        }
    });
    out
}
