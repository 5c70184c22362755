//! ember's checkpoint: one SafeTensors file.
//!
//! - `model.*`: the EMA weights under Ultralytics' state_dict keys. This is what `val`, `predict` and
//!   `export` use, and what PyTorch's `load_state_dict` accepts for the matching Ultralytics model.
//! - `train.model.*`: the raw (non-EMA) weights, for resuming.
//! - `train.optim.<i>.m` / `.v`: optimizer moments of the i-th trainable tensor in module order.
//! - metadata `ember`: a JSON [`CheckpointMeta`] (class names, image size, epoch, best fitness,
//!   EMA and optimizer counters, loss scale, the resolved settings).
//!
//! Files are written through a temporary file and a rename, so a crash leaves the previous one intact,
//! and a checkpoint with non-finite weights is refused.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::tensor::{backend::Backend, Tensor};
use safetensors::Dtype;
use serde::{Deserialize, Serialize};

use super::folder::write_atomic;
use crate::config::OptimizerKind;
use crate::model::weights::named_tensors;
use crate::model::{StateDict, Yolo};

/// The JSON header of a checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CheckpointMeta {
    /// The ember version that wrote the file (for people reading the header; nothing checks it).
    pub ember_version: String,
    /// The model as given (`yolo26n`, a YAML path), to rebuild it.
    pub model: String,
    /// Number of classes the model detects.
    pub nc: usize,
    /// Class names, indexed by class id (`nc` of them).
    pub names: Vec<String>,
    /// The training image size in pixels (the `imgsz` setting).
    pub imgsz: u32,
    /// Epochs completed.
    pub epoch: usize,
    /// Epochs the run is to train (re-estimated as it goes under `time`); `epoch >= epochs` is a finished run,
    /// which `resume` refuses.
    pub epochs: usize,
    /// Fitness (mAP50-95, as Ultralytics) of the validation after the epoch that wrote the file.
    pub fitness: f64,
    /// The best fitness so far, which early stopping and `best.safetensors` compare against.
    pub best_fitness: f64,
    /// Updates the EMA has taken, which set its decay ramp (Ultralytics `updates`); restored on resume.
    pub ema_updates: u64,
    /// The optimizer the run trained with (`auto` resolved); `None` in a header made on export from plain
    /// weights.
    pub optimizer: Option<OptimizerKind>,
    /// Optimizer steps taken so far; restored on resume.
    pub optimizer_steps: u64,
    /// Dynamic loss scale of FP16 training, when it was on.
    pub loss_scale: Option<f64>,
    /// Clean optimizer steps since the loss scale last changed.
    pub loss_scale_growth: u64,
    /// The resolved settings as YAML (`args.yaml`).
    pub settings: String,
}

const META_KEY: &str = "ember";

/// An optimizer's moment buffers, flattened: first moment, and the second where the optimizer keeps one.
pub type OptimizerMoments = Vec<(ParamId, Vec<f32>, Option<Vec<f32>>)>;

/// Training state to store besides the EMA weights.
pub struct TrainState<'a, B: Backend> {
    /// The raw (non-EMA) training weights, stored as `train.model.*`.
    pub model: &'a Yolo<B>,
    /// The optimizer's moment buffers, stored as `train.optim.<i>.m` / `.v`.
    pub optimizer: OptimizerMoments,
}

/// Writes a checkpoint (atomically).
pub fn save<B: Backend>(
    path: &Path,
    ema: &Yolo<B>,
    train: Option<TrainState<'_, B>>,
    meta: &CheckpointMeta,
) -> Result<()> {
    let mut tensors: BTreeMap<String, (Vec<usize>, Dtype, Vec<u8>)> = BTreeMap::new();
    let f32_bytes = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    let add_module = |prefix: &str, module: &Yolo<B>, tensors: &mut BTreeMap<_, _>| -> Result<()> {
        for t in named_tensors::<B, _>(module, true) {
            let values = t.data.expect("with data").to_vec::<f32>().map_err(|e| anyhow!("{}: {e:?}", t.key))?;
            if values.iter().any(|v| !v.is_finite()) {
                bail!("refusing to write {}: tensor {} has non-finite values", path.display(), t.key);
            }
            if let Some(stem) = t.key.strip_suffix("running_mean").filter(|_| prefix.is_empty()) {
                tensors.insert(format!("{stem}num_batches_tracked"), (vec![], Dtype::I64, 0i64.to_le_bytes().to_vec()));
            }
            tensors.insert(format!("{prefix}{}", t.key), (t.shape, Dtype::F32, f32_bytes(&values)));
        }
        Ok(())
    };
    add_module("", ema, &mut tensors)?;
    if let Some(state) = &train {
        add_module("train.", state.model, &mut tensors)?;
        let order = param_order(state.model);
        for (id, m, v) in &state.optimizer {
            let Some(i) = order.get(id) else { continue };
            tensors.insert(format!("train.optim.{i}.m"), (vec![m.len()], Dtype::F32, f32_bytes(m)));
            if let Some(v) = v {
                tensors.insert(format!("train.optim.{i}.v"), (vec![v.len()], Dtype::F32, f32_bytes(v)));
            }
        }
    }
    let views = tensors
        .iter()
        .map(|(k, (shape, dtype, bytes))| {
            safetensors::tensor::TensorView::new(*dtype, shape.clone(), bytes)
                .map(|v| (k.clone(), v))
                .map_err(|e| anyhow!("{k}: {e:?}"))
        })
        .collect::<Result<Vec<_>>>()?;
    let mut header = HashMap::new();
    header.insert(META_KEY.to_string(), serde_json::to_string(meta)?);
    let bytes =
        safetensors::serialize(views, &Some(header)).map_err(|e| anyhow!("serialising {}: {e:?}", path.display()))?;
    write_atomic(path, &bytes)
}

/// The ember header of a SafeTensors file, or `None` for plain weights (converted from Ultralytics, or `.pt`).
pub fn read_meta(path: &Path) -> Result<Option<CheckpointMeta>> {
    if crate::model::weights_file::is_pytorch(path) {
        return Ok(None); // a `.pt` file: Ultralytics' or a plain state_dict, never ember's
    }
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let (_, metadata) = safetensors::SafeTensors::read_metadata(&bytes)
        .map_err(|e| anyhow!("{} is not a SafeTensors file ({e:?})", path.display()))?;
    match metadata.metadata().as_ref().and_then(|m| m.get(META_KEY)) {
        None => Ok(None),
        Some(json) => {
            serde_json::from_str(json).map(Some).with_context(|| format!("{}: unreadable ember header", path.display()))
        }
    }
}

/// Restores the raw weights of a checkpoint into `model` and returns its optimizer moments.
pub fn load_train_state<B: Backend>(path: &Path, model: &mut Yolo<B>) -> Result<OptimizerMoments> {
    let sd = StateDict::read(path)?;
    let raw = StateDict {
        tensors: sd
            .tensors
            .iter()
            .filter_map(|(k, v)| {
                k.strip_prefix("train.").filter(|k| k.starts_with("model.")).map(|k| (k.to_string(), v.clone()))
            })
            .collect(),
        int_keys: vec![],
    };
    if raw.tensors.is_empty() {
        bail!(
            "{} holds no training state (was it written by `ember export`?); start a new run with --weights instead",
            path.display()
        );
    }
    model.load_state_dict(&raw).with_context(|| format!("{}: training weights", path.display()))?;
    let order = param_order(model);
    let by_index: HashMap<usize, ParamId> = order.into_iter().map(|(id, i)| (i, id)).collect();
    let mut state = Vec::new();
    for (i, id) in by_index {
        let Some((_, m)) = sd.tensors.get(&format!("train.optim.{i}.m")) else { continue };
        let v = sd.tensors.get(&format!("train.optim.{i}.v")).map(|(_, v)| v.clone());
        state.push((id, m.clone(), v));
    }
    Ok(state)
}

/// Position of each float tensor in module order: stable across runs, unlike parameter ids.
fn param_order<B: Backend, M: Module<B>>(module: &M) -> HashMap<ParamId, usize> {
    struct Order(HashMap<ParamId, usize>);
    impl<B: Backend> ModuleVisitor<B> for Order {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            let n = self.0.len();
            self.0.insert(param.id, n);
        }
    }
    let mut o = Order(HashMap::new());
    module.visit(&mut o);
    o.0
}
