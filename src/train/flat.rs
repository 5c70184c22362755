//! A model's tensors in flat f32 buffers, so that the optimizer, the EMA and the gradient norm each run a
//! fixed number of kernels over the whole model rather than a few per tensor (a YOLO has hundreds of
//! tensors; on a GPU each kernel launch costs microseconds whatever its size).
//!
//! A [`FlatLayout`] places tensors in module order (never by `ParamId`, which differs between processes), each
//! at an offset aligned to [`ALIGN`] elements, so that a tensor's slice of a buffer is a view and not a copy on
//! every backend. The padding between tensors stays zero in every buffer. Gathering a module's gradients or
//! values into a buffer costs one kernel per tensor; giving a module its tensors back as views of a buffer
//! costs none.

use std::ops::Range;

use burn::module::{AutodiffModule, Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Tensor, TensorData};

use crate::kernels;

/// Offsets are multiples of this many elements: 256 bytes, the largest storage-buffer offset alignment
/// Vulkan allows, so a slice of a buffer is a view on every cubecl device (and on the CPU).
pub const ALIGN: usize = 64;

/// Where one tensor lives in a flat buffer.
#[derive(Debug, Clone, PartialEq)]
pub struct Slot {
    /// The tensor's parameter id in the module the layout was made from (not stable across processes).
    pub id: ParamId,
    /// The tensor's shape.
    pub shape: Vec<usize>,
    /// Index of the tensor's first element in the buffer, a multiple of [`ALIGN`].
    pub offset: usize,
}

impl Slot {
    /// Number of elements of the tensor (padding excluded).
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Whether the tensor has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The tensor's elements in the buffer: `offset..offset + len`.
    pub fn range(&self) -> Range<usize> {
        self.offset..self.offset + self.len()
    }
}

/// Tensors of a module laid out in one flat buffer, in module order.
#[derive(Debug, Clone, PartialEq)]
pub struct FlatLayout {
    /// One slot per tensor, in module order, at increasing offsets.
    pub slots: Vec<Slot>,
    /// Length of a buffer (the last tensor's end, rounded up to [`ALIGN`]).
    pub len: usize,
}

impl FlatLayout {
    /// The tensors the optimizer trains: parameters that require a gradient (frozen ones excluded).
    pub fn trainable<AB: AutodiffBackend, M: AutodiffModule<AB>>(model: &M) -> Self {
        struct Trainable(Vec<(ParamId, Vec<usize>)>);
        impl<AB: AutodiffBackend> ModuleVisitor<AB> for Trainable {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<AB, D>>) {
                let value = param.val();
                if value.is_require_grad() {
                    self.0.push((param.id, value.dims().to_vec()));
                }
            }
        }
        let mut visitor = Trainable(Vec::new());
        model.visit(&mut visitor);
        Self::new(visitor.0)
    }

    /// Every float tensor of `module` (parameters and running statistics), in module order.
    pub fn all<B: Backend, M: Module<B>>(module: &M) -> Self {
        struct All(Vec<(ParamId, Vec<usize>)>);
        impl<B: Backend> ModuleVisitor<B> for All {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
                self.0.push((param.id, param.val().dims().to_vec()));
            }
        }
        let mut visitor = All(Vec::new());
        module.visit(&mut visitor);
        Self::new(visitor.0)
    }

    /// A layout of `tensors` (id and shape) in the order given.
    pub fn from_tensors(tensors: Vec<(ParamId, Vec<usize>)>) -> Self {
        Self::new(tensors)
    }

    fn new(tensors: Vec<(ParamId, Vec<usize>)>) -> Self {
        let mut offset = 0;
        let slots = tensors
            .into_iter()
            .map(|(id, shape)| {
                let slot = Slot { id, shape, offset };
                offset += slot.len().div_ceil(ALIGN) * ALIGN;
                slot
            })
            .collect();
        FlatLayout { slots, len: offset }
    }
    /// Number of real elements (padding excluded).
    pub fn num_elements(&self) -> usize {
        self.slots.iter().map(Slot::len).sum()
    }

    /// A buffer with `value(slot)` at every element of each slot and 0 in the padding (one upload).
    pub fn fill_per_slot<B: Backend>(&self, value: impl Fn(usize, &Slot) -> f32, device: &B::Device) -> Tensor<B, 1> {
        let mut v = vec![0f32; self.len];
        for (i, slot) in self.slots.iter().enumerate() {
            v[slot.range()].fill(value(i, slot));
        }
        Tensor::from_data(TensorData::new(v, [self.len]), device)
    }

    /// The current values of the slots' tensors of `module` in one buffer (one kernel per tensor).
    pub fn gather_values<B: Backend, M: Module<B>>(&self, module: &M, device: &B::Device) -> Tensor<B, 1> {
        struct Values<'a, B: Backend> {
            layout: &'a FlatLayout,
            next: usize,
            flat: Option<Tensor<B, 1>>,
        }
        impl<B: Backend> ModuleVisitor<B> for Values<'_, B> {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
                if let Some(slot) = self.layout.slots.get(self.next).filter(|s| s.id == param.id) {
                    self.next += 1;
                    assign(&mut self.flat, slot.range(), param.val().reshape([slot.len()]));
                }
            }
        }
        let mut visitor = Values { layout: self, next: 0, flat: Some(Tensor::zeros([self.len], device)) };
        module.visit(&mut visitor);
        assert_eq!(visitor.next, self.slots.len(), "the module does not have the layout's tensors");
        visitor.flat.expect("the buffer is put back after each assignment")
    }

    /// The values of every float tensor of `module`, a module of the same architecture as the layout's (its ids
    /// may differ), slot `i` taking its `i`-th float tensor in module order (one kernel per tensor).
    pub fn gather_by_position<B: Backend, M: Module<B>>(&self, module: &M, device: &B::Device) -> Tensor<B, 1> {
        struct Values<'a, B: Backend> {
            layout: &'a FlatLayout,
            next: usize,
            flat: Option<Tensor<B, 1>>,
        }
        impl<B: Backend> ModuleVisitor<B> for Values<'_, B> {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
                let slot = &self.layout.slots[self.next];
                self.next += 1;
                assign(&mut self.flat, slot.range(), param.val().reshape([slot.len()]));
            }
        }
        let mut visitor = Values { layout: self, next: 0, flat: Some(Tensor::zeros([self.len], device)) };
        module.visit(&mut visitor);
        assert_eq!(visitor.next, self.slots.len(), "the module's architecture differs from the layout's");
        visitor.flat.expect("the buffer is put back after each assignment")
    }

    /// The gradients of the slots' tensors in one buffer, taken out of `grads` (one kernel per tensor); a
    /// tensor without a gradient contributes zeros.
    pub fn gather_gradients<AB: AutodiffBackend, M: AutodiffModule<AB>>(
        &self,
        model: &M,
        grads: &mut GradientsParams,
        device: &burn::tensor::Device<AB::InnerBackend>,
    ) -> Tensor<AB::InnerBackend, 1> {
        struct Grads<'a, B: Backend> {
            layout: &'a FlatLayout,
            grads: &'a mut GradientsParams,
            next: usize,
            flat: Option<Tensor<B, 1>>,
        }
        impl<AB: AutodiffBackend> ModuleVisitor<AB> for Grads<'_, AB::InnerBackend> {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<AB, D>>) {
                if let Some(slot) = self.layout.slots.get(self.next).filter(|s| s.id == param.id) {
                    self.next += 1;
                    if let Some(g) = self.grads.remove::<AB::InnerBackend, D>(param.id) {
                        assign(&mut self.flat, slot.range(), g.reshape([slot.len()]));
                    }
                }
            }
        }
        let mut visitor = Grads { layout: self, grads, next: 0, flat: Some(Tensor::zeros([self.len], device)) };
        model.visit(&mut visitor);
        visitor.flat.expect("the buffer is put back after each assignment")
    }

    /// `model` with each slot's parameter replaced by a view of `flat` (no copy), keeping its id and whether
    /// it requires a gradient.
    pub fn scatter_trainable<AB: AutodiffBackend, M: AutodiffModule<AB>>(
        &self,
        model: M,
        flat: &Tensor<AB::InnerBackend, 1>,
    ) -> M {
        struct Views<'a, B: Backend> {
            layout: &'a FlatLayout,
            next: usize,
            flat: &'a Tensor<B, 1>,
        }
        impl<AB: AutodiffBackend> ModuleMapper<AB> for Views<'_, AB::InnerBackend> {
            fn map_float<const D: usize>(&mut self, param: Param<Tensor<AB, D>>) -> Param<Tensor<AB, D>> {
                let Some(slot) = self.layout.slots.get(self.next).filter(|s| s.id == param.id) else { return param };
                self.next += 1;
                let (id, tensor, mapper) = param.consume();
                let view = self.flat.clone().slice([slot.range()]).reshape(shape_of::<D>(&slot.shape));
                let mut out = Tensor::from_inner(view);
                if tensor.is_require_grad() {
                    out = out.require_grad();
                }
                Param::from_mapped_value(id, out, mapper)
            }
        }
        let mut mapper = Views { layout: self, next: 0, flat };
        let model = model.map(&mut mapper);
        assert_eq!(mapper.next, self.slots.len(), "the model does not have the layout's tensors");
        model
    }

    /// `module`, of the layout's architecture (every float tensor a slot, by position), with its tensors replaced
    /// by views of `flat`. BatchNorm statistics are shared between clones of a module: this changes them in
    /// every clone.
    pub fn scatter<B: Backend, M: Module<B>>(&self, module: M, flat: &Tensor<B, 1>) -> M {
        struct Views<'a, B: Backend> {
            layout: &'a FlatLayout,
            next: usize,
            flat: &'a Tensor<B, 1>,
        }
        impl<B: Backend> ModuleMapper<B> for Views<'_, B> {
            fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
                let slot = &self.layout.slots[self.next];
                self.next += 1;
                let (id, _, mapper) = param.consume();
                let view = self.flat.clone().slice([slot.range()]).reshape(shape_of::<D>(&slot.shape));
                Param::from_mapped_value(id, view, mapper)
            }
        }
        let mut mapper = Views { layout: self, next: 0, flat };
        let module = module.map(&mut mapper);
        assert_eq!(mapper.next, self.slots.len(), "the module does not have the layout's tensors");
        module
    }

    /// Each slot's values of a host copy of a buffer, in slot order (checkpoints).
    pub fn split_host(&self, flat: &[f32]) -> Vec<Vec<f32>> {
        self.slots.iter().map(|s| flat[s.range()].to_vec()).collect()
    }

    /// A buffer from per-slot host values in slot order (checkpoints); `None` when the sizes do not match.
    pub fn join_host<B: Backend>(&self, values: &[Vec<f32>], device: &B::Device) -> Option<Tensor<B, 1>> {
        if values.len() != self.slots.len() || values.iter().zip(&self.slots).any(|(v, s)| v.len() != s.len()) {
            return None;
        }
        let mut flat = vec![0f32; self.len];
        for (v, s) in values.iter().zip(&self.slots) {
            flat[s.range()].copy_from_slice(v);
        }
        Some(Tensor::from_data(TensorData::new(flat, [self.len]), device))
    }
}

fn shape_of<const D: usize>(shape: &[usize]) -> [usize; D] {
    std::array::from_fn(|i| shape[i])
}

/// `flat[range] = values`, the buffer moved into the assignment rather than cloned: a backend writes into a
/// buffer it holds the only handle to, and copies a shared one whole first (cubecl did, once per tensor;
/// flex's `slice_assign` always does, hence its kernel).
fn assign<B: Backend>(flat: &mut Option<Tensor<B, 1>>, range: std::ops::Range<usize>, values: Tensor<B, 1>) {
    let buffer = flat.take().expect("the buffer is put back after each assignment");
    *flat = Some(match kernels::assign_range(buffer, range.clone(), &values) {
        Ok(written) => written,
        Err(buffer) => buffer.slice_assign([range], values),
    });
}
