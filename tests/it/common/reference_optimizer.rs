//! The optimizer as it was written per tensor (SGD with Nesterov momentum, AdamW, MuSGD over burn's module
//! mapper, each tensor updated on its own): the definition the flat-buffer optimizer of src/train/optimizer.rs
//! is checked against, step for step (tests/it/optimizer.rs, tests/it/vulkan.rs).

use std::collections::HashMap;

use burn::module::{AutodiffModule, ModuleMapper, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::Tensor;
use ember::config::OptimizerKind;
use ember::train::optimizer::{GroupSettings, ParamGroup};

const MUON_WEIGHT: f64 = 0.2;

pub struct ReferenceOptimizer<B: Backend> {
    pub kind: OptimizerKind,
    pub groups: [GroupSettings; 3],
    pub steps: u64,
    first: HashMap<ParamId, Tensor<B, 1>>,
    second: HashMap<ParamId, Tensor<B, 1>>,
}

impl<B: Backend> ReferenceOptimizer<B> {
    pub fn new(kind: OptimizerKind, groups: [GroupSettings; 3]) -> Self {
        ReferenceOptimizer { kind, groups, steps: 0, first: HashMap::new(), second: HashMap::new() }
    }

    pub fn step<AB, M>(&mut self, module: M, mut grads: GradientsParams, grad_scale: f64) -> M
    where
        AB: AutodiffBackend<InnerBackend = B>,
        M: AutodiffModule<AB>,
    {
        self.steps += 1;
        let mut mapper = StepMapper::<AB> { opt: self, grads: &mut grads, path: Vec::new(), grad_scale };
        module.map(&mut mapper)
    }
}

/// The group rule of the per-tensor optimizer: by field name and the holding module's type name.
fn classify(field: &str, container: &str) -> ParamGroup {
    let is_norm = container.contains("Norm");
    match field {
        "bias" | "beta" => ParamGroup::Bias,
        "weight" | "gamma" if is_norm => ParamGroup::Norm,
        _ => ParamGroup::Weight,
    }
}

struct StepMapper<'a, AB: AutodiffBackend> {
    opt: &'a mut ReferenceOptimizer<AB::InnerBackend>,
    grads: &'a mut GradientsParams,
    path: Vec<(String, String)>,
    grad_scale: f64,
}

impl<AB: AutodiffBackend> ModuleMapper<AB> for StepMapper<'_, AB> {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path.push((name.to_string(), container_type.to_string()));
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<AB, D>>) -> Param<Tensor<AB, D>> {
        let (id, tensor, mapper) = param.consume();
        let Some(grad) = self.grads.remove::<AB::InnerBackend, D>(id) else {
            return Param::from_mapped_value(id, tensor, mapper);
        };
        let (field, container) = self.path.last().cloned().unwrap_or_default();
        let kind = self.opt.kind;
        let is_matrix = kind == OptimizerKind::MuSGD && (D == 2 || D == 4);
        let group_of = if is_matrix { ParamGroup::Weight } else { classify(&field, &container) };
        let mut group = self.opt.groups[group_of as usize];
        let head_cls =
            self.path.iter().any(|(name, c)| c == "Struct:Detect" && (name == "cv3" || name == "one2one_cv3"));
        if kind == OptimizerKind::MuSGD && head_cls {
            group.lr = group.head_cls_lr;
        }
        let shape = tensor.shape();
        let require_grad = tensor.is_require_grad();
        let p = tensor.inner().reshape([-1]);
        let g = grad.reshape([-1]).mul_scalar(self.grad_scale);
        let p = match kind {
            OptimizerKind::Sgd => sgd(self.opt, id, p, g, group),
            OptimizerKind::AdamW => adamw(self.opt, id, p, g, group),
            OptimizerKind::MuSGD if is_matrix => musgd_matrix(self.opt, id, p, g, group, &shape.dims::<D>()),
            OptimizerKind::MuSGD => sgd(self.opt, id, p, g, group),
        };
        let mut out = Tensor::from_inner(p.reshape(shape));
        if require_grad {
            out = out.require_grad();
        }
        Param::from_mapped_value(id, out, mapper)
    }
}

fn sgd<B: Backend>(
    opt: &mut ReferenceOptimizer<B>,
    id: ParamId,
    p: Tensor<B, 1>,
    g: Tensor<B, 1>,
    s: GroupSettings,
) -> Tensor<B, 1> {
    let mut buffer = opt.first.remove(&id);
    let p = nesterov_sgd(&mut buffer, p, g, s, s.lr);
    opt.first.insert(id, buffer.expect("set by the step"));
    p
}

fn nesterov_sgd<B: Backend>(
    buffer: &mut Option<Tensor<B, 1>>,
    p: Tensor<B, 1>,
    g: Tensor<B, 1>,
    s: GroupSettings,
    lr: f64,
) -> Tensor<B, 1> {
    let g = if s.weight_decay != 0.0 { g + p.clone().mul_scalar(s.weight_decay) } else { g };
    let buf = match buffer.take() {
        Some(buf) => buf.mul_scalar(s.momentum) + g.clone(),
        None => g.clone(),
    };
    let update = g + buf.clone().mul_scalar(s.momentum);
    *buffer = Some(buf);
    p - update.mul_scalar(lr)
}

fn musgd_matrix<B: Backend>(
    opt: &mut ReferenceOptimizer<B>,
    id: ParamId,
    p: Tensor<B, 1>,
    g: Tensor<B, 1>,
    s: GroupSettings,
    shape: &[usize],
) -> Tensor<B, 1> {
    let momentum = match opt.first.remove(&id) {
        Some(m) => m.mul_scalar(s.momentum) + g.clone().mul_scalar(1.0 - s.momentum),
        None => g.clone().mul_scalar(1.0 - s.momentum),
    };
    let update = momentum.clone().mul_scalar(s.momentum) + g.clone().mul_scalar(1.0 - s.momentum);
    opt.first.insert(id, momentum);
    let (rows, cols) = (shape[0], shape[1..].iter().product::<usize>());
    let d = shape.len();
    let scale = (shape[d - 2] as f64 / shape[d - 1] as f64).max(1.0).sqrt();
    let direction = newton_schulz5(update.reshape([rows, cols])).reshape([rows * cols]).mul_scalar(scale);
    let p = p - direction.mul_scalar(s.lr * MUON_WEIGHT);
    let mut buffer = opt.second.remove(&id);
    let p = nesterov_sgd(&mut buffer, p, g, s, s.lr);
    opt.second.insert(id, buffer.expect("set by the step"));
    p
}

fn newton_schulz5<B: Backend>(g: Tensor<B, 2>) -> Tensor<B, 2> {
    let [rows, cols] = g.dims();
    let norm = g.clone().powi_scalar(2).sum().sqrt().add_scalar(1e-7).reshape([1, 1]);
    let mut x = g.div(norm);
    let tall = rows > cols;
    if tall {
        x = x.transpose();
    }
    let (a, b, c) = (3.4445, -4.7750, 2.0315);
    for _ in 0..5 {
        let gram = x.clone().matmul(x.clone().transpose());
        let poly = gram.clone().mul_scalar(b) + gram.clone().matmul(gram).mul_scalar(c);
        x = x.clone().mul_scalar(a) + poly.matmul(x);
    }
    if tall {
        x = x.transpose();
    }
    x
}

fn adamw<B: Backend>(
    opt: &mut ReferenceOptimizer<B>,
    id: ParamId,
    p: Tensor<B, 1>,
    g: Tensor<B, 1>,
    s: GroupSettings,
) -> Tensor<B, 1> {
    const BETA2: f64 = 0.999;
    const EPS: f64 = 1e-8;
    let beta1 = s.momentum;
    let t = opt.steps as i32;
    let p = if s.weight_decay != 0.0 { p.clone() - p.mul_scalar(s.lr * s.weight_decay) } else { p };
    let m = match opt.first.remove(&id) {
        Some(m) => m.mul_scalar(beta1) + g.clone().mul_scalar(1.0 - beta1),
        None => g.clone().mul_scalar(1.0 - beta1),
    };
    let v = match opt.second.remove(&id) {
        Some(v) => v.mul_scalar(BETA2) + g.clone().powi_scalar(2).mul_scalar(1.0 - BETA2),
        None => g.powi_scalar(2).mul_scalar(1.0 - BETA2),
    };
    let bias1 = 1.0 - beta1.powi(t);
    let bias2 = 1.0 - BETA2.powi(t);
    let denom = v.clone().div_scalar(bias2).sqrt().add_scalar(EPS);
    let update = m.clone().div_scalar(bias1).div(denom);
    opt.first.insert(id, m);
    opt.second.insert(id, v);
    p - update.mul_scalar(s.lr)
}
