//! `ember export`: write trained weights as ONNX, Ultralytics-keyed SafeTensors or burnpack.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};

use burn::tensor::backend::Backend;

use crate::config::{ExportFormat, Settings};
use crate::device::{ComputeDevice, OnBackend};
use crate::export::{self, OnnxOptions};
use crate::model::locate::locate_weights;
use crate::model::{load_model, LoadedModel};
use crate::runs::checkpoint;

/// Exports `weights` as `format` on the chosen device, prints a summary line and returns the written file's path.
/// Fails for Ultralytics-only formats and for `nms=true` (NMS inside the graph), which ember does not write.
pub fn run(settings: &Settings) -> Result<PathBuf> {
    if let ExportFormat::Ultralytics(format) = settings.format {
        bail!("format={format} is an Ultralytics export format ember does not write: choose onnx, safetensors or burnpack");
    }
    if settings.nms == Some(true) {
        bail!(
            "nms=true asks for NMS inside the exported graph, which ember does not build: export without it \
               (the one-to-many output, NMS after the model) or with nms=false (YOLO26's NMS-free output)"
        );
    }
    ComputeDevice::resolve(settings.device.one()?)?.run(Export { settings })
}

/// Loads the weights on the device and writes them in the asked format.
struct Export<'a> {
    settings: &'a Settings,
}

impl OnBackend for Export<'_> {
    type Output = Result<PathBuf>;
    fn run<B: Backend>(self, device: &B::Device) -> Result<PathBuf> {
        export_on::<B>(self.settings, device)
    }
}

/// A written file: where, its output or key layout, and its format and precision, for the summary line.
struct Written {
    path: PathBuf,
    layout: String,
    format: String,
}

fn export_on<B: Backend>(settings: &Settings, device: &B::Device) -> Result<PathBuf> {
    let weights = settings.weights.as_deref().context("no weights given: pass --weights FILE.safetensors|FILE.pt")?;
    let weights = &locate_weights(weights)?;
    let started = Instant::now();
    let mut loaded = load_model::<B>(weights, &settings.model, device)?;
    if let Some((names, yaml)) = super::dataset_names(settings)? {
        loaded = loaded.with_names(names, weights, &yaml)?;
    }
    let written = match settings.format {
        ExportFormat::Onnx => write_onnx(&loaded, weights, settings)?,
        ExportFormat::SafeTensors | ExportFormat::Burnpack => write_weights(&loaded, weights, settings)?,
        ExportFormat::Ultralytics(_) => unreachable!("refused before loading"),
    };
    let size = std::fs::metadata(&written.path).map(|m| m.len()).unwrap_or(0);
    println!(
        "Exported {} ({} classes, {}) in {:.1}s: {} ({}), {}",
        loaded.model.name(),
        loaded.model.nc(),
        written.format,
        started.elapsed().as_secs_f64(),
        written.path.display(),
        export::human_size(size),
        written.layout
    );
    Ok(written.path)
}

fn write_onnx<B: Backend>(loaded: &LoadedModel<B>, weights: &Path, settings: &Settings) -> Result<Written> {
    let mut opts = OnnxOptions::new(settings.imgsz as usize, loaded.names.clone());
    opts.half = settings.half;
    opts.dynamic = settings.dynamic;
    opts.end2end = settings.nms_free();
    opts.max_det = settings.max_det as usize;
    opts.opset = settings.onnx_opset() as i64;
    let onnx = export::export_onnx(&loaded.model, &opts)?;
    let path = export::output_path(weights, "onnx");
    std::fs::write(&path, &onnx.bytes).with_context(|| format!("cannot write {}", path.display()))?;
    let shape = onnx
        .output_shape
        .iter()
        .enumerate()
        .map(|(i, d)| match d {
            Some(v) => v.to_string(),
            // The symbolic axes, named as in the graph.
            None if i == 0 => "batch".to_string(),
            None if opts.end2end => "detections".to_string(),
            None => "anchors".to_string(),
        })
        .collect::<Vec<_>>()
        .join(", ");
    let head = if opts.end2end { "end-to-end, no NMS" } else { "needs NMS" };
    let precision = if opts.half { "FP16" } else { "FP32" };
    Ok(Written {
        path,
        layout: format!("output0 [{shape}] ({head})"),
        format: format!("ONNX opset {}, {precision}", opts.opset),
    })
}

/// SafeTensors under Ultralytics' keys, or burnpack under burn's module paths, with the checkpoint's header.
fn write_weights<B: Backend>(loaded: &LoadedModel<B>, weights: &Path, settings: &Settings) -> Result<Written> {
    let meta = export::export_meta(loaded, checkpoint::read_meta(weights)?, settings.imgsz);
    if settings.format == ExportFormat::Burnpack {
        if settings.half {
            bail!("--half is not supported for burnpack export (it stores the f32 weights)");
        }
        let path = export::output_path(weights, "bpk");
        export::save_burnpack(&loaded.model, &path, &meta)?;
        return Ok(Written { path, layout: "burn module paths".into(), format: "burnpack, FP32".into() });
    }
    let path = export::output_path(weights, "safetensors");
    export::save_ultralytics_safetensors(&loaded.model, &path, &meta, settings.half)?;
    let precision = if settings.half { "FP16" } else { "FP32" };
    Ok(Written { path, layout: "Ultralytics state_dict keys".into(), format: format!("SafeTensors, {precision}") })
}
