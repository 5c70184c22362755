//! `ember train`: resolve the run (new or resumed), check the data, then hand over to the trainer.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use burn::tensor::backend::AutodiffBackend;

use crate::config::{AmpMode, Settings};
use crate::data::scan::{drop_mixed_polygons, scan_split};
use crate::data::Split;
use crate::device::{fp16_unsafe, ComputeDevice, OnAutodiffBackend};
use crate::model::locate::locate_weights;
use crate::model::weights_file::model_from_pt;
use crate::runs::checkpoint;
use crate::runs::folder::make_run_dir;
use crate::runs::folder::newest_last_checkpoint;
use crate::train::loss_scale::LossScaler;
use crate::train::trainer::{train, TrainInputs, TrainOutcome};

pub fn run(settings: &Settings, explicit_amp: bool) -> Result<TrainOutcome> {
    let (mut settings, resume) = resolve_resume(settings)?;
    if resume.is_none() {
        resolve_starting_weights(&mut settings)?;
    }
    let compute = ComputeDevice::resolve(settings.device.as_deref())?;
    println!("device: {compute}");
    // A resumed run's saved `amp` is the mode it resolved to, so it counts as explicit.
    let precision = resolve_precision(&settings, &compute, explicit_amp || resume.is_some());
    settings.amp = precision;
    // As Ultralytics: under AMP on a GPU the per-epoch validation runs the EMA in FP16 too.
    if compute.is_gpu() && precision == AmpMode::Fp16 {
        settings.half = true;
    }

    let dataset = super::load_dataset(&settings)?;
    let mut train_scan = scan_split(dataset.split_sources(Split::Train)?, dataset.nc(), Split::Train)?;
    let val_split = if dataset.val.is_empty() { Split::Train } else { Split::Val };
    let val_scan = scan_split(dataset.split_sources(val_split)?, dataset.nc(), Split::Val)?;
    for scan in [&train_scan, &val_scan] {
        println!("{}", scan.summary_line());
        for c in scan.corrupt.iter().take(10) {
            tracing::warn!("skipping corrupt image: {}", c.reason);
        }
    }
    if val_scan.samples.is_empty() {
        bail!("{}: the val split has no usable images", dataset.yaml_path.display());
    }
    if settings.fraction < 1.0 {
        let keep = ((train_scan.samples.len() as f64 * settings.fraction).round() as usize).max(1);
        train_scan.samples.truncate(keep);
        println!("fraction={}: training on the first {keep} images", settings.fraction);
    }
    let mut names = dataset.names.clone();
    let (mut train_samples, mut val_samples) = (train_scan.samples, val_scan.samples);
    if let Some((boxes, polygons)) = drop_mixed_polygons(&mut train_samples) {
        tracing::warn!(
            "train: {polygons} polygons for {boxes} boxes (box-only and polygon label files mixed); as Ultralytics \
             does, only the boxes are used"
        );
    }
    // Only the training augmentation reads polygons.
    val_samples.iter_mut().for_each(|s| s.polygons = Vec::new());
    if settings.single_cls {
        names = vec!["item".into()];
        for s in train_samples.iter_mut().chain(val_samples.iter_mut()) {
            s.labels.iter_mut().for_each(|b| b.class = 0);
        }
    }

    let run_dir = match &resume {
        Some((path, _)) => {
            path.parent().and_then(Path::parent).map(Path::to_path_buf).context("checkpoint path has no run folder")?
        }
        None => {
            let project = PathBuf::from(settings.project.as_deref().unwrap_or("runs"));
            make_run_dir(&project, settings.name.as_deref().unwrap_or("train"), settings.exist_ok)?
        }
    };
    let inputs = TrainInputs { settings, names, train: train_samples, val: val_samples, run_dir, resume, precision };
    compute.run_autodiff(Train(inputs))
}

/// The trainer, on whichever backend the device resolved to.
struct Train(TrainInputs);

impl OnAutodiffBackend for Train {
    type Output = Result<TrainOutcome>;
    fn run<B: AutodiffBackend>(self, device: &B::Device) -> Result<TrainOutcome> {
        train::<B>(self.0, device)
    }
}

/// `--model yolo26n.pt`: the architecture comes from the checkpoint's model YAML and its weights are the
/// starting point (unless `--weights` names others). Named files are looked up as [`locate_weights`] says.
fn resolve_starting_weights(settings: &mut Settings) -> Result<()> {
    if let Some(weights) = settings.weights.clone() {
        settings.weights = Some(locate_weights(&weights)?.display().to_string());
    }
    let Some((path, architecture, nc)) = model_from_pt(&settings.model)? else { return Ok(()) };
    println!("{}: {architecture}, nc={nc}", path.display());
    settings.model = architecture;
    if settings.weights.is_none() {
        settings.weights = Some(path.display().to_string());
    }
    Ok(())
}

/// `--resume`: the newest run's last checkpoint, or the given one; its saved settings win.
fn resolve_resume(settings: &Settings) -> Result<(Settings, Option<(PathBuf, checkpoint::CheckpointMeta)>)> {
    let Some(resume) = settings.resume.as_deref() else { return Ok((settings.clone(), None)) };
    let path = if resume == "true" {
        newest_last_checkpoint(Path::new(settings.project.as_deref().unwrap_or("runs")))?
    } else {
        PathBuf::from(resume)
    };
    let meta = checkpoint::read_meta(&path)?
        .with_context(|| format!("{} is not an ember training checkpoint (no ember header)", path.display()))?;
    if meta.epoch >= meta.epochs {
        bail!(
            "{} finished all {} epochs already; nothing to resume (start a new run with --weights)",
            path.display(),
            meta.epochs
        );
    }
    let mut saved: Settings = serde_yaml::from_str(&meta.settings)
        .with_context(|| format!("{}: unreadable saved settings", path.display()))?;
    saved.resume = None;
    // Where the data lives may differ on this machine.
    if settings.datasets_dir.is_some() {
        saved.datasets_dir = settings.datasets_dir.clone();
    }
    Ok((saved, Some((path, meta))))
}

/// The precision the run computes in, stated with the reason. On a GPU (CUDA or Vulkan) `--amp` (the
/// default) is FP16, except on GPUs known to fail in FP16 and devices without FP16 arithmetic. On CPU the default is FP32: burn-flex computes FP16 convolutions
/// about 2x slower than FP32 on CPUs without FP16 arithmetic (measured, see BENCHMARKS.md), so `--amp`
/// only switches FP16 on there when asked for by name or flag.
pub fn resolve_precision(settings: &Settings, compute: &ComputeDevice, explicit: bool) -> AmpMode {
    let on_gpu = compute.is_gpu();
    match (settings.amp, explicit) {
        (AmpMode::Fp32, _) => {
            println!("AMP: off, fp32 compute");
            AmpMode::Fp32
        }
        (AmpMode::Fp16, _) if matches!(compute, ComputeDevice::Cuda { name, .. } if fp16_unsafe(name)) => {
            println!("AMP: off, fp32 compute: {compute} is known to give NaN losses or zero mAP in FP16");
            AmpMode::Fp32
        }
        (AmpMode::Fp16, _) if on_gpu && !compute.supports_f16() => {
            println!("AMP: off, fp32 compute: {compute} has no FP16 arithmetic");
            AmpMode::Fp32
        }
        (AmpMode::Fp16, false) if !on_gpu => {
            println!(
                "AMP: off on CPU, fp32 compute: burn-flex runs FP16 convolutions about 2x slower than FP32 on CPUs \
                 without FP16 arithmetic; --amp fp16 forces mixed precision"
            );
            AmpMode::Fp32
        }
        (AmpMode::Fp16, _) => {
            println!("AMP: fp16 compute, fp32 master weights, loss scale {}", LossScaler::default().scale);
            AmpMode::Fp16
        }
        (AmpMode::Bf16, _) => {
            println!("AMP: bf16 compute, fp32 master weights, no loss scaling (bf16 has fp32's range)");
            AmpMode::Bf16
        }
    }
}
