//! The training loop: batches -> model -> loss -> accumulated gradients -> clipped optimizer step ->
//! EMA; after each epoch the EMA is validated, checkpoints and `results.csv` are written.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use burn::module::{AutodiffModule, Module};
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{FloatDType, Tensor};
use rand::SeedableRng;

use super::console;
use super::ema::ModelEma;
use super::fault::{poison_weights, Fault};
use super::loss_scale::{LossScaler, ScaleEvent};
use super::multi_scale;
use super::optimizer::DetectorOptimizer;
use super::results::{EpochRow, ResultsCsv};
use super::schedule::{results_lr_columns, Schedule};
use super::step::optimizer_step;
use crate::config::{AmpMode, OptimizerKind, Settings};
use crate::data::augment::pipeline::{epoch_report, maybe_save_batch, TrainPipeline};
use crate::data::{batch_tensor, BatchLoader, Sample};
use crate::loss::criterion::{targets_of, Criterion};
use crate::metrics::DetectionMetrics;
use crate::model::Yolo;
use crate::readback::{self, ReadCount};
use crate::runs::checkpoint::{self, CheckpointMeta, TrainState};
use crate::validate::{validate, ValOptions};

/// Everything a training run starts from.
pub struct TrainInputs {
    pub settings: Settings,
    pub names: Vec<String>,
    pub train: Vec<Sample>,
    pub val: Vec<Sample>,
    pub run_dir: PathBuf,
    /// A checkpoint to continue from, with its header.
    pub resume: Option<(PathBuf, CheckpointMeta)>,
    /// The resolved compute precision (`Fp16` means FP16 compute with loss scaling).
    pub precision: AmpMode,
}

/// Model input in the compute precision: FP16/BF16 activations flow through the network from here,
/// each convolution casting its FP32 master weights to the input's type.
fn to_compute<B: burn::tensor::backend::Backend>(x: Tensor<B, 4>, precision: AmpMode) -> Tensor<B, 4> {
    match precision {
        AmpMode::Fp32 => x,
        AmpMode::Fp16 => x.cast(FloatDType::F16),
        AmpMode::Bf16 => x.cast(FloatDType::BF16),
    }
}

/// What a finished run leaves.
#[derive(Debug)]
pub struct TrainOutcome {
    pub run_dir: PathBuf,
    pub last: PathBuf,
    pub best: PathBuf,
    pub epochs_completed: usize,
    pub final_metrics: Option<DetectionMetrics>,
    pub best_fitness: f64,
    /// The most device-to-host reads of ember's own that one training batch made.
    pub batch_reads: ReadCount,
}

/// Trains on `device` with autodiff backend `AB`.
pub fn train<AB: AutodiffBackend>(inputs: TrainInputs, device: &AB::Device) -> Result<TrainOutcome> {
    let TrainInputs { settings: s, names, train, val, run_dir, resume, precision } = inputs;
    let nc = names.len();
    let epochs = s.epochs as usize;
    let batch = s.batch as usize;
    if train.is_empty() {
        bail!("the training split has no usable images");
    }

    AB::seed(device, s.seed);
    let mut model = Yolo::<AB>::new(&s.model, nc, device)?;
    if let (Some(weights), None, true) = (&s.weights, &resume, s.pretrained) {
        let report = model.load_weights(weights)?;
        println!("Transferred weights from {weights}: {report}");
    }
    if let Some(layers) = &s.freeze {
        let (frozen, keys) = super::freeze::freeze(model, layers)?;
        model = frozen;
        println!("freeze: {} parameter tensors of layers {layers:?} (and the DFL) stay fixed", keys.len());
    }
    let criterion = Criterion::new(
        nc,
        model.reg_max(),
        model.end2end(),
        [s.box_gain as f32, s.cls_gain as f32, s.dfl_gain as f32],
        epochs,
    );
    let loss_names = criterion.names();

    // Ultralytics' recipe (accumulation, decay scaling, the optimizer pick, warmup): src/train/schedule.rs.
    let schedule = Schedule::for_run(&s, train.len(), nc);
    let nb = schedule.batches_per_epoch;
    let (kind, lr0, momentum, weight_decay) = (schedule.kind, schedule.lr0, schedule.momentum, schedule.weight_decay);
    if schedule.auto {
        let (ignored_lr0, ignored_momentum, iterations) = (s.lr0, s.momentum, schedule.iterations);
        println!(
            "optimizer: 'optimizer=auto' found, ignoring lr0={ignored_lr0} and momentum={ignored_momentum}; \
                  picked {kind:?}(lr={lr0}) for {iterations} iterations"
        );
    }
    let decayed = if kind == OptimizerKind::MuSGD { "conv and matrix weights (Muon + SGD)" } else { "conv weights" };
    println!("optimizer: {kind:?}(lr={lr0}, momentum={momentum}) with weight decay {weight_decay} on {decayed}, none on biases and norms");
    let mut optimizer = DetectorOptimizer::<AB::InnerBackend>::new(kind, lr0, momentum, weight_decay);
    let mut ema = ModelEma::new(model.valid().deep_clone()?);
    let (mut start_epoch, mut best_fitness) = (0usize, f64::NEG_INFINITY);
    if let Some((path, meta)) = &resume {
        restore(path, meta, &mut model, &mut optimizer, &mut ema)?;
        (start_epoch, best_fitness) = (meta.epoch, meta.best_fitness);
        println!("Resuming training from {} at epoch {} of {epochs}", path.display(), start_epoch + 1);
    }

    // Input pipeline (augmentation, cache, mosaic closing): src/data/augment/pipeline.rs.
    let (mut pipeline, mut train_loader, val_loader) = TrainPipeline::loaders(&s, train, val, batch)?;
    let precision = match precision {
        AmpMode::Fp32 => AmpMode::Fp32,
        reduced => amp_self_check(&model, &val_loader, reduced)?,
    };
    let mut scaler = (precision == AmpMode::Fp16).then(LossScaler::default);
    if let (Some(scaler), Some((_, meta))) = (scaler.as_mut(), &resume) {
        restore_scale(scaler, meta);
    }
    let weights_dir = run_dir.join("weights");
    std::fs::create_dir_all(&weights_dir).with_context(|| format!("cannot create {}", weights_dir.display()))?;
    let (last, best) = (weights_dir.join("last.safetensors"), weights_dir.join("best.safetensors"));
    let results = ResultsCsv::create(&run_dir.join("results.csv"), loss_names[2], resume.is_some())?;
    std::fs::write(run_dir.join("args.yaml"), s.to_yaml())
        .with_context(|| format!("cannot write {}", run_dir.join("args.yaml").display()))?;
    println!("Logging results to {}", run_dir.display());
    println!("Starting training for {epochs} epochs...");

    let started = Instant::now();
    let mut accumulator = GradientsAccumulator::<Yolo<AB>>::new();
    let mut last_opt_step: i64 = (nb * start_epoch) as i64 - 1;
    let mut final_metrics = None;
    let mut epochs_completed = start_epoch;
    let mut epochs_without_improvement = 0usize;
    let val_options = ValOptions::for_val(&s, model.end2end());
    let mut fault = Fault::from_env();
    let mut recoveries = 0usize;
    let mut most_reads = ReadCount::default();
    // Multi-scale sizes come from their own seeded stream, so a run repeats with the same seed.
    let mut scale_rng = rand_chacha::ChaCha8Rng::seed_from_u64(s.seed ^ 0x6d75_6c74_6973_6361);
    let stride = model.strides().iter().fold(32.0f32, |m, &v| m.max(v)) as usize;
    let mut epoch = start_epoch;
    while epoch < epochs {
        println!("\n{}", console::header(loss_names));
        let bar = console::epoch_bar(nb);
        let (mut mean_loss, mut seen, mut skipped) = ([0f64; 3], 0usize, 0usize);
        let mut last_loss_finite = true;
        let mut size = s.imgsz as usize;
        let mut last_instances = 0;
        pipeline.begin_epoch(&mut train_loader, epoch, epochs, s.close_mosaic as usize);
        let (epoch_started, mut epoch_images) = (Instant::now(), 0usize);
        let batches = train_loader.epoch(epoch);
        let data_wait = batches.wait_clock();
        for (i, batch) in batches.enumerate() {
            maybe_save_batch(&s, &run_dir, epoch == start_epoch, i, &batch);
            epoch_images += batch.len();
            for (path, why) in &batch.failures {
                tracing::warn!("skipped {}: {why}", path.display());
            }
            if batch.is_empty() {
                continue;
            }
            if fault.is_some_and(|f| (f.epoch, f.batch) == (epoch, i)) {
                fault = None;
                model = poison_weights(model);
                println!("EMBER_FAULT: weights set to NaN before epoch {} batch {i}", epoch + 1);
            }
            let ni = i + nb * epoch;
            let plan = schedule.plan(ni, epoch);
            optimizer.groups = plan.groups;
            size = batch.shape[3];
            last_instances = batch.instances();
            let reads_before = readback::count();
            let (mut x, mut input_hw) = (batch_tensor::<AB>(&batch, device), [batch.shape[2], batch.shape[3]]);
            if s.multi_scale > 0.0 {
                let drawn = multi_scale::draw_size(s.imgsz as usize, s.multi_scale, stride, &mut scale_rng);
                if let Some(hw) = multi_scale::rescaled(input_hw, drawn, stride) {
                    (x, input_hw) = (multi_scale::resize(x, hw), hw);
                    size = hw[1];
                }
            }
            let out = model.forward(to_compute(x, precision));
            let loss = criterion.compute(out, &targets_of(&batch.labels, input_hw), epoch);
            let scale = scaler.map_or(1.0, |s| s.scale);
            let total = if scale == 1.0 { loss.total.clone() } else { loss.total.clone().mul_scalar(scale) };
            // A non-finite loss gives non-finite gradients, which the step below skips; its values are
            // read with the gradient statistics, so a batch costs one device read besides the assigner's.
            let grads = GradientsParams::from_grads(total.backward(), &model);
            accumulator.accumulate(&model, grads);
            let components = if ni as i64 - last_opt_step >= plan.accumulate as i64 {
                let loss_parts = loss.parts.inner();
                let (stepped, report) = optimizer_step(
                    model,
                    accumulator.grads(),
                    &mut optimizer,
                    &mut ema,
                    scaler.as_mut(),
                    Some(loss_parts),
                );
                model = stepped;
                if !report.applied {
                    skipped += 1;
                    if scaler.is_none() {
                        tracing::warn!("non-finite gradients at epoch {} batch {i}: step skipped", epoch + 1);
                    }
                }
                if let (Some(s), Some(event)) = (scaler.as_ref(), report.scale_event) {
                    match event {
                        ScaleEvent::Backoff => println!(
                            "AMP: gradient overflow, step skipped; loss scale {} -> {}",
                            s.scale * 2.0,
                            s.scale
                        ),
                        ScaleEvent::Growth => println!(
                            "AMP: {} clean steps, loss scale {} -> {}",
                            s.growth_interval,
                            s.scale / 2.0,
                            s.scale
                        ),
                        ScaleEvent::Unchanged => {}
                    }
                }
                last_opt_step = ni as i64;
                [report.read_along[0], report.read_along[1], report.read_along[2]]
            } else {
                loss.components()
            };
            let reads = readback::count() - reads_before;
            (most_reads.assigner, most_reads.other) =
                (most_reads.assigner.max(reads.assigner), most_reads.other.max(reads.other));
            last_loss_finite = components.iter().all(|c| c.is_finite());
            if !last_loss_finite {
                tracing::warn!("non-finite loss {components:?} at epoch {} batch {i}", epoch + 1);
                continue;
            }
            seen += 1;
            for k in 0..3 {
                mean_loss[k] += (components[k] as f64 - mean_loss[k]) / seen as f64;
            }
            bar.set_message(console::row(epoch, epochs, mean_loss, batch.instances(), size));
            bar.inc(1);
        }
        bar.finish_and_clear();
        println!("{}", console::row(epoch, epochs, mean_loss, last_instances, size).trim_end());
        if skipped > 0 {
            println!("{skipped} steps skipped this epoch (non-finite loss or gradient overflow)");
        }
        if s.verbose {
            println!("{}", epoch_report(epoch_images, epoch_started.elapsed(), data_wait.total()));
        }

        let out_of_time = s.time.is_some_and(|h| started.elapsed().as_secs_f64() > h * 3600.0);
        let final_epoch = epoch + 1 == epochs || out_of_time;
        let outcome = if s.val || final_epoch {
            let val_started = Instant::now();
            let o = validate(&ema.module, &val_loader, &val_options, Some((&criterion, epoch)))?;
            if s.verbose {
                let (n, secs) = (val_loader.samples().len(), val_started.elapsed().as_secs_f64());
                println!("val: {n} images in {secs:.1}s ({:.2} images/s)", n as f64 / secs.max(1e-9));
            }
            Some(o)
        } else {
            None
        };
        let (metrics_row, val_loss, fitness) = match &outcome {
            Some(o) => {
                print!(
                    "{}",
                    o.metrics.format_table(&names).lines().take(2).map(|l| format!("{l}\n")).collect::<String>()
                );
                (o.metrics.mean_results(), o.loss.unwrap_or_default(), o.metrics.fitness)
            }
            None => ([0.0; 4], [0.0; 3], 0.0),
        };
        // A run that has diverged (the epoch ends on a non-finite loss, or the metrics are not finite)
        // goes back to its last checkpoint and repeats the epoch, as Ultralytics does.
        if !last_loss_finite || !fitness.is_finite() {
            let reason = if last_loss_finite { "non-finite fitness" } else { "non-finite loss" };
            if epoch == start_epoch {
                tracing::warn!(
                    "{reason} in epoch {} but there is no checkpoint of this run to go back to; continuing",
                    epoch + 1
                );
            } else {
                recoveries += 1;
                if recoveries > MAX_RECOVERIES {
                    bail!("training diverged: {reason} persisted through {MAX_RECOVERIES} reloads of {}; try a lower lr0 or --amp=false", last.display());
                }
                let meta = checkpoint::read_meta(&last)?.with_context(|| {
                    format!(
                        "{reason} in epoch {} and {} is not an ember training checkpoint to recover from",
                        epoch + 1,
                        last.display()
                    )
                })?;
                println!("{reason} detected in epoch {} (attempt {recoveries}/{MAX_RECOVERIES}): reloading {} and repeating the epoch", epoch + 1, last.display());
                restore(&last, &meta, &mut model, &mut optimizer, &mut ema)?;
                if let Some(scaler) = scaler.as_mut() {
                    restore_scale(scaler, &meta);
                }
                best_fitness = meta.best_fitness;
                accumulator = GradientsAccumulator::new();
                last_opt_step = (nb * epoch) as i64 - 1;
                continue;
            }
        }
        recoveries = 0;
        epochs_completed = epoch + 1;
        // Ultralytics 8.4.190: best.pt is rewritten when the fitness equals the best so far (ties go to the later
        // epoch); its EarlyStopping counts from the last strictly better epoch, or from any while the best is 0.
        let improved = fitness >= best_fitness;
        if fitness > best_fitness || best_fitness == 0.0 {
            epochs_without_improvement = 0;
        } else {
            epochs_without_improvement += 1;
        }
        best_fitness = best_fitness.max(fitness);
        let meta = CheckpointMeta {
            ember_version: env!("CARGO_PKG_VERSION").into(),
            model: s.model.clone(),
            nc,
            names: names.clone(),
            imgsz: s.imgsz,
            epoch: epochs_completed,
            epochs,
            fitness,
            best_fitness,
            ema_updates: ema.updates,
            optimizer: Some(kind),
            optimizer_steps: optimizer.steps,
            loss_scale: scaler.map(|s| s.scale),
            loss_scale_growth: scaler.map_or(0, |s| s.clean_steps),
            settings: s.to_yaml(),
        };
        if s.save {
            checkpoint::save(
                &last,
                &ema.module,
                Some(TrainState { model: &model.valid(), optimizer: optimizer.state() }),
                &meta,
            )?;
            if improved {
                checkpoint::save(&best, &ema.module, None, &meta)?;
            }
            if s.save_period > 0 && epochs_completed % s.save_period as usize == 0 {
                std::fs::copy(&last, weights_dir.join(format!("epoch{epochs_completed}.safetensors")))?;
            }
        }
        results.append(&EpochRow {
            epoch: epochs_completed,
            time: started.elapsed().as_secs_f64(),
            train_loss: mean_loss,
            metrics: metrics_row,
            val_loss,
            lr: results_lr_columns(&optimizer.groups),
            loss_scale: scaler.map_or(1.0, |s| s.scale),
        })?;
        if s.plots {
            let csv = run_dir.join("results.csv");
            if let Err(e) = super::results::plot_results(&csv, &run_dir.join("results.png")) {
                tracing::warn!("results.png not drawn: {e:#}");
            }
        }
        final_metrics = outcome.map(|o| o.metrics);
        if epochs_without_improvement >= s.patience as usize && s.patience > 0 {
            println!(
                "Stopping early: no improvement in the last {} epochs (best fitness {best_fitness:.5})",
                s.patience
            );
            break;
        }
        if out_of_time {
            println!("Stopping: the time limit of {} hours is reached", s.time.unwrap_or_default());
            break;
        }
        epoch += 1;
    }
    let hours = started.elapsed().as_secs_f64() / 3600.0;
    println!("\n{} epochs completed in {hours:.3} hours.", epochs_completed - start_epoch);
    // As Ultralytics: the final table is that of best's weights, validated again, not the last epoch's.
    if s.save && best.is_file() {
        println!("\nValidating {}...", best.display());
        final_metrics = Some(validate_checkpoint(&best, &ema.module, &val_loader, &val_options)?);
    }
    if let Some(m) = &final_metrics {
        println!("{}", m.format_table(&names));
    }
    println!("Results saved to {}", run_dir.display());
    Ok(TrainOutcome { run_dir, last, best, epochs_completed, final_metrics, best_fitness, batch_reads: most_reads })
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
    ema: &mut ModelEma<Yolo<AB::InnerBackend>>,
) -> Result<()> {
    let inner_device = model.valid().devices().into_iter().next().context("the model has no tensors")?;
    let moments = checkpoint::load_train_state(path, model)?;
    optimizer.load_state(moments, &inner_device);
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

/// Before training in reduced precision, compares FP32 and reduced-precision forward passes of the
/// user's own model on a real batch (offline: no reference weights are downloaded). A mismatch beyond
/// tolerance means this device or model is not safe in that precision: warn and train in FP32.
fn amp_self_check<AB: AutodiffBackend>(model: &Yolo<AB>, loader: &BatchLoader, precision: AmpMode) -> Result<AmpMode> {
    let Some(batch) = loader.epoch(0).find(|b| !b.is_empty()) else { return Ok(precision) };
    // A fresh model's BatchNorm statistics are the identity, which leaves little for rounding to act on:
    // a copy first sees the batch in training mode, so the comparison runs at realistic activations.
    let calibrated = model.deep_clone()?;
    let device = calibrated.devices().into_iter().next().context("the model has no tensors")?;
    for _ in 0..3 {
        let _ = calibrated.forward(batch_tensor::<AB>(&batch, &device));
    }
    let model = calibrated.valid();
    let x = batch_tensor::<AB::InnerBackend>(&batch, &device);
    let reference: Vec<f32> =
        model.predict(x.clone()).into_data().convert::<f32>().to_vec().map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let reduced: Vec<f32> = model
        .predict(to_compute(x, precision))
        .cast(FloatDType::F32)
        .into_data()
        .convert::<f32>()
        .to_vec()
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let max_ref = reference.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
    let max_diff =
        reference
            .iter()
            .zip(&reduced)
            .fold(0f32, |m, (a, b)| if b.is_finite() { m.max((a - b).abs()) } else { f32::INFINITY });
    let rel = max_diff / max_ref;
    // Measured on yolo26n at initialisation: 8e-4 (FP16); BF16 keeps 3 fewer bits than FP16.
    let tolerance = if precision == AmpMode::Bf16 { 5e-2 } else { 1e-2 };
    if rel <= tolerance {
        println!("AMP checks passed: {precision} forward within {rel:.1e} of FP32 on a real batch");
        Ok(precision)
    } else {
        println!("AMP check failed: {precision} forward differs from FP32 by {rel:.1e} (tolerance {tolerance:.0e}); training in FP32");
        Ok(AmpMode::Fp32)
    }
}

/// The `last` checkpoint of the newest run under `project`, for `--resume` without a path.
pub fn newest_last_checkpoint(project: &Path) -> Result<PathBuf> {
    let mut newest: Option<(std::time::SystemTime, PathBuf)> = None;
    if let Ok(entries) = std::fs::read_dir(project) {
        for entry in entries.flatten() {
            let candidate = entry.path().join("weights/last.safetensors");
            if let Ok(modified) = candidate.metadata().and_then(|m| m.modified()) {
                if newest.as_ref().is_none_or(|(t, _)| modified > *t) {
                    newest = Some((modified, candidate));
                }
            }
        }
    }
    newest
        .map(|(_, p)| p)
        .with_context(|| format!("--resume: no run with weights/last.safetensors under {}", project.display()))
}
