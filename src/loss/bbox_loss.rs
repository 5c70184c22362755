//! Box regression loss, dense over every anchor: CIoU, plus DFL (`reg_max > 1`) or an L1 loss on
//! image-normalised `ltrb` distances (`reg_max == 1`, YOLO26), each weighted by the anchor's target score.
//! Background anchors weigh 0, so the sums equal Ultralytics' over the foreground anchors, and no host read is
//! needed to find them; their boxes are replaced by a fixed unit box first, so a degenerate prediction there
//! can put no NaN into the sums or the gradients.

use burn::tensor::{
    activation::{log_softmax, softmax},
    backend::Backend,
    Int, Tensor, TensorData,
};

use super::boxes::{ciou, Corners};
use crate::nn::anchors::Anchors;

/// Anchor centres (grid units of their level) and strides on the device, each `[1, 1, A]`.
#[derive(Debug, Clone)]
pub struct AnchorGrid<B: Backend> {
    /// Anchor centre x in grid units of its level (cell index + 0.5).
    pub x: Tensor<B, 3>,
    /// Anchor centre y in grid units of its level (cell index + 0.5).
    pub y: Tensor<B, 3>,
    /// Stride of each anchor's level: input pixels per grid unit.
    pub stride: Tensor<B, 3>,
}

impl<B: Backend> AnchorGrid<B> {
    /// One upload of the anchors.
    pub fn new(anchors: &Anchors, device: &B::Device) -> Self {
        let a = anchors.len();
        let mut v = Vec::with_capacity(3 * a);
        v.extend(anchors.points.iter().map(|p| p[0]));
        v.extend(anchors.points.iter().map(|p| p[1]));
        v.extend_from_slice(&anchors.strides);
        let t = Tensor::<B, 3>::from_data(TensorData::new(v, [1, 3, a]), device);
        AnchorGrid { x: t.clone().narrow(1, 0, 1), y: t.clone().narrow(1, 1, 1), stride: t.narrow(1, 2, 1) }
    }
}

/// Decodes raw box outputs `[b, 4 * reg_max, A]` to `ltrb` distances `[b, 4, A]` in grid units: the expectation of
/// the softmax over the bins (Ultralytics' `softmax(3).matmul(proj)`), or the raw values when `reg_max == 1`.
pub fn decode_distances<B: Backend>(raw: Tensor<B, 3>, reg_max: usize) -> Tensor<B, 3> {
    let [b, c, a] = raw.dims();
    assert_eq!(c, 4 * reg_max, "box channels must be 4 * reg_max");
    if reg_max == 1 {
        return raw;
    }
    let bins: Vec<f32> = (0..reg_max).map(|i| i as f32).collect();
    let proj = Tensor::<B, 4>::from_data(TensorData::new(bins, [1, 1, reg_max, 1]), &raw.device());
    (softmax(raw.reshape([b, 4, reg_max, a]), 2) * proj).sum_dim(2).reshape([b, 4, a])
}

/// Boxes `x1y1x2y2` (grid units) from `ltrb` distances `[b, 4, A]` around the anchors.
pub fn boxes_from_distances<B: Backend>(ltrb: Tensor<B, 3>, grid: &AnchorGrid<B>) -> Corners<B, 3> {
    let side = |i| ltrb.clone().narrow(1, i, 1);
    [grid.x.clone() - side(0), grid.y.clone() - side(1), grid.x.clone() + side(2), grid.y.clone() + side(3)]
}

/// What [`BboxLoss::forward`] compares, all dense over anchors.
#[derive(Debug, Clone)]
pub struct BoxTargets<B: Backend> {
    /// Assigned boxes in grid units, each corner `[b, 1, A]`.
    pub boxes: Corners<B, 3>,
    /// Target score of each anchor (0 for background): the weight of its box loss, `[b, 1, A]`.
    pub weights: Tensor<B, 3>,
    /// 1 for foreground anchors: `[b, 1, A]`.
    pub fg: Tensor<B, 3>,
    /// `max(sum of target scores, 1)`: `[1]`.
    pub target_scores_sum: Tensor<B, 1>,
}

/// CIoU + DFL/L1 box loss (Ultralytics `BboxLoss`).
#[derive(Debug, Clone)]
pub struct BboxLoss {
    /// DFL bins per box side (16 for YOLOv8/11); 1 means no DFL and the L1 loss instead (YOLO26).
    pub reg_max: usize,
}

impl BboxLoss {
    /// The box loss for `reg_max` bins per side; panics when `reg_max` is 0.
    pub fn new(reg_max: usize) -> Self {
        assert!(reg_max >= 1);
        Self { reg_max }
    }

    /// `raw`: the head's box outputs `[b, 4 * reg_max, A]`; `ltrb` and `pred`: their decoded distances and boxes
    /// (grid units); `imgsz`: network input `(h, w)`. Returns `(iou_loss, dfl_or_l1_loss)`, each `[1]`, divided by
    /// the target-score sum, before their gains.
    pub fn forward<B: Backend>(
        &self,
        raw: Tensor<B, 3>,
        ltrb: Tensor<B, 3>,
        pred: Corners<B, 3>,
        grid: &AnchorGrid<B>,
        targets: &BoxTargets<B>,
        imgsz: [f32; 2],
    ) -> (Tensor<B, 1>, Tensor<B, 1>) {
        let background = targets.fg.clone().lower_equal_elem(0.0);
        let unit_box = |c: [Tensor<B, 3>; 4]| {
            let [x1, y1, x2, y2] = c;
            let bg = || background.clone();
            [x1.mask_fill(bg(), 0.0), y1.mask_fill(bg(), 0.0), x2.mask_fill(bg(), 1.0), y2.mask_fill(bg(), 1.0)]
        };
        let target = unit_box(targets.boxes.clone());
        let tss = targets.target_scores_sum.clone();
        let weighted_sum = |per_anchor: Tensor<B, 3>| (per_anchor * targets.weights.clone()).sum().div(tss.clone());

        let iou = ciou(unit_box(pred), target.clone());
        let loss_iou = weighted_sum(iou.neg().add_scalar(1.0));

        let [b, _, a] = raw.dims();
        let r = self.reg_max;
        let to_anchor = target_distances(&target, grid);
        let loss_dist = if r > 1 {
            // Distribution focal loss: cross-entropy against the two bins around the target distance.
            let t = to_anchor.clamp(0.0, (r - 1) as f32 - 0.01);
            let left: Tensor<B, 3, Int> = t.clone().int();
            let weight_left = left.clone().float().add_scalar(1.0) - t;
            let weight_right = weight_left.clone().neg().add_scalar(1.0);
            let logp = log_softmax(raw.reshape([b, 4, r, a]), 2);
            let bin = |i: Tensor<B, 3, Int>| logp.clone().gather(2, i.reshape([b, 4, 1, a])).reshape([b, 4, a]);
            let per_side = (bin(left.clone()) * weight_left + bin(left.add_scalar(1)) * weight_right).neg();
            weighted_sum(per_side.mean_dim(1))
        } else {
            // L1 on ltrb distances scaled to pixels and normalised by the image size.
            let (h, w) = (imgsz[0], imgsz[1]);
            let size = Tensor::<B, 3>::from_data(TensorData::new(vec![w, h, w, h], [1, 4, 1]), &raw.device());
            let target = to_anchor * grid.stride.clone() / size.clone();
            // One shape for all three operands: cubecl's mask_where miscomputes broadcast ones (see loss::boxes).
            let pred = (ltrb * grid.stride.clone() / size).mask_where(background.expand(target.dims()), target.clone());
            weighted_sum((pred - target).abs().mean_dim(1))
        };
        (loss_iou, loss_dist)
    }
}

/// Distances `[b, 4, A]` from each anchor to its target box (grid units).
fn target_distances<B: Backend>(target: &Corners<B, 3>, grid: &AnchorGrid<B>) -> Tensor<B, 3> {
    let [x1, y1, x2, y2] = target.clone();
    Tensor::cat(vec![grid.x.clone() - x1, grid.y.clone() - y1, x2 - grid.x.clone(), y2 - grid.y.clone()], 1)
}
