//! `ember val`: score weights on a dataset split.

use std::path::Path;

use anyhow::{Context, Result};

use burn::tensor::backend::Backend;

use crate::config::{Mode, Settings, LARGEST_STRIDE};
use crate::data::scan::scan_split;
use crate::data::{BatchLoader, DatasetConfig, LoaderConfig};
use crate::device::{ComputeDevice, OnBackend};
use crate::metrics::plots::save_plots;
use crate::metrics::{
    coco80_to_coco91, default_class_map, detections_to_coco, ground_truth_to_coco, write_json, DetectionMetrics,
    GtImage, ImageId,
};
use crate::model::load_model;
use crate::model::locate::locate_weights;
use crate::runs::folder::make_run_dir;
use crate::validate::{validate, ValOptions, ValOutcome};

/// Scores `weights` on the dataset's `split` in rectangular batches, prints the metrics table and speed, writes
/// COCO JSON (`save_json`) and plots (`plots`) to a run folder, and returns the metrics.
pub fn run(settings: &Settings) -> Result<DetectionMetrics> {
    let compute = ComputeDevice::resolve(settings.device.one()?)?;
    let weights = settings.weights.as_deref().context("no weights given: pass --weights FILE.safetensors|FILE.pt")?;
    let weights = &locate_weights(weights)?;
    let dataset = super::load_dataset(settings)?;
    let split = settings.split;
    let scan = scan_split(dataset.split_sources(split)?, dataset.nc(), split)?;
    println!("{}", scan.summary_line());
    if scan.samples.is_empty() {
        anyhow::bail!("{}: the {split} split has no usable images", dataset.yaml_path.display());
    }
    let config = LoaderConfig {
        imgsz: settings.imgsz,
        batch: settings.batch_for(Mode::Val),
        workers: settings.workers as usize,
        shuffle: false,
        seed: 0,
        prefetch: 2,
    };
    // Rectangular batches, as Ultralytics validates.
    let loader = BatchLoader::new(scan.samples, config)?.with_rect(LARGEST_STRIDE);
    let started = std::time::Instant::now();
    let outcome = compute.run(Evaluate { settings, weights, dataset: &dataset, loader: &loader })?;
    let elapsed = started.elapsed().as_secs_f64();
    println!("{}", outcome.metrics.format_table(&dataset.names).trim_end());
    let [pre, inf, post] = outcome.speed_ms;
    println!(
        "Speed: {pre:.1}ms preprocess, {inf:.1}ms inference, {post:.1}ms postprocess per image ({:.1} images/s)",
        outcome.metrics.images as f64 / elapsed
    );
    for (path, why) in &outcome.failures {
        tracing::warn!("skipped {}: {why}", path.display());
    }
    if settings.save_json || settings.plots {
        let run_dir = make_run_dir(&settings.project_dir(), settings.run_name(Mode::Val), settings.exist_ok)?;
        if settings.save_json {
            save_coco_json(&outcome, &loader, &dataset, &run_dir)?;
            println!("Saved predictions.json and ground_truth.json (COCO format) to {}", run_dir.display());
        }
        if settings.plots {
            save_plots(&outcome.metrics, outcome.confusion.as_ref(), &dataset.names, &run_dir)?;
            println!("Plots saved to {}", run_dir.display());
        }
    }
    Ok(outcome.metrics)
}

/// `predictions.json` and `ground_truth.json` in COCO's format, with COCO's own category ids for COCO's 80
/// classes, so pycocotools scores against COCO annotations too.
fn save_coco_json(outcome: &ValOutcome, loader: &BatchLoader, dataset: &DatasetConfig, run_dir: &Path) -> Result<()> {
    let class_map = if dataset.nc() == 80 { coco80_to_coco91() } else { default_class_map(dataset.nc()) };
    let mut predictions = Vec::new();
    for (path, dets) in &outcome.detections {
        let name = path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
        predictions.extend(detections_to_coco(&ImageId::from_path(path), &name, dets, &class_map)?);
    }
    write_json(run_dir.join("predictions.json"), &serde_json::Value::Array(predictions))?;
    let truth = ground_truth_to_coco(&ground_truth(loader), &dataset.names, &class_map)?;
    write_json(run_dir.join("ground_truth.json"), &truth)
}

/// The labelled boxes of every image, in original-image pixels.
fn ground_truth(loader: &BatchLoader) -> Vec<GtImage> {
    loader
        .samples()
        .iter()
        .map(|s| {
            let (w, h) = (s.size.0 as f32, s.size.1 as f32);
            GtImage {
                id: ImageId::from_path(&s.image),
                file_name: s.image.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default(),
                width: s.size.0,
                height: s.size.1,
                boxes_xyxy: s
                    .labels
                    .iter()
                    .map(|b| {
                        let [cx, cy, bw, bh] = b.xywh;
                        [(cx - bw / 2.0) * w, (cy - bh / 2.0) * h, (cx + bw / 2.0) * w, (cy + bh / 2.0) * h]
                    })
                    .collect(),
                classes: s.labels.iter().map(|b| b.class).collect(),
            }
        })
        .collect()
}

/// Loads the weights on the device, with the dataset's class names, and validates them over `loader`.
struct Evaluate<'a> {
    settings: &'a Settings,
    weights: &'a Path,
    dataset: &'a DatasetConfig,
    loader: &'a BatchLoader,
}

impl OnBackend for Evaluate<'_> {
    type Output = Result<ValOutcome>;
    fn run<B: Backend>(self, device: &B::Device) -> Result<ValOutcome> {
        let loaded = load_model::<B>(self.weights, &self.settings.model, device)?.with_names(
            self.dataset.names.clone(),
            self.weights,
            &self.dataset.yaml_path,
        )?;
        let options = ValOptions::for_val(self.settings, loaded.model.end2end());
        validate(&loaded.model, self.loader, &options, None)
    }
}
