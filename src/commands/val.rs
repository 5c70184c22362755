//! `ember val`: score weights on a dataset split.

use anyhow::{Context, Result};

use burn::tensor::backend::Backend;

use crate::config::Settings;
use crate::data::scan::scan_split;
use crate::data::{BatchLoader, LoaderConfig, Split};
use crate::device::{ComputeDevice, OnBackend};
use crate::metrics::plots::save_plots;
use crate::metrics::{
    coco80_to_coco91, default_class_map, detections_to_coco, ground_truth_to_coco, write_json, DetectionMetrics,
    GtImage, ImageId,
};
use crate::model::locate::locate_weights;
use crate::model::{WeightsFile, Yolo};
use crate::runs::checkpoint;
use crate::runs::folder::make_run_dir;
use crate::validate::{validate, ValOptions, ValOutcome};

pub fn run(settings: &Settings) -> Result<DetectionMetrics> {
    let compute = ComputeDevice::resolve(settings.device.as_deref())?;
    let weights = settings.weights.as_deref().context("no weights given: pass --weights FILE.safetensors|FILE.pt")?;
    let weights = &locate_weights(weights)?;
    let meta = checkpoint::read_meta(weights)?;
    let file = WeightsFile::read(weights)?;
    let dataset = super::load_dataset(settings)?;
    let split = Split::parse(&settings.split)?;
    let scan = scan_split(dataset.split_sources(split)?, dataset.nc(), split)?;
    println!("{}", scan.summary_line());
    if scan.samples.is_empty() {
        anyhow::bail!("{}: the {split} split has no usable images", dataset.yaml_path.display());
    }
    let model_name = match (&meta, file.architecture()?) {
        (Some(m), _) => m.model.clone(),
        (None, Some(arch)) => arch,
        (None, None) => settings.model.clone(),
    };
    if let Some(m) = &meta {
        if m.nc != dataset.nc() {
            anyhow::bail!(
                "{} was trained for {} classes but {} has {}",
                weights.display(),
                m.nc,
                dataset.yaml_path.display(),
                dataset.nc()
            );
        }
    }
    let loader = BatchLoader::new(
        scan.samples,
        LoaderConfig {
            imgsz: settings.imgsz,
            batch: settings.batch as usize,
            workers: settings.workers as usize,
            shuffle: false,
            seed: 0,
            prefetch: 2,
        },
    )?
    // Rectangular batches, as Ultralytics validates (the models' largest stride is 32).
    .with_rect(32);
    let started = std::time::Instant::now();
    let gt_images: Vec<GtImage> = loader
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
        .collect();
    let outcome = compute.run(Evaluate {
        settings,
        model_name: &model_name,
        nc: dataset.nc(),
        weights: &file,
        loader: &loader,
    })?;
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
        let project = std::path::PathBuf::from(settings.project.as_deref().unwrap_or("runs"));
        let run_dir = make_run_dir(&project, settings.name.as_deref().unwrap_or("val"), settings.exist_ok)?;
        if settings.save_json {
            // COCO's own category ids for COCO's 80 classes, so pycocotools scores against COCO annotations too.
            let class_map = if dataset.nc() == 80 { coco80_to_coco91() } else { default_class_map(dataset.nc()) };
            let mut predictions = Vec::new();
            for (path, dets) in &outcome.detections {
                let name = path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
                predictions.extend(detections_to_coco(&ImageId::from_path(path), &name, dets, &class_map)?);
            }
            write_json(run_dir.join("predictions.json"), &serde_json::Value::Array(predictions))?;
            write_json(
                run_dir.join("ground_truth.json"),
                &ground_truth_to_coco(&gt_images, &dataset.names, &class_map)?,
            )?;
            println!("Saved predictions.json and ground_truth.json (COCO format) to {}", run_dir.display());
        }
        if settings.plots {
            save_plots(&outcome.metrics, outcome.confusion.as_ref(), &dataset.names, &run_dir)?;
            println!("Plots saved to {}", run_dir.display());
        }
    }
    Ok(outcome.metrics)
}

/// Loads `weights` into a model on the device and validates it over `loader`.
struct Evaluate<'a> {
    settings: &'a Settings,
    model_name: &'a str,
    nc: usize,
    weights: &'a WeightsFile,
    loader: &'a BatchLoader,
}

impl OnBackend for Evaluate<'_> {
    type Output = Result<ValOutcome>;
    fn run<B: Backend>(self, device: &B::Device) -> Result<ValOutcome> {
        let mut model = Yolo::<B>::new(self.model_name, self.nc, device)?;
        let path = self.weights.path.display();
        let report = model.load_state_dict(&self.weights.state_dict).with_context(|| format!("loading {path}"))?;
        if !report.skipped_class_head.is_empty() {
            anyhow::bail!("{path}: {report}; its class head does not fit this dataset");
        }
        validate(&model, self.loader, &ValOptions::for_val(self.settings, model.end2end()), None)
    }
}
