//! Export of trained detectors: ONNX (ember's own graph writer, [`onnx`]), SafeTensors under Ultralytics'
//! `state_dict` keys (what PyTorch's `load_state_dict` accepts), and burn's native burnpack, which a burn program
//! reads back with [`load_burnpack`].

pub mod onnx;
pub mod proto;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use burn::tensor::backend::Backend;
use safetensors::Dtype;

use crate::model::weights::named_tensors;
use crate::model::{LoadedModel, Yolo};
use crate::runs::checkpoint::CheckpointMeta;

pub use onnx::{export_onnx, OnnxModel, OnnxOptions};

/// Write `model` as SafeTensors under Ultralytics' `state_dict` keys (BatchNorm `num_batches_tracked` included,
/// so a strict `load_state_dict` accepts it), FP16 with `half`. The ember header is kept so ember reads it back.
pub fn save_ultralytics_safetensors<B: Backend>(
    model: &Yolo<B>,
    path: &Path,
    meta: &CheckpointMeta,
    half: bool,
) -> Result<()> {
    let mut tensors: Vec<(String, Vec<usize>, Dtype, Vec<u8>)> = Vec::new();
    for t in named_tensors::<B, _>(model, true) {
        let values = t.data.expect("with data").to_vec::<f32>().map_err(|e| anyhow!("{}: {e:?}", t.key))?;
        if values.iter().any(|v| !v.is_finite()) {
            bail!("refusing to export: tensor {} has non-finite values", t.key);
        }
        if let Some(stem) = t.key.strip_suffix("running_mean") {
            tensors.push((format!("{stem}num_batches_tracked"), vec![], Dtype::I64, 0i64.to_le_bytes().to_vec()));
        }
        let (dtype, bytes) = if half {
            (Dtype::F16, values.iter().flat_map(|&v| half::f16::from_f32(v).to_le_bytes()).collect())
        } else {
            (Dtype::F32, values.iter().flat_map(|v| v.to_le_bytes()).collect())
        };
        tensors.push((t.key, t.shape, dtype, bytes));
    }
    let views = tensors
        .iter()
        .map(|(k, shape, dtype, bytes)| {
            safetensors::tensor::TensorView::new(*dtype, shape.clone(), bytes)
                .map(|v| (k.clone(), v))
                .map_err(|e| anyhow!("{k}: {e:?}"))
        })
        .collect::<Result<Vec<_>>>()?;
    let mut header = HashMap::new();
    header.insert("ember".to_string(), serde_json::to_string(meta)?);
    header.insert("model".to_string(), meta.model.clone());
    header.insert("nc".to_string(), meta.nc.to_string());
    header.insert("names".to_string(), serde_json::to_string(&meta.names)?);
    header.insert("task".to_string(), "detect".to_string());
    header.insert("imgsz".to_string(), meta.imgsz.to_string());
    let bytes =
        safetensors::serialize(views, &Some(header)).map_err(|e| anyhow!("serialising {}: {e:?}", path.display()))?;
    std::fs::write(path, bytes).with_context(|| format!("cannot write {}", path.display()))
}

/// Write `model` as burn's native burnpack (burn module paths, f32).
pub fn save_burnpack<B: Backend>(model: &Yolo<B>, path: &Path, meta: &CheckpointMeta) -> Result<()> {
    use burn_store::{BurnpackStore, ModuleSnapshot};
    let mut store = BurnpackStore::from_file(path)
        .auto_extension(false)
        .overwrite(true)
        .metadata("ember", serde_json::to_string(meta)?)
        .metadata("model", meta.model.clone())
        .metadata("nc", meta.nc.to_string());
    model.save_into(&mut store).map_err(|e| anyhow!("writing {}: {e:?}", path.display()))
}

/// Read a burnpack written by [`save_burnpack`] into a model built for `model_name` and `nc` classes.
pub fn load_burnpack<B: Backend>(path: &Path, model_name: &str, nc: usize, device: &B::Device) -> Result<Yolo<B>> {
    use burn_store::{BurnpackStore, ModuleSnapshot};
    if !path.is_file() {
        bail!("cannot read {}: no such file", path.display());
    }
    let mut model = Yolo::<B>::new(model_name, nc, device)?;
    let mut store = BurnpackStore::from_file(path).auto_extension(false);
    let result = model.load_from(&mut store).map_err(|e| anyhow!("reading {}: {e:?}", path.display()))?;
    if !result.errors.is_empty() || !result.missing.is_empty() {
        bail!(
            "{}: {} tensors missing, {} errors ({:?})",
            path.display(),
            result.missing.len(),
            result.errors.len(),
            result.errors.first()
        );
    }
    Ok(model)
}

/// The header written into exported files: the checkpoint's own (`checkpoint`), or one made from the model.
pub fn export_meta<B: Backend>(
    loaded: &LoadedModel<B>,
    checkpoint: Option<CheckpointMeta>,
    imgsz: u32,
) -> CheckpointMeta {
    let mut meta = checkpoint.unwrap_or_else(|| CheckpointMeta {
        ember_version: env!("CARGO_PKG_VERSION").to_string(),
        model: loaded.model.name().to_string(),
        nc: loaded.model.nc(),
        names: loaded.names.clone(),
        imgsz,
        epoch: 0,
        epochs: 0,
        fitness: 0.0,
        best_fitness: 0.0,
        ema_updates: 0,
        optimizer: None,
        optimizer_steps: 0,
        loss_scale: None,
        loss_scale_growth: 0,
        settings: String::new(),
    });
    meta.names = loaded.names.clone();
    meta
}

/// `weights.safetensors` -> `weights.<ext>`; a source that already has that name gets `weights-export.<ext>`.
pub fn output_path(weights: &Path, ext: &str) -> PathBuf {
    let out = weights.with_extension(ext);
    if out == weights {
        let stem = weights.file_stem().and_then(|s| s.to_str()).unwrap_or("model");
        weights.with_file_name(format!("{stem}-export.{ext}"))
    } else {
        out
    }
}

/// Size for display: `9.4 MB`.
pub fn human_size(bytes: u64) -> String {
    if bytes >= 1 << 20 {
        format!("{:.1} MB", bytes as f64 / (1u64 << 20) as f64)
    } else {
        format!("{:.1} KB", bytes as f64 / 1024.0)
    }
}
