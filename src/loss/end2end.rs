//! End-to-end (YOLO26) loss: one-to-many and one-to-one branches, weighted `o2m` and `1 - o2m`.
//!
//! As Ultralytics 8.4 `E2ELoss`: the one-to-many branch assigns with `topk = 10`, the one-to-one branch with
//! `topk = 7, topk2 = 1`. `o2m` starts at 0.8 and is updated at the end of every epoch to
//! `max(1 - e / max(epochs - 1, 1), 0) * (0.8 - 0.1) + 0.1` (e: number of epochs finished), reaching 0.1 at
//! the last epoch; `o2o = max(1 - o2m, 0)`. The loss to differentiate is
//! `o2m * L_o2m * batch + o2o * L_o2o * batch`; the printed components are the one-to-one branch's.

use burn::tensor::{backend::Backend, Tensor};

use super::detection::{loss_names, DetectionLoss, DetectionLossConfig, LossOutput};
use super::targets::TargetBatch;
use crate::nn::DetectOutput;
use crate::readback::{read_f32, Purpose};

/// The o2m weight schedule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct O2mSchedule {
    /// Epochs of the run: o2m reaches `final_` at the last one.
    pub epochs: usize,
    /// o2m during the first epoch (0.8).
    pub initial: f64,
    /// o2m from the last epoch on (0.1); the underscore because `final` is a reserved word.
    pub final_: f64,
}

impl O2mSchedule {
    /// Ultralytics' schedule over a run of `epochs` epochs: o2m from 0.8 down to 0.1.
    pub fn new(epochs: usize) -> Self {
        Self { epochs, initial: 0.8, final_: 0.1 }
    }

    /// Weight of the one-to-many loss during epoch `epoch` (0-based).
    pub fn o2m(&self, epoch: usize) -> f32 {
        let denom = (self.epochs.max(2) - 1) as f64; // max(epochs - 1, 1)
        let frac = (1.0 - epoch as f64 / denom).max(0.0);
        (frac * (self.initial - self.final_) + self.final_) as f32
    }

    /// Weight of the one-to-one loss during epoch `epoch`.
    pub fn o2o(&self, epoch: usize) -> f32 {
        (1.0 - self.o2m(epoch) as f64).max(0.0) as f32
    }
}

/// Result of the end-to-end loss: the combined total, the printed (one-to-one) components and both branches.
#[derive(Debug, Clone)]
pub struct E2eLossOutput<B: Backend> {
    /// Scalar `[1]` to call `backward` on.
    pub total: Tensor<B, 1>,
    /// One-to-one components `[3]` (gain-scaled, no batch factor, detached): what Ultralytics prints.
    pub parts: Tensor<B, 1>,
    /// Column names of the components (see [`loss_names`]).
    pub names: [&'static str; 3],
    /// One-to-many components `[3]` (detached), for diagnostics.
    pub one2many_parts: Tensor<B, 1>,
    /// Weight the one-to-many branch's loss had in `total`.
    pub o2m: f32,
    /// Weight the one-to-one branch's loss had in `total`.
    pub o2o: f32,
    /// Foreground anchors of the one-to-many branch `[1]`, on the device (diagnostics).
    pub num_fg_one2many: Tensor<B, 1>,
    /// Foreground anchors of the one-to-one branch `[1]`, on the device (diagnostics).
    pub num_fg_one2one: Tensor<B, 1>,
    /// `max(sum of target scores, 1)` of the one-to-one branch `[1]`, on the device.
    pub target_scores_sum_one2one: Tensor<B, 1>,
}

impl<B: Backend> E2eLossOutput<B> {
    /// The one-to-one components on the host (one device read).
    pub fn components(&self) -> [f32; 3] {
        let v = read_f32(self.parts.clone(), Purpose::Other);
        [v[0], v[1], v[2]]
    }

    /// The one-to-many components on the host (one device read).
    pub fn one2many_components(&self) -> [f32; 3] {
        let v = read_f32(self.one2many_parts.clone(), Purpose::Other);
        [v[0], v[1], v[2]]
    }
}

/// End-to-end loss over the two branches.
#[derive(Debug, Clone)]
pub struct E2eLoss {
    /// The one-to-many branch's loss (assigner top-k 10), weighted o2m.
    pub one2many: DetectionLoss,
    /// The one-to-one branch's loss (top-k 7, second top-k 1), weighted o2o; its components are the printed ones.
    pub one2one: DetectionLoss,
    /// The branch weights by epoch.
    pub schedule: O2mSchedule,
}

impl E2eLoss {
    /// `base`: settings shared by both branches (classes, reg_max, gains); the branches' top-k are set here.
    pub fn new(base: DetectionLossConfig, epochs: usize) -> Self {
        Self {
            one2many: DetectionLoss::new(base.clone().with_topk(10, None)),
            one2one: DetectionLoss::new(base.with_topk(7, Some(1))),
            schedule: O2mSchedule::new(epochs),
        }
    }

    /// Loss for epoch `epoch` (0-based) with the schedule's weights, as Ultralytics' `E2ELoss(preds, batch)`.
    /// `preds` must have the one-to-one branch.
    pub fn forward<B: Backend>(&self, preds: DetectOutput<B>, targets: &TargetBatch, epoch: usize) -> E2eLossOutput<B> {
        let (o2m, o2o) = (self.schedule.o2m(epoch), self.schedule.o2o(epoch));
        self.forward_weighted(preds, targets, [o2m, o2o])
    }

    /// Loss with explicit branch weights `[one-to-many, one-to-one]`.
    pub fn forward_weighted<B: Backend>(
        &self,
        preds: DetectOutput<B>,
        targets: &TargetBatch,
        [o2m, o2o]: [f32; 2],
    ) -> E2eLossOutput<B> {
        let DetectOutput { one2many, one2one, feature_sizes, strides, .. } = preds;
        let one2one = one2one.expect("the end-to-end loss needs the head's one-to-one branch");
        let many = self.one2many.branch(one2many, &feature_sizes, &strides, targets);
        let one = self.one2one.branch(one2one, &feature_sizes, &strides, targets);
        let bs = many.batch_size as f32;
        let total = many.parts.clone().sum().mul_scalar(bs).mul_scalar(o2m)
            + one.parts.clone().sum().mul_scalar(bs).mul_scalar(o2o);
        E2eLossOutput {
            total,
            parts: one.parts.detach(),
            names: loss_names(self.one2one.config.reg_max),
            one2many_parts: many.parts.detach(),
            o2m,
            o2o,
            num_fg_one2many: many.num_fg,
            num_fg_one2one: one.num_fg,
            target_scores_sum_one2one: one.target_scores_sum,
        }
    }

    /// The end-to-end result as a plain [`LossOutput`] (printed components: one-to-one).
    pub fn to_loss_output<B: Backend>(out: E2eLossOutput<B>) -> LossOutput<B> {
        LossOutput {
            total: out.total,
            parts: out.parts,
            names: out.names,
            num_fg: out.num_fg_one2one,
            target_scores_sum: out.target_scores_sum_one2one,
        }
    }
}
