//! The task-aligned assigner (TOOD; Ultralytics 8.4.190 `utils/tal.py`, `TaskAlignedAssigner`): which anchors
//! learn which ground-truth box, and how strongly.
//!
//! For every ground-truth box the candidates are the anchors whose centre lies strictly inside the box, after
//! enlarging box sides shorter than `stride_val` to `stride_val` about the box centre ("STAL"; the second model
//! stride, 16). Each candidate gets the alignment metric `score^alpha * CIoU^beta` (score: the predicted
//! probability of the box's class; CIoU against the *original* box, clamped at 0). The `topk` candidates by metric
//! become positives. An anchor positive for several boxes goes to the box it overlaps most. With `topk2 != topk`
//! (YOLO26's one-to-one branch) only the best `topk2` positives by metric survive per box. Each foreground anchor's
//! target score is `metric * max_IoU_of_box / max_metric_of_box`.
//!
//! Two implementations of the same rule: [`device`], tensor operations generic over the backend (what GPUs run:
//! no host read, a fixed number of kernels), and [`host`], a sparse host loop over each box's candidates, faster
//! on the CPU backend, where reading the predictions costs nothing. [`assign`] is the one dispatch between them;
//! both return [`AssignedTargets`], dense device tensors over every anchor, which the loss consumes.
//!
//! Candidates with a zero metric are never positives here. Ultralytics' `torch.topk` may pick them among tied
//! zeros, but as positives they carry a zero target score and a zero box weight, so the losses do not depend on
//! them; excluding them makes the assignment deterministic.

pub mod device;
pub mod host;

use burn::tensor::{backend::Backend, Int, Tensor, TensorData};

pub use host::{Assignment, TaskAlignedAssigner};

use super::boxes::Corners;
use super::targets::PaddedTargets;

/// Settings of the task-aligned assigner.
#[derive(Debug, Clone, PartialEq)]
pub struct AssignerConfig {
    /// Positives per box (10 for one-to-many, 7 for the one-to-one branch of YOLO26).
    pub topk: usize,
    /// Positives kept per box after conflict resolution; `None` means `topk` (no second filtering).
    pub topk2: Option<usize>,
    /// Number of classes of the model (`nc`): the rows of the class-score matrix.
    pub num_classes: usize,
    /// Exponent of the class score in the alignment metric (Ultralytics' detection loss: 0.5).
    pub alpha: f32,
    /// Exponent of the CIoU in the alignment metric (6.0).
    pub beta: f32,
    /// Boxes with a side shorter than this (pixels) are enlarged to it for candidate selection:
    /// the second model stride (or the first when there is only one level).
    pub stride_val: f32,
    /// Margin of the strictly-inside candidate test and guard of the target-score division (Ultralytics: 1e-9).
    pub eps: f32,
}

impl AssignerConfig {
    /// Ultralytics' detection-loss settings for a model with these strides.
    pub fn new(topk: usize, topk2: Option<usize>, num_classes: usize, strides: &[f32]) -> Self {
        let stride_val = if strides.len() > 1 { strides[1] } else { strides.first().copied().unwrap_or(8.0) };
        Self { topk, topk2, num_classes, alpha: 0.5, beta: 6.0, stride_val, eps: 1e-9 }
    }

    /// Whether the second, per-box filtering runs (YOLO26's one-to-one branch).
    fn second_filter(&self) -> bool {
        self.topk2.is_some_and(|k2| k2 != self.topk)
    }

    /// A box `x1y1x2y2` as the candidate test sees it: sides shorter than `stride_val` enlarged about the centre.
    fn enlarged(&self, b: [f32; 4]) -> [f32; 4] {
        use crate::postprocess::{xywh_to_xyxy, xyxy_to_xywh};
        let mut xywh = xyxy_to_xywh(b);
        xywh[2] = if xywh[2] < self.stride_val { self.stride_val } else { xywh[2] };
        xywh[3] = if xywh[3] < self.stride_val { self.stride_val } else { xywh[3] };
        xywh_to_xyxy(xywh)
    }
}

/// What the assigner reads of one head branch's predictions, detached, on the device.
#[derive(Debug, Clone)]
pub struct Predictions<B: Backend> {
    /// Class logits `[b, nc, A]` (f32).
    pub scores: Tensor<B, 3>,
    /// Decoded boxes in input pixels, coordinate-first: each corner `[b, 1, A]`.
    pub boxes: Corners<B, 3>,
    /// Anchor centres in input pixels, `(x, y)`, each `[1, 1, A]`.
    pub anchors: [Tensor<B, 3>; 2],
    /// The same anchor centres on the host.
    pub anchor_points: Vec<[f32; 2]>,
}

/// The assignment of one branch as dense tensors over every anchor of the batch (what Ultralytics' assigner
/// returns, with the target scores as one value per anchor: the score of the assigned class).
#[derive(Debug, Clone)]
pub struct AssignedTargets<B: Backend> {
    /// 1 for foreground anchors, else 0: `[b, 1, A]`.
    pub fg: Tensor<B, 3>,
    /// Index of the assigned box within its image (0 for background anchors): `[b, 1, A]`.
    pub gt_idx: Tensor<B, 3, Int>,
    /// Class of the assigned box (of box 0 for background anchors, as Ultralytics): `[b, 1, A]`.
    pub labels: Tensor<B, 3, Int>,
    /// Assigned box, input pixels, coordinate-first: each corner `[b, 1, A]`.
    pub boxes: Corners<B, 3>,
    /// Target score of the assigned class (0 for background): `[b, 1, A]`.
    pub scores: Tensor<B, 3>,
}

impl<B: Backend> AssignedTargets<B> {
    /// Everything background: a batch without labels.
    pub fn background(batch: usize, anchors: usize, device: &B::Device) -> Self {
        let zeros = || Tensor::<B, 3>::zeros([batch, 1, anchors], device);
        AssignedTargets {
            fg: zeros(),
            gt_idx: Tensor::zeros([batch, 1, anchors], device),
            labels: Tensor::zeros([batch, 1, anchors], device),
            boxes: [zeros(), zeros(), zeros(), zeros()],
            scores: zeros(),
        }
    }
}

/// The padded ground truth of a batch on the device, in the layouts the device assigner broadcasts with.
#[derive(Debug, Clone)]
pub struct GroundTruth<B: Backend> {
    /// Boxes, input pixels: each corner `[b, M, 1]`.
    pub boxes: Corners<B, 3>,
    /// Boxes as the candidate test sees them (small sides enlarged): each corner `[b, M, 1]`.
    pub enlarged: Corners<B, 3>,
    /// 1 for real boxes, 0 for padding: `[b, M, 1]`.
    pub valid: Tensor<B, 3>,
    /// Row `b * nc + class` of each box's class scores in the `[b * nc, A]` score matrix: `[b * M]`.
    pub score_rows: Tensor<B, 1, Int>,
    /// Class of each box, row `b * M + m`: `[b * M]`.
    pub classes: Tensor<B, 1, Int>,
    /// `M`: boxes per image after padding to the batch's largest image (0: no labels in the batch).
    pub max_boxes: usize,
}

impl<B: Backend> GroundTruth<B> {
    /// Uploads the padded targets (host data: no device read). `nc`: the number of classes.
    pub fn new(gt: &PaddedTargets, config: &AssignerConfig, device: &B::Device) -> Self {
        let (b, m) = (gt.batch_size, gt.max_boxes);
        // One upload: per box x1 y1 x2 y2, the enlarged box, validity.
        let mut rows = Vec::with_capacity(b * m * 9);
        for (r, bx) in gt.boxes_xyxy.iter().enumerate() {
            rows.extend_from_slice(bx);
            rows.extend_from_slice(&config.enlarged(*bx));
            rows.push(if gt.mask[r] { 1.0 } else { 0.0 });
        }
        let packed = Tensor::<B, 3>::from_data(TensorData::new(rows, [b, m, 9]), device);
        let column = |i| packed.clone().narrow(2, i, 1);
        let nc = config.num_classes;
        let mut ints = Vec::with_capacity(2 * b * m);
        ints.extend(gt.classes.iter().enumerate().map(|(r, &c)| ((r / m.max(1)) * nc + c) as i64));
        ints.extend(gt.classes.iter().map(|&c| c as i64));
        let ints = Tensor::<B, 1, Int>::from_data(TensorData::new(ints, [2 * b * m]), device);
        GroundTruth {
            boxes: [column(0), column(1), column(2), column(3)],
            enlarged: [column(4), column(5), column(6), column(7)],
            valid: column(8),
            score_rows: ints.clone().narrow(0, 0, b * m),
            classes: ints.narrow(0, b * m, b * m),
            max_boxes: m,
        }
    }
}

/// Which implementation [`assign`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Tensor operations on the device ([`device`]).
    Device,
    /// Predictions read back, the sparse host loop ([`host`]), targets uploaded.
    Host,
}

impl Route {
    /// The host loop on burn-flex, where it measures faster (BENCHMARKS.md) and a read costs no transfer;
    /// tensor operations everywhere else. `EMBER_ASSIGNER=device|host` overrides the choice (benchmarks, tests).
    pub fn for_backend<B: Backend>() -> Route {
        match std::env::var("EMBER_ASSIGNER").as_deref() {
            Ok("device") => Route::Device,
            Ok("host") => Route::Host,
            _ if crate::kernels::is_flex::<B>() => Route::Host,
            _ => Route::Device,
        }
    }
}

/// Assigns ground truth to the anchors of one branch, on the route this backend takes.
pub fn assign<B: Backend>(config: &AssignerConfig, preds: &Predictions<B>, gt: &PaddedTargets) -> AssignedTargets<B> {
    assign_on(Route::for_backend::<B>(), config, preds, gt)
}

/// Assigns on a given route (both routes give the same assignment; tests compare them).
pub fn assign_on<B: Backend>(
    route: Route,
    config: &AssignerConfig,
    preds: &Predictions<B>,
    gt: &PaddedTargets,
) -> AssignedTargets<B> {
    let [b, _, a] = preds.scores.dims();
    let device = preds.scores.device();
    if gt.max_boxes == 0 {
        return AssignedTargets::background(b, a, &device);
    }
    match route {
        Route::Device => device::assign(config, preds, &GroundTruth::new(gt, config, &device)),
        Route::Host => TaskAlignedAssigner::new(config.clone()).assign_read(preds, gt).to_device(&device),
    }
}
