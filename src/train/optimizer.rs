//! SGD (Nesterov), AdamW and MuSGD with Ultralytics' parameter groups, over flat buffers: the trainable
//! tensors' FP32 master copy, their gradients and the moments are each one buffer ([`super::flat`]), so an
//! update is a fixed number of kernels whatever the number of tensors. The model's parameters are views of the
//! master copy. Written here rather than taken from burn because the recipe needs what burn's optimizers do
//! not offer together: a learning rate and momentum per group that warmup moves independently, PyTorch's
//! momentum semantics (no dampening), one global gradient-norm clip, and MuSGD.

use std::collections::HashSet;

use burn::module::{AutodiffModule, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::Tensor;

use super::flat::{FlatLayout, Slot};
use super::muon::{muon_direction, MatrixBuckets};
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

/// Per-group hyper-parameters, set by the schedule before each step.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct GroupSettings {
    /// The group's learning rate for this step (warmup ramp or scheduled `lr0 * lambda(epoch)`).
    pub lr: f64,
    /// MuSGD's lr for the head's classification branches: Ultralytics gives them their own groups at
    /// `MUSGD_HEAD_CLS_LR_GAIN` x lr0, which warmup ramps from the same start as the others (so during a bias
    /// warmup it is not 3x `lr`).
    #[serde(default)]
    pub head_cls_lr: f64,
    /// SGD momentum or Adam beta1.
    pub momentum: f64,
    /// L2 weight decay (SGD, MuSGD) or decoupled decay (AdamW); non-zero only for the `Weight` group.
    pub weight_decay: f64,
}

/// Which group each trainable tensor belongs to, decided once, from the model's structure.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamGroups {
    /// The trainable tensors, in module order.
    pub layout: FlatLayout,
    /// Group of each slot of `layout`.
    pub groups: Vec<ParamGroup>,
    /// Whether each slot is in the head's classification branches (MuSGD's 3x groups).
    pub head_cls: Vec<bool>,
}

impl ParamGroups {
    /// Visits `model`: a field named `bias` is a bias; any other one-dimensional tensor a normalisation scale
    /// (the only one-dimensional weights of these models); the rest are weights. `head_cls`: the parameters
    /// of the head's classification branches.
    pub fn new<AB: AutodiffBackend, M: AutodiffModule<AB>>(model: &M, head_cls: &HashSet<ParamId>) -> Self {
        struct Fields {
            path: Vec<String>,
            group: std::collections::HashMap<ParamId, ParamGroup>,
        }
        impl<AB: AutodiffBackend> ModuleVisitor<AB> for Fields {
            fn enter_module(&mut self, name: &str, _container_type: &str) {
                self.path.push(name.to_string());
            }
            fn exit_module(&mut self, _name: &str, _container_type: &str) {
                self.path.pop();
            }
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<AB, D>>) {
                let group = match self.path.last().map(String::as_str) {
                    Some("bias") => ParamGroup::Bias,
                    _ if D == 1 => ParamGroup::Norm,
                    _ => ParamGroup::Weight,
                };
                self.group.insert(param.id, group);
            }
        }
        let layout = FlatLayout::trainable(model);
        let mut fields = Fields { path: Vec::new(), group: Default::default() };
        model.visit(&mut fields);
        let groups = layout.slots.iter().map(|s| fields.group[&s.id]).collect();
        let head_cls = layout.slots.iter().map(|s| head_cls.contains(&s.id)).collect();
        ParamGroups { layout, groups, head_cls }
    }

    /// The group of each slot as MuSGD sees it: every matrix and filter bank is a decayed weight.
    fn group_for(&self, kind: OptimizerKind, i: usize) -> ParamGroup {
        if kind == OptimizerKind::MuSGD && is_matrix(&self.layout.slots[i]) {
            ParamGroup::Weight
        } else {
            self.groups[i]
        }
    }
}

/// Ultralytics' MuSGD puts every matrix and filter bank (whatever its name) in the Muon + SGD update.
fn is_matrix(slot: &Slot) -> bool {
    matches!(slot.shape.len(), 2 | 4)
}

/// Per-element learning rates and weight decays for the current group settings (rebuilt when they change).
#[derive(Debug, Clone)]
struct Coefficients<B: Backend> {
    settings: [GroupSettings; 3],
    lr: Tensor<B, 1>,
    /// `lr * weight_decay` (AdamW's decoupled decay), from the f64 product.
    lr_decay: Tensor<B, 1>,
    decay: Tensor<B, 1>,
}

/// Optimizer state: the master weights, the moment buffers, the step count and the group settings.
#[derive(Debug, Clone)]
pub struct DetectorOptimizer<B: Backend> {
    /// The update rule: SGD (Nesterov), AdamW or MuSGD.
    pub kind: OptimizerKind,
    /// Settings of the three groups, indexed by [`ParamGroup`] as `usize`; the schedule writes them before a step.
    pub groups: [GroupSettings; 3],
    /// Updates applied so far (Adam's bias-correction step count; 0: no moment state to save yet).
    pub steps: u64,
    params: ParamGroups,
    /// FP32 master copy of the trainable tensors; the model's parameters are views of it.
    weights: Tensor<B, 1>,
    /// SGD's momentum buffer, Adam's first moment; MuSGD: Muon's momentum for matrices, SGD's for the rest.
    first: Tensor<B, 1>,
    /// Adam's second moment; MuSGD: the SGD momentum of matrices.
    second: Tensor<B, 1>,
    coefficients: Option<Coefficients<B>>,
    /// MuSGD: 1 at the elements of matrices.
    matrix_mask: Option<Tensor<B, 1>>,
    buckets: MatrixBuckets,
}

impl<B: Backend> DetectorOptimizer<B> {
    /// An optimizer over the trainable tensors of `model` (in `params`' layout): takes their values as the master
    /// copy and returns the model with its parameters as views of it.
    pub fn new<AB, M>(
        kind: OptimizerKind,
        (lr, momentum, weight_decay): (f64, f64, f64),
        model: M,
        params: ParamGroups,
    ) -> (Self, M)
    where
        AB: AutodiffBackend<InnerBackend = B>,
        M: AutodiffModule<AB>,
    {
        let device = device_of::<AB, M>(&model);
        let g = |wd| GroupSettings { lr, head_cls_lr: lr * MUSGD_HEAD_CLS_LR_GAIN, momentum, weight_decay: wd };
        let zeros = || Tensor::<B, 1>::zeros([params.layout.len], &device);
        let matrices: Vec<usize> =
            (0..params.layout.slots.len()).filter(|&i| is_matrix(&params.layout.slots[i])).collect();
        let matrix_mask = (kind == OptimizerKind::MuSGD)
            .then(|| params.layout.fill_per_slot(|_, s| if is_matrix(s) { 1.0 } else { 0.0 }, &device));
        let buckets = if kind == OptimizerKind::MuSGD {
            MatrixBuckets::new(matrices.iter().map(|&i| &params.layout.slots[i]))
        } else {
            MatrixBuckets::default()
        };
        let mut optimizer = DetectorOptimizer {
            kind,
            groups: [g(0.0), g(weight_decay), g(0.0)],
            steps: 0,
            weights: zeros(),
            first: zeros(),
            second: zeros(),
            params,
            coefficients: None,
            matrix_mask,
            buckets,
        };
        let model = optimizer.attach(model);
        (optimizer, model)
    }

    /// Takes `model`'s current trainable values as the master copy (after weights were loaded into it) and
    /// returns it with its parameters as views of that copy.
    pub fn attach<AB, M>(&mut self, model: M) -> M
    where
        AB: AutodiffBackend<InnerBackend = B>,
        M: AutodiffModule<AB>,
    {
        let device = device_of::<AB, M>(&model);
        self.weights = self.params.layout.gather_values(&model.valid(), &device);
        self.params.layout.scatter_trainable(model, &self.weights)
    }

    /// Replaces the master copy by `weights` (in the layout) and returns `model` with its parameters as views of
    /// it: the ranks of a data-parallel run start from rank 0's weights.
    pub fn replace_weights<AB, M>(&mut self, model: M, weights: Tensor<B, 1>) -> M
    where
        AB: AutodiffBackend<InnerBackend = B>,
        M: AutodiffModule<AB>,
    {
        self.weights = weights;
        self.params.layout.scatter_trainable(model, &self.weights)
    }

    /// The trainable tensors' layout.
    pub fn layout(&self) -> &FlatLayout {
        &self.params.layout
    }

    /// The master weights (flat).
    pub fn weights(&self) -> &Tensor<B, 1> {
        &self.weights
    }

    /// `grads` of `model` as one flat buffer in the layout (one kernel per tensor).
    pub fn flatten_gradients<AB, M>(&self, model: &M, mut grads: GradientsParams) -> Tensor<B, 1>
    where
        AB: AutodiffBackend<InnerBackend = B>,
        M: AutodiffModule<AB>,
    {
        self.params.layout.gather_gradients::<AB, M>(model, &mut grads, &self.weights.device())
    }

    /// Applies one update from the flat gradients `grads`. `grad_scale` multiplies every gradient first
    /// (loss-scale removal and norm clipping folded into one factor). Returns the model with its parameters
    /// as views of the new master weights.
    pub fn step<AB, M>(&mut self, model: M, grads: Tensor<B, 1>, grad_scale: f64) -> M
    where
        AB: AutodiffBackend<InnerBackend = B>,
        M: AutodiffModule<AB>,
    {
        self.steps += 1;
        let c = self.coefficients();
        let g = grads.mul_scalar(grad_scale);
        let p = self.weights.clone();
        self.weights = match self.kind {
            OptimizerKind::Sgd => {
                let (p, first) = nesterov_sgd(p, g, self.first.clone(), &c.decay, &c.lr, self.groups[1].momentum);
                self.first = first;
                p
            }
            OptimizerKind::AdamW => self.adamw(p, g, &c),
            OptimizerKind::MuSGD => self.musgd(p, g, &c),
        };
        self.params.layout.scatter_trainable(model, &self.weights)
    }

    /// AdamW: PyTorch's (decoupled weight decay), beta2 0.999, eps 1e-8.
    fn adamw(&mut self, p: Tensor<B, 1>, g: Tensor<B, 1>, c: &Coefficients<B>) -> Tensor<B, 1> {
        const BETA2: f64 = 0.999;
        const EPS: f64 = 1e-8;
        let beta1 = self.groups[1].momentum;
        let t = self.steps as i32;
        let p = p.clone() - p * c.lr_decay.clone();
        let m = self.first.clone().mul_scalar(beta1) + g.clone().mul_scalar(1.0 - beta1);
        let v = self.second.clone().mul_scalar(BETA2) + g.powi_scalar(2).mul_scalar(1.0 - BETA2);
        let (bias1, bias2) = (1.0 - beta1.powi(t), 1.0 - BETA2.powi(t));
        let update = m.clone().div_scalar(bias1) / v.clone().div_scalar(bias2).sqrt().add_scalar(EPS);
        (self.first, self.second) = (m, v);
        p - update * c.lr.clone()
    }

    /// Ultralytics' MuSGD: matrices and filter banks take a Muon step (momentum in `first`), then a Nesterov-SGD
    /// step with weight decay (momentum in `second`), both from the same gradient; the other tensors a
    /// Nesterov-SGD step (momentum in `first`).
    fn musgd(&mut self, p: Tensor<B, 1>, g: Tensor<B, 1>, c: &Coefficients<B>) -> Tensor<B, 1> {
        let matrix = self.matrix_mask.clone().expect("MuSGD has a matrix mask").equal_elem(1.0);
        let beta = self.groups[1].momentum;
        let muon_momentum = self.first.clone().mul_scalar(beta) + g.clone().mul_scalar(1.0 - beta);
        // Nesterov: look ahead along the new momentum.
        let lookahead = muon_momentum.clone().mul_scalar(beta) + g.clone().mul_scalar(1.0 - beta);
        let direction = muon_direction(lookahead, &self.buckets);
        let p = p - direction * c.lr.clone().mul_scalar(MUON_WEIGHT);
        // SGD's buffer: the second one for matrices, the first for the rest.
        let buffer = self.first.clone().mask_where(matrix.clone(), self.second.clone());
        let (p, buffer) = nesterov_sgd(p, g, buffer, &c.decay, &c.lr.clone().mul_scalar(MUON_SGD_WEIGHT), beta);
        self.first = buffer.clone().mask_where(matrix.clone(), muon_momentum);
        self.second = self.second.zeros_like().mask_where(matrix, buffer);
        p
    }

    /// The per-element coefficients of the current group settings.
    fn coefficients(&mut self) -> Coefficients<B> {
        if let Some(c) = self.coefficients.as_ref().filter(|c| c.settings == self.groups) {
            return c.clone();
        }
        let device = self.weights.device();
        let (params, kind, groups) = (&self.params, self.kind, self.groups);
        let lr_of = |i: usize| {
            let s = groups[params.group_for(kind, i) as usize];
            if kind == OptimizerKind::MuSGD && params.head_cls[i] {
                s.head_cls_lr
            } else {
                s.lr
            }
        };
        let decay_of = |i: usize| groups[params.group_for(kind, i) as usize].weight_decay;
        let layout = &params.layout;
        let c = Coefficients {
            settings: groups,
            lr: layout.fill_per_slot(|i, _| lr_of(i) as f32, &device),
            lr_decay: layout.fill_per_slot(|i, _| (lr_of(i) * decay_of(i)) as f32, &device),
            decay: layout.fill_per_slot(|i, _| decay_of(i) as f32, &device),
        };
        self.coefficients = Some(c.clone());
        c
    }

    /// The moment buffers, for checkpoints: per trainable tensor (id, first, second where kept), from two reads.
    pub fn state(&self) -> Vec<(ParamId, Vec<f32>, Option<Vec<f32>>)> {
        if self.steps == 0 {
            return Vec::new();
        }
        let read =
            |t: &Tensor<B, 1>| self.params.layout.split_host(&t.to_data().convert::<f32>().to_vec().expect("f32"));
        let first = read(&self.first);
        let second = match self.kind {
            OptimizerKind::Sgd => None,
            _ => Some(read(&self.second)),
        };
        self.params
            .layout
            .slots
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let keeps_second = match self.kind {
                    OptimizerKind::Sgd => false,
                    OptimizerKind::AdamW => true,
                    OptimizerKind::MuSGD => is_matrix(s),
                };
                let second = second.as_ref().filter(|_| keeps_second).map(|v| v[i].clone());
                (s.id, first[i].clone(), second)
            })
            .collect()
    }

    /// Restores buffers saved by [`Self::state`] (tensors absent from `state` start at zero).
    pub fn load_state(&mut self, state: Vec<(ParamId, Vec<f32>, Option<Vec<f32>>)>) {
        let device = self.weights.device();
        let by_id: std::collections::HashMap<ParamId, (Vec<f32>, Option<Vec<f32>>)> =
            state.into_iter().map(|(id, m, v)| (id, (m, v))).collect();
        let layout = &self.params.layout;
        let pick = |second: bool| -> Vec<Vec<f32>> {
            layout
                .slots
                .iter()
                .map(|s| match by_id.get(&s.id) {
                    Some((m, _)) if !second && m.len() == s.len() => m.clone(),
                    Some((_, Some(v))) if second && v.len() == s.len() => v.clone(),
                    _ => vec![0.0; s.len()],
                })
                .collect()
        };
        self.first = layout.join_host(&pick(false), &device).expect("sizes checked");
        self.second = layout.join_host(&pick(true), &device).expect("sizes checked");
    }
}

/// PyTorch's SGD with Nesterov momentum, no dampening, coupled weight decay: returns the new weights and buffer.
fn nesterov_sgd<B: Backend>(
    p: Tensor<B, 1>,
    g: Tensor<B, 1>,
    buffer: Tensor<B, 1>,
    decay: &Tensor<B, 1>,
    lr: &Tensor<B, 1>,
    momentum: f64,
) -> (Tensor<B, 1>, Tensor<B, 1>) {
    let g = g + p.clone() * decay.clone();
    let buffer = buffer.mul_scalar(momentum) + g.clone();
    let update = g + buffer.clone().mul_scalar(momentum);
    (p - update * lr.clone(), buffer)
}

/// The device of a module's first parameter.
fn device_of<AB: AutodiffBackend, M: AutodiffModule<AB>>(model: &M) -> burn::tensor::Device<AB::InnerBackend> {
    crate::nn::device_of(&model.valid()).expect("a model with parameters")
}

/// Sum of squares of a flat gradient buffer, as one `[1]` tensor left on the device (not finite when any
/// gradient is not).
pub fn gradient_sum_squares<B: Backend>(grads: &Tensor<B, 1>) -> Tensor<B, 1> {
    grads.clone().powi_scalar(2).sum()
}
