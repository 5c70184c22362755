//! SafeTensors interchange with Ultralytics' `state_dict` key names.
//!
//! Module fields are named like Ultralytics' attributes, so a tensor's module path (enum levels left out)
//! is its `state_dict` key, e.g. `model.23.cv2.0.0.conv.weight`. Loading accepts f32, f16, bf16, f64 and
//! f8 (e4m3) tensors and converts them to f32.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::{backend::Backend, Tensor, TensorData};
use safetensors::{Dtype, SafeTensors};

/// Tracks the module path during a visit, leaving out enum variants: the Ultralytics key of each tensor.
#[derive(Default)]
pub(crate) struct PathStack {
    parts: Vec<Option<String>>,
}

impl PathStack {
    pub(crate) fn enter(&mut self, name: &str, container: &str) {
        self.parts.push((!container.starts_with("Enum:")).then(|| name.to_string()));
    }
    pub(crate) fn exit(&mut self) {
        self.parts.pop();
    }
    pub(crate) fn key(&self) -> String {
        self.parts.iter().flatten().cloned().collect::<Vec<_>>().join(".")
    }
}

/// One named tensor of a module, as f32 values.
pub struct NamedTensor {
    /// Ultralytics `state_dict` key, e.g. `model.0.conv.weight`.
    pub key: String,
    /// Tensor dimensions, outermost first (PyTorch's layout: conv weights `[out, in / groups, kh, kw]`).
    pub shape: Vec<usize>,
    /// False for BatchNorm running statistics and the frozen DFL projection (`dfl.conv.weight`).
    pub trainable: bool,
    /// The values converted to f32; `None` unless [`named_tensors`] was asked for data.
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
        let trainable =
            !(key.ends_with("running_mean") || key.ends_with("running_var") || key.ends_with("dfl.conv.weight"));
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
    /// Class-branch tensors left at their initial values because the checkpoint has another class count
    /// (the branch's hidden width depends on it too): (key, shape in the file, shape in the model).
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
                "; checkpoint has {nc} classes, so {} class-branch tensors keep their initial values",
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
    /// Float tensors by Ultralytics key: (shape, values in row-major order, converted to f32).
    pub tensors: HashMap<String, (Vec<usize>, Vec<f32>)>,
    /// Keys of integer tensors (e.g. `num_batches_tracked`), ignored.
    pub int_keys: Vec<String>,
}

pub(crate) fn f8_e4m3_to_f32(b: u8) -> f32 {
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
    /// The tensors of `module` (values copied out).
    pub fn from_module<B: Backend, M: Module<B>>(module: &M) -> Result<Self> {
        let mut tensors = HashMap::new();
        for t in named_tensors::<B, M>(module, true) {
            let values = t.data.expect("with data").to_vec::<f32>().map_err(|e| anyhow!("{}: {e:?}", t.key))?;
            tensors.insert(t.key, (t.shape, values));
        }
        Ok(StateDict { tensors, int_keys: Vec::new() })
    }

    /// Read a SafeTensors file (f32, f16, bf16, f64 or f8 e4m3 floats; integer tensors only listed). Errors
    /// name the file. For `.pt` files use [`super::WeightsFile::read`].
    pub fn read(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).with_context(|| format!("reading weights {}", path.display()))?;
        Self::from_bytes(&bytes).with_context(|| format!("parsing SafeTensors file {}", path.display()))
    }

    /// [`StateDict::read`] on SafeTensors bytes already in memory.
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
                Dtype::F64 => {
                    d.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")) as f32).collect()
                }
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

/// Is `key` inside a class branch? Its hidden width depends on `nc` too (`max(ch0, min(nc, 100))`).
fn is_class_branch(key: &str) -> bool {
    key.split('.').any(|p| p == "cv3" || p == "one2one_cv3")
}

fn list(items: &[String], max: usize) -> String {
    let mut s = items.iter().take(max).cloned().collect::<Vec<_>>().join("; ");
    if items.len() > max {
        s.push_str(&format!("; and {} more", items.len() - max));
    }
    s
}

/// Check `sd` against the model's tensors without touching the model: the report, and the keys to leave
/// at their initial values (class branch of a checkpoint with another class count).
fn plan(model: &[NamedTensor], sd: &StateDict) -> Result<(LoadReport, HashSet<String>)> {
    let mut report = LoadReport::default();
    let (mut missing, mut mismatched, mut class) = (Vec::new(), Vec::new(), Vec::new());
    for t in model {
        match sd.tensors.get(&t.key) {
            None => missing.push(t.key.clone()),
            Some((shape, _)) if *shape == t.shape => report.loaded += 1,
            Some((shape, _)) if is_class_branch(&t.key) => class.push((t.key.clone(), shape.clone(), t.shape.clone())),
            Some((shape, _)) => mismatched.push(format!("{}: file {:?}, model {:?}", t.key, shape, t.shape)),
        }
    }
    // A different class count shows in the class outputs; anything else in the branch is a real mismatch.
    let checkpoint_nc = class
        .iter()
        .find(|(k, f, m)| is_class_output(k) && f.len() == m.len() && f[1..] == m[1..] && f[0] != m[0])
        .map(|(_, f, _)| f[0]);
    if checkpoint_nc.is_none() {
        mismatched.extend(class.drain(..).map(|(k, f, m)| format!("{k}: file {f:?}, model {m:?}")));
    }
    let mut problems = Vec::new();
    if !mismatched.is_empty() {
        problems.push(format!("{} tensors have another shape: {}", mismatched.len(), list(&mismatched, 8)));
    }
    if !missing.is_empty() {
        problems.push(format!("{} model tensors are missing from the file: {}", missing.len(), list(&missing, 8)));
    }
    if !problems.is_empty() {
        bail!("weights do not fit this model ({})", problems.join("; "));
    }
    let skip = class.iter().map(|(k, _, _)| k.clone()).collect();
    report.checkpoint_nc = checkpoint_nc;
    report.skipped_class_head = class;
    let known: HashSet<&String> = model.iter().map(|t| &t.key).collect();
    report.unused = sd.tensors.keys().filter(|k| !known.contains(k)).cloned().collect();
    report.unused.sort();
    Ok((report, skip))
}

struct Loader<'a, B: Backend> {
    path: PathStack,
    sd: &'a StateDict,
    skip: &'a HashSet<String>,
    device: B::Device,
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
        let Some((shape, values)) = self.sd.tensors.get(&key).filter(|_| !self.skip.contains(&key)) else {
            return Param::from_mapped_value(id, tensor, mapper);
        };
        let grad = tensor.is_require_grad();
        let dtype = tensor.dtype();
        let mut new = Tensor::<B, D>::from_data(TensorData::new(values.clone(), shape.clone()), &self.device);
        if new.dtype() != dtype {
            new = new.cast(dtype);
        }
        if grad {
            new = new.require_grad();
        }
        Param::from_mapped_value(id, new, mapper)
    }
}

/// Load `sd` into `module`. Everything is checked before anything is written, so on error the module is
/// unchanged. (BatchNorm running statistics live in shared cells: clones of a module see the new values.)
pub fn load_state_dict<B: Backend, M: Module<B>>(module: M, sd: &StateDict) -> Result<(M, LoadReport)> {
    let (report, skip) = plan(&named_tensors::<B, M>(&module, false), sd)?;
    let device = crate::nn::device_of(&module)?;
    let mut loader = Loader::<B> { path: PathStack::default(), sd, skip: &skip, device };
    Ok((module.map(&mut loader), report))
}

/// Write every tensor of `module` as f32 under its Ultralytics key, plus the `num_batches_tracked`
/// counters PyTorch expects next to each BatchNorm (as zero), so `load_state_dict(strict=True)` accepts it.
pub fn save_state_dict<B: Backend, M: Module<B>>(
    module: &M,
    path: &Path,
    metadata: Option<HashMap<String, String>>,
) -> Result<()> {
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
    safetensors::serialize_to_file(views, &metadata, path).map_err(|e| anyhow!("writing {}: {e:?}", path.display()))?;
    Ok(())
}

struct GradCollector<'a, B: burn::tensor::backend::AutodiffBackend> {
    path: PathStack,
    grads: &'a B::Gradients,
    out: HashMap<String, TensorData>,
}

impl<B: burn::tensor::backend::AutodiffBackend> ModuleVisitor<B> for GradCollector<'_, B> {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path.enter(name, container_type);
    }
    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.exit();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(g) = param.val().grad(self.grads) {
            self.out.insert(self.path.key(), g.into_data().convert::<f32>());
        }
    }
}

/// Gradients of every tensor of `module` that has one, by Ultralytics key (for checks and debugging).
pub fn named_grads<B: burn::tensor::backend::AutodiffBackend, M: Module<B>>(
    module: &M,
    grads: &B::Gradients,
) -> HashMap<String, TensorData> {
    let mut c = GradCollector::<B> { path: PathStack::default(), grads, out: HashMap::new() };
    module.visit(&mut c);
    c.out
}
