//! Exponential moving average of the weights (and BatchNorm statistics), used for validation and
//! checkpoints. Decay ramps up as `decay * (1 - exp(-updates / tau))`, so early weights fade fast.
//!
//! The average is one flat buffer over every float tensor in module order ([`super::flat`]): an update
//! gathers the model's tensors into a buffer (one kernel each) and blends the two buffers in three kernels.
//! The averaged module is made on demand, its tensors views of the buffer, in an independent copy of the
//! architecture (`Yolo::deep_clone`: burn's `clone` shares BatchNorm statistics), whose parameter ids differ
//! from the model's; tensors are paired by module order.

use burn::module::Module;
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

use super::flat::FlatLayout;

/// The moving average of a module's float tensors (Ultralytics `ModelEMA`).
#[derive(Debug, Clone)]
pub struct ModelEma<B: Backend, M> {
    /// The architecture the averaged module is made in.
    template: M,
    /// Every float tensor, in module order (ids of the template).
    layout: FlatLayout,
    values: Tensor<B, 1>,
    /// Updates made so far (one per applied optimizer step); saved in checkpoints so a resumed run keeps its ramp.
    pub updates: u64,
    /// Decay the ramp tends to (Ultralytics 0.9999).
    pub decay: f64,
    /// Ramp time constant in updates (Ultralytics 2000).
    pub tau: f64,
}

impl<B: Backend, M: Module<B> + Clone> ModelEma<B, M> {
    /// An average starting at `module`'s values; `module` must own its tensors (a deep copy).
    pub fn new(module: M) -> Self {
        let layout = FlatLayout::all(&module);
        let device = module.devices().into_iter().next().expect("a module with tensors");
        let values = layout.gather_by_position(&module, &device);
        ModelEma { template: module, layout, values, updates: 0, decay: 0.9999, tau: 2000.0 }
    }

    /// `decay * (1 - exp(-updates / tau))` at the current count: the weight the latest update gave the old average.
    pub fn current_decay(&self) -> f64 {
        self.decay * (1.0 - (-(self.updates as f64) / self.tau).exp())
    }

    /// Moves the average towards `model` (an inference copy of the same architecture).
    pub fn update(&mut self, model: &M) {
        self.updates += 1;
        let d = self.current_decay();
        let current = self.layout.gather_by_position(model, &self.values.device());
        self.values = self.values.clone().mul_scalar(d) + current.mul_scalar(1.0 - d);
    }

    /// The averaged module (its tensors views of the average).
    pub fn module(&self) -> M {
        self.layout.scatter(self.template.clone(), &self.values)
    }

    /// The average as a flat buffer over every float tensor in module order.
    pub fn values(&self) -> &Tensor<B, 1> {
        &self.values
    }
}
