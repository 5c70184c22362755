//! A detector for inference from any weights file: an ember checkpoint (its EMA weights; model, class count and
//! names from its header), an Ultralytics `.pt` (model from its YAML, names from the file), or Ultralytics-keyed
//! tensors without a model description (SafeTensors or a plain `state_dict` `.pt`: the model named by the caller,
//! the class count from the tensors). `val`, `predict` and `export` all load through [`load_model`].

use std::path::Path;

use anyhow::{bail, Context, Result};
use burn::tensor::backend::Backend;

use super::{StateDict, WeightsFile, Yolo};

/// A model ready for inference and its class names.
pub struct LoadedModel<B: Backend> {
    /// The detector with the file's inference weights loaded (an ember checkpoint's EMA weights).
    pub model: Yolo<B>,
    /// The file's names (`class0`, `class1`, ... when it has none), or those [`LoadedModel::with_names`] gave.
    pub names: Vec<String>,
}

impl<B: Backend> LoadedModel<B> {
    /// The class names of a dataset (`source`, its YAML) instead of the file's; their count must be the model's.
    pub fn with_names(self, names: Vec<String>, weights: &Path, source: &Path) -> Result<Self> {
        let nc = self.model.nc();
        if names.len() != nc {
            bail!("{} was trained for {nc} classes but {} has {}", weights.display(), source.display(), names.len());
        }
        Ok(LoadedModel { names, ..self })
    }
}

/// Loads the inference weights of `path` (see the module doc). `fallback_model` names the architecture of a file
/// that does not say its own (`--model`).
pub fn load_model<B: Backend>(path: &Path, fallback_model: &str, device: &B::Device) -> Result<LoadedModel<B>> {
    let file = WeightsFile::read(path)?;
    let architecture = file.architecture()?;
    let file_names = file.names();
    let sd = inference_tensors(file.state_dict);
    let (model_name, nc, names) = match file.header {
        Some(h) => (h.model, h.nc, h.names),
        None => {
            let nc = class_count(&sd).with_context(|| {
                format!("{}: no detection head tensors (model.N.cv3.0.2.weight) found", path.display())
            })?;
            (architecture.unwrap_or_else(|| fallback_model.to_string()), nc, file_names)
        }
    };
    let names = if names.len() == nc { names } else { (0..nc).map(|i| format!("class{i}")).collect() };
    let mut model = Yolo::<B>::new(&model_name, nc, device)?;
    let report = model.load_state_dict(&sd).with_context(|| format!("loading {}", path.display()))?;
    if !report.skipped_class_head.is_empty() || report.loaded == 0 {
        bail!("{}: {report}; these weights do not fit {model_name}", path.display());
    }
    Ok(LoadedModel { model, names })
}

/// The tensors inference uses: an ember checkpoint's `train.*` (raw weights, optimizer moments) left out.
fn inference_tensors(sd: StateDict) -> StateDict {
    StateDict {
        tensors: sd.tensors.into_iter().filter(|(k, _)| !k.starts_with("train.")).collect(),
        int_keys: sd.int_keys,
    }
}

/// The class count of an Ultralytics-keyed state dict: the rows of the first class-branch output convolution.
fn class_count(sd: &StateDict) -> Option<usize> {
    let mut keys: Vec<&String> = sd.tensors.keys().filter(|k| k.ends_with(".cv3.0.2.weight")).collect();
    keys.sort();
    keys.first().map(|k| sd.tensors[*k].0[0])
}
