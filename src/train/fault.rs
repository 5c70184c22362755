//! Fault injection for testing the trainer's recoveries, from faults that are rare and hard to provoke on
//! purpose. Off unless `EMBER_FAULT` is set.
//!
//! `EMBER_FAULT=nan-weights@E:B` turns the weights to NaN just before batch B (0-based) of epoch E
//! (1-based, as printed), once: the following losses are non-finite, as after a real divergence.
//! `EMBER_FAULT=oom@E:B` fails that batch with the device's out-of-memory error, once; `oom@E:BxN` N times
//! (each restart of the run meets it again until it has struck N times).

use std::sync::atomic::{AtomicUsize, Ordering};

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::Tensor;

/// What an injected fault does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// Every trainable weight becomes NaN.
    NanWeights,
    /// The batch fails as a device out of memory does.
    OutOfMemory,
}

/// Faults struck so far in this process (a fault planned N times strikes while this is below N).
static STRUCK: AtomicUsize = AtomicUsize::new(0);

/// A planned fault at (epoch index, batch index), both 0-based.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fault {
    /// What it does.
    pub kind: FaultKind,
    /// Epoch index, 0-based (`EMBER_FAULT` gives it 1-based).
    pub epoch: usize,
    /// Batch index within the epoch, 0-based.
    pub batch: usize,
    /// How many times it strikes in this process.
    pub times: usize,
}

impl Fault {
    /// The fault `EMBER_FAULT` asks for, unless it has struck as often as planned; a malformed value is
    /// reported and ignored.
    pub fn from_env() -> Option<Fault> {
        let value = std::env::var("EMBER_FAULT").ok()?;
        let parsed = Fault::parse(&value);
        if parsed.is_none() {
            tracing::warn!(
                "EMBER_FAULT={value} not understood (expected nan-weights@EPOCH:BATCH or oom@EPOCH:BATCH[xTIMES]); \
                 no fault injected"
            );
        }
        parsed.filter(|f| STRUCK.load(Ordering::Relaxed) < f.times)
    }

    /// Parses `nan-weights@E:B` and `oom@E:B[xN]` (E 1-based, B 0-based); `None` for anything else, or E = 0.
    pub fn parse(value: &str) -> Option<Fault> {
        let (kind, place) = value.split_once('@')?;
        let kind = match kind {
            "nan-weights" => FaultKind::NanWeights,
            "oom" => FaultKind::OutOfMemory,
            _ => return None,
        };
        let (epoch, batch) = place.split_once(':')?;
        let (batch, times) = match batch.split_once('x') {
            Some((batch, times)) if kind == FaultKind::OutOfMemory => (batch, times.trim().parse().ok()?),
            Some(_) => return None,
            None => (batch, 1),
        };
        let epoch: usize = epoch.trim().parse().ok()?;
        Some(Fault { kind, epoch: epoch.checked_sub(1)?, batch: batch.trim().parse().ok()?, times })
    }

    /// Records that the fault struck.
    pub fn strike(self) {
        STRUCK.fetch_add(1, Ordering::Relaxed);
    }
}

/// The error an injected out-of-memory fault fails a batch with: the words cubecl's own error uses.
pub fn injected_out_of_memory(epoch: usize, batch: usize) -> anyhow::Error {
    anyhow::anyhow!(
        "An out-of-memory error happened during launch (injected by EMBER_FAULT before epoch {} batch {batch})",
        epoch + 1
    )
}

/// `module` with every trainable weight set to NaN.
pub fn poison_weights<B: AutodiffBackend, M: Module<B>>(module: M) -> M {
    struct Poison;
    impl<B: AutodiffBackend> ModuleMapper<B> for Poison {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
            let (id, tensor, mapper) = param.consume();
            let require_grad = tensor.is_require_grad();
            let mut poisoned = Tensor::from_inner(tensor.inner().mul_scalar(f32::NAN));
            if require_grad {
                poisoned = poisoned.require_grad();
            }
            Param::from_mapped_value(id, poisoned, mapper)
        }
    }
    module.map(&mut Poison)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_epoch_and_batch() {
        let nan = FaultKind::NanWeights;
        assert_eq!(Fault::parse("nan-weights@2:1"), Some(Fault { kind: nan, epoch: 1, batch: 1, times: 1 }));
        assert_eq!(Fault::parse("nan-weights@0:1"), None);
        assert_eq!(Fault::parse("nan@2:1"), None);
        assert_eq!(Fault::parse("nan-weights@2"), None);
        assert_eq!(Fault::parse("nan-weights@2:1x3"), None);
        let oom = FaultKind::OutOfMemory;
        assert_eq!(Fault::parse("oom@1:2"), Some(Fault { kind: oom, epoch: 0, batch: 2, times: 1 }));
        assert_eq!(Fault::parse("oom@1:0x4"), Some(Fault { kind: oom, epoch: 0, batch: 0, times: 4 }));
    }
}
