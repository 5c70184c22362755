//! One way in for weights files of either format: SafeTensors (ember's checkpoints, converted Ultralytics
//! weights) and PyTorch `.pt` (Ultralytics' own checkpoints, plain `state_dict`s). Both become the same
//! Ultralytics-keyed [`StateDict`], which `Yolo::load_state_dict` maps into the model, plus what the file says
//! about its model.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};

use super::locate::locate_weights;
use super::pt::{read_pt, PtInfo};
use super::yaml::{family_of, guess_scale, BUILTIN};
use super::StateDict;

/// Is `path` a zip (what `torch.save` writes), judged by its first bytes rather than its name?
pub fn is_pytorch(path: &Path) -> bool {
    let mut magic = [0u8; 4];
    std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut magic)).is_ok() && magic == *b"PK\x03\x04"
        || path.extension().is_some_and(|e| e == "pt" || e == "pth")
}

/// The SafeTensors metadata key of ember's checkpoint header (written by `runs::checkpoint`).
pub const EMBER_HEADER_KEY: &str = "ember";

/// The part of an ember checkpoint's header that describes its model (the rest is the trainer's).
#[derive(Debug, Clone, serde::Deserialize)]
pub struct ModelHeader {
    /// The model as given to the trainer (`yolo26n`, a YAML path), to rebuild it.
    pub model: String,
    /// Number of classes the model was trained for.
    pub nc: usize,
    /// Class names by index (those of the dataset it was trained on).
    pub names: Vec<String>,
}

/// A weights file read into Ultralytics-keyed tensors.
pub struct WeightsFile {
    /// The file read, as given (no lookup in `weights/`).
    pub path: PathBuf,
    /// Its float tensors under Ultralytics keys.
    pub state_dict: StateDict,
    /// What a `.pt` file says about its model; `None` for SafeTensors.
    pub pt: Option<PtInfo>,
    /// The header of an ember checkpoint (or of weights `ember export` wrote); `None` for other files.
    pub header: Option<ModelHeader>,
}

impl WeightsFile {
    /// Read `path` as a PyTorch `.pt` (a zip by its first bytes, or a `.pt` / `.pth` name) or else as SafeTensors,
    /// with the ember header when it has one. Errors name the file.
    pub fn read(path: &Path) -> Result<Self> {
        let path_buf = path.to_path_buf();
        if is_pytorch(path) {
            let ckpt = read_pt(path)?;
            return Ok(WeightsFile { path: path_buf, state_dict: ckpt.state_dict, pt: Some(ckpt.info), header: None });
        }
        let bytes = std::fs::read(path).with_context(|| format!("reading weights {}", path.display()))?;
        let state_dict =
            StateDict::from_bytes(&bytes).with_context(|| format!("parsing SafeTensors file {}", path.display()))?;
        let header = read_header(&bytes).with_context(|| format!("{}: unreadable ember header", path.display()))?;
        Ok(WeightsFile { path: path_buf, state_dict, pt: None, header })
    }

    /// The built-in architecture a `.pt` model was built from (`yolo26n`), from its `yaml` attribute.
    /// `Ok(None)` when the file does not say (a plain `state_dict`, or SafeTensors).
    pub fn architecture(&self) -> Result<Option<String>> {
        let Some(info) = &self.pt else { return Ok(None) };
        let Some(yaml) = &info.yaml else { return Ok(None) };
        let get = |k: &str| yaml.get(k).and_then(|v| v.as_str()).map(str::to_string);
        let file = get("yaml_file").unwrap_or_default();
        let stem = Path::new(&file).file_stem().and_then(|s| s.to_str()).unwrap_or_default().to_string();
        let family = family_of(&stem);
        let known = family.as_deref().is_some_and(|f| BUILTIN.iter().any(|(b, _)| *b == f));
        if !known {
            bail!(
                "{}: its model YAML ({}) is not one of ember's built-in families (yolo26, yolo11, yolov8); \
                 pass the YAML with --model FILE.yaml and these weights with --weights",
                self.path.display(),
                if file.is_empty() { "no yaml_file recorded".to_string() } else { file }
            );
        }
        let scale = guess_scale(&stem).or_else(|| get("scale")).unwrap_or_default();
        Ok(Some(format!("{}{scale}", family.unwrap_or_default())))
    }

    /// Class names recorded in the file (a `.pt` model's `names`), empty when there are none.
    pub fn names(&self) -> Vec<String> {
        self.pt.as_ref().map(|i| i.names.clone()).unwrap_or_default()
    }
}

fn read_header(bytes: &[u8]) -> Result<Option<ModelHeader>> {
    let (_, metadata) = safetensors::SafeTensors::read_metadata(bytes).map_err(|e| anyhow!("{e:?}"))?;
    match metadata.metadata().as_ref().and_then(|m| m.get(EMBER_HEADER_KEY)) {
        None => Ok(None),
        Some(json) => Ok(Some(serde_json::from_str(json)?)),
    }
}

/// A model named by a checkpoint (`--model yolo26n.pt`): the file (looked up as [`locate_weights`] says), the
/// architecture its YAML names and its class count. `Ok(None)` when `model` is not a `.pt` / `.pth` name.
pub fn model_from_pt(model: &str) -> Result<Option<(PathBuf, String, usize)>> {
    let lower = model.to_ascii_lowercase();
    if !(lower.ends_with(".pt") || lower.ends_with(".pth")) {
        return Ok(None);
    }
    let path = locate_weights(model)?;
    let file = WeightsFile::read(&path)?;
    let Some(architecture) = file.architecture()? else {
        bail!(
            "{} holds a plain state_dict without its model YAML: name the architecture with --model (e.g. \
             yolo26n) and pass the file with --weights",
            path.display()
        );
    };
    Ok(Some((path, architecture, file.names().len())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn with_yaml(text: &str) -> WeightsFile {
        let info = PtInfo { yaml: Some(serde_yaml::from_str(text).unwrap()), ..Default::default() };
        WeightsFile {
            path: PathBuf::from("x.pt"),
            state_dict: StateDict { tensors: HashMap::new(), int_keys: Vec::new() },
            pt: Some(info),
            header: None,
        }
    }

    #[test]
    fn architecture_comes_from_the_yaml_file_name_and_scale() {
        let arch = |text: &str| with_yaml(text).architecture();
        assert_eq!(arch("{yaml_file: yolov8s.yaml, scale: s}").unwrap().as_deref(), Some("yolov8s"));
        // A family YAML with the scale given separately, as `YOLO("yolo11.yaml")` never writes but a user may.
        assert_eq!(arch("{yaml_file: yolo11.yaml, scale: m}").unwrap().as_deref(), Some("yolo11m"));
        assert_eq!(arch("{yaml_file: /some/dir/yolo26n.yaml}").unwrap().as_deref(), Some("yolo26n"));
        let err = format!("{:#}", arch("{yaml_file: my-net.yaml, scale: n}").unwrap_err());
        assert!(err.contains("x.pt") && err.contains("my-net.yaml") && err.contains("--model"), "{err}");
        assert!(arch("{nc: 3}").is_err(), "no yaml_file: not guessed");
    }
}
