//! Exponential moving average of the weights (and BatchNorm statistics), used for validation and
//! checkpoints. Decay ramps up as `decay * (1 - exp(-updates / tau))`, so early weights fade fast.
//!
//! The average is one flat buffer over every float tensor in module order ([`super::flat`]): an update
//! gathers the model's tensors into a buffer (one kernel each) and blends the two buffers in three kernels.
//! The averaged module is made on demand, its tensors views of the buffer, in an independent copy of the
//! architecture (`Yolo::deep_clone`: burn's `clone` shares BatchNorm statistics), whose parameter ids differ
//! from the model's; tensors are paired by module order.

use burn::module::{Module, ParamId};
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};

use super::flat::FlatLayout;

/// For each element of the average, its position in `[trained weights, the other tensors, 0]`.
#[derive(Debug, Clone)]
struct Sources<B: Backend> {
    /// The tensors not in the trained buffer, in module order (ids of the model).
    rest: FlatLayout,
    index: Tensor<B, 1, Int>,
    trained_len: usize,
}

impl<B: Backend> Sources<B> {
    fn new<M: Module<B>>(average: &FlatLayout, model: &M, trained: &FlatLayout, device: &B::Device) -> Self {
        // The model's tensors in module order: the average's layout made from the model carries the model's ids.
        let ids: Vec<(ParamId, Vec<usize>)> =
            FlatLayout::all(model).slots.into_iter().map(|s| (s.id, s.shape)).collect();
        assert_eq!(ids.len(), average.slots.len(), "the model's architecture differs from the average's");
        let offsets: std::collections::HashMap<ParamId, usize> =
            trained.slots.iter().map(|s| (s.id, s.offset)).collect();
        let rest = FlatLayout::from_tensors(ids.iter().filter(|(id, _)| !offsets.contains_key(id)).cloned().collect());
        let rest_offsets: std::collections::HashMap<ParamId, usize> =
            rest.slots.iter().map(|s| (s.id, s.offset)).collect();
        let zero = (trained.len + rest.len) as i64; // padding takes the appended 0, as a gathered buffer has
        let mut index = vec![zero; average.len];
        for ((id, _), slot) in ids.iter().zip(&average.slots) {
            let start = offsets.get(id).map_or_else(|| trained.len + rest_offsets[id], |&o| o);
            for (k, i) in index[slot.range()].iter_mut().enumerate() {
                *i = (start + k) as i64;
            }
        }
        let index = Tensor::from_data(TensorData::new(index, [average.len]), device);
        Sources { rest, index, trained_len: trained.len }
    }
}

/// The moving average of a module's float tensors (Ultralytics `ModelEMA`).
#[derive(Debug, Clone)]
pub struct ModelEma<B: Backend, M> {
    /// The architecture the averaged module is made in.
    template: M,
    /// Every float tensor, in module order (ids of the template).
    layout: FlatLayout,
    values: Tensor<B, 1>,
    /// Where [`ModelEma::update_from`] takes each element from, made on its first call.
    sources: Option<Sources<B>>,
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
        ModelEma { template: module, layout, values, sources: None, updates: 0, decay: 0.9999, tau: 2000.0 }
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

    /// As [`ModelEma::update`], with the trained tensors' values taken from the optimizer's buffer `weights`
    /// (of layout `trained`, which `model`'s trained tensors are views of) instead of gathered one kernel per
    /// tensor: only the other tensors (BatchNorm statistics, frozen weights) are gathered, and one `select`
    /// puts every element in its place. The same values as `update`.
    pub fn update_from(&mut self, model: &M, weights: &Tensor<B, 1>, trained: &FlatLayout) {
        let device = self.values.device();
        if self.sources.as_ref().is_none_or(|s| s.trained_len != trained.len) {
            self.sources = Some(Sources::new(&self.layout, model, trained, &device));
        }
        let sources = self.sources.as_ref().expect("made above");
        let rest = sources.rest.gather_values(model, &device);
        let source = Tensor::cat(vec![weights.clone(), rest, Tensor::zeros([1], &device)], 0);
        let current = source.select(0, sources.index.clone());
        self.updates += 1;
        let d = self.current_decay();
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

#[cfg(test)]
mod tests {
    use burn::module::AutodiffModule;
    use burn::tensor::backend::Backend;

    use super::*;
    use crate::backend::{Cpu, CpuAutodiff};
    use crate::model::Yolo;

    /// Blending from the optimizer's buffer gives the average that gathering every tensor gives, exactly,
    /// over two updates (the second reusing the index), BatchNorm statistics included.
    #[test]
    fn update_from_the_trained_buffer_equals_gathering() {
        let device = Default::default();
        CpuAutodiff::seed(&device, 1);
        let start = Yolo::<CpuAutodiff>::new("yolo26n", 80, &device).unwrap();
        let model = Yolo::<CpuAutodiff>::new("yolo26n", 80, &device).unwrap();
        let trained = FlatLayout::trainable(&model);
        let inference = model.valid();
        let weights: Tensor<Cpu, 1> = trained.gather_values(&inference, &device);
        let mut gathered = ModelEma::new(start.valid().deep_clone().unwrap());
        let mut selected = gathered.clone();
        for _ in 0..2 {
            gathered.update(&inference);
            selected.update_from(&inference, &weights, &trained);
            let (want, got) = (gathered.values().clone().into_data(), selected.values().clone().into_data());
            assert_eq!(want, got);
        }
        assert!(trained.slots.len() < gathered.layout.slots.len(), "some tensors are not trained (statistics)");
    }
}
