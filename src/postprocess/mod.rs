//! Post-processing of decoded head outputs: box geometry, NMS, and the NMS-free end-to-end path.
//!
//! Everything here works on plain `f32` slices in Ultralytics' eval layout `[4 + nc, anchors]` for one image, so it
//! needs no tensors and can be tested on hand-made cases.

pub mod boxes;
pub mod detection;
pub mod end2end;
pub mod nms;
pub mod select;

pub use boxes::{iou, iou_matrix, xywh_to_xyxy, xyxy_to_ltwh, xyxy_to_xywh};
pub use detection::{BoxFormat, Detection};
pub use end2end::{end2end_postprocess, end2end_postprocess_predict, end2end_topk, End2EndOptions};
pub use nms::{nms_detections, non_max_suppression, NmsOptions};
pub use select::{select_detections, Caller, SelectOptions};
