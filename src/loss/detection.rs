//! The YOLOv8-style detection loss (Ultralytics `v8DetectionLoss`, 8.4 behaviour).
//!
//! Inputs are one branch's raw head outputs: `boxes` `[b, 4 * reg_max, A]` and class logits `scores`
//! `[b, nc, A]`, anchors ordered level by level, row-major. Steps:
//! 1. decode the boxes of all anchors and assign the ground truth to them (the [`assigner`](super::assigner), on
//!    the device or, on the CPU backend, on the host);
//! 2. class loss: BCE with logits summed over all anchors and classes, against the soft one-hot targets,
//!    divided by `max(sum of target scores, 1)`;
//! 3. box loss, dense over the anchors with background weighing 0: `(1 - CIoU)` weighted by the target score,
//!    plus DFL (`reg_max > 1`) or the L1 loss on normalised `ltrb` (`reg_max == 1`), same normaliser;
//! 4. gains `box`, `cls`, `dfl`; the loss to differentiate is `(box + cls + dfl) * batch_size`
//!    (Ultralytics returns `loss * batch_size` and the trainer sums it), the printed items are the gain-scaled
//!    components without the batch factor.
//!
//! The maths runs in f32 whatever the prediction dtype (inputs are cast to f32 first).

use burn::tensor::{activation::log_sigmoid, backend::Backend, Tensor, TensorData};

use crate::nn::anchors::{make_anchors, Anchors};
use crate::nn::float::to_f32;
use crate::nn::{DetectOutput, HeadOutput};
use crate::readback::{read_f32, Purpose};

use super::assigner::{assign, assign_on, AssignedTargets, AssignerConfig, Predictions, Route};
use super::bbox_loss::{boxes_from_distances, decode_distances, AnchorGrid, BboxLoss, BoxTargets};
use super::boxes::Corners;
use super::softplus_sum::softplus_sum;
use super::targets::TargetBatch;

/// Settings of [`DetectionLoss`]; defaults are Ultralytics' for detection.
#[derive(Debug, Clone, PartialEq)]
pub struct DetectionLossConfig {
    /// Number of classes (`nc`): the channels of the class logits.
    pub num_classes: usize,
    /// DFL bins per box side (16 for YOLOv8/11); 1 for YOLO26, which then has the L1 loss instead of DFL.
    pub reg_max: usize,
    /// Assigner top-k (10; 7 for YOLO26's one-to-one branch).
    pub topk: usize,
    /// Second top-k of the assigner (`Some(1)` for YOLO26's one-to-one branch).
    pub topk2: Option<usize>,
    /// Exponent of the class score in the assigner's alignment metric (0.5).
    pub alpha: f32,
    /// Exponent of the CIoU in the assigner's alignment metric (6.0).
    pub beta: f32,
    /// Gain of the CIoU box loss (Ultralytics `box` hyperparameter, 7.5).
    pub box_gain: f32,
    /// Gain of the BCE class loss (Ultralytics `cls`, 0.5).
    pub cls_gain: f32,
    /// Gain of the DFL loss, or of the L1 loss when `reg_max == 1` (Ultralytics `dfl`, 1.5).
    pub dfl_gain: f32,
    /// Per-class weights of the class loss (Ultralytics `cls_pw > 0`, see [`class_weights_from_counts`]);
    /// `None`: all 1.
    pub class_weights: Option<Vec<f32>>,
}

impl DetectionLossConfig {
    /// Ultralytics' defaults (top-k 10, alpha 0.5, beta 6, gains 7.5 / 0.5 / 1.5, no class weights) for
    /// `num_classes` classes and `reg_max` bins.
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

    /// Sets the per-class weights of the class loss (one per class, else panics); `None`: all 1.
    pub fn with_class_weights(mut self, weights: Option<Vec<f32>>) -> Self {
        if let Some(w) = &weights {
            assert_eq!(w.len(), self.num_classes, "one class weight per class");
        }
        self.class_weights = weights;
        self
    }

    /// Sets the assigner's top-k and second top-k (see [`AssignerConfig`]).
    pub fn with_topk(mut self, topk: usize, topk2: Option<usize>) -> Self {
        self.topk = topk;
        self.topk2 = topk2;
        self
    }

    /// Sets the box, class and DFL/L1 gains (Ultralytics `box`, `cls`, `dfl`).
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

/// What the assigner reads: the scores and the decoded boxes in pixels, detached.
fn predictions<B: Backend>(
    scores: &Tensor<B, 3>,
    pred: &Corners<B, 3>,
    grid: &AnchorGrid<B>,
    anchors: &Anchors,
) -> Predictions<B> {
    let in_pixels = |t: &Tensor<B, 3>| t.clone().detach() * grid.stride.clone();
    Predictions {
        scores: scores.clone().detach(),
        boxes: [0, 1, 2, 3].map(|i| in_pixels(&pred[i])),
        anchors: [in_pixels(&grid.x), in_pixels(&grid.y)],
        anchor_points: anchors.points.iter().zip(&anchors.strides).map(|(p, &s)| [p[0] * s, p[1] * s]).collect(),
    }
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
    /// Number of foreground anchors `[1]`, on the device (diagnostics).
    pub num_fg: Tensor<B, 1>,
    /// `max(sum of target scores, 1)` `[1]`, on the device (diagnostics).
    pub target_scores_sum: Tensor<B, 1>,
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
    /// Gain-scaled `(box, cls, dfl|l1)` components `[3]`, differentiable, without the batch factor.
    pub parts: Tensor<B, 1>,
    /// Images in the batch: the factor the summed `parts` are multiplied by for the loss to differentiate.
    pub batch_size: usize,
    /// Foreground anchors `[1]` (detached).
    pub num_fg: Tensor<B, 1>,
    /// `max(sum of target scores, 1)` `[1]` (detached).
    pub target_scores_sum: Tensor<B, 1>,
}

/// The detection loss of one head branch.
#[derive(Debug, Clone)]
pub struct DetectionLoss {
    /// Classes, bins, assigner top-k and gains of this branch.
    pub config: DetectionLossConfig,
}

impl DetectionLoss {
    /// The loss of one branch with these settings.
    pub fn new(config: DetectionLossConfig) -> Self {
        Self { config }
    }

    /// Column names of the three components ([`loss_names`] of this `reg_max`).
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

    /// The assigner settings of this branch for a model with these strides.
    pub fn assigner_config(&self, strides: &[f32]) -> AssignerConfig {
        let cfg = &self.config;
        AssignerConfig {
            alpha: cfg.alpha,
            beta: cfg.beta,
            ..AssignerConfig::new(cfg.topk, cfg.topk2, cfg.num_classes, strides)
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
        assert_eq!(c, 4 * cfg.reg_max, "boxes must have 4 * reg_max channels");
        assert_eq!((bs, na), (bs2, na2), "boxes and scores disagree on batch or anchors");
        assert_eq!(nc, cfg.num_classes, "scores must have num_classes channels");
        assert_eq!(targets.batch_size(), bs, "targets and predictions disagree on batch size");
        let device = boxes.device();

        let anchors = make_anchors(feature_sizes, strides, 0.5);
        assert_eq!(anchors.len(), na, "feature sizes do not match the number of anchors");
        let grid = AnchorGrid::new(&anchors, &device);
        // Input size as Ultralytics derives it: first level's size times its stride.
        let imgsz = [feature_sizes[0][0] as f32 * strides[0], feature_sizes[0][1] as f32 * strides[0]];
        let ltrb = decode_distances(boxes.clone(), cfg.reg_max);
        let pred = boxes_from_distances(ltrb.clone(), &grid);
        let predictions = predictions(&scores, &pred, &grid, &anchors);
        let assigned = assign(&self.assigner_config(strides), &predictions, &targets.padded(imgsz));
        let tss = assigned.scores.clone().sum().clamp_min(1.0);

        let loss_cls = self.class_loss(scores, &assigned).div(tss.clone());
        let box_targets = BoxTargets {
            boxes: assigned.boxes.clone().map(|c| c / grid.stride.clone()),
            weights: assigned.scores.clone(),
            fg: assigned.fg.clone(),
            target_scores_sum: tss.clone(),
        };
        let (loss_box, loss_dist) = BboxLoss::new(cfg.reg_max).forward(boxes, ltrb, pred, &grid, &box_targets, imgsz);
        let parts = Tensor::cat(
            vec![
                loss_box.mul_scalar(cfg.box_gain),
                loss_cls.mul_scalar(cfg.cls_gain),
                loss_dist.mul_scalar(cfg.dfl_gain),
            ],
            0,
        );
        BranchLoss { parts, batch_size: bs, num_fg: assigned.fg.sum(), target_scores_sum: tss }
    }

    /// The assignment of one branch's raw outputs on `route` (the loss takes the backend's route): what the loss
    /// trains towards, for tests and benchmarks.
    pub fn assignment_on<B: Backend>(
        &self,
        route: Route,
        head: HeadOutput<B>,
        feature_sizes: &[[usize; 2]],
        strides: &[f32],
        targets: &TargetBatch,
    ) -> AssignedTargets<B> {
        let boxes = to_f32(head.boxes).detach();
        let scores = to_f32(head.scores).detach();
        let anchors = make_anchors(feature_sizes, strides, 0.5);
        let grid = AnchorGrid::new(&anchors, &boxes.device());
        let imgsz = [feature_sizes[0][0] as f32 * strides[0], feature_sizes[0][1] as f32 * strides[0]];
        let pred = boxes_from_distances(decode_distances(boxes, self.config.reg_max), &grid);
        let predictions = predictions(&scores, &pred, &grid, &anchors);
        assign_on(route, &self.assigner_config(strides), &predictions, &targets.padded(imgsz))
    }

    /// Sum over every anchor and class of BCE-with-logits against the targets, as
    /// `sum(x - log_sigmoid(x)) - sum over targets of t * x`: only the assigned class of a foreground anchor has a
    /// non-zero target. Each term times its class weight when there are class weights.
    fn class_loss<B: Backend>(&self, scores: Tensor<B, 3>, assigned: &AssignedTargets<B>) -> Tensor<B, 1> {
        let [b, nc, a] = scores.dims();
        let device = scores.device();
        let at_label = scores.clone().gather(1, assigned.labels.clone());
        let targets = assigned.scores.clone();
        match &self.config.class_weights {
            Some(w) => {
                let weights = Tensor::<B, 1>::from_data(TensorData::new(w.clone(), [nc]), &device);
                let per_label = weights.clone().select(0, assigned.labels.clone().reshape([b * a])).reshape([b, 1, a]);
                let all = ((scores.clone() - log_sigmoid(scores)) * weights.reshape([1, nc, 1])).sum();
                all - (at_label * targets * per_label).sum()
            }
            None => softplus_sum(scores) - (at_label * targets).sum(),
        }
    }
}
