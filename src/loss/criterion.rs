//! The loss a model trains with: the plain detection loss, or YOLO26's one-to-many + one-to-one
//! combination, fed from the model's raw outputs and a loader batch.

use burn::tensor::backend::Backend;

use super::{DetectionLoss, DetectionLossConfig, E2eLoss, ImageTargets, LossOutput, TargetBatch};
use crate::data::BoxLabel;
use crate::nn::DetectOutput;

/// The training loss of a model, chosen by its head.
#[derive(Debug, Clone)]
pub enum Criterion {
    /// Ultralytics' `v8DetectionLoss` on the one-to-many branch (heads without a one-to-one branch).
    Plain(DetectionLoss),
    /// Ultralytics' `E2ELoss` (YOLO26): both branches, weighted by the epoch's o2m schedule.
    EndToEnd(E2eLoss),
}

impl Criterion {
    /// The loss for `nc` classes and `reg_max` DFL bins; `end2end`: the head has a one-to-one branch; `gains`:
    /// `[box, cls, dfl]` (Ultralytics box, cls, dfl); `epochs`: the run's length, which sets YOLO26's o2m schedule.
    pub fn new(nc: usize, reg_max: usize, end2end: bool, gains: [f32; 3], epochs: usize) -> Criterion {
        let base = DetectionLossConfig::new(nc, reg_max).with_gains(gains[0], gains[1], gains[2]);
        if end2end {
            Criterion::EndToEnd(E2eLoss::new(base, epochs))
        } else {
            Criterion::Plain(DetectionLoss::new(base))
        }
    }

    /// `time=` re-estimates a run's epochs after each one; YOLO26's branch weights follow, as Ultralytics'
    /// rewritten `args.epochs` makes them.
    pub fn set_epochs(&mut self, epochs: usize) {
        if let Criterion::EndToEnd(l) = self {
            l.schedule.epochs = epochs;
        }
    }

    /// Column names of the three printed components.
    pub fn names(&self) -> [&'static str; 3] {
        match self {
            Criterion::Plain(l) => l.names(),
            Criterion::EndToEnd(l) => l.one2one.names(),
        }
    }

    /// The loss of one batch at `epoch` (0-based; it moves YOLO26's branch weights).
    pub fn compute<B: Backend>(&self, preds: DetectOutput<B>, targets: &TargetBatch, epoch: usize) -> LossOutput<B> {
        match self {
            Criterion::EndToEnd(l) if preds.one2one.is_some() => {
                E2eLoss::to_loss_output(l.forward(preds, targets, epoch))
            }
            Criterion::EndToEnd(l) => l.one2many.forward(preds, targets),
            Criterion::Plain(l) => l.forward(preds, targets),
        }
    }
}

/// Loader labels (normalised to the canvas) as the loss's targets.
pub fn targets_of(labels: &[Vec<BoxLabel>], input_size: [usize; 2]) -> TargetBatch {
    let images = labels
        .iter()
        .map(|boxes| ImageTargets::new(boxes.iter().map(|b| b.class).collect(), boxes.iter().map(|b| b.xywh).collect()))
        .collect();
    TargetBatch::new(images, input_size)
}
