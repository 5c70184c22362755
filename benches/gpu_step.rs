//! One training step, counted on any device: the kernels it launches per phase (forward, loss and assigner,
//! backward, optimizer + EMA + gradient norm, and a checkpoint), ember's host reads, the device memory held,
//! and the time. Kernels are counted by cubecl's own launch log, so the counts hold on any GPU; on a software
//! Vulkan device (lavapipe) the times do not.
//!
//!     cargo bench --features vulkan --bench gpu_step -- [--device vulkan|0|cpu] [--amp fp32|fp16]
//!         [--model yolo26n] [--imgsz 64] [--batch 4] [--steps 3] [--optimizer SGD|AdamW|MuSGD]
//!
//! Images are the coco8 training photos (from $EMBER_DATASETS, else ../shared/datasets), letterboxed, with
//! their labels. The first step compiles kernels and allocates; the figures are the mean of the later steps.

use std::collections::BTreeMap;
use std::time::Instant;

use burn::module::AutodiffModule;
use burn::optim::GradientsParams;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::Tensor;
use ember::config::{AmpMode, OptimizerKind};
use ember::data::scan::scan_split;
use ember::data::{batch_tensor, BatchLoader, LoaderConfig, Split};
use ember::device::{ComputeDevice, OnAutodiffBackend};
use ember::loss::criterion::{targets_of, Criterion};
use ember::model::Yolo;
use ember::readback;
use ember::train::ema::ModelEma;
use ember::train::loss_scale::LossScaler;
use ember::train::optimizer::{DetectorOptimizer, ParamGroups};
use ember::train::precision::to_compute;
use ember::train::step::optimizer_step;

struct Args {
    device: String,
    amp: AmpMode,
    model: String,
    imgsz: u32,
    batch: usize,
    steps: usize,
    optimizer: OptimizerKind,
}

fn parse() -> Args {
    let mut args = Args {
        device: "vulkan".into(),
        amp: AmpMode::Fp32,
        model: "yolo26n".into(),
        imgsz: 64,
        batch: 4,
        steps: 3,
        optimizer: OptimizerKind::Sgd,
    };
    let raw: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    for pair in raw.chunks(2) {
        let (key, value) = (pair[0].as_str(), pair.get(1).map(String::as_str).unwrap_or(""));
        match key {
            "--device" => args.device = value.into(),
            "--amp" => args.amp = if value == "fp16" { AmpMode::Fp16 } else { AmpMode::Fp32 },
            "--model" => args.model = value.into(),
            "--imgsz" => args.imgsz = value.parse().expect("--imgsz N"),
            "--batch" => args.batch = value.parse().expect("--batch N"),
            "--steps" => args.steps = value.parse().expect("--steps N"),
            "--optimizer" => {
                args.optimizer = match value {
                    "AdamW" => OptimizerKind::AdamW,
                    "MuSGD" => OptimizerKind::MuSGD,
                    _ => OptimizerKind::Sgd,
                }
            }
            other => panic!("unknown argument {other}"),
        }
    }
    args
}

const PHASES: [&str; 4] = ["forward", "loss + assigner", "backward", "optimizer + EMA + norm"];

struct Bench {
    args: Args,
    log: Option<ember::backend::cubecl::KernelLog>,
}

impl OnAutodiffBackend for Bench {
    type Output = ();

    fn run<AB: AutodiffBackend>(self, device: &AB::Device) {
        let Bench { args, log } = self;
        let kernels = || log.as_ref().map_or(0, |l| l.count());
        let datasets = std::env::var_os("EMBER_DATASETS")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/datasets").into());
        let samples = scan_split(&[datasets.join("coco8/images/train")], 80, Split::Train).expect("coco8").samples;
        let config =
            LoaderConfig { imgsz: args.imgsz, batch: args.batch, workers: 1, shuffle: false, seed: 0, prefetch: 1 };
        let data = BatchLoader::new(samples, config).unwrap().epoch(0).next().unwrap();
        let targets = targets_of(&data.labels, [data.shape[2], data.shape[3]]);

        AB::seed(device, 0);
        let model = Yolo::<AB>::new(&args.model, 80, device).unwrap();
        let criterion = Criterion::new(80, model.reg_max(), model.end2end(), [7.5, 0.5, 1.5], 100);
        let groups = ParamGroups::new(&model, &model.head().class_branch_params());
        let tensors = groups.layout.slots.len();
        let (mut optimizer, mut model) = DetectorOptimizer::new(args.optimizer, (0.01, 0.937, 5e-4), model, groups);
        let mut ema = ModelEma::new(model.valid().deep_clone().unwrap());
        // Starting at 2^16 (PyTorch's and ember's default) the first steps of an untrained model overflow and are
        // skipped, without an optimizer update; a settled scale measures the steps a run mostly takes.
        let mut scaler = (args.amp == AmpMode::Fp16).then(|| LossScaler { scale: 1024.0, ..LossScaler::default() });
        let sync = || AB::sync(device).expect("the device finished its queue");
        // Device memory at each phase's end: in use peaks when the forward's saved activations are all held
        // (before the backward), reserved is the pool's high-water mark (`torch.cuda.memory_reserved`).
        let sample = |peak: &mut ember::backend::DeviceMemory| {
            if let Some(m) = ember::backend::device_memory::<AB::InnerBackend>(device) {
                peak.reserved = peak.reserved.max(m.reserved);
                peak.in_use = peak.in_use.max(m.in_use);
            }
        };

        let mut per_step: Vec<([u64; 4], [f64; 4], u64)> = Vec::new();
        let mut peak = ember::backend::DeviceMemory::default();
        let mut by_name_steady = BTreeMap::new();
        let mut phase_by_name: [BTreeMap<String, u64>; 4] = Default::default();
        for step in 0..args.steps {
            sync();
            let reads = readback::count();
            let names_before = log.as_ref().map(|l| l.by_name());
            let mut names_at = vec![names_before.clone()];
            let mut marks = [0u64; 5];
            let mut times = [0f64; 4];
            marks[0] = kernels();
            let t = Instant::now();
            let out = model.forward(to_compute(batch_tensor::<AB>(&data, device), args.amp));
            sync();
            (marks[1], times[0]) = (kernels(), t.elapsed().as_secs_f64());
            names_at.push(log.as_ref().map(|l| l.by_name()));
            sample(&mut peak);
            let t = Instant::now();
            let loss = criterion.compute(out, &targets, 0);
            sync();
            (marks[2], times[1]) = (kernels(), t.elapsed().as_secs_f64());
            names_at.push(log.as_ref().map(|l| l.by_name()));
            sample(&mut peak);
            let t = Instant::now();
            let scale = scaler.map_or(1.0, |s| s.scale);
            let grads = GradientsParams::from_grads(loss.total.mul_scalar(scale).backward(), &model);
            sync();
            (marks[3], times[2]) = (kernels(), t.elapsed().as_secs_f64());
            names_at.push(log.as_ref().map(|l| l.by_name()));
            sample(&mut peak);
            let t = Instant::now();
            let flat = optimizer.flatten_gradients(&model, grads);
            let read_along: Tensor<AB::InnerBackend, 1> = loss.parts.inner();
            let report;
            (model, report) = optimizer_step(model, flat, &mut optimizer, &mut ema, scaler.as_mut(), Some(read_along));
            sync();
            (marks[4], times[3]) = (kernels(), t.elapsed().as_secs_f64());
            names_at.push(log.as_ref().map(|l| l.by_name()));
            let counts = [marks[1] - marks[0], marks[2] - marks[1], marks[3] - marks[2], marks[4] - marks[3]];
            let reads = readback::count() - reads;
            sample(&mut peak);
            println!(
                "step {step}: kernels {counts:?} = {}, reads {reads:?}, {:.3} s, applied {}",
                counts.iter().sum::<u64>(),
                times.iter().sum::<f64>(),
                report.applied
            );
            if step > 0 {
                per_step.push((counts, times, reads.assigner + reads.other));
                for (phase, pair) in names_at.windows(2).enumerate() {
                    if let [Some(before), Some(after)] = pair {
                        for (name, n) in after {
                            let delta = n - before.get(name).copied().unwrap_or(0);
                            if delta > 0 {
                                *phase_by_name[phase].entry(name.clone()).or_insert(0u64) += delta;
                            }
                        }
                    }
                }
                if let (Some(before), Some(log)) = (names_before, log.as_ref()) {
                    for (name, n) in log.by_name() {
                        let delta = n - before.get(&name).copied().unwrap_or(0);
                        if delta > 0 {
                            *by_name_steady.entry(name).or_insert(0u64) += delta;
                        }
                    }
                }
            }
        }
        let steady = per_step.len().max(1) as f64;
        let mean_kernels: Vec<f64> =
            (0..4).map(|k| per_step.iter().map(|s| s.0[k] as f64).sum::<f64>() / steady).collect();
        let mean_times: Vec<f64> = (0..4).map(|k| per_step.iter().map(|s| s.1[k]).sum::<f64>() / steady).collect();
        let mean_reads = per_step.iter().map(|s| s.2 as f64).sum::<f64>() / steady;

        let before = kernels();
        let dir = tempfile_dir();
        let meta = ember::runs::checkpoint::CheckpointMeta {
            ember_version: "bench".into(),
            model: args.model.clone(),
            nc: 80,
            names: (0..80).map(|i| i.to_string()).collect(),
            imgsz: args.imgsz,
            epoch: 1,
            epochs: 1,
            fitness: 0.0,
            best_fitness: 0.0,
            ema_updates: ema.updates,
            optimizer: Some(args.optimizer),
            optimizer_steps: optimizer.steps,
            loss_scale: None,
            loss_scale_growth: 0,
            settings: String::new(),
        };
        let state = ember::runs::checkpoint::TrainState { model: &model.valid(), optimizer: optimizer.state() };
        ember::runs::checkpoint::save(&dir.join("last.safetensors"), &ema.module(), Some(state), &meta).unwrap();
        let checkpoint = kernels() - before;

        println!();
        println!(
            "{} {:?} on {}, {} at {} px, batch {}, {:?} over {} trainable tensors (mean of {} steps after the first)",
            args.model,
            args.amp,
            args.device,
            args.model,
            args.imgsz,
            args.batch,
            args.optimizer,
            tensors,
            per_step.len()
        );
        println!("| phase | kernels | s |");
        println!("| --- | --- | --- |");
        for (k, name) in PHASES.iter().enumerate() {
            println!("| {name} | {:.0} | {:.3} |", mean_kernels[k], mean_times[k]);
        }
        println!("| step | {:.0} | {:.3} |", mean_kernels.iter().sum::<f64>(), mean_times.iter().sum::<f64>());
        println!("| checkpoint (once an epoch) | {checkpoint} | |");
        println!("host reads per step: {mean_reads:.1}");
        println!(
            "device memory: peak reserved {:.1} MiB, peak in use at a phase's end {:.1} MiB",
            peak.reserved as f64 / (1 << 20) as f64,
            peak.in_use as f64 / (1 << 20) as f64
        );
        for (name, counts) in PHASES.iter().zip(phase_by_name) {
            print_by_name(&format!("{name} kernels per step by name:"), counts, 12, steady);
        }
        print_by_name("kernels per step by name (top 25):", by_name_steady, 25, steady);
    }
}

/// The `top` most launched kernels of `counts` (summed over `steps` steps), per step.
fn print_by_name(title: &str, counts: BTreeMap<String, u64>, top: usize, steps: f64) {
    if counts.is_empty() {
        return;
    }
    let mut names: Vec<_> = counts.into_iter().collect();
    names.sort_by_key(|n| std::cmp::Reverse(n.1));
    println!("{title}");
    for (name, n) in names.iter().take(top) {
        println!("  {:>7.0} {name}", *n as f64 / steps);
    }
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("ember-gpu-step-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn main() {
    let args = parse();
    let log_path = std::env::temp_dir().join(format!("ember-kernels-{}.log", std::process::id()));
    let log = ember::backend::cubecl::log_kernels(&log_path);
    if log.is_none() {
        println!("(no kernel counts: this build has no cubecl backend, or the runtime was configured already)");
    }
    let spec = ember::config::Devices::try_from(serde_yaml::Value::String(args.device.clone()))
        .and_then(|d| d.one().map_err(|e| e.to_string()))
        .expect("--device");
    let device = ComputeDevice::resolve(spec).expect("--device");
    println!("device: {device}");
    ember::backend::on_compute_pool(|| device.run_autodiff(Bench { args, log }));
    let _ = std::fs::remove_file(log_path);
}
