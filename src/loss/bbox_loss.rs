//! Box regression loss on the foreground anchors: CIoU, plus DFL (`reg_max > 1`) or an L1 loss on
//! image-normalised `ltrb` distances (`reg_max == 1`, YOLO26).

use burn::tensor::{
    activation::{log_softmax, softmax},
    backend::Backend,
    Tensor, TensorData,
};

use super::boxes::{bbox2dist_host, bbox_ciou, dist2bbox};

/// Foreground anchors of one batch, host side; all vectors have one entry per foreground anchor.
#[derive(Debug, Clone, Default)]
pub struct FgTargets {
    /// Anchor centre in grid units of its level.
    pub anchors: Vec<[f32; 2]>,
    pub strides: Vec<f32>,
    /// Assigned box in grid units (pixel box divided by the anchor's stride).
    pub boxes: Vec<[f32; 4]>,
    /// Weight: the anchor's target score summed over classes.
    pub weights: Vec<f32>,
}

impl FgTargets {
    pub fn len(&self) -> usize {
        self.anchors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.anchors.is_empty()
    }
}

/// Decode raw box outputs `[N, 4 * reg_max]` to `ltrb` distances `[N, 4]` in grid units
/// (expectation of the softmax over bins for `reg_max > 1`, the raw values for `reg_max == 1`).
pub fn decode_distances<B: Backend>(pred_dist: Tensor<B, 2>, reg_max: usize) -> Tensor<B, 2> {
    let [n, c] = pred_dist.dims();
    assert_eq!(c, 4 * reg_max, "box channels must be 4 * reg_max");
    if reg_max == 1 {
        return pred_dist;
    }
    let device = pred_dist.device();
    let proj = Tensor::<B, 1>::from_data(
        TensorData::new((0..reg_max).map(|i| i as f32).collect::<Vec<_>>(), [reg_max]),
        &device,
    )
    .reshape([1, 1, reg_max]);
    let p = softmax(pred_dist.reshape([n, 4, reg_max]), 2);
    (p * proj).sum_dim(2).reshape([n, 4])
}

/// CIoU + DFL/L1 box loss (Ultralytics `BboxLoss`).
#[derive(Debug, Clone)]
pub struct BboxLoss {
    pub reg_max: usize,
}

impl BboxLoss {
    pub fn new(reg_max: usize) -> Self {
        assert!(reg_max >= 1);
        Self { reg_max }
    }

    /// `pred_dist`: raw box outputs of the foreground anchors `[N, 4 * reg_max]` (N > 0), in the order of `fg`.
    /// `imgsz`: network input `(h, w)`. Returns `(iou_loss, dfl_or_l1_loss)`, each `[1]`, both divided by
    /// `target_scores_sum` and not yet multiplied by their gains.
    pub fn forward<B: Backend>(
        &self,
        pred_dist: Tensor<B, 2>,
        fg: &FgTargets,
        target_scores_sum: f32,
        imgsz: [f32; 2],
    ) -> (Tensor<B, 1>, Tensor<B, 1>) {
        let n = fg.len();
        assert!(n > 0, "BboxLoss needs at least one foreground anchor");
        assert_eq!(pred_dist.dims()[0], n);
        let device = pred_dist.device();
        let r = self.reg_max;
        let t2 = |v: Vec<f32>, c: usize| Tensor::<B, 2>::from_data(TensorData::new(v, [n, c]), &device);
        let anchors = t2(fg.anchors.iter().flatten().copied().collect(), 2);
        let targets = t2(fg.boxes.iter().flatten().copied().collect(), 4);
        let weights = t2(fg.weights.clone(), 1);

        let ltrb = decode_distances(pred_dist.clone(), r);
        let pred_boxes = dist2bbox(ltrb.clone(), anchors);
        let ciou = bbox_ciou(pred_boxes, targets);
        let loss_iou = (ciou.neg().add_scalar(1.0) * weights.clone()).sum().div_scalar(target_scores_sum);

        let loss_dist = if r > 1 {
            // Distribution focal loss: cross-entropy against the two bins around the target distance.
            let mut w = vec![0f32; n * 4 * r];
            for i in 0..n {
                let d = bbox2dist_host(fg.anchors[i], fg.boxes[i], Some((r - 1) as f32));
                for (s, &t) in d.iter().enumerate() {
                    let t = t.clamp(0.0, (r - 1) as f32 - 0.01);
                    let tl = t as usize; // t >= 0: truncation is floor
                    let wl = (tl + 1) as f32 - t;
                    let wr = 1.0 - wl;
                    w[(i * 4 + s) * r + tl] = wl;
                    w[(i * 4 + s) * r + tl + 1] = wr;
                }
            }
            let w = Tensor::<B, 3>::from_data(TensorData::new(w, [n, 4, r]), &device);
            let logp = log_softmax(pred_dist.reshape([n, 4, r]), 2);
            let per_side = (logp * w).sum_dim(2).reshape([n, 4]).neg();
            (per_side.mean_dim(1) * weights).sum().div_scalar(target_scores_sum)
        } else {
            // L1 on ltrb distances scaled to pixels and normalised by the image size.
            let (h, wd) = (imgsz[0], imgsz[1]);
            let mut t = Vec::with_capacity(n * 4);
            for i in 0..n {
                let d = bbox2dist_host(fg.anchors[i], fg.boxes[i], None);
                let s = fg.strides[i];
                t.extend([d[0] * s / wd, d[1] * s / h, d[2] * s / wd, d[3] * s / h]);
            }
            let target = t2(t, 4);
            let strides = t2(fg.strides.clone(), 1);
            let scale = Tensor::<B, 2>::from_data(TensorData::new(vec![wd, h, wd, h], [1, 4]), &device);
            let pred = ltrb * strides / scale;
            ((pred - target).abs().mean_dim(1) * weights).sum().div_scalar(target_scores_sum)
        };
        (loss_iou, loss_dist)
    }
}
