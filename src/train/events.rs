//! What the trainer tells the world as a run goes, as events: a [`TrainReporter`] turns them into output (the
//! console's lives in the command layer, as burn's learner hands its events to a renderer). The trainer itself
//! prints nothing, so a caller that embeds it chooses what is shown.

use std::path::Path;

use super::autobatch::AutoBatch;
use crate::config::{AmpMode, OptimizerKind};
use crate::metrics::DetectionMetrics;

use super::loss_scale::ScaleEvent;

/// Receives a training run's events, in the order they happen.
pub trait TrainReporter {
    /// Handles one event; called on the training thread, so it should not block for long.
    fn report(&mut self, event: &TrainEvent<'_>);
}

/// A reporter that shows nothing.
impl TrainReporter for () {
    fn report(&mut self, _: &TrainEvent<'_>) {}
}

/// How long a run is planned to last.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RunLength {
    /// `epochs=N`.
    Epochs(usize),
    /// `time=H`: a limit in hours, the epochs re-planned from their mean time.
    Hours(f64),
}

/// Why a run ended before its last epoch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum StopReason {
    /// No fitness improvement in the last `patience` epochs.
    Patience {
        /// The `patience` setting, in epochs.
        patience: usize,
        /// The best fitness reached (0.9 mAP50-95 + 0.1 mAP50, as Ultralytics).
        best_fitness: f64,
    },
    /// `time=H` hours have passed.
    TimeLimit {
        /// The limit, in hours.
        hours: f64,
    },
}

/// The reduced-precision forward of the model against FP32's on a real batch, before the run relies on it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AmpCheck {
    /// The reduced precision checked (FP16 or BF16).
    pub precision: AmpMode,
    /// The largest difference, relative to the largest FP32 output.
    pub relative_error: f32,
    /// The largest relative error the run accepts in that precision.
    pub tolerance: f32,
}

impl AmpCheck {
    /// Whether the run may compute in the reduced precision.
    pub fn passed(&self) -> bool {
        self.relative_error <= self.tolerance
    }
}

/// Images and time of a pass over a split.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Throughput {
    /// Images of this process's share of the split.
    pub images: usize,
    /// Wall time of the pass.
    pub seconds: f64,
    /// Seconds of it the trainer waited for the loader (0 for validation, which is not timed apart).
    pub waiting: f64,
}

/// The running state of an epoch's training, shown as its progress row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProgressRow {
    /// The epoch, counted from 0.
    pub epoch: usize,
    /// Epochs the run is planned for (a `time=` limit re-plans it).
    pub epochs: usize,
    /// Mean box, class and third (DFL or L1) loss over the epoch's batches so far.
    pub losses: [f64; 3],
    /// Labelled boxes in the last batch.
    pub instances: usize,
    /// Side in pixels of the last batch's images (multi-scale draws it per batch).
    pub size: usize,
    /// Bytes the device's memory pool holds (PyTorch's `memory_reserved`) on a GPU; `None` on the CPU.
    pub device_memory: Option<u64>,
}

/// One thing that happened in a training run. Epochs are counted from 0.
#[derive(Debug, Clone)]
pub enum TrainEvent<'a> {
    /// AutoBatch (`batch=-1` or a fraction) begins fitting the batch to the device's memory.
    AutoBatchStarted {
        /// The image size it fits for, in pixels.
        imgsz: usize,
        /// The fraction of the device's memory to fill.
        fraction: f64,
    },
    /// AutoBatch chose the batch.
    AutoBatch(&'a AutoBatch),
    /// Starting weights were loaded from a file (`weights=`, or the checkpoint named by `model=`).
    WeightsTransferred {
        /// The weights file as given.
        from: &'a str,
        /// What was loaded and what was left out (the loader's report).
        report: &'a str,
    },
    /// `freeze=` fixed some layers' parameters.
    Frozen {
        /// Parameter tensors that stay fixed.
        tensors: usize,
        /// The frozen layers' indices as given.
        layers: &'a [String],
    },
    /// `optimizer=auto` chose the optimizer and its lr, ignoring the given ones.
    OptimizerChosen {
        /// The optimizer chosen.
        kind: OptimizerKind,
        /// Its initial learning rate.
        lr: f64,
        /// The `lr0` setting, not used.
        ignored_lr0: f64,
        /// The `momentum` setting, not used.
        ignored_momentum: f64,
        /// Optimizer steps the run is planned for, which the choice depends on.
        iterations: usize,
    },
    /// The optimizer the run trains with.
    Optimizer {
        /// Which optimizer.
        kind: OptimizerKind,
        /// Initial learning rate.
        lr: f64,
        /// Momentum (SGD) or beta1 (Adam, AdamW).
        momentum: f64,
        /// Weight decay, scaled to the batch as Ultralytics scales it.
        weight_decay: f64,
    },
    /// `resume=` restored a run from its checkpoint.
    Resumed {
        /// The checkpoint.
        from: &'a Path,
        /// The epoch training continues with.
        epoch: usize,
        /// The run's planned epochs.
        epochs: usize,
    },
    /// `rect=true` asked for rectangular training batches, which ember does not make.
    RectIgnored,
    /// The reduced-precision self-check ran.
    AmpChecked(AmpCheck),
    /// The run trains on several processes (MPI).
    DataParallel {
        /// Processes in the run.
        processes: usize,
        /// Images of each batch that each process trains on.
        per_process: usize,
        /// Images of each batch in all (`batch=`).
        batch: usize,
    },
    /// Setup is done; the first epoch begins.
    Started {
        /// The run folder (args.yaml, results.csv, weights/).
        run_dir: &'a Path,
        /// Epochs or a time limit.
        length: RunLength,
    },
    /// An epoch begins.
    EpochStarted {
        /// The criterion's three loss names (box, class, then DFL or L1).
        loss_names: [&'a str; 3],
        /// Batches in the epoch.
        batches: usize,
    },
    /// Mosaic (with MixUp and CutMix) is off from this epoch on.
    MosaicClosed,
    /// `EMBER_FAULT` set the weights to NaN (a test's fault injection).
    FaultInjected {
        /// The epoch of the fault.
        epoch: usize,
        /// The batch of the epoch before which it struck.
        batch: usize,
    },
    /// Dynamic loss scaling changed the scale (FP16 runs).
    LossScale {
        /// Whether the scale went down (an overflow, the step skipped) or up.
        event: ScaleEvent,
        /// The scale before.
        from: f64,
        /// The scale after.
        to: f64,
        /// Clean steps after which the scale doubles.
        growth_interval: u64,
    },
    /// After each training batch: the epoch's running figures.
    Batch(ProgressRow),
    /// An epoch's training ended (validation follows).
    EpochEnded {
        /// The epoch's final figures.
        row: ProgressRow,
        /// Optimizer steps skipped (non-finite loss or gradient overflow).
        skipped_steps: usize,
        /// The epoch's images and time.
        throughput: Throughput,
        /// The most device memory the epoch's batches left reserved, in bytes, on a GPU.
        peak_device_memory: Option<u64>,
    },
    /// The EMA weights were validated after an epoch.
    Validated {
        /// The validation's metrics.
        metrics: &'a DetectionMetrics,
        /// Class names, for the table.
        names: &'a [String],
        /// The validation's images and time.
        throughput: Throughput,
    },
    /// The epoch diverged; the run goes back to `reload` and repeats it.
    Diverged {
        /// What diverged (a non-finite loss or fitness).
        reason: &'a str,
        /// The epoch repeated.
        epoch: usize,
        /// Reloads in a row so far, this one included.
        attempt: usize,
        /// Reloads in a row allowed before the run stops.
        attempts: usize,
        /// The checkpoint reloaded.
        reload: &'a Path,
    },
    /// A batch of the first epoch ran out of device memory: the run starts again with half the batch.
    OutOfMemoryRetry {
        /// The batch that did not fit.
        batch: u32,
        /// The batch the run starts again with.
        reduced: u32,
        /// Restarts so far, this one included.
        attempt: usize,
        /// Restarts allowed.
        attempts: usize,
    },
    /// The run stops before its planned last epoch.
    Stopped(StopReason),
    /// Training ended.
    Finished {
        /// Epochs trained in this invocation (a resumed run counts from where it resumed).
        epochs: usize,
        /// Wall time in hours.
        hours: f64,
    },
    /// The final validation of the best weights begins.
    FinalValidation {
        /// The best weights.
        weights: &'a Path,
    },
    /// The final validation's metrics, per class.
    FinalMetrics {
        /// The metrics.
        metrics: &'a DetectionMetrics,
        /// Class names, for the table.
        names: &'a [String],
    },
    /// The run's files are complete.
    Saved {
        /// The run folder.
        run_dir: &'a Path,
    },
}
