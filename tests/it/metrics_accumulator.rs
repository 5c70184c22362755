//! Edge cases of the per-image accumulator and the printed table.

use ember::metrics::{DetectionAccumulator, DetectionMetrics};
use ember::postprocess::Detection;

fn det(b: [f32; 4], score: f32, class: usize) -> Detection {
    Detection { xyxy: b, score, class }
}

#[test]
fn empty_run_is_all_zero() {
    let m = DetectionAccumulator::new(3).finish();
    assert_eq!((m.images, m.instances), (0, 0));
    assert_eq!(m.mean_results(), [0.0; 4]);
    assert_eq!(m.fitness, 0.0);
    assert!(m.per_class.is_empty());
    assert_eq!(m.maps(), vec![0.0; 3]);
    let t = m.format_table(&[]);
    assert_eq!(t.lines().count(), 2);
    assert_eq!(
        t.lines().nth(1).unwrap(),
        format!("{:>22}{:>11}{:>11}{:>11}{:>11}{:>11}{:>11}", "all", 0, 0, 0, 0, 0, 0)
    );
}

#[test]
fn header_matches_ultralytics() {
    assert_eq!(
        DetectionMetrics::header(),
        "                 Class     Images  Instances      Box(P          R      mAP50  mAP50-95)"
    );
}

#[test]
fn perfect_predictions() {
    let mut acc = DetectionAccumulator::new(2);
    let gt = [[0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 40.0, 40.0]];
    let preds = [det(gt[0], 0.9, 0), det(gt[1], 0.8, 1)];
    acc.add_image(&preds, &gt, &[0, 1]).unwrap();
    let m = acc.finish();
    assert!((m.map50 - 0.995).abs() < 1e-12);
    assert!((m.map50_95 - 0.995).abs() < 1e-12);
    assert!((m.precision - 1.0).abs() < 1e-9 && (m.recall - 1.0).abs() < 1e-9);
    assert_eq!(m.fitness, m.map50_95);
    assert_eq!(m.per_class.len(), 2);
    assert_eq!((m.per_class[1].images, m.per_class[1].instances), (1, 1));
}

#[test]
fn missing_predictions_and_missing_labels() {
    let mut acc = DetectionAccumulator::new(2);
    // labels, no predictions
    acc.add_image(&[], &[[0.0, 0.0, 10.0, 10.0]], &[0]).unwrap();
    // predictions, no labels (false positives of class 1, which has no labels anywhere)
    acc.add_image(&[det([0.0, 0.0, 5.0, 5.0], 0.7, 1)], &[], &[]).unwrap();
    let m = acc.finish();
    assert_eq!((m.images, m.instances), (2, 1));
    assert_eq!(m.per_class.len(), 1, "only classes present in the labels get a row");
    assert_eq!(m.map50, 0.0);
    assert_eq!(m.nt_per_class, vec![1, 0]);
}

#[test]
fn order_of_predictions_does_not_matter() {
    let gt = [[0.0, 0.0, 10.0, 10.0], [50.0, 50.0, 70.0, 70.0]];
    let preds = vec![
        det([0.0, 0.0, 10.0, 9.0], 0.4, 0),
        det([0.5, 0.0, 10.0, 10.0], 0.9, 0),
        det([50.0, 52.0, 70.0, 70.0], 0.6, 0),
        det([100.0, 100.0, 120.0, 120.0], 0.8, 0),
    ];
    let mut a = DetectionAccumulator::new(1);
    a.add_image(&preds, &gt, &[0, 0]).unwrap();
    let mut rev = preds.clone();
    rev.reverse();
    let mut b = DetectionAccumulator::new(1);
    b.add_image(&rev, &gt, &[0, 0]).unwrap();
    let (ma, mb) = (a.finish(), b.finish());
    assert_eq!(ma.mean_results(), mb.mean_results());
    // one class: Ultralytics prints only the `all` row
    assert_eq!(ma.format_table(&["x".into()]).lines().count(), 2);
}

#[test]
fn bad_input_is_an_error() {
    let mut acc = DetectionAccumulator::new(2);
    assert!(acc.add_image(&[], &[[0.0, 0.0, 1.0, 1.0]], &[]).is_err());
    assert!(acc.add_image(&[], &[[0.0, 0.0, 1.0, 1.0]], &[2]).is_err());
    assert!(acc.add_image(&[det([0.0, 0.0, 1.0, 1.0], 0.5, 5)], &[], &[]).is_err());
    assert_eq!(acc.images(), 0);
}

#[test]
fn confusion_matrix_is_collected() {
    let mut acc = DetectionAccumulator::new(2).with_confusion_matrix(0.001, 0.45);
    acc.add_image(&[det([0.0, 0.0, 10.0, 10.0], 0.9, 1)], &[[0.0, 0.0, 10.0, 10.0]], &[0]).unwrap();
    let cm = acc.confusion_matrix().unwrap();
    assert_eq!(cm.get(1, 0), 1.0);
}
