//! What the trainer tells the world as a run goes, as events: a [`TrainReporter`] turns them into output (the
//! console's lives in the command layer, as burn's learner hands its events to a renderer). The trainer itself
//! prints nothing, so a caller that embeds it chooses what is shown.

use std::path::Path;

use crate::config::{AmpMode, OptimizerKind};
use crate::metrics::DetectionMetrics;

use super::loss_scale::ScaleEvent;

/// Receives a training run's events, in the order they happen.
pub trait TrainReporter {
    fn report(&mut self, event: &TrainEvent<'_>);
}

/// A reporter that shows nothing.
impl TrainReporter for () {
    fn report(&mut self, _: &TrainEvent<'_>) {}
}

/// How long a run is planned to last.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RunLength {
    Epochs(usize),
    /// `time=H`: a limit in hours, the epochs re-planned from their mean time.
    Hours(f64),
}

/// Why a run ended before its last epoch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum StopReason {
    /// No fitness improvement in the last `patience` epochs.
    Patience {
        patience: usize,
        best_fitness: f64,
    },
    TimeLimit {
        hours: f64,
    },
}

/// The reduced-precision forward of the model against FP32's on a real batch, before the run relies on it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AmpCheck {
    pub precision: AmpMode,
    /// The largest difference, relative to the largest FP32 output.
    pub relative_error: f32,
    pub tolerance: f32,
}

impl AmpCheck {
    pub fn passed(&self) -> bool {
        self.relative_error <= self.tolerance
    }
}

/// Images and time of a pass over a split.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Throughput {
    pub images: usize,
    pub seconds: f64,
    /// Of which the trainer waited for the loader.
    pub waiting: f64,
}

/// The running state of an epoch's training, shown as its progress row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProgressRow {
    pub epoch: usize,
    pub epochs: usize,
    /// Mean box, class and third (DFL or L1) loss over the epoch's batches so far.
    pub losses: [f64; 3],
    pub instances: usize,
    pub size: usize,
}

/// One thing that happened in a training run.
#[derive(Debug, Clone)]
pub enum TrainEvent<'a> {
    WeightsTransferred {
        from: &'a str,
        report: &'a str,
    },
    Frozen {
        tensors: usize,
        layers: &'a [String],
    },
    /// `optimizer=auto` chose the optimizer and its lr, ignoring the given ones.
    OptimizerChosen {
        kind: OptimizerKind,
        lr: f64,
        ignored_lr0: f64,
        ignored_momentum: f64,
        iterations: usize,
    },
    Optimizer {
        kind: OptimizerKind,
        lr: f64,
        momentum: f64,
        weight_decay: f64,
    },
    Resumed {
        from: &'a Path,
        epoch: usize,
        epochs: usize,
    },
    /// `rect=true` asked for rectangular training batches, which ember does not make.
    RectIgnored,
    AmpChecked(AmpCheck),
    DataParallel {
        processes: usize,
        per_process: usize,
        batch: usize,
    },
    Started {
        run_dir: &'a Path,
        length: RunLength,
    },
    EpochStarted {
        loss_names: [&'a str; 3],
        batches: usize,
    },
    /// Mosaic (with MixUp and CutMix) is off from this epoch on.
    MosaicClosed,
    /// `EMBER_FAULT` set the weights to NaN (a test's fault injection).
    FaultInjected {
        epoch: usize,
        batch: usize,
    },
    LossScale {
        event: ScaleEvent,
        from: f64,
        to: f64,
        growth_interval: u64,
    },
    /// After each training batch: the epoch's running figures.
    Batch(ProgressRow),
    EpochEnded {
        row: ProgressRow,
        skipped_steps: usize,
        throughput: Throughput,
    },
    Validated {
        metrics: &'a DetectionMetrics,
        names: &'a [String],
        throughput: Throughput,
    },
    /// The epoch diverged; the run goes back to `reload` and repeats it.
    Diverged {
        reason: &'a str,
        epoch: usize,
        attempt: usize,
        attempts: usize,
        reload: &'a Path,
    },
    Stopped(StopReason),
    Finished {
        epochs: usize,
        hours: f64,
    },
    /// The final validation of the best weights begins.
    FinalValidation {
        weights: &'a Path,
    },
    FinalMetrics {
        metrics: &'a DetectionMetrics,
        names: &'a [String],
    },
    Saved {
        run_dir: &'a Path,
    },
}
