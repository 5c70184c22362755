//! Unit tests of the loss building blocks on small hand-made cases.

use crate::common;

use burn::tensor::{FloatDType, Tensor, TensorData};
use ember::backend::Cpu;
use ember::loss::assigner::{AssignerConfig, TaskAlignedAssigner};
use ember::loss::boxes::{bbox2dist, bbox_ciou, ciou_host, dist2bbox};
use ember::loss::{
    loss_names, make_anchors, DetectionLoss, DetectionLossConfig, ImageTargets, O2mSchedule, TargetBatch,
};

fn t2(v: Vec<f32>, n: usize, c: usize) -> Tensor<Cpu, 2> {
    Tensor::from_data(TensorData::new(v, [n, c]), &Default::default())
}

#[test]
fn targets_pad_and_convert_non_square() {
    // input h 100, w 200; image 1 is background
    let tb = TargetBatch::from_flat(
        &[0, 2, 0],
        &[3, 5, 7],
        &[[0.5, 0.5, 0.2, 0.4], [0.25, 0.75, 0.1, 0.1], [0.1, 0.1, 0.1, 0.2]],
        3,
        [100, 200],
    );
    assert_eq!(tb.batch_size(), 3);
    assert_eq!(tb.max_boxes(), 2);
    assert_eq!(tb.num_boxes(), 3);
    let p = tb.padded([100.0, 200.0]);
    assert_eq!(p.classes, vec![3, 7, 0, 0, 5, 0]);
    assert_eq!(p.mask, vec![true, true, false, false, true, false]);
    assert_eq!(p.boxes_xyxy[0], [80.0, 30.0, 120.0, 70.0]);
    assert_eq!(p.boxes_xyxy[4], [40.0, 70.0, 60.0, 80.0]);
    assert_eq!(p.boxes_xyxy[2], [0.0; 4]);
    let (c, b, m) = tb.to_tensors::<Cpu>(&Default::default());
    assert_eq!(c.dims(), [3, 2, 1]);
    assert_eq!(b.dims(), [3, 2, 4]);
    assert_eq!(m.dims(), [3, 2, 1]);
    assert_eq!(m.into_data().to_vec::<bool>().unwrap(), vec![true, true, false, false, true, false]);
}

#[test]
fn anchors_order_and_strides() {
    let a = make_anchors(&[[2, 3], [1, 1]], &[8.0, 16.0], 0.5);
    assert_eq!(a.len(), 7);
    assert_eq!(a.points[0], [0.5, 0.5]);
    assert_eq!(a.points[1], [1.5, 0.5]);
    assert_eq!(a.points[3], [0.5, 1.5]);
    assert_eq!(a.points[6], [0.5, 0.5]);
    assert_eq!(a.strides, vec![8.0, 8.0, 8.0, 8.0, 8.0, 8.0, 16.0]);
}

#[test]
fn box_encodings_and_ciou() {
    let anchors = t2(vec![5.0, 5.0, 2.0, 3.0], 2, 2);
    let boxes = t2(vec![3.0, 4.0, 8.0, 9.0, 1.0, 1.0, 2.5, 3.5], 2, 4);
    let d = bbox2dist(anchors.clone(), boxes.clone(), None);
    assert_eq!(d.clone().into_data().to_vec::<f32>().unwrap(), vec![2.0, 1.0, 3.0, 4.0, 1.0, 2.0, 0.5, 0.5]);
    let back = dist2bbox(d, anchors.clone());
    assert_eq!(back.into_data().to_vec::<f32>().unwrap(), boxes.clone().into_data().to_vec::<f32>().unwrap());
    let clamped = bbox2dist(anchors, boxes, Some(1.5));
    assert!(clamped.into_data().to_vec::<f32>().unwrap().iter().all(|&v| (0.0..=1.49).contains(&v)));

    // identical boxes: CIoU ~ 1; disjoint: negative; tensor and host agree
    let a = [10.0, 10.0, 30.0, 40.0];
    let cases = [a, [12.0, 8.0, 33.0, 36.0], [50.0, 50.0, 60.0, 55.0]];
    let host: Vec<f32> = cases.iter().map(|&b| ciou_host(a, b)).collect();
    assert!((host[0] - 1.0).abs() < 1e-5);
    assert!(host[1] > 0.0 && host[1] < 1.0);
    assert!(host[2] < 0.0);
    let b1 = t2(cases.iter().flat_map(|_| a).collect(), 3, 4);
    let b2 = t2(cases.iter().flatten().copied().collect(), 3, 4);
    let t = bbox_ciou(b1, b2).into_data().to_vec::<f32>().unwrap();
    for (x, y) in t.iter().zip(&host) {
        assert!((x - y).abs() < 1e-6, "{x} vs {y}");
    }
}

/// One level, stride 8, 4x4 grid (32 x 32 input); anchors at 4, 12, 20, 28 px. Predicted boxes at every anchor
/// are `pred`, scores all `score`.
fn run_assigner(
    gt: &[(usize, [f32; 4])],
    pred: [f32; 4],
    topk: usize,
    topk2: Option<usize>,
    stride_val: f32,
) -> ember::loss::Assignment {
    let anchors = make_anchors(&[[4, 4]], &[8.0], 0.5);
    let px: Vec<[f32; 2]> = anchors.points.iter().map(|p| [p[0] * 8.0, p[1] * 8.0]).collect();
    let images = vec![ImageTargets::new(
        gt.iter().map(|g| g.0).collect(),
        gt.iter()
            .map(|(_, b)| {
                let w = b[2] - b[0];
                let h = b[3] - b[1];
                [(b[0] + w / 2.0) / 32.0, (b[1] + h / 2.0) / 32.0, w / 32.0, h / 32.0]
            })
            .collect(),
    )];
    let tb = TargetBatch::new(images, [32, 32]);
    let padded = tb.padded([32.0, 32.0]);
    let mut cfg = AssignerConfig::new(topk, topk2, 4, &[8.0]);
    cfg.stride_val = stride_val;
    let m = padded.max_boxes;
    let scores = vec![0.5f32; m * 16];
    TaskAlignedAssigner::new(cfg).assign(&scores, &vec![pred; 16], &px, &padded)
}

#[test]
fn assigner_enlarges_small_boxes_stal() {
    // 4 x 4 px box centred between anchors: no anchor centre strictly inside it.
    let gt = [(1, [14.0, 14.0, 18.0, 18.0])];
    let pred = [10.0, 10.0, 22.0, 22.0];
    assert_eq!(run_assigner(&gt, pred, 10, None, 4.0).num_fg(), 0, "no enlargement: no candidate");
    let a = run_assigner(&gt, pred, 10, None, 16.0);
    // enlarged to 16 x 16 about its centre: (8, 8, 24, 24) holds anchors 12 and 20 in x and y
    assert_eq!(a.num_fg(), 4);
    for i in a.fg_indices() {
        assert_eq!(a.target_labels[i], 1);
        assert_eq!(a.target_boxes[i], [14.0, 14.0, 18.0, 18.0], "targets keep the original box");
    }
}

#[test]
fn assigner_topk_conflicts_and_normalisation() {
    // Two overlapping boxes; all predictions equal box 0, so every shared anchor goes to box 0 (higher IoU).
    let gt = [(0, [0.0, 0.0, 24.0, 24.0]), (2, [8.0, 8.0, 32.0, 32.0])];
    let pred = [0.0, 0.0, 24.0, 24.0];
    let a = run_assigner(&gt, pred, 10, None, 16.0);
    // box 0 holds anchors {4,12,20}^2 = 9, box 1 holds {12,20,28}^2 = 9, shared {12,20}^2 = 4
    assert_eq!(a.num_fg(), 14);
    for i in a.fg_indices() {
        let (x, y) = (i % 4, i / 4);
        if x <= 2 && y <= 2 {
            assert_eq!(a.target_gt_idx[i], 0, "anchor ({x},{y}) should go to box 0");
        } else {
            assert_eq!(a.target_gt_idx[i], 1);
        }
    }
    // normalisation: the best target score of each box equals its best IoU among its positives
    let best0 =
        a.fg_indices().iter().filter(|&&i| a.target_gt_idx[i] == 0).map(|&i| a.target_scores[i]).fold(0.0, f32::max);
    assert!((best0 - ciou_host([0.0, 0.0, 24.0, 24.0], pred)).abs() < 1e-5, "{best0}");
    // top-k limits the positives per box
    let a = run_assigner(&gt, pred, 2, None, 16.0);
    assert!(a.num_fg() <= 4);
    // topk2 = 1: one positive per box
    let a = run_assigner(&gt, pred, 7, Some(1), 16.0);
    assert_eq!(a.num_fg(), 2);
}

#[test]
fn o2m_schedule_matches_ultralytics() {
    let s = O2mSchedule::new(10);
    assert!((s.o2m(0) - 0.8).abs() < 1e-7);
    assert!((s.o2o(0) - 0.2).abs() < 1e-7);
    assert!((s.o2m(3) - ((1.0 - 3.0 / 9.0) * 0.7 + 0.1) as f32).abs() < 1e-7);
    assert!((s.o2m(9) - 0.1).abs() < 1e-7);
    assert!((s.o2m(50) - 0.1).abs() < 1e-7);
    let one = O2mSchedule::new(1);
    assert!((one.o2m(0) - 0.8).abs() < 1e-7);
}

#[test]
fn loss_column_names() {
    assert_eq!(loss_names(16), ["box_loss", "cls_loss", "dfl_loss"]);
    assert_eq!(loss_names(1), ["box_loss", "cls_loss", "l1_loss"]);
}

/// Predictions in f16 are lifted to f32: the loss equals the f32 loss on the same (f16-rounded) values.
#[test]
fn half_precision_predictions_are_computed_in_f32() {
    let device = Default::default();
    let (b, r, nc, fs) = (2usize, 16usize, 3usize, [[4usize, 4usize], [2, 2]]);
    let na = 20;
    let mk = |c: usize, seed: u32| {
        let v: Vec<f32> =
            (0..b * c * na).map(|i| (((i as u32 * 2654435761u32) ^ seed) % 1000) as f32 / 250.0 - 2.0).collect();
        Tensor::<Cpu, 3>::from_data(TensorData::new(v, [b, c, na]), &device)
    };
    let boxes = mk(4 * r, 1).cast(FloatDType::F16);
    let scores = mk(nc, 7).cast(FloatDType::F16);
    let targets = TargetBatch::new(
        vec![
            ImageTargets::new(vec![0, 2], vec![[0.3, 0.3, 0.4, 0.5], [0.7, 0.6, 0.2, 0.2]]),
            ImageTargets::background(),
        ],
        [32, 32],
    );
    let loss = DetectionLoss::new(DetectionLossConfig::new(nc, r));
    let half = loss.forward(common::head_output(&[boxes.clone(), scores.clone()], &fs, &[8.0, 16.0], r), &targets);
    let wide = [boxes.cast(FloatDType::F32), scores.cast(FloatDType::F32)];
    let full = loss.forward(common::head_output(&wide, &fs, &[8.0, 16.0], r), &targets);
    assert_eq!(half.components(), full.components());
    assert!(half.num_fg.clone().into_scalar() > 0.0);
    assert!(half.components().iter().all(|c| c.is_finite()));
}
