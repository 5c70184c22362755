//! Hand-made NMS and end-to-end post-processing cases.

use ember::postprocess::{
    end2end_postprocess, end2end_postprocess_predict, non_max_suppression, BoxFormat, Detection, End2EndOptions,
    NmsOptions,
};

/// Builds the flat `[4 + nc, anchors]` layout from per-anchor `(xywh, scores)`.
fn layout(rows: &[([f32; 4], Vec<f32>)], nc: usize) -> Vec<f32> {
    let n = rows.len();
    let mut out = vec![0f32; (4 + nc) * n];
    for (a, (b, s)) in rows.iter().enumerate() {
        for k in 0..4 {
            out[k * n + a] = b[k];
        }
        for c in 0..nc {
            out[(4 + c) * n + a] = s[c];
        }
    }
    out
}

fn run(rows: &[([f32; 4], Vec<f32>)], nc: usize, opts: &NmsOptions) -> Vec<Detection> {
    non_max_suppression(&layout(rows, nc), nc, rows.len(), BoxFormat::Xywh, opts).unwrap()
}

#[test]
fn overlapping_same_class_keeps_best() {
    let rows = vec![([50.0, 50.0, 20.0, 20.0], vec![0.6, 0.0]), ([51.0, 50.0, 20.0, 20.0], vec![0.9, 0.0])];
    let d = run(&rows, 2, &NmsOptions::predict());
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].score, 0.9);
    assert_eq!(d[0].class, 0);
    assert_eq!(d[0].xyxy, [41.0, 40.0, 61.0, 60.0]);
}

#[test]
fn disjoint_boxes_all_kept_sorted() {
    let rows = vec![
        ([10.0, 10.0, 10.0, 10.0], vec![0.3]),
        ([100.0, 100.0, 10.0, 10.0], vec![0.8]),
        ([200.0, 200.0, 10.0, 10.0], vec![0.5]),
    ];
    let d = run(&rows, 1, &NmsOptions::predict());
    let s: Vec<f32> = d.iter().map(|x| x.score).collect();
    assert_eq!(s, vec![0.8, 0.5, 0.3]);
}

#[test]
fn different_classes_class_aware_vs_agnostic() {
    let rows = vec![([50.0, 50.0, 20.0, 20.0], vec![0.9, 0.0]), ([50.0, 50.0, 20.0, 20.0], vec![0.0, 0.8])];
    let d = run(&rows, 2, &NmsOptions::predict());
    assert_eq!(d.len(), 2);
    assert_eq!((d[0].class, d[1].class), (0, 1));
    let d = run(&rows, 2, &NmsOptions { agnostic: true, ..NmsOptions::predict() });
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].class, 0);
}

#[test]
fn iou_threshold_is_strict() {
    // A = [0,0,20,10] (area 200), B = [0,0,10,10] (area 100): overlap 100, union 200 -> IoU exactly 0.5
    let rows = vec![([10.0, 5.0, 20.0, 10.0], vec![0.9]), ([5.0, 5.0, 10.0, 10.0], vec![0.8])];
    let keep_both = run(&rows, 1, &NmsOptions { iou_thres: 0.5, ..NmsOptions::predict() });
    assert_eq!(keep_both.len(), 2, "IoU == threshold must not suppress");
    let one = run(&rows, 1, &NmsOptions { iou_thres: 0.49, ..NmsOptions::predict() });
    assert_eq!(one.len(), 1);
}

#[test]
fn exact_ties_are_deterministic() {
    let rows = vec![
        ([10.0, 10.0, 10.0, 10.0], vec![0.5]),
        ([100.0, 100.0, 10.0, 10.0], vec![0.5]),
        ([10.5, 10.0, 10.0, 10.0], vec![0.5]),
    ];
    let d = run(&rows, 1, &NmsOptions::predict());
    // equal scores keep anchor order; anchor 2 overlaps anchor 0 and is suppressed
    assert_eq!(d.len(), 2);
    assert_eq!(d[0].xyxy[0], 5.0);
    assert_eq!(d[1].xyxy[0], 95.0);
    for _ in 0..5 {
        assert_eq!(run(&rows, 1, &NmsOptions::predict()), d);
    }
}

#[test]
fn max_det_caps_output() {
    let rows: Vec<_> = (0..50).map(|i| ([i as f32 * 30.0, 10.0, 10.0, 10.0], vec![0.3 + i as f32 * 0.01])).collect();
    let d = run(&rows, 1, &NmsOptions { max_det: 7, ..NmsOptions::predict() });
    assert_eq!(d.len(), 7);
    assert!(d.windows(2).all(|w| w[0].score >= w[1].score));
    assert!((d[0].score - 0.79).abs() < 1e-6);
}

#[test]
fn conf_threshold_is_strict() {
    let rows = vec![([10.0, 10.0, 10.0, 10.0], vec![0.25]), ([100.0, 10.0, 10.0, 10.0], vec![0.2501])];
    let d = run(&rows, 1, &NmsOptions::predict());
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].score, 0.2501);
}

#[test]
fn empty_input_and_bad_shape() {
    let d = non_max_suppression(&[], 3, 0, BoxFormat::Xywh, &NmsOptions::val()).unwrap();
    assert!(d.is_empty());
    assert!(non_max_suppression(&[0.0; 10], 3, 2, BoxFormat::Xywh, &NmsOptions::val()).is_err());
    assert!(non_max_suppression(&[0.0; 14], 3, 2, BoxFormat::Xywh, &NmsOptions::val()).is_ok());
    let bad = NmsOptions { conf_thres: 1.5, ..NmsOptions::val() };
    assert!(non_max_suppression(&[0.0; 14], 3, 2, BoxFormat::Xywh, &bad).is_err());
}

#[test]
fn multi_label_emits_each_class_above_conf() {
    let rows = vec![([50.0, 50.0, 20.0, 20.0], vec![0.6, 0.4, 0.0005])];
    let d = run(&rows, 3, &NmsOptions::val());
    assert_eq!(d.len(), 2);
    assert_eq!((d[0].class, d[1].class), (0, 1));
    let d = run(&rows, 3, &NmsOptions { multi_label: false, ..NmsOptions::val() });
    assert_eq!(d.len(), 1);
}

#[test]
fn class_filter() {
    let rows = vec![([50.0, 50.0, 20.0, 20.0], vec![0.9, 0.0]), ([150.0, 50.0, 20.0, 20.0], vec![0.0, 0.8])];
    let d = run(&rows, 2, &NmsOptions { classes: Some(vec![1]), ..NmsOptions::predict() });
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].class, 1);
}

#[test]
fn end2end_topk_then_conf() {
    // 4 anchors, 2 classes, xyxy boxes
    let rows = vec![
        ([0.0, 0.0, 10.0, 10.0], vec![0.9, 0.8]),
        ([0.0, 0.0, 10.0, 10.0], vec![0.1, 0.7]),
        ([20.0, 20.0, 30.0, 30.0], vec![0.05, 0.0]),
        ([40.0, 40.0, 50.0, 50.0], vec![0.3, 0.2]),
    ];
    let preds = layout(&rows, 2);
    // k = 2: top anchors by best score are 0 (0.9) and 1 (0.7); top pairs among them: (0,c0) 0.9, (0,c1) 0.8
    let opts = End2EndOptions { conf_thres: 0.25, max_det: 2, ..Default::default() };
    let d = end2end_postprocess(&preds, 2, 4, BoxFormat::Xyxy, &opts).unwrap();
    assert_eq!(d.len(), 2);
    assert_eq!((d[0].class, d[0].score), (0, 0.9));
    assert_eq!((d[1].class, d[1].score), (1, 0.8));
    // agnostic: one class per anchor
    let opts = End2EndOptions { conf_thres: 0.25, max_det: 2, agnostic: true, ..Default::default() };
    let d = end2end_postprocess(&preds, 2, 4, BoxFormat::Xyxy, &opts).unwrap();
    assert_eq!(d.len(), 2);
    assert_eq!((d[0].class, d[1].class), (0, 1));
    assert_eq!(d[1].score, 0.7);
    // default max_det 300 > anchors: k = 4; conf filter drops scores <= 0.25 and no NMS happens
    // predictor flavour: head top-k over max(max_det, 300) candidates, then at most max_det
    let opts = End2EndOptions { max_det: 3, ..End2EndOptions::predict() };
    let d = end2end_postprocess_predict(&preds, 2, 4, BoxFormat::Xyxy, &opts).unwrap();
    assert_eq!(d.iter().map(|x| x.score).collect::<Vec<_>>(), vec![0.9, 0.8, 0.7]);
    let d = end2end_postprocess(&preds, 2, 4, BoxFormat::Xyxy, &End2EndOptions::predict()).unwrap();
    let s: Vec<f32> = d.iter().map(|x| x.score).collect();
    assert_eq!(s, vec![0.9, 0.8, 0.7, 0.3]);
    assert!(end2end_postprocess(&[], 2, 0, BoxFormat::Xyxy, &End2EndOptions::val()).unwrap().is_empty());
}

#[test]
fn realistic_val_load_keeps_at_most_300_in_order() {
    // 8400 anchors x 80 classes at conf 0.001 with multi-label: up to max_nms = 30000 candidates enter NMS.
    // Its speed is a benchmark matter (BENCHMARKS.md), not asserted here.
    let (nc, anchors) = (80usize, 8400usize);
    let mut state = 0x9E3779B97F4A7C15u64;
    let mut rnd = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 40) as f32 / (1u64 << 24) as f32
    };
    let mut preds = vec![0f32; (4 + nc) * anchors];
    for a in 0..anchors {
        preds[a] = rnd() * 640.0;
        preds[anchors + a] = rnd() * 640.0;
        preds[2 * anchors + a] = 10.0 + rnd() * 200.0;
        preds[3 * anchors + a] = 10.0 + rnd() * 200.0;
        for c in 0..nc {
            let u = rnd();
            preds[(4 + c) * anchors + a] = u * u * u * u * 0.05;
        }
    }
    let d = non_max_suppression(&preds, nc, anchors, BoxFormat::Xywh, &NmsOptions::val()).unwrap();
    assert!(!d.is_empty() && d.len() <= 300);
    assert!(d.windows(2).all(|w| w[0].score >= w[1].score));
}
