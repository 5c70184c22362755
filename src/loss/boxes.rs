//! Box encodings and IoU / CIoU, on tensors (differentiable) and on the host (for the host assigner).
//!
//! A box is `x1, y1, x2, y2`: along the last dimension of one tensor, or as [`Corners`], four tensors that
//! broadcast together (so `[b, M, 1]` ground truth against `[b, 1, A]` predictions gives every pair, and
//! coordinate-first `[b, 4, A]` head outputs need no transpose).

use burn::tensor::{backend::Backend, Tensor};

/// Epsilon of Ultralytics' `bbox_iou`.
pub const IOU_EPS: f32 = 1e-7;

/// A box as its four coordinates `x1, y1, x2, y2`, one tensor each.
pub type Corners<B, const D: usize> = [Tensor<B, D>; 4];

/// The four coordinates of boxes laid out along `dim` (views, no copy).
pub fn corners<B: Backend, const D: usize>(boxes: Tensor<B, D>, dim: usize) -> Corners<B, D> {
    [0, 1, 2, 3].map(|i| boxes.clone().narrow(dim, i, 1))
}

/// Distances `(l, t, r, b)` from anchor points to a box `x1y1x2y2`.
pub fn dist2bbox<B: Backend, const D: usize>(distance: Tensor<B, D>, anchor_points: Tensor<B, D>) -> Tensor<B, D> {
    let lt = distance.clone().narrow(D - 1, 0, 2);
    let rb = distance.narrow(D - 1, 2, 2);
    Tensor::cat(vec![anchor_points.clone() - lt, anchor_points + rb], D - 1)
}

/// Box `x1y1x2y2` to distances `(l, t, r, b)` from the anchor points; clamped to `[0, reg_max - 0.01]`
/// when `reg_max` is given (Ultralytics passes `reg_max - 1` here for DFL).
pub fn bbox2dist<B: Backend, const D: usize>(
    anchor_points: Tensor<B, D>,
    bbox: Tensor<B, D>,
    reg_max: Option<f32>,
) -> Tensor<B, D> {
    let x1y1 = bbox.clone().narrow(D - 1, 0, 2);
    let x2y2 = bbox.narrow(D - 1, 2, 2);
    let d = Tensor::cat(vec![anchor_points.clone() - x1y1, x2y2 - anchor_points], D - 1);
    match reg_max {
        Some(r) => d.clamp(0.0, r - 0.01),
        None => d,
    }
}

/// Host version of [`bbox2dist`] for one anchor.
pub fn bbox2dist_host(anchor: [f32; 2], bbox: [f32; 4], reg_max: Option<f32>) -> [f32; 4] {
    let d = [anchor[0] - bbox[0], anchor[1] - bbox[1], bbox[2] - anchor[0], bbox[3] - anchor[1]];
    match reg_max {
        Some(r) => d.map(|v| v.clamp(0.0, r - 0.01)),
        None => d,
    }
}

/// Plain IoU of paired boxes (shape `[.., 4]` -> `[.., 1]`), with Ultralytics' epsilons.
pub fn bbox_iou<B: Backend, const D: usize>(box1: Tensor<B, D>, box2: Tensor<B, D>) -> Tensor<B, D> {
    iou_parts(corners(box1, D - 1), corners(box2, D - 1)).iou
}

/// IoU and the pieces CIoU reuses.
struct IouParts<B: Backend, const D: usize> {
    iou: Tensor<B, D>,
    b1: Corners<B, D>,
    b2: Corners<B, D>,
    /// `w1, h1, w2, h2` (heights with the epsilon added).
    sizes: [Tensor<B, D>; 4],
}

/// `a` and `b` as views of their common broadcast shape. cubecl 0.10's `mask_where` (and so `min_pair`,
/// `max_pair`) computes wrong values when its operands broadcast against each other in different dimensions
/// (`[n, M, 1]` with `[n, 1, A]`); on operands of one shape it is right.
fn broadcast<B: Backend, const D: usize>(a: Tensor<B, D>, b: Tensor<B, D>) -> (Tensor<B, D>, Tensor<B, D>) {
    let (da, db) = (a.dims(), b.dims());
    if da == db {
        return (a, b);
    }
    let shape: [usize; D] = std::array::from_fn(|i| da[i].max(db[i]));
    (a.expand(shape), b.expand(shape))
}

fn min_pair<B: Backend, const D: usize>(a: Tensor<B, D>, b: Tensor<B, D>) -> Tensor<B, D> {
    let (a, b) = broadcast(a, b);
    a.min_pair(b)
}

fn max_pair<B: Backend, const D: usize>(a: Tensor<B, D>, b: Tensor<B, D>) -> Tensor<B, D> {
    let (a, b) = broadcast(a, b);
    a.max_pair(b)
}

fn iou_parts<B: Backend, const D: usize>(b1: Corners<B, D>, b2: Corners<B, D>) -> IouParts<B, D> {
    let [b1x1, b1y1, b1x2, b1y2] = b1.clone();
    let [b2x1, b2y1, b2x2, b2y2] = b2.clone();
    let w1 = b1x2.clone() - b1x1.clone();
    let h1 = (b1y2.clone() - b1y1.clone()).add_scalar(IOU_EPS);
    let w2 = b2x2.clone() - b2x1.clone();
    let h2 = (b2y2.clone() - b2y1.clone()).add_scalar(IOU_EPS);
    let iw = (min_pair(b1x2, b2x2) - max_pair(b1x1, b2x1)).clamp_min(0.0);
    let ih = (min_pair(b1y2, b2y2) - max_pair(b1y1, b2y1)).clamp_min(0.0);
    let inter = iw * ih;
    let union = (w1.clone() * h1.clone() + w2.clone() * h2.clone() - inter.clone()).add_scalar(IOU_EPS);
    IouParts { iou: inter / union, b1, b2, sizes: [w1, h1, w2, h2] }
}

/// Complete IoU of boxes given by their corners, as Ultralytics' `bbox_iou(box1, box2, CIoU=True)`:
/// `IoU - (rho^2 / c^2 + v * alpha)`, with the trade-off `alpha` computed without gradient. The corners of the
/// two boxes broadcast against each other.
pub fn ciou<B: Backend, const D: usize>(box1: Corners<B, D>, box2: Corners<B, D>) -> Tensor<B, D> {
    let IouParts { iou, b1, b2, sizes: [w1, h1, w2, h2] } = iou_parts(box1, box2);
    let [b1x1, b1y1, b1x2, b1y2] = b1;
    let [b2x1, b2y1, b2x2, b2y2] = b2;
    let cw = max_pair(b1x2.clone(), b2x2.clone()) - min_pair(b1x1.clone(), b2x1.clone());
    let ch = max_pair(b1y2.clone(), b2y2.clone()) - min_pair(b1y1.clone(), b2y1.clone());
    let c2 = (cw.square() + ch.square()).add_scalar(IOU_EPS);
    let dx = b2x1 + b2x2 - b1x1 - b1x2;
    let dy = b2y1 + b2y2 - b1y1 - b1y2;
    let rho2 = (dx.square() + dy.square()).div_scalar(4.0);
    let v =
        ((w2 / h2).atan() - (w1 / h1).atan()).square().mul_scalar(4.0 / (std::f32::consts::PI * std::f32::consts::PI));
    let alpha = (v.clone().detach()
        / (iou.clone().detach().neg().add_scalar(1.0) + v.clone().detach()).add_scalar(IOU_EPS))
    .detach();
    iou - (rho2 / c2 + v * alpha)
}

/// Complete IoU of paired boxes (`[.., 4]` -> `[.., 1]`): [`ciou`] of their corners.
pub fn bbox_ciou<B: Backend, const D: usize>(box1: Tensor<B, D>, box2: Tensor<B, D>) -> Tensor<B, D> {
    ciou(corners(box1, D - 1), corners(box2, D - 1))
}

/// Host CIoU of two `x1y1x2y2` boxes, the same arithmetic as [`ciou`] in f32.
pub fn ciou_host(b1: [f32; 4], b2: [f32; 4]) -> f32 {
    let eps = IOU_EPS;
    let w1 = b1[2] - b1[0];
    let h1 = b1[3] - b1[1] + eps;
    let w2 = b2[2] - b2[0];
    let h2 = b2[3] - b2[1] + eps;
    let iw = (b1[2].min(b2[2]) - b1[0].max(b2[0])).max(0.0);
    let ih = (b1[3].min(b2[3]) - b1[1].max(b2[1])).max(0.0);
    let inter = iw * ih;
    let union = w1 * h1 + w2 * h2 - inter + eps;
    let iou = inter / union;
    let cw = b1[2].max(b2[2]) - b1[0].min(b2[0]);
    let ch = b1[3].max(b2[3]) - b1[1].min(b2[1]);
    let c2 = cw * cw + ch * ch + eps;
    let dx = b2[0] + b2[2] - b1[0] - b1[2];
    let dy = b2[1] + b2[3] - b1[1] - b1[3];
    let rho2 = (dx * dx + dy * dy) / 4.0;
    let da = (w2 / h2).atan() - (w1 / h1).atan();
    let v = (4.0 / (std::f32::consts::PI * std::f32::consts::PI)) * (da * da);
    let alpha = v / (1.0 - iou + v + eps);
    iou - (rho2 / c2 + v * alpha)
}
