//! `buffer[range] = values` on flex in FP32, written in place when the caller hands over the only handle to
//! the buffer. flex's `slice_assign` copies the whole destination first on every call (it takes a second
//! handle to it before asking for mutable storage), so gathering a model's few hundred tensors into one
//! flat buffer copied that buffer a few hundred times: about 5% of a CPU training step, and most of the
//! optimizer's set-up. The definition every other backend runs is burn's `slice_assign`.

use std::ops::Range;

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorPrimitive};

use super::{on_flex, retype, values, On};
use crate::backend::Cpu;

/// `buffer` with `values` written at `range`, in place, when ember's flex kernel handles it (an FP32 flex
/// buffer that nothing else shares, laid out from its first element); else `Err(buffer)`, untouched, for
/// the generic definition.
pub fn try_assign_range<B: Backend>(
    buffer: Tensor<B, 1>,
    range: Range<usize>,
    values_in: &Tensor<B, 1>,
) -> Result<Tensor<B, 1>, Tensor<B, 1>> {
    if on_flex::<B>(&[buffer.dtype(), values_in.dtype()]) != Some(On::Inference)
        || range.end > buffer.dims()[0]
        || range.len() != values_in.dims()[0]
    {
        return Err(buffer);
    }
    let mut target = retype::<_, Tensor<Cpu, 1>>(buffer).expect("on_flex checked the type").into_primitive().tensor();
    let source = retype::<_, Tensor<Cpu, 1>>(values_in.clone()).expect("same backend").into_primitive().tensor();
    let whole = target.layout().is_contiguous() && target.layout().start_offset() == 0;
    let written = whole
        && match target.try_storage_mut::<f32>() {
            Some(storage) if storage.len() >= range.end => {
                storage[range].copy_from_slice(&values(&source));
                true
            }
            _ => false,
        };
    let target = Tensor::<Cpu, 1>::from_primitive(TensorPrimitive::Float(target));
    let target = retype::<_, Tensor<B, 1>>(target).expect("same backend");
    if written {
        Ok(target)
    } else {
        Err(target)
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Tensor, TensorData};

    use super::try_assign_range;
    use crate::backend::{Cpu, CpuAutodiff};

    fn ramp(n: usize, from: f32) -> Tensor<Cpu, 1> {
        Tensor::from_data(
            TensorData::new((0..n).map(|i| from + i as f32).collect::<Vec<_>>(), [n]),
            &Default::default(),
        )
    }

    #[test]
    fn writes_in_place_what_slice_assign_writes() {
        let values = ramp(5, 100.0);
        let range = 3..8;
        let want = ramp(12, 0.0).slice_assign([range], values.clone()).into_data();
        let got = try_assign_range(ramp(12, 0.0), 3..8, &values).expect("an unshared buffer is written in place");
        assert_eq!(got.into_data(), want);
    }

    #[test]
    fn a_shared_buffer_or_another_backend_is_left_to_the_definition() {
        let buffer = ramp(12, 0.0);
        let kept = buffer.clone();
        let back = try_assign_range(buffer, 3..8, &ramp(5, 100.0)).expect_err("a shared buffer is not written");
        assert_eq!(back.into_data(), kept.clone().into_data());
        assert_eq!(kept.into_data(), ramp(12, 0.0).into_data(), "the other handle still sees the old values");

        let training: Tensor<CpuAutodiff, 1> = Tensor::zeros([12], &Default::default());
        assert!(try_assign_range(training, 0..5, &Tensor::zeros([5], &Default::default())).is_err());
        assert!(try_assign_range(ramp(4, 0.0), 2..6, &ramp(4, 0.0)).is_err(), "out of range: the definition panics");
    }
}
