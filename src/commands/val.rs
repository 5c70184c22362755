//! `ember val`: score weights on a dataset split.

use std::path::Path;

use anyhow::{Context, Result};

use crate::backend::Cpu;
use crate::config::Settings;
use crate::data::scan::scan_split;
use crate::data::{BatchLoader, LoaderConfig, Split};
use crate::metrics::DetectionMetrics;
use crate::model::Yolo;
use crate::train::checkpoint;
use crate::validate::{validate, ValOptions};

pub fn run(settings: &Settings) -> Result<DetectionMetrics> {
    let weights = settings.weights.as_deref().context("no weights given: pass --weights FILE.safetensors")?;
    let weights = Path::new(weights);
    let meta = checkpoint::read_meta(weights)?;
    let dataset = super::load_dataset(settings)?;
    let split = Split::parse(&settings.split)?;
    let scan = scan_split(dataset.split_sources(split)?, dataset.nc(), split)?;
    println!("{}", scan.summary_line());
    if scan.samples.is_empty() {
        anyhow::bail!("{}: the {split} split has no usable images", dataset.yaml_path.display());
    }
    let model_name = meta.as_ref().map(|m| m.model.clone()).unwrap_or_else(|| settings.model.clone());
    if let Some(m) = &meta {
        if m.nc != dataset.nc() {
            anyhow::bail!("{} was trained for {} classes but {} has {}", weights.display(), m.nc, dataset.yaml_path.display(), dataset.nc());
        }
    }
    let device = Default::default();
    let mut model = Yolo::<Cpu>::new(&model_name, dataset.nc(), &device)?;
    let report = model.load_safetensors(weights)?;
    if !report.skipped_class_head.is_empty() {
        anyhow::bail!("{}: {report}; its class head does not fit this dataset", weights.display());
    }
    let loader = BatchLoader::new(
        scan.samples,
        LoaderConfig { imgsz: settings.imgsz, batch: settings.batch as usize, workers: settings.workers as usize, shuffle: false, seed: 0, prefetch: 2 },
    )?;
    let options = ValOptions::for_val(settings, model.end2end());
    let started = std::time::Instant::now();
    let outcome = validate(&model, &loader, &options, None)?;
    let elapsed = started.elapsed().as_secs_f64();
    print!("{}", outcome.metrics.format_table(&dataset.names));
    let [pre, inf, post] = outcome.speed_ms;
    println!("Speed: {pre:.1}ms preprocess, {inf:.1}ms inference, {post:.1}ms postprocess per image ({:.1} images/s)", outcome.metrics.images as f64 / elapsed);
    for (path, why) in &outcome.failures {
        tracing::warn!("skipped {}: {why}", path.display());
    }
    Ok(outcome.metrics)
}
