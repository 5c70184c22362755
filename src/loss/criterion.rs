//! One entry point for the trainer: the loss a model needs, chosen from its head (DFL or not, end-to-end or not).

use burn::tensor::{backend::Backend, Tensor};

use super::detection::{DetectionLoss, DetectionLossConfig, LossOutput};
use super::end2end::E2eLoss;
use super::targets::TargetBatch;

/// Raw outputs of one head branch: boxes `[b, 4 * reg_max, A]`, class logits `[b, nc, A]`.
#[derive(Debug, Clone)]
pub struct BranchOutputs<B: Backend> {
    pub boxes: Tensor<B, 3>,
    pub scores: Tensor<B, 3>,
}

/// The detection criterion of a model: a single branch (YOLOv8/11 style) or the end-to-end pair (YOLO26).
#[derive(Debug, Clone)]
pub enum Criterion {
    Detect(DetectionLoss),
    EndToEnd(E2eLoss),
}

impl Criterion {
    /// `config`: classes, `reg_max` and gains; `end2end`: the head has a one-to-one branch;
    /// `epochs`: training length (for the end-to-end o2m schedule).
    pub fn new(config: DetectionLossConfig, end2end: bool, epochs: usize) -> Self {
        if end2end {
            Criterion::EndToEnd(E2eLoss::new(config, epochs))
        } else {
            Criterion::Detect(DetectionLoss::new(config))
        }
    }

    /// Names of the printed loss columns.
    pub fn names(&self) -> [&'static str; 3] {
        match self {
            Criterion::Detect(l) => l.names(),
            Criterion::EndToEnd(l) => l.one2one.names(),
        }
    }

    /// Loss of one batch during epoch `epoch` (0-based). `one2many`: the main branch; `one2one`: the
    /// end-to-end branch (required for [`Criterion::EndToEnd`], ignored otherwise).
    pub fn forward<B: Backend>(
        &self,
        one2many: BranchOutputs<B>,
        one2one: Option<BranchOutputs<B>>,
        feature_sizes: &[[usize; 2]],
        strides: &[f32],
        targets: &TargetBatch,
        epoch: usize,
    ) -> LossOutput<B> {
        match self {
            Criterion::Detect(l) => l.forward(
                one2many.boxes,
                one2many.scores,
                feature_sizes,
                strides,
                targets,
            ),
            Criterion::EndToEnd(l) => {
                let o2o = one2one.expect("the end-to-end loss needs the one-to-one branch outputs");
                let out = l.forward(
                    one2many.boxes,
                    one2many.scores,
                    o2o.boxes,
                    o2o.scores,
                    feature_sizes,
                    strides,
                    targets,
                    epoch,
                );
                E2eLoss::to_loss_output(out)
            }
        }
    }
}
