//! SGD (Nesterov), AdamW and MuSGD with Ultralytics' three parameter groups, written over burn's
//! module mapper because the recipe needs what burn's optimizers do not offer together: a learning rate
//! and momentum per group that warmup moves independently, PyTorch's momentum semantics (no dampening),
//! and one global gradient-norm clip.

use std::collections::HashMap;

use burn::module::{AutodiffModule, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::Tensor;

use super::muon::muon_update;
use crate::config::OptimizerKind;

/// MuSGD's blend, as Ultralytics' trainer builds it: matrices take 0.2 of a Muon step plus a full SGD step.
const MUON_WEIGHT: f64 = 0.2;
const MUON_SGD_WEIGHT: f64 = 1.0;
/// MuSGD trains the classification branches of the head (`cv3`, `one2one_cv3`) at 3x the learning rate.
pub const MUSGD_HEAD_CLS_LR_GAIN: f64 = 3.0;
/// Ultralytics' groups, in its order (`lr/pg0`, `lr/pg1`, `lr/pg2`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ParamGroup {
    /// Biases (of convolutions and normalisations): no weight decay; warmup starts high.
    Bias = 0,
    /// Convolution and linear weights: weight decay.
    Weight = 1,
    /// Normalisation scales: no weight decay.
    Norm = 2,
}

impl ParamGroup {
    /// The group of a parameter from its field name and the type of the module that holds it.
    pub fn classify(field: &str, container: &str) -> ParamGroup {
        let is_norm = container.contains("Norm");
        match field {
            "bias" | "beta" => ParamGroup::Bias,
            "weight" | "gamma" if is_norm => ParamGroup::Norm,
            _ => ParamGroup::Weight,
        }
    }
}

/// Per-group hyper-parameters, set by the schedule before each step.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct GroupSettings {
    pub lr: f64,
    /// MuSGD's lr for the head's classification branches: Ultralytics gives them their own groups at
    /// `MUSGD_HEAD_CLS_LR_GAIN` x lr0, which warmup ramps from the same start as the others (so during a bias
    /// warmup it is not 3x `lr`).
    #[serde(default)]
    pub head_cls_lr: f64,
    /// SGD momentum or Adam beta1.
    pub momentum: f64,
    pub weight_decay: f64,
}

/// Optimizer state: per-parameter moment buffers (flattened), the step count, the group settings.
#[derive(Debug, Clone)]
pub struct DetectorOptimizer<B: Backend> {
    pub kind: OptimizerKind,
    pub groups: [GroupSettings; 3],
    pub steps: u64,
    first: HashMap<ParamId, Tensor<B, 1>>,
    second: HashMap<ParamId, Tensor<B, 1>>,
}

impl<B: Backend> DetectorOptimizer<B> {
    pub fn new(kind: OptimizerKind, lr: f64, momentum: f64, weight_decay: f64) -> Self {
        let g = |wd| GroupSettings { lr, head_cls_lr: lr * MUSGD_HEAD_CLS_LR_GAIN, momentum, weight_decay: wd };
        DetectorOptimizer {
            kind,
            groups: [g(0.0), g(weight_decay), g(0.0)],
            steps: 0,
            first: HashMap::new(),
            second: HashMap::new(),
        }
    }

    /// Applies one update. `grad_scale` multiplies every gradient first (loss-scale removal and
    /// norm clipping folded into one factor).
    pub fn step<AB, M>(&mut self, module: M, mut grads: GradientsParams, grad_scale: f64) -> M
    where
        AB: AutodiffBackend<InnerBackend = B>,
        M: AutodiffModule<AB>,
    {
        self.steps += 1;
        let mut mapper = StepMapper::<AB> { opt: self, grads: &mut grads, path: Vec::new(), grad_scale };
        module.map(&mut mapper)
    }

    /// The moment buffers, for checkpoints: (param id, first, second) as flat f32 vectors.
    pub fn state(&self) -> Vec<(ParamId, Vec<f32>, Option<Vec<f32>>)> {
        let mut out: Vec<_> =
            self.first.iter().map(|(id, m)| (*id, to_vec(m), self.second.get(id).map(to_vec))).collect();
        out.sort_by_key(|(id, _, _)| id.val());
        out
    }

    /// Restores buffers saved by [`Self::state`].
    pub fn load_state(&mut self, state: Vec<(ParamId, Vec<f32>, Option<Vec<f32>>)>, device: &B::Device) {
        self.first.clear();
        self.second.clear();
        for (id, m, v) in state {
            self.first.insert(id, Tensor::from_floats(m.as_slice(), device));
            if let Some(v) = v {
                self.second.insert(id, Tensor::from_floats(v.as_slice(), device));
            }
        }
    }
}

fn to_vec<B: Backend>(t: &Tensor<B, 1>) -> Vec<f32> {
    t.to_data().convert::<f32>().to_vec().expect("f32 data")
}

struct StepMapper<'a, AB: AutodiffBackend> {
    opt: &'a mut DetectorOptimizer<AB::InnerBackend>,
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
        // Ultralytics' MuSGD puts every matrix and filter bank (whatever its name) with the decayed weights.
        let is_matrix = kind == OptimizerKind::MuSGD && (D == 2 || D == 4);
        let group_of = if is_matrix { ParamGroup::Weight } else { ParamGroup::classify(&field, &container) };
        let mut group = self.opt.groups[group_of as usize];
        if kind == OptimizerKind::MuSGD && self.in_head_cls_branch() {
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

impl<AB: AutodiffBackend> StepMapper<'_, AB> {
    fn in_head_cls_branch(&self) -> bool {
        self.path
            .iter()
            .any(|(name, container)| container == "Struct:Detect" && (name == "cv3" || name == "one2one_cv3"))
    }
}

/// PyTorch's SGD with Nesterov momentum, no dampening, coupled weight decay.
fn sgd<B: Backend>(
    opt: &mut DetectorOptimizer<B>,
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

/// Ultralytics' MuSGD on a matrix or filter bank: a Muon step (its momentum in the first buffer), then
/// a Nesterov-SGD step with weight decay (its momentum in the second buffer), both from the same gradient.
fn musgd_matrix<B: Backend>(
    opt: &mut DetectorOptimizer<B>,
    id: ParamId,
    p: Tensor<B, 1>,
    g: Tensor<B, 1>,
    s: GroupSettings,
    shape: &[usize],
) -> Tensor<B, 1> {
    let (momentum, direction) = muon_update(g.clone(), opt.first.remove(&id), s.momentum, shape);
    opt.first.insert(id, momentum);
    let p = p - direction.mul_scalar(s.lr * MUON_WEIGHT);
    let mut buffer = opt.second.remove(&id);
    let p = nesterov_sgd(&mut buffer, p, g, s, s.lr * MUON_SGD_WEIGHT);
    opt.second.insert(id, buffer.expect("set by the step"));
    p
}

/// PyTorch's AdamW (decoupled weight decay), beta2 0.999, eps 1e-8.
fn adamw<B: Backend>(
    opt: &mut DetectorOptimizer<B>,
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

/// Sum of squares of every gradient of `module`, as one `[1]` tensor left on the device (not finite when
/// any gradient is not); `None` when the module has no gradients.
pub fn gradient_sum_squares<AB: AutodiffBackend, M: AutodiffModule<AB>>(
    module: &M,
    grads: &GradientsParams,
) -> Option<Tensor<AB::InnerBackend, 1>> {
    struct SumSquares<'a, B: Backend> {
        grads: &'a GradientsParams,
        sum: Option<Tensor<B, 1>>,
    }
    impl<AB: AutodiffBackend> ModuleVisitor<AB> for SumSquares<'_, AB::InnerBackend> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<AB, D>>) {
            if let Some(g) = self.grads.get::<AB::InnerBackend, D>(param.id) {
                let s = g.powi_scalar(2).sum();
                self.sum = Some(match self.sum.take() {
                    Some(acc) => acc + s,
                    None => s,
                });
            }
        }
    }
    let mut visitor = SumSquares::<AB::InnerBackend> { grads, sum: None };
    module.visit(&mut visitor);
    visitor.sum
}
