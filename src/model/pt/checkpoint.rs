//! Ultralytics `.pt` checkpoints: a `torch.save` zip whose `data.pkl` holds a dict (`model`, `ema`, `epoch`,
//! `train_args`, ...) with the pickled `DetectionModel`, its tensors in `data/<key>` entries.
//!
//! The model object is walked as `nn.Module.state_dict()` would walk it (`_parameters`, then `_buffers` minus
//! `_non_persistent_buffers_set`, then `_modules` recursively), giving Ultralytics' keys (`model.0.conv.weight`).
//! A plain `state_dict` (a dict of tensors, also under a `model` / `state_dict` key) is read too.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;
use std::rc::Rc;

use anyhow::{anyhow, bail, Context, Result};

use super::pickle::{unpickle, StorageDtype, TensorRef, Value};
use crate::model::StateDict;

/// What a `.pt` file holds besides its tensors.
#[derive(Debug, Clone, Default)]
pub struct PtInfo {
    /// The model's class (`ultralytics.nn.tasks.DetectionModel`), `None` for a plain state_dict.
    pub class: Option<String>,
    /// Which entry the model came from (`ema`, `model`, or the top level).
    pub entry: String,
    /// Class names by index, from the model's `names` attribute.
    pub names: Vec<String>,
    /// The model YAML (`yaml` attribute) as a YAML value, when the model has one.
    pub yaml: Option<serde_yaml::Value>,
    /// Strides of the detection levels.
    pub stride: Vec<f32>,
}

/// A `.pt` file read: the tensors under their `state_dict` keys, and what else it says.
pub struct PtCheckpoint {
    /// Float tensors as f32 under their Ultralytics keys; integer buffers (`num_batches_tracked`) only by key.
    pub state_dict: StateDict,
    /// Model class, entry, names, YAML and strides, where the file has them.
    pub info: PtInfo,
}

/// Tasks ember does not handle, by the model class Ultralytics pickles.
const OTHER_TASKS: [(&str, &str); 6] = [
    ("SegmentationModel", "segment"),
    ("PoseModel", "pose"),
    ("ClassificationModel", "classify"),
    ("OBBModel", "obb"),
    ("RTDETRDetectionModel", "RT-DETR"),
    ("WorldModel", "YOLO-World"),
];

/// The archive's entries: `<archive>/data.pkl` and `<archive>/data/<key>` (the folder name varies).
struct Archive {
    zip: zip::ZipArchive<std::io::Cursor<Vec<u8>>>,
    prefix: String,
}

impl Archive {
    fn open(bytes: Vec<u8>) -> Result<Self> {
        let zip = zip::ZipArchive::new(std::io::Cursor::new(bytes))
            .context("not a zip archive (torch.save's format since PyTorch 1.6), or a damaged one")?;
        let pkl = zip
            .file_names()
            .filter(|n| *n == "data.pkl" || n.ends_with("/data.pkl"))
            .min_by_key(|n| n.len())
            .ok_or_else(|| anyhow!("the zip has no data.pkl, so it was not written by torch.save"))?;
        let prefix = pkl.strip_suffix("data.pkl").unwrap_or_default().to_string();
        Ok(Archive { zip, prefix })
    }

    fn read(&mut self, name: &str) -> Result<Vec<u8>> {
        let full = format!("{}{name}", self.prefix);
        let mut entry = self.zip.by_name(&full).with_context(|| format!("zip entry {full} is missing"))?;
        // The size in the zip header is only a hint: a damaged file may claim anything.
        let mut out = Vec::with_capacity((entry.size() as usize).min(1 << 28));
        entry.read_to_end(&mut out).with_context(|| format!("reading zip entry {full}"))?;
        Ok(out)
    }
}

/// Read the `.pt` file at `path`. Errors name the file.
pub fn read_pt(path: &Path) -> Result<PtCheckpoint> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    read_pt_bytes(bytes).with_context(|| format!("{}: not usable as Ultralytics detection weights", path.display()))
}

/// [`read_pt`] on the file's bytes already in memory (the `torch.save` zip); errors do not name a file.
pub fn read_pt_bytes(bytes: Vec<u8>) -> Result<PtCheckpoint> {
    let mut archive = Archive::open(bytes)?;
    if let Ok(order) = archive.read("byteorder") {
        if order != b"little" {
            bail!("tensors are stored {}-endian", String::from_utf8_lossy(&order));
        }
    }
    let root = unpickle(&archive.read("data.pkl")?).context("unpickling data.pkl")?;
    let (entry, model) = pick_model(&root)?;
    let mut tensors: Vec<(String, Rc<TensorRef>)> = Vec::new();
    let mut info = PtInfo { entry, ..Default::default() };
    match &model {
        Value::Object(o) => {
            let class = o.borrow().class.clone();
            let short = class.rsplit('.').next().unwrap_or(&class);
            if let Some((_, task)) = OTHER_TASKS.iter().find(|(c, _)| *c == short) {
                bail!("it holds a {short} (a {task} model); ember trains and runs detection models only");
            }
            walk_module(&model, "", &mut tensors, &mut 100_000)?;
            let state = o.borrow().state.clone().unwrap_or(Value::None);
            info.names = names_of(state.get("names"));
            info.yaml = state.get("yaml").map(|y| to_yaml(&y, 0)).transpose()?;
            info.stride = state.get("stride").map(|s| stride_of(&s, &mut archive)).transpose()?.unwrap_or_default();
            info.class = Some(class);
        }
        Value::Dict(d) => {
            for (k, v) in d.borrow().iter() {
                if let (Some(k), Value::Tensor(t)) = (k.as_str(), v) {
                    tensors.push((k.to_string(), t.clone()));
                }
            }
        }
        _ => unreachable!("pick_model returns a module or a dict"),
    }
    if tensors.is_empty() {
        bail!("it holds no tensors");
    }
    let mut cache: HashMap<String, Vec<u8>> = HashMap::new();
    let mut sd = StateDict { tensors: HashMap::new(), int_keys: Vec::new() };
    for (key, t) in tensors {
        if !t.dtype.is_float() {
            sd.int_keys.push(key);
            continue;
        }
        if !cache.contains_key(&t.storage.key) {
            let data = archive.read(&format!("data/{}", t.storage.key))?;
            cache.insert(t.storage.key.clone(), data);
        }
        let values = tensor_values(&t, &cache[&t.storage.key]).with_context(|| format!("tensor {key}"))?;
        sd.tensors.insert(key, (t.shape.clone(), values));
    }
    Ok(PtCheckpoint { state_dict: sd, info })
}

fn is_module(v: &Value) -> bool {
    match v {
        Value::Object(o) => o.borrow().state.as_ref().and_then(|s| s.get("_modules")).is_some(),
        _ => false,
    }
}

fn is_tensor_dict(v: &Value) -> bool {
    match v {
        Value::Dict(d) => {
            let d = d.borrow();
            !d.is_empty() && d.iter().all(|(k, v)| k.as_str().is_some() && matches!(v, Value::Tensor(_)))
        }
        _ => false,
    }
}

/// The model in the unpickled root: `ema` when it is a module (trainer checkpoints), else `model` (stripped
/// ones), else the root itself (a whole pickled module, or a plain state_dict).
fn pick_model(root: &Value) -> Result<(String, Value)> {
    if is_module(root) || is_tensor_dict(root) {
        return Ok(("the top level".into(), root.clone()));
    }
    let Value::Dict(_) = root else {
        bail!("data.pkl holds a {}, not a checkpoint dict, a module or a state_dict", root.kind());
    };
    for key in ["ema", "model", "state_dict", "model_state_dict"] {
        if let Some(v) = root.get(key) {
            if is_module(&v) || is_tensor_dict(&v) {
                return Ok((key.to_string(), v));
            }
        }
    }
    let keys: Vec<String> = match root {
        Value::Dict(d) => d.borrow().iter().take(12).map(|(k, _)| k.as_str().unwrap_or("?").to_string()).collect(),
        _ => vec![],
    };
    bail!(
        "data.pkl is a dict without a model (no module or tensors under ema/model/state_dict; keys: {})",
        keys.join(", ")
    )
}

/// `nn.Module.state_dict()` order: own parameters, persistent buffers, then children. `budget` bounds the modules
/// visited, since a damaged pickle can make a module its own child.
fn walk_module(module: &Value, prefix: &str, out: &mut Vec<(String, Rc<TensorRef>)>, budget: &mut usize) -> Result<()> {
    if *budget == 0 {
        bail!("more than 100000 modules, or a module that contains itself");
    }
    *budget -= 1;
    let Value::Object(o) = module else { return Ok(()) };
    let state = o.borrow().state.clone().unwrap_or(Value::None);
    let skip: Vec<String> = match state.get("_non_persistent_buffers_set") {
        Some(Value::Set(s)) => s.borrow().iter().filter_map(|v| v.as_str().map(str::to_string)).collect(),
        _ => Vec::new(),
    };
    for field in ["_parameters", "_buffers"] {
        let Some(Value::Dict(d)) = state.get(field) else { continue };
        for (name, value) in d.borrow().iter() {
            let (Some(name), Value::Tensor(t)) = (name.as_str(), value) else { continue };
            if field == "_buffers" && skip.iter().any(|s| s == name) {
                continue;
            }
            out.push((format!("{prefix}{name}"), t.clone()));
        }
    }
    if let Some(Value::Dict(children)) = state.get("_modules") {
        for (name, child) in children.borrow().iter() {
            let name = match name {
                Value::Str(s) => s.clone(),
                Value::Int(i) => i.to_string(),
                _ => continue,
            };
            walk_module(child, &format!("{prefix}{name}."), out, budget)?;
        }
    }
    Ok(())
}

/// `names`: `{0: 'person', ...}` (or a list), as a list by index.
fn names_of(v: Option<Value>) -> Vec<String> {
    let mut pairs: Vec<(i64, String)> = match &v {
        Some(Value::Dict(d)) => {
            d.borrow().iter().filter_map(|(k, v)| Some((k.as_int()?, v.as_str()?.to_string()))).collect()
        }
        Some(Value::List(l)) => {
            l.borrow().iter().enumerate().filter_map(|(i, v)| Some((i as i64, v.as_str()?.to_string()))).collect()
        }
        _ => Vec::new(),
    };
    pairs.sort_by_key(|(i, _)| *i);
    pairs.into_iter().map(|(_, n)| n).collect()
}

/// A pickled plain value (the model YAML dict) as YAML. A pickle can build cycles, hence the depth limit.
fn to_yaml(v: &Value, depth: usize) -> Result<serde_yaml::Value> {
    use serde_yaml::Value as Y;
    if depth > 32 {
        bail!("the model YAML is nested deeper than 32 levels");
    }
    let to_yaml = |v: &Value| to_yaml(v, depth + 1);
    Ok(match v {
        Value::None => Y::Null,
        Value::Bool(b) => Y::Bool(*b),
        Value::Int(i) => Y::from(*i),
        Value::Float(f) => Y::from(*f),
        Value::Str(s) => Y::String(s.clone()),
        Value::Tuple(items) => Y::Sequence(items.iter().map(to_yaml).collect::<Result<_>>()?),
        Value::List(items) => Y::Sequence(items.borrow().iter().map(to_yaml).collect::<Result<_>>()?),
        Value::Dict(d) => {
            let mut m = serde_yaml::Mapping::new();
            for (k, v) in d.borrow().iter() {
                m.insert(to_yaml(k)?, to_yaml(v)?);
            }
            Y::Mapping(m)
        }
        other => bail!("the model YAML holds a {}", other.kind()),
    })
}

fn stride_of(v: &Value, archive: &mut Archive) -> Result<Vec<f32>> {
    match v {
        Value::Tensor(t) => {
            let data = archive.read(&format!("data/{}", t.storage.key))?;
            tensor_values(t, &data).context("stride tensor")
        }
        _ => Ok(Vec::new()),
    }
}

/// The values of a strided view of a storage, as f32.
pub fn tensor_values(t: &TensorRef, storage: &[u8]) -> Result<Vec<f32>> {
    let size = t.dtype.size();
    let available = storage.len() / size;
    let numel = t.shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
    // Views with stride 0 could claim any size over a small storage; no weights tensor is that large.
    let numel = numel.filter(|&n| n <= 1 << 32).ok_or_else(|| anyhow!("implausible shape {:?}", t.shape))?;
    if numel == 0 {
        return Ok(Vec::new());
    }
    // The furthest element the view touches must lie inside the storage (checked: the sizes come from the file).
    let last = t.shape.iter().zip(&t.stride).try_fold(t.offset, |at, (&n, &s)| (n - 1).checked_mul(s)?.checked_add(at));
    let last = last.unwrap_or(usize::MAX);
    if last >= available {
        bail!("view reaches element {last} of a storage of {available} (shape {:?}, stride {:?})", t.shape, t.stride);
    }
    let read = |i: usize| -> f32 {
        let b = &storage[i * size..(i + 1) * size];
        match t.dtype {
            StorageDtype::F8E4M3 => crate::model::weights::f8_e4m3_to_f32(b[0]),
            StorageDtype::F32 => f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            StorageDtype::F16 => half::f16::from_le_bytes([b[0], b[1]]).to_f32(),
            StorageDtype::BF16 => half::bf16::from_le_bytes([b[0], b[1]]).to_f32(),
            StorageDtype::F64 => f64::from_le_bytes(b.try_into().expect("8 bytes")) as f32,
            StorageDtype::I64 => i64::from_le_bytes(b.try_into().expect("8 bytes")) as f32,
            StorageDtype::I32 => i32::from_le_bytes(b.try_into().expect("4 bytes")) as f32,
            StorageDtype::I16 => i16::from_le_bytes([b[0], b[1]]) as f32,
            StorageDtype::I8 => b[0] as i8 as f32,
            StorageDtype::U8 | StorageDtype::Bool => b[0] as f32,
        }
    };
    let mut out = Vec::with_capacity(numel);
    let mut index = vec![0usize; t.shape.len()];
    for _ in 0..numel {
        let at = t.offset + index.iter().zip(&t.stride).map(|(i, s)| i * s).sum::<usize>();
        out.push(read(at));
        // Row-major increment of the multi-index.
        for d in (0..index.len()).rev() {
            index[d] += 1;
            if index[d] < t.shape[d] {
                break;
            }
            index[d] = 0;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::pt::pickle::StorageRef;

    #[test]
    fn strided_views_read_in_row_major_order() {
        // A [2, 3] float32 storage 0..6 viewed transposed ([3, 2], stride [1, 3]) from offset 0, and a
        // [2] slice from offset 4.
        let storage: Vec<u8> = (0..6).flat_map(|i| (i as f32).to_le_bytes()).collect();
        let base = StorageRef { key: "0".into(), dtype: StorageDtype::F32, numel: 6 };
        let view = |offset, shape: Vec<usize>, stride: Vec<usize>| TensorRef {
            storage: base.clone(),
            dtype: StorageDtype::F32,
            offset,
            shape,
            stride,
        };
        let t = tensor_values(&view(0, vec![3, 2], vec![1, 3]), &storage).unwrap();
        assert_eq!(t, vec![0.0, 3.0, 1.0, 4.0, 2.0, 5.0]);
        assert_eq!(tensor_values(&view(4, vec![2], vec![1]), &storage).unwrap(), vec![4.0, 5.0]);
        assert!(tensor_values(&view(5, vec![2], vec![1]), &storage).is_err(), "past the storage's end");
    }
}
