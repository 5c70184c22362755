//! Detection loss and target assignment, as Ultralytics 8.4 (`utils/tal.py`, `utils/loss.py`).
//!
//! - [`targets`]: the batch's ground truth ([`TargetBatch`]) and its padded form;
//! - [`anchors`]: anchor points and strides;
//! - [`boxes`]: `ltrb` <-> `xyxy`, IoU and CIoU;
//! - [`assigner`]: the task-aligned assigner (on the device, or a host loop where that is faster; gradient-free);
//! - [`bbox_loss`]: CIoU + DFL / L1 box loss, dense over the anchors;
//! - [`softplus_sum`]: the class loss's BCE-with-logits sum, one fused pass each way on flex;
//! - [`detection`]: one branch's loss ([`DetectionLoss`]);
//! - [`end2end`]: YOLO26's one-to-many + one-to-one combination ([`E2eLoss`]);
//! - [`criterion`]: the loss a model trains with, fed from its raw outputs and a loader batch.
//!
//! As Ultralytics' `loss(preds, batch)`: a [`DetectionLoss`] (one branch) or an [`E2eLoss`] (YOLO26) takes the
//! head's whole output ([`DetectOutput`](crate::nn::DetectOutput)) and the [`TargetBatch`] (and the epoch for the
//! end-to-end loss); the trainer backpropagates `total` and prints `components` under `names`.

pub mod assigner;
pub mod bbox_loss;
pub mod boxes;
pub mod criterion;
pub mod detection;
pub mod end2end;
pub mod softplus_sum;
pub mod targets;

pub use crate::nn::anchors::{make_anchors, Anchors};
pub use assigner::{AssignerConfig, Assignment, TaskAlignedAssigner};
pub use bbox_loss::BboxLoss;
pub use detection::{class_weights_from_counts, loss_names, DetectionLoss, DetectionLossConfig, LossOutput};
pub use end2end::{E2eLoss, E2eLossOutput, O2mSchedule};
pub use targets::{ImageTargets, TargetBatch};
