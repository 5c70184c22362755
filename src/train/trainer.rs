//! The training loop in its stages: [`setup`] (model, criterion, schedule, optimizer, loaders), [`train_epoch`]
//! (batches -> model -> loss -> accumulated gradients -> clipped optimizer step -> EMA) and [`end_epoch`]
//! (validate the EMA, recover from divergence, write checkpoints and `results.csv`), then [`finish`].
//!
//! In a data-parallel run every rank trains its share of each batch, the accumulated gradients are summed over
//! the ranks before each optimizer step, and rank 0 alone validates, writes the run's files and decides the end
//! of each epoch (stop, repeat), which it sends to the others (Ultralytics 8.4.190's DDP rules).

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use burn::module::AutodiffModule;
use burn::optim::GradientsParams;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::Tensor;
use rand::SeedableRng;

use super::autobatch::{fit_batch, AutoBatchRequest};
use super::early_stop::EarlyStopping;
use super::ema::ModelEma;
use super::events::{ProgressRow, RunLength, StopReason, Throughput, TrainEvent, TrainReporter};
use super::fault::{injected_out_of_memory, poison_weights, Fault, FaultKind};
use super::loss_scale::{LossScaler, ScaleEvent};
use super::multi_scale;
use super::oom::{catch_out_of_memory, is_out_of_memory};
use super::optimizer::{DetectorOptimizer, ParamGroups};
use super::precision::{amp_self_check, to_compute};
use super::results::{EpochRow, ResultsCsv};
use super::schedule::{epochs_for_time, results_lr_column_count, results_lr_columns, Schedule};
use super::step::optimizer_step;
use crate::backend::device_memory;
use crate::config::{AmpMode, BatchSize, Settings};
use crate::data::augment::pipeline::{maybe_save_batch, TrainPipeline};
use crate::data::{batch_tensor, BatchLoader, Sample, Shard};
use crate::dist::Group;
use crate::loss::criterion::{targets_of, Criterion};
use crate::metrics::DetectionMetrics;
use crate::model::Yolo;
use crate::readback::{self, ReadCount};
use crate::runs::checkpoint::{self, CheckpointMeta, TrainState};
use crate::validate::{validate, ValOptions, ValOutcome};

/// Everything a training run starts from.
pub struct TrainInputs {
    /// The run's settings, resolved (a resumed run's are its checkpoint's).
    pub settings: Settings,
    /// Class names, indexed by class id.
    pub names: Vec<String>,
    /// The training split's usable samples.
    pub train: Vec<Sample>,
    /// The validation split's usable samples.
    pub val: Vec<Sample>,
    /// The run folder, which exists (rank 0 writes args.yaml, results.csv and weights/ in it).
    pub run_dir: PathBuf,
    /// A checkpoint to continue from, with its header.
    pub resume: Option<(PathBuf, CheckpointMeta)>,
    /// The resolved compute precision (`Fp16` means FP16 compute with loss scaling).
    pub precision: AmpMode,
    /// The processes training together (a group of one for a single-process run).
    pub group: Rc<Group>,
    /// Where the run's events go (the console's reporter, or `Box::new(())` for none).
    pub reporter: Box<dyn TrainReporter>,
    /// The device's memory in bytes, where known (AutoBatch fits the batch to it).
    pub device_bytes: Option<u64>,
}

/// What a finished run leaves.
#[derive(Debug)]
pub struct TrainOutcome {
    /// The run folder.
    pub run_dir: PathBuf,
    /// The last checkpoint (EMA weights, raw weights and optimizer state).
    pub last: PathBuf,
    /// The best epoch's EMA weights (written only when `save=true`).
    pub best: PathBuf,
    /// Epochs completed, counted from the run's start (a resumed run's include those before it resumed).
    pub epochs_completed: usize,
    /// The final validation's metrics (best's weights when saved, else the last epoch's).
    pub final_metrics: Option<DetectionMetrics>,
    /// The best fitness reached (0.9 mAP50-95 + 0.1 mAP50).
    pub best_fitness: f64,
    /// The most device-to-host reads of ember's own that one training batch made.
    pub batch_reads: ReadCount,
}

/// What a run fixes at setup and only reads afterwards (but for its length, which a `time=` limit re-plans).
struct Run {
    s: Settings,
    names: Vec<String>,
    epochs: usize,
    start_epoch: usize,
    criterion: Criterion,
    schedule: Schedule,
    precision: AmpMode,
    run_dir: PathBuf,
    weights_dir: PathBuf,
    last: PathBuf,
    best: PathBuf,
    /// `results.csv`, written by rank 0 only.
    results: Option<ResultsCsv>,
    val_loader: BatchLoader,
    val_options: ValOptions,
    /// The largest stride, which multi-scale sizes are multiples of.
    stride: usize,
    started: Instant,
    group: Rc<Group>,
    reporter: Rc<RefCell<Box<dyn TrainReporter>>>,
}

impl Run {
    fn emit(&self, event: TrainEvent<'_>) {
        self.reporter.borrow_mut().report(&event);
    }
}

/// What changes as training goes (the model itself is passed by value, as optimizer steps consume it).
struct Progress<AB: AutodiffBackend> {
    optimizer: DetectorOptimizer<AB::InnerBackend>,
    ema: ModelEma<AB::InnerBackend, Yolo<AB::InnerBackend>>,
    scaler: Option<LossScaler>,
    /// Gradients accumulated since the last optimizer step, flat in the optimizer's layout.
    pending: Option<Tensor<AB::InnerBackend, 1>>,
    pipeline: TrainPipeline,
    train_loader: BatchLoader,
    /// Global batch index of the last optimizer step.
    last_opt_step: i64,
    stopping: EarlyStopping,
    epochs_completed: usize,
    recoveries: usize,
    final_metrics: Option<DetectionMetrics>,
    most_reads: ReadCount,
    fault: Option<Fault>,
    /// Multi-scale sizes come from their own seeded stream, so a run repeats with the same seed.
    scale_rng: rand_chacha::ChaCha8Rng,
}

/// The training side of one epoch, as printed and logged.
struct EpochLosses {
    mean: [f64; 3],
    /// Whether the epoch ended on a finite loss (a diverged run does not).
    last_finite: bool,
}

/// What the end of an epoch decides.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
enum Next {
    Epoch,
    /// The run diverged and went back to its last checkpoint: the same epoch again.
    Repeat,
    Stop,
}

/// Trains on `device` with autodiff backend `AB`.
///
/// As Ultralytics 8.4.190, a batch that runs out of device memory in the run's first epoch halves the batch and
/// starts again, up to [`MAX_OOM_RETRIES`] times, in a single-process run; later, or after that, the run ends
/// with an error that names the last checkpoint (written atomically, so intact).
pub fn train<AB: AutodiffBackend>(inputs: TrainInputs, device: &AB::Device) -> Result<TrainOutcome> {
    let TrainInputs { settings, names, train, val, run_dir, resume, precision, group, reporter, device_bytes } = inputs;
    let mut plan = Plan { settings, names, train, val, run_dir, resume, precision, group };
    let reporter = Rc::new(RefCell::new(reporter));
    if let BatchSize::Auto(fraction) = plan.settings.batch {
        let batch = auto_batch::<AB>(&plan, fraction, device_bytes, reporter.borrow_mut().as_mut(), device)?;
        plan.settings.batch = BatchSize::Images(batch);
    }
    let mut retries = 0;
    loop {
        let error = match train_once::<AB>(plan.clone(), reporter.clone(), device) {
            Ok(outcome) => return Ok(outcome),
            Err(e) => e,
        };
        let Some(oom) = error.downcast_ref::<OutOfMemory>() else { return Err(error) };
        let batch = plan.settings.batch.images_or_default() as u32;
        if !oom.first_epoch || retries >= MAX_OOM_RETRIES || batch <= 1 || plan.group.is_distributed() {
            let advice = match &oom.last_checkpoint {
                Some(last) => format!(
                    "the last checkpoint {} is intact: continue with --resume {0}, or start from it with --weights \
                     {0} and a smaller batch or imgsz",
                    last.display()
                ),
                None => "no checkpoint was written yet: try a smaller batch or imgsz".into(),
            };
            return Err(anyhow::anyhow!("{oom}. {advice}"));
        }
        retries += 1;
        let reduced = (batch / 2).max(1);
        plan.settings.batch = BatchSize::Images(reduced);
        let event = TrainEvent::OutOfMemoryRetry { batch, reduced, attempt: retries, attempts: MAX_OOM_RETRIES };
        reporter.borrow_mut().report(&event);
    }
}

/// `batch=-1` or a fraction: the batch fitted to the device's memory for this run's model, image size (the
/// largest multi-scale size) and precision, as Ultralytics 8.4.190's trainer asks `autobatch` for it.
fn auto_batch<AB: AutodiffBackend>(
    plan: &Plan,
    fraction: f64,
    device_bytes: Option<u64>,
    reporter: &mut dyn TrainReporter,
    device: &AB::Device,
) -> Result<u32> {
    let (s, world) = (&plan.settings, plan.group.world_size());
    if world > 1 {
        bail!(
            "AutoBatch (batch={}) is not supported for multi-process training: give a batch that is a multiple of \
             the {world} processes, e.g. batch={}",
            s.batch,
            world * 8
        );
    }
    AB::seed(device, s.seed);
    let model = Yolo::<AB>::new(&s.model, plan.names.len(), device)?;
    let stride = model.strides().iter().fold(32.0f32, |m, &v| m.max(v)) as usize;
    let imgsz = (s.imgsz as f64 * (1.0 + s.multi_scale) / stride as f64).ceil() as usize * stride;
    let max_objects = plan.train.iter().map(|sample| sample.labels.len()).max().unwrap_or(0) * 4;
    let request = AutoBatchRequest {
        fraction,
        imgsz,
        precision: plan.precision,
        device_bytes,
        dataset_size: plan.train.len(),
        max_objects,
    };
    reporter.report(&TrainEvent::AutoBatchStarted { imgsz, fraction });
    let outcome = fit_batch::<AB>(&model, &request, device);
    reporter.report(&TrainEvent::AutoBatch(&outcome));
    Ok(outcome.batch())
}

/// Restarts with half the batch allowed after running out of device memory in the first epoch (Ultralytics').
pub const MAX_OOM_RETRIES: usize = 3;

/// What a run starts from, kept to start it again (with a smaller batch) after running out of memory.
#[derive(Clone)]
struct Plan {
    settings: Settings,
    names: Vec<String>,
    train: Vec<Sample>,
    val: Vec<Sample>,
    run_dir: PathBuf,
    resume: Option<(PathBuf, CheckpointMeta)>,
    precision: AmpMode,
    group: Rc<Group>,
}

/// A training batch ran out of device memory.
#[derive(Debug)]
struct OutOfMemory {
    /// Whether it was the first epoch this run trained (where Ultralytics retries with half the batch).
    first_epoch: bool,
    /// The last checkpoint, if one was written.
    last_checkpoint: Option<PathBuf>,
    /// The device's error.
    cause: String,
    batch: u32,
    epoch: usize,
}

impl std::fmt::Display for OutOfMemory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "out of device memory with batch={} in epoch {}: {}", self.batch, self.epoch + 1, self.cause)
    }
}

impl std::error::Error for OutOfMemory {}

/// One epoch of training; a device's out-of-memory failure, returned or (as burn's infallible tensor operations
/// report it) panicked, becomes an [`OutOfMemory`] error; any other panic goes on unwinding.
fn guarded_epoch<AB: AutodiffBackend>(
    run: &Run,
    p: &mut Progress<AB>,
    model: Yolo<AB>,
    epoch: usize,
    device: &AB::Device,
) -> Result<(Yolo<AB>, EpochLosses)> {
    let error = match catch_out_of_memory(|| train_epoch(run, p, model, epoch, device)) {
        Ok(Ok(trained)) => return Ok(trained),
        Ok(Err(e)) if is_out_of_memory(&format!("{e:#}")) => format!("{e:#}"),
        Ok(Err(e)) => return Err(e),
        Err(panicked) => panicked,
    };
    Err(anyhow::Error::new(OutOfMemory {
        first_epoch: epoch == run.start_epoch,
        // Written by this run (an epoch of it, or the one it resumed from), not left by another in a reused folder.
        last_checkpoint: (epoch > 0 && run.s.save && run.last.is_file()).then(|| run.last.clone()),
        cause: error.lines().next().unwrap_or_default().to_string(),
        batch: run.s.batch.images_or_default() as u32,
        epoch,
    }))
}

/// One attempt at the run: setup, the epochs, the summary.
fn train_once<AB: AutodiffBackend>(
    plan: Plan,
    reporter: Rc<RefCell<Box<dyn TrainReporter>>>,
    device: &AB::Device,
) -> Result<TrainOutcome> {
    let (mut run, mut progress, mut model) = setup::<AB>(plan, reporter, device)?;
    let mut epoch = run.start_epoch;
    while epoch < run.epochs {
        let losses;
        (model, losses) = guarded_epoch(&run, &mut progress, model, epoch, device)?;
        match end_epoch(&run, &mut progress, &mut model, epoch, losses)? {
            Next::Epoch if replan_for_time(&mut run, epoch)? => break,
            Next::Epoch => epoch += 1,
            Next::Repeat => {}
            Next::Stop => break,
        }
    }
    finish(run, progress)
}

/// `time=H`: after each epoch the run's length is re-estimated from its mean epoch time, and the lr curve,
/// warmup and YOLO26's branch weights follow (Ultralytics 8.4.190 `_do_train`). Returns whether to stop
/// (the epoch just finished is at or past the new count).
fn replan_for_time(run: &mut Run, epoch: usize) -> Result<bool> {
    let Some(hours) = run.s.time else { return Ok(false) };
    let epochs = epochs_for_time(hours, run.started.elapsed().as_secs_f64(), epoch + 1 - run.start_epoch);
    // Rank 0's clock decides for every rank.
    let epochs = run.group.broadcast_value(epochs)?;
    run.epochs = epochs;
    run.schedule.set_epochs(epochs, run.s.warmup_epochs);
    run.criterion.set_epochs(epochs);
    Ok(epoch >= epochs)
}

/// Builds the model (weights, freezing), the criterion, the schedule and optimizer, restores a resumed
/// run, starts the loaders and checks reduced precision; creates the run folder's files.
fn setup<AB: AutodiffBackend>(
    plan: Plan,
    events: Rc<RefCell<Box<dyn TrainReporter>>>,
    device: &AB::Device,
) -> Result<(Run, Progress<AB>, Yolo<AB>)> {
    let Plan { settings: s, names, train, val, run_dir, resume, precision, group } = plan;
    let mut guard = events.borrow_mut();
    let reporter: &mut dyn TrainReporter = guard.as_mut();
    let nc = names.len();
    let epochs = s.epochs as usize;
    if train.is_empty() {
        bail!("the training split has no usable images");
    }
    let (world, main) = (group.world_size(), group.is_main());
    let batch = s.batch.images_or_default();
    if batch < world {
        bail!("batch={} is smaller than the {world} training processes: each needs at least one image", s.batch);
    }
    if world > 1 && !batch.is_multiple_of(world) {
        tracing::warn!(
            "batch={} is not a multiple of the {world} processes: each takes {} images, {} in all",
            s.batch,
            batch / world,
            batch / world * world
        );
    }

    AB::seed(device, s.seed);
    let model = build_model::<AB>(&s, nc, resume.is_none(), &mut *reporter, device)?;
    let gains = [s.box_gain as f32, s.cls_gain as f32, s.dfl_gain as f32];
    let criterion = Criterion::new(nc, model.reg_max(), model.end2end(), gains, epochs);

    // Ultralytics' recipe (accumulation, decay scaling, the optimizer pick, warmup): src/train/schedule.rs.
    let schedule = Schedule::for_world(&s, train.len(), nc, world);
    let (kind, lr0, momentum, weight_decay) = (schedule.kind, schedule.lr0, schedule.momentum, schedule.weight_decay);
    if schedule.auto {
        let (ignored_lr0, ignored_momentum, iterations) = (s.lr0, s.momentum, schedule.iterations);
        reporter.report(&TrainEvent::OptimizerChosen { kind, lr: lr0, ignored_lr0, ignored_momentum, iterations });
    }
    reporter.report(&TrainEvent::Optimizer { kind, lr: lr0, momentum, weight_decay });
    // Parameter groups are decided once, here, from the model's structure.
    let groups = ParamGroups::new(&model, &model.head().class_branch_params());
    let (mut optimizer, mut model) = DetectorOptimizer::new(kind, (lr0, momentum, weight_decay), model, groups);
    if group.is_distributed() {
        // As DDP: every rank starts from rank 0's weights, whatever its own initialisation drew.
        let weights = group.broadcast(optimizer.weights().clone());
        model = optimizer.replace_weights(model, weights);
    }
    let mut ema = ModelEma::new(model.valid().deep_clone()?);
    let (mut start_epoch, mut best_fitness) = (0usize, f64::NEG_INFINITY);
    if let Some((path, meta)) = &resume {
        restore(path, meta, &mut model, &mut optimizer, &mut ema)?;
        (start_epoch, best_fitness) = (meta.epoch, meta.best_fitness);
        reporter.report(&TrainEvent::Resumed { from: path, epoch: start_epoch, epochs });
    }

    // Input pipeline (augmentation, cache, mosaic closing): src/data/augment/pipeline.rs.
    let (pipeline, train_loader, val_loader) =
        TrainPipeline::loaders(&s, train, val, batch / world, group.local_size())?;
    let train_loader = train_loader.sharded(Shard { rank: group.rank(), count: world });
    if s.rect {
        reporter.report(&TrainEvent::RectIgnored);
    }
    let precision = checked_precision(precision, &model, &val_loader, &group, &mut *reporter)?;
    let mut scaler = (precision == AmpMode::Fp16).then(LossScaler::default);
    if let (Some(scaler), Some((_, meta))) = (scaler.as_mut(), &resume) {
        restore_scale(scaler, meta);
    }
    let weights_dir = run_dir.join("weights");
    let (last, best) = (weights_dir.join("last.safetensors"), weights_dir.join("best.safetensors"));
    let results = match main {
        true => Some(create_run_files(&run_dir, &s, &schedule, criterion.names()[2], resume.is_some())?),
        false => None,
    };
    if world > 1 {
        let per_process = batch / world;
        reporter.report(&TrainEvent::DataParallel { processes: world, per_process, batch });
    }
    let length = s.time.map_or(RunLength::Epochs(epochs), RunLength::Hours);
    reporter.report(&TrainEvent::Started { run_dir: &run_dir, length });

    let progress = Progress {
        optimizer,
        ema,
        scaler,
        pending: None,
        pipeline,
        train_loader,
        last_opt_step: (schedule.batches_per_epoch * start_epoch) as i64 - 1,
        stopping: EarlyStopping::new(s.patience as usize, best_fitness),
        epochs_completed: start_epoch,
        recoveries: 0,
        final_metrics: None,
        most_reads: ReadCount::default(),
        fault: Fault::from_env(),
        scale_rng: rand_chacha::ChaCha8Rng::seed_from_u64(s.seed ^ 0x6d75_6c74_6973_6361),
    };
    let run = Run {
        val_options: ValOptions::for_val(&s, model.end2end()),
        stride: model.strides().iter().fold(32.0f32, |m, &v| m.max(v)) as usize,
        s,
        names,
        epochs,
        start_epoch,
        criterion,
        schedule,
        precision,
        run_dir,
        weights_dir,
        last,
        best,
        results,
        val_loader,
        started: Instant::now(),
        group,
        reporter: events.clone(),
    };
    drop(guard);
    Ok((run, progress, model))
}

/// The model of the settings, with its starting weights (unless `fresh` is false: a resumed run restores its own)
/// and its frozen layers.
fn build_model<AB: AutodiffBackend>(
    s: &Settings,
    nc: usize,
    fresh: bool,
    reporter: &mut dyn TrainReporter,
    device: &AB::Device,
) -> Result<Yolo<AB>> {
    let mut model = Yolo::<AB>::new(&s.model, nc, device)?;
    if let (Some(weights), true, true) = (&s.weights, fresh, s.pretrained) {
        let report = model.load_weights(weights)?;
        reporter.report(&TrainEvent::WeightsTransferred { from: weights, report: &report.to_string() });
    }
    if let Some(layers) = &s.freeze {
        let (frozen, keys) = super::freeze::freeze(model, layers)?;
        model = frozen;
        reporter.report(&TrainEvent::Frozen { tensors: keys.len(), layers });
    }
    Ok(model)
}

/// The precision the run computes in: a reduced one only if the model's forward in it passes the self-check.
fn checked_precision<AB: AutodiffBackend>(
    asked: AmpMode,
    model: &Yolo<AB>,
    val_loader: &BatchLoader,
    group: &Group,
    reporter: &mut dyn TrainReporter,
) -> Result<AmpMode> {
    if asked == AmpMode::Fp32 {
        return Ok(AmpMode::Fp32);
    }
    let check = amp_self_check(model, val_loader, asked)?;
    if let Some(check) = check {
        reporter.report(&TrainEvent::AmpChecked(check));
    }
    // Rank 0's check decides for all: the ranks must compute alike.
    Ok(match group.broadcast_value(check.is_none_or(|c| c.passed()))? {
        true => asked,
        false => AmpMode::Fp32,
    })
}

/// The run folder's `weights/`, `results.csv` (its header, unless a resumed run's is there) and `args.yaml`.
fn create_run_files(
    run_dir: &Path,
    s: &Settings,
    schedule: &Schedule,
    third_loss: &'static str,
    resumed: bool,
) -> Result<ResultsCsv> {
    let weights_dir = run_dir.join("weights");
    std::fs::create_dir_all(&weights_dir).with_context(|| format!("cannot create {}", weights_dir.display()))?;
    let lr_columns = results_lr_column_count(schedule.kind);
    let results = ResultsCsv::create(&run_dir.join("results.csv"), third_loss, lr_columns, resumed)?;
    let args = run_dir.join("args.yaml");
    std::fs::write(&args, schedule.recorded_settings(s).to_yaml())
        .with_context(|| format!("cannot write {}", args.display()))?;
    Ok(results)
}

/// One pass over the training set: forward, loss, backward, and an optimizer step whenever enough
/// batches have accumulated; reports each batch's running losses and the epoch's means.
fn train_epoch<AB: AutodiffBackend>(
    run: &Run,
    p: &mut Progress<AB>,
    mut model: Yolo<AB>,
    epoch: usize,
    device: &AB::Device,
) -> Result<(Yolo<AB>, EpochLosses)> {
    let (s, epochs, nb) = (&run.s, run.epochs, run.schedule.batches_per_epoch);
    run.emit(TrainEvent::EpochStarted { loss_names: run.criterion.names(), batches: nb });
    let (mut mean_loss, mut seen, mut skipped) = ([0f64; 3], 0usize, 0usize);
    let mut last_finite = true;
    let mut size = s.imgsz as usize;
    let mut last_instances = 0;
    let mut peak_device_memory = None;
    if p.pipeline.begin_epoch(&mut p.train_loader, epoch, epochs, s.close_mosaic as usize) {
        run.emit(TrainEvent::MosaicClosed);
    }
    let (epoch_started, mut epoch_images) = (Instant::now(), 0usize);
    let batches = p.train_loader.epoch(epoch);
    let data_wait = batches.wait_clock();
    for (i, batch) in batches.enumerate() {
        maybe_save_batch(s, &run.run_dir, epoch == run.start_epoch, i, &batch);
        epoch_images += batch.len();
        for (path, why) in &batch.failures {
            tracing::warn!("skipped {}: {why}", path.display());
        }
        if batch.is_empty() {
            continue;
        }
        if let Some(fault) = p.fault.take_if(|f| (f.epoch, f.batch) == (epoch, i)) {
            fault.strike();
            if fault.kind == FaultKind::OutOfMemory {
                return Err(injected_out_of_memory(epoch, i));
            }
            model = poison_weights(model);
            run.emit(TrainEvent::FaultInjected { epoch, batch: i });
        }
        let ni = i + nb * epoch;
        let plan = run.schedule.plan(ni, epoch);
        p.optimizer.groups = plan.groups;
        last_instances = batch.instances();
        let reads_before = readback::count();
        let (x, input_hw) = model_input::<AB>(run, p, &batch, device);
        size = input_hw[1];
        let out = model.forward(to_compute(x, run.precision));
        let loss = run.criterion.compute(out, &targets_of(&batch.labels, input_hw), epoch);
        let scale = p.scaler.map_or(1.0, |s| s.scale);
        let total = if scale == 1.0 { loss.total.clone() } else { loss.total.clone().mul_scalar(scale) };
        // A non-finite loss gives non-finite gradients, which the step below skips; its values are
        // read with the gradient statistics, so a batch costs one device read besides the assigner's.
        let grads = p.optimizer.flatten_gradients(&model, GradientsParams::from_grads(total.backward(), &model));
        p.pending = Some(match p.pending.take() {
            Some(sum) => sum + grads,
            None => grads,
        });
        let components = if ni as i64 - p.last_opt_step >= plan.accumulate as i64 {
            // The gradient of the whole batch: every rank's share summed (the identity for one process).
            let summed = run.group.all_reduce(p.pending.take().expect("accumulated above"));
            let (stepped, report) = optimizer_step(
                model,
                summed,
                &mut p.optimizer,
                &mut p.ema,
                p.scaler.as_mut(),
                Some(loss.parts.inner()),
            );
            model = stepped;
            if !report.applied {
                skipped += 1;
                if p.scaler.is_none() {
                    tracing::warn!("non-finite gradients at epoch {} batch {i}: step skipped", epoch + 1);
                }
            }
            report_scale(run, p.scaler.as_ref(), report.scale_event);
            p.last_opt_step = ni as i64;
            // Rank 0's clock decides for every rank (a broadcast only in time-limited runs).
            if run.s.time.is_some() && run.group.broadcast_value(out_of_time(run))? {
                break; // as Ultralytics: a time limit stops training after the step that reaches it
            }
            [report.read_along[0], report.read_along[1], report.read_along[2]]
        } else {
            loss.components()
        };
        let reads = readback::count() - reads_before;
        (p.most_reads.assigner, p.most_reads.other) =
            (p.most_reads.assigner.max(reads.assigner), p.most_reads.other.max(reads.other));
        last_finite = components.iter().all(|c| c.is_finite());
        if !last_finite {
            tracing::warn!("non-finite loss {components:?} at epoch {} batch {i}", epoch + 1);
            continue;
        }
        seen += 1;
        for k in 0..3 {
            mean_loss[k] += (components[k] as f64 - mean_loss[k]) / seen as f64;
        }
        let device_memory = device_memory::<AB>(device).map(|m| m.reserved);
        peak_device_memory = peak_device_memory.max(device_memory);
        let instances = batch.instances();
        run.emit(TrainEvent::Batch(ProgressRow { epoch, epochs, losses: mean_loss, instances, size, device_memory }));
    }
    let device_memory = device_memory::<AB>(device).map(|m| m.reserved);
    let row = ProgressRow { epoch, epochs, losses: mean_loss, instances: last_instances, size, device_memory };
    let throughput = Throughput {
        images: epoch_images,
        seconds: epoch_started.elapsed().as_secs_f64(),
        waiting: data_wait.total().as_secs_f64(),
    };
    run.emit(TrainEvent::EpochEnded { row, skipped_steps: skipped, throughput, peak_device_memory });
    Ok((model, EpochLosses { mean: mean_loss, last_finite }))
}

/// A batch as the model's input, at a size drawn for it when `multi_scale` is on, and that size.
fn model_input<AB: AutodiffBackend>(
    run: &Run,
    p: &mut Progress<AB>,
    batch: &crate::data::Batch,
    device: &AB::Device,
) -> (Tensor<AB, 4>, [usize; 2]) {
    let (x, input_hw) = (batch_tensor::<AB>(batch, device), [batch.shape[2], batch.shape[3]]);
    if run.s.multi_scale > 0.0 {
        let (imgsz, stride) = (run.s.imgsz as usize, run.stride);
        let drawn = multi_scale::draw_size(imgsz, run.s.multi_scale, stride, &mut p.scale_rng);
        if let Some(hw) = multi_scale::rescaled(input_hw, drawn, stride) {
            return (multi_scale::resize(x, hw), hw);
        }
    }
    (x, input_hw)
}

/// Reports a change of the loss scale that a step made.
fn report_scale(run: &Run, scaler: Option<&LossScaler>, event: Option<ScaleEvent>) {
    let (Some(s), Some(event)) = (scaler, event) else { return };
    let from = match event {
        ScaleEvent::Backoff => s.scale * 2.0,
        ScaleEvent::Growth => s.scale / 2.0,
        ScaleEvent::Unchanged => return,
    };
    run.emit(TrainEvent::LossScale { event, from, to: s.scale, growth_interval: s.growth_interval });
}

/// After an epoch, rank 0 validates and decides what comes next ([`review_epoch`]); the other ranks of a
/// data-parallel run wait for its decision and follow it.
fn end_epoch<AB: AutodiffBackend>(
    run: &Run,
    p: &mut Progress<AB>,
    model: &mut Yolo<AB>,
    epoch: usize,
    losses: EpochLosses,
) -> Result<Next> {
    if run.group.is_main() {
        let next = review_epoch(run, p, model, epoch, losses)?;
        return run.group.broadcast_value(next);
    }
    let next = run.group.broadcast_value(Next::Epoch)?;
    if next == Next::Repeat {
        reload_last(run, p, model, epoch)?;
    } else {
        (p.recoveries, p.epochs_completed) = (0, epoch + 1);
    }
    Ok(next)
}

/// After an epoch: validate the EMA, go back to the last checkpoint if the run diverged, write the
/// checkpoints and the results row, and decide whether to stop (patience, time limit).
fn review_epoch<AB: AutodiffBackend>(
    run: &Run,
    p: &mut Progress<AB>,
    model: &mut Yolo<AB>,
    epoch: usize,
    losses: EpochLosses,
) -> Result<Next> {
    let s = &run.s;
    let timed_out = out_of_time(run);
    let final_epoch = epoch + 1 >= run.epochs || timed_out;
    let outcome = if s.val || final_epoch { Some(validate_epoch(run, p, epoch)?) } else { None };
    let (metrics_row, val_loss, fitness) = match &outcome {
        Some(o) => (o.metrics.mean_results(), o.loss.unwrap_or_default(), o.metrics.fitness),
        None => ([0.0; 4], [0.0; 3], 0.0),
    };
    if (!losses.last_finite || !fitness.is_finite()) && recover(run, p, model, epoch, losses.last_finite)? {
        return Ok(Next::Repeat);
    }
    p.recoveries = 0;
    p.epochs_completed = epoch + 1;
    let verdict = p.stopping.update(fitness);
    if s.save {
        save_checkpoints(run, p, model, fitness, verdict.improved)?;
    }
    let results = run.results.as_ref().context("rank 0 writes results.csv")?;
    results.append(&EpochRow {
        epoch: p.epochs_completed,
        time: run.started.elapsed().as_secs_f64(),
        train_loss: losses.mean,
        metrics: metrics_row,
        val_loss,
        lr: results_lr_columns(run.schedule.kind, &p.optimizer.groups),
        loss_scale: p.scaler.map_or(1.0, |s| s.scale),
    })?;
    if s.plots {
        let csv = run.run_dir.join("results.csv");
        if let Err(e) = super::results::plot_results(&csv, &run.run_dir.join("results.png")) {
            tracing::warn!("results.png not drawn: {e:#}");
        }
    }
    p.final_metrics = outcome.map(|o| o.metrics);
    if verdict.stop {
        let (patience, best_fitness) = (p.stopping.patience, p.stopping.best_fitness);
        run.emit(TrainEvent::Stopped(StopReason::Patience { patience, best_fitness }));
        return Ok(Next::Stop);
    }
    if timed_out {
        run.emit(TrainEvent::Stopped(StopReason::TimeLimit { hours: s.time.unwrap_or_default() }));
        return Ok(Next::Stop);
    }
    Ok(Next::Epoch)
}

/// Whether a `time=` limit is reached.
fn out_of_time(run: &Run) -> bool {
    run.s.time.is_some_and(|h| run.started.elapsed().as_secs_f64() > h * 3600.0)
}

/// Validates the EMA weights, with the validation losses.
fn validate_epoch<AB: AutodiffBackend>(run: &Run, p: &Progress<AB>, epoch: usize) -> Result<ValOutcome> {
    let started = Instant::now();
    let outcome = validate(&p.ema.module(), &run.val_loader, &run.val_options, Some((&run.criterion, epoch)))?;
    let (images, seconds) = (run.val_loader.samples().len(), started.elapsed().as_secs_f64());
    let throughput = Throughput { images, seconds, waiting: 0.0 };
    run.emit(TrainEvent::Validated { metrics: &outcome.metrics, names: &run.names, throughput });
    Ok(outcome)
}

/// A run that has diverged (the epoch ends on a non-finite loss, or the metrics are not finite) goes back
/// to its last checkpoint and repeats the epoch, as Ultralytics does. Returns whether it went back.
fn recover<AB: AutodiffBackend>(
    run: &Run,
    p: &mut Progress<AB>,
    model: &mut Yolo<AB>,
    epoch: usize,
    loss_finite: bool,
) -> Result<bool> {
    let reason = if loss_finite { "non-finite fitness" } else { "non-finite loss" };
    if epoch == run.start_epoch {
        tracing::warn!(
            "{reason} in epoch {} but there is no checkpoint of this run to go back to; continuing",
            epoch + 1
        );
        return Ok(false);
    }
    p.recoveries += 1;
    let last = &run.last;
    if p.recoveries > MAX_RECOVERIES {
        bail!("training diverged: {reason} persisted through {MAX_RECOVERIES} reloads of {}; try a lower lr0 or --amp=false", last.display());
    }
    run.emit(TrainEvent::Diverged { reason, epoch, attempt: p.recoveries, attempts: MAX_RECOVERIES, reload: last });
    reload_last(run, p, model, epoch).with_context(|| format!("{reason} in epoch {}", epoch + 1))?;
    Ok(true)
}

/// Puts the run back to its last checkpoint, to repeat `epoch`.
fn reload_last<AB: AutodiffBackend>(run: &Run, p: &mut Progress<AB>, model: &mut Yolo<AB>, epoch: usize) -> Result<()> {
    let meta = checkpoint::read_meta(&run.last)?
        .with_context(|| format!("{} is not an ember training checkpoint to recover from", run.last.display()))?;
    restore(&run.last, &meta, model, &mut p.optimizer, &mut p.ema)?;
    if let Some(scaler) = p.scaler.as_mut() {
        restore_scale(scaler, &meta);
    }
    p.stopping.best_fitness = meta.best_fitness;
    p.pending = None;
    p.last_opt_step = (run.schedule.batches_per_epoch * epoch) as i64 - 1;
    Ok(())
}

/// Writes `last` (EMA, raw weights and optimizer state), `best` when the fitness is the best so far, and
/// the periodic `epochN` copy.
fn save_checkpoints<AB: AutodiffBackend>(
    run: &Run,
    p: &Progress<AB>,
    model: &Yolo<AB>,
    fitness: f64,
    improved: bool,
) -> Result<()> {
    let s = &run.s;
    let meta = CheckpointMeta {
        ember_version: env!("CARGO_PKG_VERSION").into(),
        model: s.model.clone(),
        nc: run.names.len(),
        names: run.names.clone(),
        imgsz: s.imgsz,
        epoch: p.epochs_completed,
        epochs: run.epochs,
        fitness,
        best_fitness: p.stopping.best_fitness,
        ema_updates: p.ema.updates,
        optimizer: Some(run.schedule.kind),
        optimizer_steps: p.optimizer.steps,
        loss_scale: p.scaler.map(|s| s.scale),
        loss_scale_growth: p.scaler.map_or(0, |s| s.clean_steps),
        settings: s.to_yaml(),
    };
    let state = TrainState { model: &model.valid(), optimizer: p.optimizer.state() };
    let averaged = p.ema.module();
    checkpoint::save(&run.last, &averaged, Some(state), &meta)?;
    if improved {
        checkpoint::save(&run.best, &averaged, None, &meta)?;
    }
    if s.save_period > 0 && p.epochs_completed.is_multiple_of(s.save_period as usize) {
        let copy = run.weights_dir.join(format!("epoch{}.safetensors", p.epochs_completed));
        std::fs::copy(&run.last, &copy).with_context(|| format!("cannot write {}", copy.display()))?;
    }
    Ok(())
}

/// The summary after the last epoch: as Ultralytics, the final table is that of best's weights,
/// validated again, not the last epoch's.
fn finish<AB: AutodiffBackend>(run: Run, p: Progress<AB>) -> Result<TrainOutcome> {
    let hours = run.started.elapsed().as_secs_f64() / 3600.0;
    run.emit(TrainEvent::Finished { epochs: p.epochs_completed - run.start_epoch, hours });
    let mut final_metrics = p.final_metrics;
    if run.s.save && run.group.is_main() && run.best.is_file() {
        run.emit(TrainEvent::FinalValidation { weights: &run.best });
        final_metrics = Some(validate_checkpoint(&run.best, &p.ema.module(), &run.val_loader, &run.val_options)?);
    }
    if let Some(metrics) = &final_metrics {
        run.emit(TrainEvent::FinalMetrics { metrics, names: &run.names });
    }
    run.emit(TrainEvent::Saved { run_dir: &run.run_dir });
    Ok(TrainOutcome {
        run_dir: run.run_dir,
        last: run.last,
        best: run.best,
        epochs_completed: p.epochs_completed,
        final_metrics,
        best_fitness: p.stopping.best_fitness,
        batch_reads: p.most_reads,
    })
}

/// Validates the weights saved in `checkpoint`, loaded into a copy of `template` (same architecture).
fn validate_checkpoint<B: burn::tensor::backend::Backend>(
    checkpoint: &Path,
    template: &Yolo<B>,
    loader: &BatchLoader,
    options: &ValOptions,
) -> Result<DetectionMetrics> {
    let mut model = template.deep_clone()?;
    model.load_safetensors(checkpoint).with_context(|| format!("{}: weights to validate", checkpoint.display()))?;
    Ok(validate(&model, loader, options, None)?.metrics)
}

/// Reloads of `last` allowed in a row before a diverging run is stopped (Ultralytics' limit).
const MAX_RECOVERIES: usize = 3;

/// Puts the run back to the state saved in `path`: training weights, optimizer buffers and step
/// count, and the EMA. Used by `--resume` and to recover from a diverged epoch.
fn restore<AB: AutodiffBackend>(
    path: &Path,
    meta: &CheckpointMeta,
    model: &mut Yolo<AB>,
    optimizer: &mut DetectorOptimizer<AB::InnerBackend>,
    ema: &mut ModelEma<AB::InnerBackend, Yolo<AB::InnerBackend>>,
) -> Result<()> {
    let moments = checkpoint::load_train_state(path, model)?;
    *model = optimizer.attach(model.clone());
    optimizer.load_state(moments);
    optimizer.steps = meta.optimizer_steps;
    let mut averaged = model.valid().deep_clone()?;
    averaged.load_safetensors(path).with_context(|| format!("{}: EMA weights", path.display()))?;
    *ema = ModelEma::new(averaged);
    ema.updates = meta.ema_updates;
    Ok(())
}

fn restore_scale(scaler: &mut LossScaler, meta: &CheckpointMeta) {
    if let Some(scale) = meta.loss_scale {
        (scaler.scale, scaler.clean_steps) = (scale, meta.loss_scale_growth);
    }
}
