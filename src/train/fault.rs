//! Fault injection for testing the trainer's recovery from a diverged run, which is otherwise rare and
//! hard to provoke on purpose. Off unless `EMBER_FAULT` is set; read once per run.
//!
//! `EMBER_FAULT=nan-weights@E:B` turns the weights to NaN just before batch B (0-based) of epoch E
//! (1-based, as printed), once: the following losses are non-finite, as after a real divergence.

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::Tensor;

/// A planned fault: poison the weights at (epoch index, batch index), both 0-based.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fault {
    /// Epoch index, 0-based (`EMBER_FAULT` gives it 1-based).
    pub epoch: usize,
    /// Batch index within the epoch, 0-based.
    pub batch: usize,
}

impl Fault {
    /// The fault `EMBER_FAULT` asks for, if any; a malformed value is reported and ignored.
    pub fn from_env() -> Option<Fault> {
        let value = std::env::var("EMBER_FAULT").ok()?;
        let parsed = Fault::parse(&value);
        if parsed.is_none() {
            tracing::warn!("EMBER_FAULT={value} not understood (expected nan-weights@EPOCH:BATCH); no fault injected");
        }
        parsed
    }

    /// Parses `nan-weights@E:B` (E 1-based, B 0-based); `None` for anything else, or E = 0.
    pub fn parse(value: &str) -> Option<Fault> {
        let (epoch, batch) = value.strip_prefix("nan-weights@")?.split_once(':')?;
        let epoch: usize = epoch.trim().parse().ok()?;
        Some(Fault { epoch: epoch.checked_sub(1)?, batch: batch.trim().parse().ok()? })
    }
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
        assert_eq!(Fault::parse("nan-weights@2:1"), Some(Fault { epoch: 1, batch: 1 }));
        assert_eq!(Fault::parse("nan-weights@0:1"), None);
        assert_eq!(Fault::parse("nan@2:1"), None);
        assert_eq!(Fault::parse("nan-weights@2"), None);
    }
}
