//! Exponential moving average of the weights (and BatchNorm statistics), used for validation and
//! checkpoints. Decay ramps up as `decay * (1 - exp(-updates / tau))`, so early weights fade fast.
//!
//! The average must be an independent copy (`Yolo::deep_clone`: burn's `clone` shares BatchNorm
//! statistics), so its parameter ids differ from the model's; tensors are paired by module order.

use std::collections::VecDeque;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

#[derive(Debug, Clone)]
pub struct ModelEma<M> {
    pub module: M,
    pub updates: u64,
    pub decay: f64,
    pub tau: f64,
}

impl<M> ModelEma<M> {
    pub fn new(module: M) -> Self {
        ModelEma { module, updates: 0, decay: 0.9999, tau: 2000.0 }
    }

    pub fn current_decay(&self) -> f64 {
        self.decay * (1.0 - (-(self.updates as f64) / self.tau).exp())
    }

    /// Moves the average towards `model` (an inference copy of the same architecture).
    pub fn update<B: Backend>(&mut self, model: &M)
    where
        M: Module<B> + Clone,
    {
        self.updates += 1;
        let d = self.current_decay();
        let mut collect = Collect::<B> { values: VecDeque::new() };
        model.visit(&mut collect);
        let mut blend = Blend::<B> { values: collect.values, d };
        self.module = self.module.clone().map(&mut blend);
        assert!(blend.values.is_empty(), "EMA and model differ in their tensors");
    }
}

struct Collect<B: Backend> {
    values: VecDeque<Tensor<B, 1>>,
}

impl<B: Backend> ModuleVisitor<B> for Collect<B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        self.values.push_back(param.val().reshape([-1]));
    }
}

struct Blend<B: Backend> {
    values: VecDeque<Tensor<B, 1>>,
    d: f64,
}

impl<B: Backend> ModuleMapper<B> for Blend<B> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (id, tensor, mapper) = param.consume();
        let tensor = match self.values.pop_front() {
            Some(v) => {
                let shape = tensor.shape();
                tensor.mul_scalar(self.d) + v.reshape(shape).mul_scalar(1.0 - self.d)
            }
            None => tensor,
        };
        Param::from_mapped_value(id, tensor, mapper)
    }
}
