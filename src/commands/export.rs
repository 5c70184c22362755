//! `ember export`: write trained weights as ONNX, Ultralytics-keyed SafeTensors or burnpack.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};

use burn::tensor::backend::Backend;

use crate::config::Settings;
use crate::device::{ComputeDevice, OnBackend};
use crate::export::{self, OnnxOptions};
use crate::model::locate::locate_weights;

pub fn run(settings: &Settings) -> Result<PathBuf> {
    ComputeDevice::resolve(settings.device.as_deref())?.run(Export { settings })
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

fn export_on<B: Backend>(settings: &Settings, device: &B::Device) -> Result<PathBuf> {
    let weights = settings.weights.as_deref().context("no weights given: pass --weights FILE.safetensors|FILE.pt")?;
    let weights = &locate_weights(weights)?;
    let started = Instant::now();
    let names = class_names(settings)?;
    let loaded = export::load_model::<B>(weights, &settings.model, names, device)?;
    let model = &loaded.model;
    if settings.nms == Some(true) {
        bail!(
            "nms=true asks for NMS inside the exported graph, which ember does not build: export without it \
               (the one-to-many output, NMS after the model) or with nms=false (YOLO26's NMS-free output)"
        );
    }
    let format = settings.format.to_ascii_lowercase();
    let (out, shape, what) = match format.as_str() {
        "onnx" => {
            let opts = OnnxOptions {
                imgsz: [settings.imgsz as usize; 2],
                batch: 1,
                half: settings.half,
                dynamic: settings.dynamic,
                end2end: settings.nms_free(),
                max_det: settings.max_det as usize,
                opset: settings.opset.unwrap_or(17) as i64,
                names: loaded.names.clone(),
            };
            let onnx = export::export_onnx(model, &opts)?;
            let out = export::output_path(weights, "onnx");
            std::fs::write(&out, &onnx.bytes).with_context(|| format!("cannot write {}", out.display()))?;
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
            (out, format!("output0 [{shape}] ({head})"), format!("ONNX opset {}, {precision}", opts.opset))
        }
        "safetensors" => {
            let meta = export::export_meta(&loaded, settings.imgsz);
            let out = export::output_path(weights, "safetensors");
            export::save_ultralytics_safetensors(model, &out, &meta, settings.half)?;
            let precision = if settings.half { "FP16" } else { "FP32" };
            (out, "Ultralytics state_dict keys".to_string(), format!("SafeTensors, {precision}"))
        }
        "burnpack" | "bpk" => {
            if settings.half {
                bail!("--half is not supported for burnpack export (it stores the f32 weights)");
            }
            let meta = export::export_meta(&loaded, settings.imgsz);
            let out = export::output_path(weights, "bpk");
            export::save_burnpack(model, &out, &meta)?;
            (out, "burn module paths".to_string(), "burnpack, FP32".to_string())
        }
        other => bail!("unknown export format '{other}': choose onnx, safetensors or burnpack"),
    };
    let size = std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0);
    println!(
        "Exported {} ({} classes, {what}) in {:.1}s: {} ({}), {shape}",
        model.name(),
        model.nc(),
        started.elapsed().as_secs_f64(),
        out.display(),
        export::human_size(size)
    );
    Ok(out)
}

/// Class names from `--data` (only the YAML is read: the images need not be present), if given.
pub fn class_names(settings: &Settings) -> Result<Option<Vec<String>>> {
    let Some(data) = settings.data.as_deref() else {
        return Ok(None);
    };
    let dir = settings.datasets_dir.as_ref().map(PathBuf::from);
    Ok(Some(crate::data::DatasetConfig::load(data.as_ref(), dir.as_deref())?.names))
}
