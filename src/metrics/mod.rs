//! Detection metrics with the semantics of Ultralytics 8.4 (`utils/metrics.py`, `DetectionValidator`):
//! greedy matching at IoU 0.50:0.05:0.95, per-class AP (101-point interpolation of the precision envelope),
//! P/R at the max smoothed-mean-F1 confidence, mAP50, mAP50-95, fitness, confusion matrix, and COCO JSON writers.
//!
//! Typical use by a validator:
//! ```
//! use ember::metrics::DetectionAccumulator;
//! use ember::postprocess::Detection;
//! let mut acc = DetectionAccumulator::new(2);
//! let det = Detection { xyxy: [0.0, 0.0, 10.0, 10.0], score: 0.9, class: 0 };
//! acc.add_image(&[det], &[[0.0, 0.0, 10.0, 10.0]], &[0]).unwrap();
//! let m = acc.finish();
//! assert!((m.map50 - 0.995).abs() < 1e-9);
//! assert!(m.format_table(&["a".into(), "b".into()]).contains("all"));
//! ```

pub mod ap;
pub mod coco;
pub mod confusion;
pub mod det_metrics;
pub mod format;
pub mod matching;
pub mod numeric;
pub mod plots;

/// Number of IoU thresholds.
pub const NIOU: usize = 10;

/// IoU thresholds 0.50:0.05:0.95 as the `f32` values of `torch.linspace(0.5, 0.95, 10)`.
pub const IOU_THRESHOLDS: [f32; NIOU] = [0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95];

pub use ap::{ap_per_class, compute_ap, smooth, ApPerClass};
pub use coco::{
    coco80_to_coco91, default_class_map, detections_to_coco, ground_truth_to_coco, parse_yolo_labels, write_json,
    GtImage, ImageId,
};
pub use confusion::ConfusionMatrix;
pub use det_metrics::{ClassMetrics, DetectionAccumulator, DetectionMetrics};
pub use matching::{match_boxes, match_predictions};
pub use plots::{save_plots, ConfidenceCurve};
