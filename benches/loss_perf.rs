//! Timing of the loss at training size (640 input, batch 16, 80 classes, 10-30 boxes per image): forward and
//! backward of both heads' losses, then the task-aligned assigner's host time alone.
//!
//!     cargo bench --bench loss_perf

use std::time::Instant;

use burn::tensor::{Tensor, TensorData};
use ember::backend::CpuAutodiff;
use ember::loss::{DetectionLoss, DetectionLossConfig, E2eLoss, ImageTargets, TargetBatch};
use ember::model::{DetectOutput, HeadOutput};

fn main() {
    loss_speed_640_batch16();
    assigner_host_time_640_batch16();
}

/// The head's output from raw branch tensors: `[boxes, scores]` (one-to-many) or
/// `[boxes, scores, boxes, scores]` (one-to-many, then one-to-one).
fn head_output(
    t: &[Tensor<CpuAutodiff, 3>],
    feature_sizes: &[[usize; 2]],
    strides: &[f32],
    reg_max: usize,
) -> DetectOutput<CpuAutodiff> {
    let head = |i: usize| HeadOutput { boxes: t[i].clone(), scores: t[i + 1].clone() };
    DetectOutput {
        one2many: head(0),
        one2one: (t.len() == 4).then(|| head(2)),
        feature_sizes: feature_sizes.to_vec(),
        strides: strides.to_vec(),
        reg_max,
    }
}

fn pseudo(n: usize, seed: u64, scale: f32, shift: f32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * scale + shift
        })
        .collect()
}

fn targets(bs: usize) -> TargetBatch {
    let images = (0..bs)
        .map(|i| {
            let n = 10 + (i * 7) % 21;
            let v = pseudo(n * 4, i as u64 + 100, 1.0, 0.0);
            let boxes = v
                .chunks_exact(4)
                .map(|c| [0.1 + 0.8 * c[0], 0.1 + 0.8 * c[1], 0.02 + 0.3 * c[2], 0.02 + 0.3 * c[3]])
                .collect();
            ImageTargets::new((0..n).map(|j| (i + j) % 80).collect(), boxes)
        })
        .collect();
    TargetBatch::new(images, [640, 640])
}

fn loss_speed_640_batch16() {
    let device = Default::default();
    let (bs, nc) = (16, 80);
    let fs = [[80, 80], [40, 40], [20, 20]];
    let strides = [8.0, 16.0, 32.0];
    let na = 8400;
    let t = |c: usize, seed: u64, scale: f32, shift: f32| {
        Tensor::<CpuAutodiff, 3>::from_data(
            TensorData::new(pseudo(bs * c * na, seed, scale, shift), [bs, c, na]),
            &device,
        )
        .require_grad()
    };
    let tb = targets(bs);
    for (name, reg_max) in [("yolov8 (DFL)", 16usize), ("yolo26 (e2e, L1)", 1)] {
        for it in 0..3 {
            let inputs = if reg_max > 1 {
                vec![t(64, 1, 4.0, -2.0), t(nc, 2, 4.0, -6.0)]
            } else {
                vec![t(4, 3, 6.0, 0.0), t(nc, 4, 4.0, -6.0), t(4, 5, 6.0, 0.0), t(nc, 6, 4.0, -6.0)]
            };
            let start = Instant::now();
            let (total, fg) = if reg_max > 1 {
                let loss = DetectionLoss::new(DetectionLossConfig::new(nc, reg_max));
                let out = loss.forward(head_output(&inputs, &fs, &strides, reg_max), &tb);
                (out.total, out.num_fg.into_scalar())
            } else {
                let loss = E2eLoss::new(DetectionLossConfig::new(nc, reg_max), 100);
                let out = loss.forward(head_output(&inputs, &fs, &strides, reg_max), &tb, 0);
                (out.total, out.num_fg_one2many.into_scalar())
            };
            let fwd = start.elapsed();
            let _grads = total.backward();
            println!(
                "{name} iter {it}: forward {:.3}s, forward+backward {:.3}s, fg {fg}",
                fwd.as_secs_f64(),
                start.elapsed().as_secs_f64()
            );
        }
    }
}

/// The task-aligned assigner's host time for one branch at 640 px, batch 16, 80 classes, 10-30 boxes per
/// image: what a GPU step waits for while the host assigns (the device reads are not included).
fn assigner_host_time_640_batch16() {
    use ember::loss::{make_anchors, AssignerConfig, TaskAlignedAssigner};
    let (bs, nc) = (16, 80);
    let strides = [8.0, 16.0, 32.0];
    let anchors = make_anchors(&[[80, 80], [40, 40], [20, 20]], &strides, 0.5);
    let na = anchors.points.len();
    let gt = targets(bs).padded([640.0, 640.0]);
    let anchor_px: Vec<[f32; 2]> =
        anchors.points.iter().zip(&anchors.strides).map(|(p, &s)| [p[0] * s, p[1] * s]).collect();
    // Predicted boxes around each anchor and scores in (0, 1), as an early model gives them.
    let jitter = pseudo(bs * na * 4, 7, 40.0, 5.0);
    let pred: Vec<[f32; 4]> = (0..bs * na)
        .map(|i| {
            let [x, y] = anchor_px[i % na];
            let j = &jitter[i * 4..i * 4 + 4];
            [x - j[0], y - j[1], x + j[2], y + j[3]]
        })
        .collect();
    let scores = pseudo(bs * gt.max_boxes * na, 9, 1.0, 0.0);
    for (name, topk) in [("one-to-many (top 10)", 10), ("one-to-one (top 1)", 1)] {
        let assigner = TaskAlignedAssigner::new(AssignerConfig::new(topk, None, nc, &strides));
        let (mut times, mut fg) = (Vec::new(), 0);
        for _ in 0..5 {
            let start = Instant::now();
            let a = assigner.assign(&scores, &pred, &anchor_px, &gt);
            times.push(start.elapsed().as_secs_f64());
            fg = a.num_fg();
        }
        times.sort_by(f64::total_cmp);
        println!(
            "assigner {name}, 640 px, batch 16: median {:.1} ms, fastest {:.1} ms, fg {fg}",
            times[2] * 1e3,
            times[0] * 1e3
        );
    }
}
