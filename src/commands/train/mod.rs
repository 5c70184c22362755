//! `ember train`: resolve the run (new or resumed), check the data, then hand over to the trainer. Under an MPI
//! launcher every process runs this, each on its device; rank 0 makes the run folder and prints.

mod console;

use std::path::{Path, PathBuf};
use std::rc::Rc;

use anyhow::{bail, Context, Result};

use burn::tensor::backend::AutodiffBackend;

use crate::config::{AmpMode, AmpRequest, Mode, ResumeTarget, Settings};
use crate::data::scan::{drop_mixed_polygons, scan_split};
use crate::data::{DatasetConfig, Sample, Split};
use crate::device::{fp16_unsafe, ComputeDevice, OnAutodiffBackend};
use crate::dist::launch::launched_world_size;
use crate::dist::Group;
use crate::model::locate::locate_weights;
use crate::model::weights_file::model_from_pt;
use crate::runs::checkpoint;
use crate::runs::folder::make_run_dir;
use crate::runs::folder::newest_last_checkpoint;
use crate::train::loss_scale::LossScaler;
use crate::train::trainer::{train, TrainInputs, TrainOutcome};
use console::ConsoleReporter;

/// How many processes `ember train` should relaunch itself as under `mpirun`: one per listed device, when it was
/// not started by a launcher already (as Ultralytics relaunches under `torch.distributed.run`).
pub fn processes_to_launch(settings: &Settings) -> Option<usize> {
    let devices = settings.device.0.len();
    (devices > 1 && launched_world_size().is_none()).then_some(devices)
}

/// Trains as the settings say (a new run, or `--resume`), in this process and, under an MPI launcher, in each of
/// the others; returns what the run left.
pub fn run(settings: &Settings) -> Result<TrainOutcome> {
    let group = Rc::new(Group::from_launcher()?);
    if !group.is_distributed() && settings.device.0.len() > 1 {
        bail!(
            "--device {} trains on {} devices, one process each: start it with `ember train` (which relaunches \
             under mpirun) or with mpirun -np {}",
            settings.device,
            settings.device.0.len(),
            settings.device.0.len()
        );
    }
    if !group.is_main() {
        silence_stdout(); // as Ultralytics: rank 0 alone reports the run; warnings still reach stderr
    }
    let result = run_in_group(settings, group.clone());
    if let (Err(e), true) = (&result, group.is_distributed()) {
        eprintln!("error: rank {} of {}: {e:#}", group.rank(), group.world_size());
        group.abort(1);
    }
    result
}

fn run_in_group(settings: &Settings, group: Rc<Group>) -> Result<TrainOutcome> {
    let (mut settings, resume) = resolve_resume(settings)?;
    if resume.is_none() {
        resolve_starting_weights(&mut settings)?;
    }
    let compute = ComputeDevice::resolve(settings.device.for_local_rank(group.local_rank())?)?;
    println!("device: {compute}");
    let (precision, why) = precision_for(settings.amp, &compute);
    println!("{why}");
    // args.yaml records the precision the run computes in, which a resumed run keeps.
    settings.amp = AmpRequest::Forced(precision);
    // As Ultralytics: under AMP on a GPU the per-epoch validation runs the EMA in FP16 too.
    if compute.is_gpu() && precision == AmpMode::Fp16 {
        settings.half = true;
    }
    let dataset = super::load_dataset(&settings)?;
    let (names, train, val) = training_samples(&settings, &dataset)?;
    let run_dir = match &resume {
        Some((path, _)) => {
            path.parent().and_then(Path::parent).map(Path::to_path_buf).context("checkpoint path has no run folder")?
        }
        // One folder for the run, made by rank 0 and named to the others.
        None if group.is_main() => group.broadcast_value(make_run_dir(
            &settings.project_dir(),
            settings.run_name(Mode::Train),
            settings.exist_ok,
        )?)?,
        None => group.broadcast_value(PathBuf::new())?,
    };
    let reporter = Box::new(ConsoleReporter::stdout(settings.verbose, group.is_main(), compute.kind()));
    let device_bytes = compute.total_memory();
    let inputs = TrainInputs { settings, names, train, val, run_dir, resume, precision, group, reporter, device_bytes };
    compute.run_autodiff(Train(inputs))
}

/// The class names and the training and validation samples, as the settings select them (`fraction`,
/// `single_cls`), with polygons kept only where the training augmentation reads them.
fn training_samples(settings: &Settings, dataset: &DatasetConfig) -> Result<(Vec<String>, Vec<Sample>, Vec<Sample>)> {
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
    let (mut train, mut val) = (train_scan.samples, val_scan.samples);
    if let Some((boxes, polygons)) = drop_mixed_polygons(&mut train) {
        tracing::warn!(
            "train: {polygons} polygons for {boxes} boxes (box-only and polygon label files mixed); as Ultralytics \
             does, only the boxes are used"
        );
    }
    val.iter_mut().for_each(|s| s.polygons = Vec::new());
    if settings.single_cls {
        names = vec!["item".into()];
        for s in train.iter_mut().chain(val.iter_mut()) {
            s.labels.iter_mut().for_each(|b| b.class = 0);
        }
    }
    Ok((names, train, val))
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
    let path = match &settings.resume {
        ResumeTarget::No => return Ok((settings.clone(), None)),
        ResumeTarget::Newest => newest_last_checkpoint(&settings.project_dir())?,
        ResumeTarget::Checkpoint(path) => path.clone(),
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
    saved.resume = ResumeTarget::No;
    // Where the data lives may differ on this machine.
    if settings.datasets_dir.is_some() {
        saved.datasets_dir = settings.datasets_dir.clone();
    }
    Ok((saved, Some((path, meta))))
}

/// The precision a run computes in under `amp` on `compute`, and the line that says so and why. `amp=true` (the
/// default, a bare `--amp`) is FP16 on a GPU that computes in FP16 (except GPUs known to fail in FP16) and FP32 on
/// the CPU, where burn-flex computes FP16 convolutions slower than FP32 on CPUs without FP16 arithmetic
/// (BENCHMARKS.md); `fp16`, `bf16` and `fp32` are what they say on any device.
pub fn precision_for(amp: AmpRequest, compute: &ComputeDevice) -> (AmpMode, String) {
    let fp16_unsafe_gpu = matches!(compute, ComputeDevice::Cuda { name, .. } if fp16_unsafe(name));
    match amp {
        AmpRequest::Forced(AmpMode::Fp32) => (AmpMode::Fp32, "AMP: off, fp32 compute".into()),
        AmpRequest::Forced(AmpMode::Bf16) => {
            (AmpMode::Bf16, "AMP: bf16 compute, fp32 master weights, no loss scaling (bf16 has fp32's range)".into())
        }
        _ if fp16_unsafe_gpu => (
            AmpMode::Fp32,
            format!("AMP: off, fp32 compute: {compute} is known to give NaN losses or zero mAP in FP16"),
        ),
        _ if compute.is_gpu() && !compute.supports_f16() => {
            (AmpMode::Fp32, format!("AMP: off, fp32 compute: {compute} has no FP16 arithmetic"))
        }
        AmpRequest::Auto if !compute.is_gpu() => (
            AmpMode::Fp32,
            "AMP: off on CPU, fp32 compute: burn-flex runs FP16 convolutions slower than FP32 on CPUs without \
             FP16 arithmetic; --amp fp16 forces mixed precision"
                .into(),
        ),
        AmpRequest::Auto | AmpRequest::Forced(AmpMode::Fp16) => (
            AmpMode::Fp16,
            format!("AMP: fp16 compute, fp32 master weights, loss scale {}", LossScaler::default().scale),
        ),
    }
}

/// Sends this process's standard output to /dev/null.
fn silence_stdout() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
        use std::io::Write;
        use std::os::fd::AsRawFd;
        let _ = std::io::stdout().flush();
        // SAFETY: both descriptors are open; dup2 makes descriptor 1 another name for /dev/null.
        unsafe { libc::dup2(null.as_raw_fd(), libc::STDOUT_FILENO) };
    }
}
