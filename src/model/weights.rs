//! SafeTensors interchange with Ultralytics' `state_dict` key names.
//!
//! Module fields are named like Ultralytics' attributes, so a tensor's module path (enum levels left out)
//! is its `state_dict` key, e.g. `model.23.cv2.0.0.conv.weight`. Loading accepts f32, f16, bf16, f64 and
//! f8 (e4m3) tensors and converts them to f32.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::{backend::Backend, Tensor, TensorData};
use safetensors::{Dtype, SafeTensors};

/// Tracks the module path during a visit, leaving out enum variants.
#[derive(Default)]
struct PathStack {
    parts: Vec<Option<String>>,
}

impl PathStack {
    fn enter(&mut self, name: &str, container: &str) {
        self.parts.push((!container.starts_with("Enum:")).then(|| name.to_string()));
    }
    fn exit(&mut self) {
        self.parts.pop();
    }
    fn key(&self) -> String {
        self.parts.iter().flatten().cloned().collect::<Vec<_>>().join(".")
    }
}

/// One named tensor of a module, as f32 values.
pub struct NamedTensor {
    pub key: String,
    pub shape: Vec<usize>,
    pub trainable: bool,
    pub data: Option<TensorData>,
}

struct Collector {
    path: PathStack,
    with_data: bool,
    out: Vec<NamedTensor>,
}

impl<B: Backend> ModuleVisitor<B> for Collector {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path.enter(name, container_type);
    }
    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.exit();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let t = param.val();
        let key = self.path.key();
        let trainable = !(key.ends_with("running_mean") || key.ends_with("running_var") || key.ends_with("dfl.conv.weight"));
        self.out.push(NamedTensor {
            key,
            shape: t.dims().to_vec(),
            trainable,
            data: self.with_data.then(|| t.into_data().convert::<f32>()),
        });
    }
}

/// Every float tensor of `module` with its Ultralytics key, in module order (values when `with_data`).
pub fn named_tensors<B: Backend, M: Module<B>>(module: &M, with_data: bool) -> Vec<NamedTensor> {
    let mut c = Collector { path: PathStack::default(), with_data, out: Vec::new() };
    module.visit::<Collector>(&mut c);
    c.out
}

/// What a load did.
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    /// Tensors loaded into the model.
    pub loaded: usize,
    /// Class-branch tensors left at their initial values because the checkpoint has another class count:
    /// (key, shape in the file, shape in the model).
    pub skipped_class_head: Vec<(String, Vec<usize>, Vec<usize>)>,
    /// Number of classes of the checkpoint when it differs from the model's.
    pub checkpoint_nc: Option<usize>,
    /// Float tensors in the file the model has no use for (integer counters such as
    /// `num_batches_tracked` are not listed).
    pub unused: Vec<String>,
}

impl std::fmt::Display for LoadReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "loaded {} tensors", self.loaded)?;
        if let Some(nc) = self.checkpoint_nc {
            write!(
                f,
                "; checkpoint has {nc} classes, so the {} class-branch output tensors keep their initial values",
                self.skipped_class_head.len()
            )?;
        }
        if !self.unused.is_empty() {
            write!(f, "; {} tensors in the file were not used", self.unused.len())?;
        }
        Ok(())
    }
}

/// Tensors read from a file, as f32.
pub struct StateDict {
    pub tensors: HashMap<String, (Vec<usize>, Vec<f32>)>,
    /// Keys of integer tensors (e.g. `num_batches_tracked`), ignored.
    pub int_keys: Vec<String>,
}

fn f8_e4m3_to_f32(b: u8) -> f32 {
    let sign = if b & 0x80 != 0 { -1.0 } else { 1.0 };
    let exp = ((b >> 3) & 0x0f) as i32;
    let man = (b & 0x07) as f32;
    if exp == 0x0f && (b & 0x07) == 0x07 {
        return f32::NAN;
    }
    if exp == 0 {
        sign * man / 8.0 * 2f32.powi(-6)
    } else {
        sign * (1.0 + man / 8.0) * 2f32.powi(exp - 7)
    }
}

impl StateDict {
    pub fn read(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).with_context(|| format!("reading weights {}", path.display()))?;
        Self::from_bytes(&bytes).with_context(|| format!("parsing SafeTensors file {}", path.display()))
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let st = SafeTensors::deserialize(bytes).map_err(|e| anyhow!("{e:?}"))?;
        let mut tensors = HashMap::new();
        let mut int_keys = Vec::new();
        for (key, view) in st.tensors() {
            let d = view.data();
            let values: Vec<f32> = match view.dtype() {
                Dtype::F32 => d.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
                Dtype::F16 => d.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
                Dtype::BF16 => d.chunks_exact(2).map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
                Dtype::F64 => d
                    .chunks_exact(8)
                    .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")) as f32)
                    .collect(),
                Dtype::F8_E4M3 => d.iter().map(|&b| f8_e4m3_to_f32(b)).collect(),
                Dtype::I64 | Dtype::I32 | Dtype::I16 | Dtype::I8 | Dtype::U8 | Dtype::BOOL => {
                    int_keys.push(key.clone());
                    continue;
                }
                other => bail!("tensor '{key}' has unsupported dtype {other:?}"),
            };
            tensors.insert(key, (view.shape().to_vec(), values));
        }
        Ok(StateDict { tensors, int_keys })
    }
}

/// Is `key` the last, `nc`-sized convolution of a class branch (`...cv3.<level>.2.{weight,bias}`)?
fn is_class_output(key: &str) -> bool {
    let parts: Vec<&str> = key.split('.').collect();
    let n = parts.len();
    n >= 4
        && (parts[n - 4] == "cv3" || parts[n - 4] == "one2one_cv3")
        && parts[n - 2] == "2"
        && (parts[n - 1] == "weight" || parts[n - 1] == "bias")
}

struct Loader<'a, B: Backend> {
    path: PathStack,
    sd: &'a StateDict,
    device: B::Device,
    used: Vec<String>,
    report: LoadReport,
    missing: Vec<String>,
    mismatched: Vec<String>,
}

impl<B: Backend> ModuleMapper<B> for Loader<'_, B> {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path.enter(name, container_type);
    }
    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.exit();
    }
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let key = self.path.key();
        let (id, tensor, mapper) = param.consume();
        let model_shape = tensor.dims().to_vec();
        let Some((shape, values)) = self.sd.tensors.get(&key) else {
            self.missing.push(key);
            return Param::from_mapped_value(id, tensor, mapper);
        };
        self.used.push(key.clone());
        if *shape != model_shape {
            let only_nc = shape.len() == model_shape.len() && shape[1..] == model_shape[1..];
            if is_class_output(&key) && only_nc {
                self.report.checkpoint_nc = Some(shape[0]);
                self.report.skipped_class_head.push((key, shape.clone(), model_shape));
            } else {
                self.mismatched.push(format!("{key}: file {shape:?}, model {model_shape:?}"));
            }
            return Param::from_mapped_value(id, tensor, mapper);
        }
        let grad = tensor.is_require_grad();
        let dtype = tensor.dtype();
        let mut new = Tensor::<B, D>::from_data(TensorData::new(values.clone(), shape.clone()), &self.device);
        if new.dtype() != dtype {
            new = new.cast(dtype);
        }
        if grad {
            new = new.require_grad();
        }
        self.report.loaded += 1;
        Param::from_mapped_value(id, new, mapper)
    }
}

/// Load `sd` into a copy of `module`; on any error the module is returned unchanged inside the error path.
pub fn load_state_dict<B: Backend, M: Module<B>>(module: &M, sd: &StateDict) -> Result<(M, LoadReport)> {
    let device = module
        .devices()
        .into_iter()
        .next()
        .ok_or_else(|| anyhow!("the model has no tensors"))?;
    let mut loader = Loader::<B> {
        path: PathStack::default(),
        sd,
        device,
        used: Vec::new(),
        report: LoadReport::default(),
        missing: Vec::new(),
        mismatched: Vec::new(),
    };
    let loaded = module.clone().map(&mut loader);
    let mut problems = Vec::new();
    if !loader.mismatched.is_empty() {
        problems.push(format!("shape mismatch: {}", loader.mismatched.join("; ")));
    }
    if !loader.missing.is_empty() {
        let shown: Vec<_> = loader.missing.iter().take(5).cloned().collect();
        problems.push(format!(
            "{} model tensors are missing from the file (e.g. {})",
            loader.missing.len(),
            shown.join(", ")
        ));
    }
    if !problems.is_empty() {
        bail!("weights do not fit this model: {}", problems.join("; "));
    }
    let mut report = loader.report;
    let used: std::collections::HashSet<_> = loader.used.into_iter().collect();
    let mut unused: Vec<String> = sd.tensors.keys().filter(|k| !used.contains(*k)).cloned().collect();
    unused.sort();
    report.unused = unused;
    Ok((loaded, report))
}

/// Write every tensor of `module` as f32 under its Ultralytics key, plus the `num_batches_tracked`
/// counters PyTorch expects next to each BatchNorm (as zero), so `load_state_dict(strict=True)` accepts it.
pub fn save_state_dict<B: Backend, M: Module<B>>(module: &M, path: &Path, metadata: Option<HashMap<String, String>>) -> Result<()> {
    let tensors = named_tensors::<B, M>(module, true);
    let mut buffers: BTreeMap<String, (Vec<usize>, Dtype, Vec<u8>)> = BTreeMap::new();
    for t in tensors {
        let data = t.data.expect("collected with data");
        let values = data.to_vec::<f32>().map_err(|e| anyhow!("reading tensor {}: {e:?}", t.key))?;
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        if let Some(prefix) = t.key.strip_suffix("running_mean") {
            buffers.insert(format!("{prefix}num_batches_tracked"), (vec![], Dtype::I64, 0i64.to_le_bytes().to_vec()));
        }
        buffers.insert(t.key, (t.shape, Dtype::F32, bytes));
    }
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = buffers
        .iter()
        .map(|(k, (shape, dtype, bytes))| {
            safetensors::tensor::TensorView::new(*dtype, shape.clone(), bytes)
                .map(|v| (k.clone(), v))
                .map_err(|e| anyhow!("tensor {k}: {e:?}"))
        })
        .collect::<Result<_>>()?;
    safetensors::serialize_to_file(views, &metadata, path)
        .map_err(|e| anyhow!("writing {}: {e:?}", path.display()))?;
    Ok(())
}
