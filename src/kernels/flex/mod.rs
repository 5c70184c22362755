//! ember's own kernels for burn-flex (FP32, plain and autodiff), where burn's generic operations run on one
//! thread or take a slow path, and what they share: the switch that turns them off, the one dispatch from
//! code generic over backends to the flex types ([`on_flex`], [`retype`]), reading a tensor's values and
//! making one from a `Vec`, and adding an input's gradients from several consumers on all threads.
//!
//! Each kernel is tested against the generic definition it replaces (in the module of that definition).

pub mod assign;
pub mod batchnorm;
pub mod conv;
pub mod math;
pub mod residual;
pub mod softplus_sum;
pub mod upsample;
pub(crate) mod wide;

use std::any::TypeId;

use burn::backend::autodiff::grads::Gradients;
use burn::tensor::backend::{Backend, BackendTypes};
use burn::tensor::DType;
use burn_flex::FlexTensor;
use rayon::prelude::*;

use crate::backend::{Cpu, CpuAutodiff};

/// Whether `B` is burn-flex, plain or autodiff.
pub fn is_flex<B: Backend>() -> bool {
    let backend = TypeId::of::<B>();
    backend == TypeId::of::<Cpu>() || backend == TypeId::of::<CpuAutodiff>()
}

/// Which flex backend a kernel runs on: inference (`Flex`) or training (`Autodiff<Flex>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum On {
    Inference,
    Training,
}

/// Whether ember's flex kernels take an operation on backend `B` whose operands have `dtypes`: `B` is flex
/// (plain or autodiff), every operand is FP32, and the kernels are on.
pub(crate) fn on_flex<B: Backend>(dtypes: &[DType]) -> Option<On> {
    if !own_kernels() || dtypes.iter().any(|d| *d != DType::F32) {
        return None;
    }
    let backend = TypeId::of::<B>();
    if backend == TypeId::of::<CpuAutodiff>() {
        Some(On::Training)
    } else if backend == TypeId::of::<Cpu>() {
        Some(On::Inference)
    } else {
        None
    }
}

/// Whether ember's own flex kernels are on (they are unless `EMBER_BURN_KERNELS=1`).
pub fn own_kernels() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var("EMBER_BURN_KERNELS").map_or(true, |v| v != "1"))
}

pub(crate) use super::retype;

/// The f32 elements of `t` in row-major order: borrowed when already so laid out, else copied.
pub(crate) fn values(t: &FlexTensor) -> std::borrow::Cow<'_, [f32]> {
    if let Some(s) = t.as_slice::<f32>() {
        return std::borrow::Cow::Borrowed(s);
    }
    std::borrow::Cow::Owned(
        gather_blocks(t).unwrap_or_else(|| t.to_contiguous().into_data().into_vec::<f32>().expect("f32 tensor")),
    )
}

/// A tensor of `shape` owning `data`. Built from a `Vec<f32>` rather than `FlexTensor::empty`, which
/// allocates bytes and then copies them once more to align them.
pub(crate) fn tensor(data: Vec<f32>, shape: impl Into<burn::tensor::Shape>) -> FlexTensor {
    FlexTensor::from_data(burn::tensor::TensorData::new(data, shape))
}

/// `dst += src` element-wise, on all threads.
pub(crate) fn add_into(dst: &mut [f32], src: &[f32]) {
    dst.par_chunks_mut(1 << 14)
        .zip(src.par_chunks(1 << 14))
        .for_each(|(d, s)| d.iter_mut().zip(s).for_each(|(d, s)| *d += s));
}

/// A view whose innermost dimensions are contiguous (a channel range of NCHW, as `chunk` and the
/// gradients of `cat` make) copied block by block on all threads: flex's `to_contiguous` walks such views
/// one element at a time on one thread.
fn gather_blocks(t: &FlexTensor) -> Option<Vec<f32>> {
    let layout = t.layout();
    let (shape, strides) = (layout.shape().to_vec(), layout.strides());
    let mut block = 1usize;
    let mut outer = shape.len();
    while outer > 0 && strides[outer - 1] == block as isize {
        block *= shape[outer - 1];
        outer -= 1;
    }
    if block < 256 || strides[..outer].iter().any(|&s| s <= 0) {
        return None; // small blocks, broadcasts and reversed views: flex's own copy
    }
    let (outer_shape, outer_strides) = (&shape[..outer], &strides[..outer]);
    let storage = t.storage::<f32>();
    let start = layout.start_offset();
    let mut out = vec![0f32; outer_shape.iter().product::<usize>() * block];
    out.par_chunks_mut(block).enumerate().for_each(|(i, dst)| {
        let (mut rest, mut offset) = (i, start);
        for d in (0..outer).rev() {
            offset += (rest % outer_shape[d]) * outer_strides[d] as usize;
            rest /= outer_shape[d];
        }
        dst.copy_from_slice(&storage[offset..offset + block]);
    });
    Some(out)
}

/// Registers `dx` as the gradient of `input`, adding (on all threads) what other consumers of `input`
/// registered before: burn's own accumulation is a single-threaded add, element by element when the
/// earlier gradient is a view (the usual case after `cat` or `chunk`).
pub(crate) fn register_input_grad(
    grads: &mut Gradients,
    input: &<CpuAutodiff as BackendTypes>::FloatTensorPrimitive,
    mut dx: Vec<f32>,
) {
    if let Some(earlier) = grads.remove::<Cpu>(input) {
        add_into(&mut dx, &values(&earlier));
    }
    grads.register::<Cpu>(input.node.id, tensor(dx, input.primitive.layout().shape().clone()));
}

/// As [`register_input_grad`] for a gradient computed elsewhere: registered as it is (shared, not
/// copied) when it is the first, else summed on all threads into a new tensor.
pub(crate) fn accumulate_grad(
    grads: &mut Gradients,
    input: &<CpuAutodiff as BackendTypes>::FloatTensorPrimitive,
    grad: FlexTensor,
) {
    let total = match grads.remove::<Cpu>(input) {
        Some(earlier) => sum(&grad, &earlier),
        None => grad,
    };
    grads.register::<Cpu>(input.node.id, total);
}

/// Element-wise sum of two same-shaped tensors on all threads, into a new tensor.
pub(crate) fn sum(a: &FlexTensor, b: &FlexTensor) -> FlexTensor {
    let (x, y) = (values(a), values(b));
    let mut out = vec![0f32; x.len()];
    out.par_chunks_mut(1 << 14).zip(x.par_chunks(1 << 14).zip(y.par_chunks(1 << 14))).for_each(|(o, (x, y))| {
        for ((o, x), y) in o.iter_mut().zip(x).zip(y) {
            *o = x + y;
        }
    });
    tensor(out, a.layout().shape().clone())
}
