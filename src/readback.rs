//! Tensors read back to the host, counted. On a GPU each read waits for every operation queued before
//! it, so the training step keeps them few: tests hold a batch to its budget by these counters. They
//! count ember's own reads on the calling thread; reads inside burn are not visible here.

use std::cell::Cell;

use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

/// Why a tensor is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// The task-aligned assigner, which runs on the host: predicted boxes and class scores.
    Assigner,
    /// Anything else: loss values, gradient statistics, predictions.
    Other,
}

/// Reads counted on this thread since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadCount {
    /// Reads made for [`Purpose::Assigner`].
    pub assigner: u64,
    /// Reads made for [`Purpose::Other`].
    pub other: u64,
}

impl std::ops::Sub for ReadCount {
    type Output = ReadCount;
    fn sub(self, earlier: ReadCount) -> ReadCount {
        ReadCount { assigner: self.assigner - earlier.assigner, other: self.other - earlier.other }
    }
}

thread_local! {
    static COUNT: Cell<ReadCount> = const { Cell::new(ReadCount { assigner: 0, other: 0 }) };
}

/// The reads this thread has made so far; subtract two of them for the reads in between.
pub fn count() -> ReadCount {
    COUNT.with(Cell::get)
}

/// `t`'s values as f32, whatever its float dtype, in row-major order.
pub fn read_f32<B: Backend, const D: usize>(t: Tensor<B, D>, purpose: Purpose) -> Vec<f32> {
    COUNT.with(|c| {
        let mut n = c.get();
        match purpose {
            Purpose::Assigner => n.assigner += 1,
            Purpose::Other => n.other += 1,
        }
        c.set(n);
    });
    let data = t.into_data();
    match data.to_vec::<f32>() {
        Ok(v) => v,
        Err(_) => data.convert::<f32>().to_vec::<f32>().expect("a float tensor converts to f32"),
    }
}
