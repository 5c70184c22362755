//! The task-aligned assigner as tensor operations on the device: no host read, and a fixed number of
//! kernels whatever the number of boxes. Each step is Ultralytics' (`select_candidates_in_gts`,
//! `get_box_metrics`, `select_topk_candidates`, `select_highest_overlaps`, `get_targets`) over dense
//! `[images, boxes, anchors]` tensors; a batch whose tensors would pass [`CHUNK_ELEMENTS`] is assigned a few
//! images at a time, which bounds the assigner's memory and adds a fixed number of kernels per chunk.

use burn::tensor::{backend::Backend, Int, Tensor};

use super::{AssignedTargets, AssignerConfig, GroundTruth, Predictions};
use crate::loss::boxes::{ciou, Corners};

/// Largest `images * boxes * anchors` of one chunk: 64 MiB per f32 `[images, boxes, anchors]` tensor, of
/// which the assignment holds about ten at its peak.
pub const CHUNK_ELEMENTS: usize = 1 << 24;

/// Assigns `gt` to the anchors of `preds` (see the module documentation of [`super`]).
pub fn assign<B: Backend>(config: &AssignerConfig, preds: &Predictions<B>, gt: &GroundTruth<B>) -> AssignedTargets<B> {
    let [b, _, a] = preds.scores.dims();
    let per_image = (gt.max_boxes * a).max(1);
    let chunk = (CHUNK_ELEMENTS / per_image).clamp(1, b);
    if chunk == b {
        return assign_images(config, preds, gt, 0..b);
    }
    let parts: Vec<_> =
        (0..b).step_by(chunk).map(|s| assign_images(config, preds, gt, s..(s + chunk).min(b))).collect();
    let cat3 = |f: &dyn Fn(&AssignedTargets<B>) -> Tensor<B, 3>| Tensor::cat(parts.iter().map(f).collect(), 0);
    let cat_int = |f: &dyn Fn(&AssignedTargets<B>) -> Tensor<B, 3, Int>| Tensor::cat(parts.iter().map(f).collect(), 0);
    AssignedTargets {
        fg: cat3(&|p| p.fg.clone()),
        gt_idx: cat_int(&|p| p.gt_idx.clone()),
        labels: cat_int(&|p| p.labels.clone()),
        boxes: [0, 1, 2, 3].map(|i| cat3(&|p| p.boxes[i].clone())),
        scores: cat3(&|p| p.scores.clone()),
    }
}

/// The assignment of images `range` of the batch.
fn assign_images<B: Backend>(
    config: &AssignerConfig,
    preds: &Predictions<B>,
    gt: &GroundTruth<B>,
    range: std::ops::Range<usize>,
) -> AssignedTargets<B> {
    let (n, m) = (range.len(), gt.max_boxes);
    let [_, nc, a] = preds.scores.dims();
    let images = |t: &Tensor<B, 3>| t.clone().narrow(0, range.start, n);
    let gt_boxes = gt.boxes.clone().map(|c| images(&c));
    let valid = images(&gt.valid);
    let rows = gt.score_rows.clone().narrow(0, range.start * m, n * m).sub_scalar((range.start * nc) as i64);

    let candidates = select_candidates_in_gts(&preds.anchors, gt.enlarged.clone().map(|c| images(&c)), config.eps)
        .mul(valid.clone());

    let scores = images(&preds.scores).reshape([n * nc, a]).select(0, rows).reshape([n, m, a]);
    let (align, overlaps) = box_metrics(config, scores, gt_boxes, preds.boxes.clone().map(|c| images(&c)), &candidates);
    let positive = select_topk_candidates(&align, config.topk) * candidates;
    let positive = select_highest_overlaps(positive, &overlaps);
    let positive = if config.second_filter() {
        let k2 = config.topk2.unwrap_or(config.topk);
        select_topk_candidates(&(align.clone() * positive.clone()), k2) * positive
    } else {
        positive
    };
    targets(config, gt, &range, align, overlaps, positive)
}

/// `[n, M, A]`: 1 where anchor `a`'s centre lies strictly inside (by more than `eps`) box `m` enlarged.
fn select_candidates_in_gts<B: Backend>(
    anchors: &[Tensor<B, 3>; 2],
    enlarged: Corners<B, 3>,
    eps: f32,
) -> Tensor<B, 3> {
    let [ax, ay] = anchors.clone();
    let [x1, y1, x2, y2] = enlarged;
    // Each difference is a full [n, M, A] tensor, so min_pair's operands share their shape (see loss::boxes).
    let inside = (ax.clone() - x1).min_pair(ay.clone() - y1).min_pair(x2 - ax).min_pair(y2 - ay);
    inside.greater_elem(eps).float()
}

/// The alignment metric `score^alpha * overlap^beta` and the overlaps (CIoU clamped at 0), both `[n, M, A]`
/// and zero outside the candidates. `scores`: class logits of each box's class, `[n, M, A]`.
fn box_metrics<B: Backend>(
    config: &AssignerConfig,
    scores: Tensor<B, 3>,
    gt_boxes: Corners<B, 3>,
    pred_boxes: Corners<B, 3>,
    candidates: &Tensor<B, 3>,
) -> (Tensor<B, 3>, Tensor<B, 3>) {
    let outside = candidates.clone().lower_equal_elem(0.0);
    // Non-candidates can pair a box with a degenerate prediction (NaN): masked, not multiplied.
    let overlaps = ciou(gt_boxes, pred_boxes).clamp_min(0.0);
    let overlaps = overlaps.clone().mask_fill(overlaps.is_nan().bool_or(outside.clone()), 0.0);
    let probability = burn::tensor::activation::sigmoid(scores);
    let weighted = if config.alpha == 0.5 { probability.sqrt() } else { probability.powf_scalar(config.alpha) };
    let align = weighted * overlaps.clone().powf_scalar(config.beta);
    // A NaN metric (a diverged prediction) never ranks among the top k.
    let align = align.clone().mask_fill(align.is_nan().bool_or(outside), 0.0);
    (align, overlaps)
}

/// `[n, M, A]`: 1 at the `k` anchors of largest metric of every box (a zero metric is never selected).
fn select_topk_candidates<B: Backend>(metrics: &Tensor<B, 3>, k: usize) -> Tensor<B, 3> {
    let [n, m, a] = metrics.dims();
    let device = metrics.device();
    let positive = metrics.clone().greater_elem(0.0).float();
    if k >= a {
        return positive;
    }
    let top = top_k_indices(metrics.clone(), k);
    let ones = Tensor::<B, 3>::ones([n, m, k], &device);
    let selected = Tensor::<B, 3>::zeros([n, m, a], &device).scatter(2, top, ones, burn::tensor::IndexingUpdateOp::Add);
    selected * positive
}

/// Indices of the `k` largest values along the last dimension: cubecl's top-k reduction, or on burn-flex, which
/// has none, a descending sort.
fn top_k_indices<B: Backend>(metrics: Tensor<B, 3>, k: usize) -> Tensor<B, 3, Int> {
    if crate::kernels::is_flex::<B>() {
        metrics.sort_descending_with_indices(2).1.narrow(2, 0, k)
    } else {
        metrics.argtopk(k, 2)
    }
}

/// An anchor positive for several boxes keeps only the box it overlaps most (the first such box on ties).
fn select_highest_overlaps<B: Backend>(positive: Tensor<B, 3>, overlaps: &Tensor<B, 3>) -> Tensor<B, 3> {
    let m = positive.dims()[1];
    let device = positive.device();
    let several = positive.clone().sum_dim(1).greater_elem(1.0);
    let box_index = Tensor::<B, 1, Int>::arange(0..m as i64, &device).float().reshape([1, m, 1]);
    let best = overlaps.clone().max_dim(1);
    // The lowest box index among those at the maximum, as `torch.max` returns it.
    let at_best = overlaps.clone().equal(best.expand(overlaps.dims()));
    let first = box_index.clone().expand(overlaps.dims()).mask_fill(at_best.bool_not(), m as f32).min_dim(1);
    let only_best = (box_index - first).equal_elem(0.0).float();
    positive.mask_where(several.expand(overlaps.dims()), only_best)
}

/// The targets of every anchor from the final positive mask: foreground, assigned box and class, and the
/// normalised alignment as its target score.
fn targets<B: Backend>(
    config: &AssignerConfig,
    gt: &GroundTruth<B>,
    range: &std::ops::Range<usize>,
    align: Tensor<B, 3>,
    overlaps: Tensor<B, 3>,
    positive: Tensor<B, 3>,
) -> AssignedTargets<B> {
    let [n, m, a] = positive.dims();
    let device = positive.device();
    let fg = positive.clone().sum_dim(1);
    // Each foreground anchor has one positive box: its index is the mask's weighted sum (exact in f32).
    let box_index = Tensor::<B, 1, Int>::arange(0..m as i64, &device).float().reshape([1, m, 1]);
    let gt_idx = (positive.clone() * box_index).sum_dim(1).int();
    let align = align * positive.clone();
    let best_align = align.clone().max_dim(2);
    let best_overlap = (overlaps * positive).max_dim(2);
    let scores = (align * best_overlap / best_align.add_scalar(config.eps)).max_dim(1);

    // Rows `image * M + box` of the flat ground truth, for every anchor.
    let image_rows = Tensor::<B, 1, Int>::arange(range.start as i64..range.end as i64, &device).reshape([n, 1, 1]);
    let rows = (gt_idx.clone() + image_rows.mul_scalar(m as i64)).reshape([n * a]);
    let all_rows = gt.valid.dims()[0] * m;
    let gather = |t: &Tensor<B, 3>| t.clone().reshape([all_rows]).select(0, rows.clone()).reshape([n, 1, a]);
    AssignedTargets {
        fg,
        labels: gt.classes.clone().select(0, rows.clone()).reshape([n, 1, a]),
        gt_idx,
        boxes: gt.boxes.clone().map(|c| gather(&c)),
        scores,
    }
}
