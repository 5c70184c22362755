//! Where a training step's time goes: data (one augmented batch), forward, loss, backward, gradient
//! collection, optimizer step; then forward and forward+backward per layer.
//!
//!     cargo bench --bench train_profile -- [model] [imgsz] [batch] [iterations]
//!     (defaults: yolo26n 320 8 3; images from $EMBER_DATASETS/coco128, else ../shared/datasets)
//!
//! Per-layer figures run each layer alone on its recorded input: forward on the plain backend,
//! forward+backward on the autodiff backend (gradient of the output's sum). Their total is close to,
//! not equal to, the whole-model step (the loss and the graph's glue are not in any layer).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use burn::module::AutodiffModule;
use burn::optim::GradientsParams;
use burn::tensor::Tensor;
use ember::backend::{Cpu, CpuAutodiff};
use ember::config::OptimizerKind;
use ember::config::{CacheMode, Settings};
use ember::data::augment::{AugmentParams, TrainTransform};
use ember::data::batch_tensor;
use ember::data::cache::ImageStore;
use ember::data::scan::scan_split;
use ember::data::{BatchLoader, LoaderConfig, Split};
use ember::loss::criterion::{targets_of, Criterion};
use ember::model::graph::INPUT;
use ember::model::{Layer, Yolo};
use ember::train::optimizer::{DetectorOptimizer, ParamGroups};

fn secs(t: Instant) -> f64 {
    t.elapsed().as_secs_f64()
}

fn main() {
    // As `ember` runs: freed buffers kept for reuse (EMBER_DEFAULT_MALLOC=1: glibc's defaults), the
    // thread driving the model one of the compute pool's (EMBER_OUTSIDE_POOL=1: the main thread).
    if std::env::var_os("EMBER_DEFAULT_MALLOC").is_none() {
        ember::backend::keep_freed_memory();
    }
    if std::env::var_os("EMBER_OUTSIDE_POOL").is_some() {
        run()
    } else {
        ember::backend::on_compute_pool(run)
    }
}

fn run() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let model_name = args.first().cloned().unwrap_or_else(|| "yolo26n".into());
    let imgsz: u32 = args.get(1).and_then(|v| v.parse().ok()).unwrap_or(320);
    let batch: usize = args.get(2).and_then(|v| v.parse().ok()).unwrap_or(8);
    let iters: usize = args.get(3).and_then(|v| v.parse().ok()).unwrap_or(3);
    let datasets = std::env::var_os("EMBER_DATASETS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/datasets")));
    let samples = scan_split(&[datasets.join("coco128/images/train2017")], 80, Split::Train).expect("coco128").samples;

    // Data: one augmented batch on one thread (what a worker costs per batch).
    let s = Settings::resolve(&Default::default()).unwrap();
    let transform = Arc::new(TrainTransform::new(
        AugmentParams::from_settings(&s),
        Arc::new(ImageStore::new(samples.len(), imgsz, CacheMode::Off, None)),
    ));
    let loader = BatchLoader::with_transform(
        samples,
        LoaderConfig { imgsz, batch, workers: 1, shuffle: true, seed: 0, prefetch: 1 },
        transform,
    )
    .unwrap();
    let t = Instant::now();
    let data = loader.epoch(0).next().unwrap();
    let t_data = secs(t);

    let device = Default::default();
    let model = Yolo::<CpuAutodiff>::new(&model_name, 80, &device).unwrap();
    let criterion = Criterion::new(80, model.reg_max(), model.end2end(), [7.5, 0.5, 1.5], 100);
    let targets = targets_of(&data.labels, [data.shape[2], data.shape[3]]);
    let groups = ParamGroups::new(&model, &model.head().class_branch_params());
    let (mut optimizer, mut model) =
        DetectorOptimizer::<Cpu>::new(OptimizerKind::Sgd, (0.01, 0.937, 5e-4), model, groups);
    let mut rows: Vec<[f64; 6]> = Vec::new();
    for it in 0..iters + 1 {
        let t = Instant::now();
        let x = batch_tensor::<CpuAutodiff>(&data, &device);
        let t_tensor = secs(t);
        let t = Instant::now();
        let out = model.forward(x);
        let _ = out.one2many.scores.clone().into_data(); // wait for the (eager) forward
        let t_fwd = secs(t);
        let t = Instant::now();
        let loss = criterion.compute(out, &targets, 0);
        let t_loss = secs(t);
        let t = Instant::now();
        let grads = loss.total.backward();
        let t_bwd = secs(t);
        let t = Instant::now();
        let grads = optimizer.flatten_gradients(&model, GradientsParams::from_grads(grads, &model));
        let t_collect = secs(t);
        let t = Instant::now();
        model = optimizer.step(model, grads, 1.0);
        let t_step = secs(t);
        if it > 0 {
            rows.push([t_tensor, t_fwd, t_loss, t_bwd, t_collect, t_step]);
        }
    }
    let mean = |k: usize| rows.iter().map(|r| r[k]).sum::<f64>() / rows.len() as f64;
    let total: f64 = (0..6).map(mean).sum();
    println!("# {model_name} imgsz {imgsz} batch {batch}: mean of {iters} steps after one warm-up");
    println!("| part | s/step | share |\n|---|---|---|");
    println!("| data: 1 augmented batch on 1 thread (overlapped by the loader) | {t_data:.3} | - |");
    for (k, name) in ["u8 -> f32 batch tensor", "forward", "loss", "backward", "gradient collection", "optimizer step"]
        .iter()
        .enumerate()
    {
        println!("| {name} | {:.3} | {:.1}% |", mean(k), 100.0 * mean(k) / total);
    }
    println!("| total | {total:.3} | {:.2} images/s |", batch as f64 / total);
    let mut totals: Vec<f64> = rows.iter().map(|r| r.iter().sum()).collect();
    totals.sort_by(f64::total_cmp);
    println!("(step: fastest {:.3} s, median {:.3} s)", totals[0], totals[totals.len() / 2]);

    // Per layer (EMBER_PROFILE_STEPS_ONLY=1 skips it, e.g. under `perf record`).
    if std::env::var_os("EMBER_PROFILE_STEPS_ONLY").is_some() {
        return;
    }
    let inner = model.valid();
    let x = batch_tensor::<Cpu>(&data, &device);
    let spec = &inner.spec;
    let mut outputs: Vec<Option<Tensor<Cpu, 4>>> = vec![None; inner.model.len()];
    let mut table = Vec::new();
    for (i, (layer, info)) in inner.model.iter().zip(&spec.layers).enumerate() {
        let inputs: Vec<Tensor<Cpu, 4>> =
            info.from.iter().map(|&f| if f == INPUT { x.clone() } else { outputs[f].clone().unwrap() }).collect();
        let shape = inputs[0].dims();
        // Forward alone (best of 2).
        let mut fwd = f64::MAX;
        let mut out = None;
        for _ in 0..2 {
            let t = Instant::now();
            match layer {
                Layer::Detect(d) => {
                    let o = d.forward(inputs.clone());
                    let _ = o.one2many.scores.into_data();
                }
                _ => {
                    let o = layer.forward(inputs.clone());
                    let _ = o.clone().slice([0..1, 0..1, 0..1, 0..1]).into_data();
                    out = Some(o);
                }
            }
            fwd = fwd.min(secs(t));
        }
        // Forward + backward on the autodiff layer, inputs as leaves that need gradients.
        let ad_layer = &model.model[i];
        let ad_inputs: Vec<Tensor<CpuAutodiff, 4>> =
            inputs.iter().map(|t| Tensor::from_inner(t.clone()).require_grad()).collect();
        let t = Instant::now();
        let scalar = match ad_layer {
            Layer::Detect(d) => {
                let o = d.forward(ad_inputs);
                o.one2many.boxes.sum()
                    + o.one2many.scores.sum()
                    + o.one2one.map(|h| h.boxes.sum() + h.scores.sum()).unwrap_or_else(|| Tensor::zeros([1], &device))
            }
            _ => ad_layer.forward(ad_inputs).sum(),
        };
        let _ = scalar.backward();
        let both = secs(t);
        table.push((i, info.module.clone(), shape, fwd, both));
        outputs[i] = out;
    }
    let (f_sum, b_sum): (f64, f64) = table.iter().fold((0.0, 0.0), |(a, b), r| (a + r.3, b + r.4));
    println!("\n| layer | module | input | forward s | fwd+bwd s | share of fwd+bwd |\n|---|---|---|---|---|---|");
    for (i, m, shape, f, b) in &table {
        println!("| {i} | {m} | {shape:?} | {f:.4} | {b:.4} | {:.1}% |", 100.0 * b / b_sum);
    }
    println!("| all | | | {f_sum:.3} | {b_sum:.3} | |");
}
