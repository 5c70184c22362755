//! Dynamic loss scaling for FP16 training: multiply the loss so that small gradients survive FP16's
//! narrow range, divide the gradients back before the step, and adapt the factor: halve it (and skip
//! the step) when a gradient overflows, double it after a run of clean steps.

use serde::{Deserialize, Serialize};

/// The loss-scale state of an FP16 run (PyTorch's `GradScaler` rules); checkpoints keep `scale` and `clean_steps`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LossScaler {
    /// Factor the loss is multiplied by before `backward`, and the gradients divided by before the step.
    pub scale: f64,
    /// Clean steps since the scale last changed.
    pub clean_steps: u64,
    /// Clean steps in a row after which the scale doubles (2000).
    pub growth_interval: u64,
    /// Floor of the scale under repeated overflows (1).
    pub min_scale: f64,
    /// Ceiling of the scale (2^24).
    pub max_scale: f64,
}

/// What one update did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScaleEvent {
    /// A clean step that did not complete a growth interval, or growth capped at `max_scale`.
    Unchanged,
    /// Overflow: the step was skipped and the scale halved.
    Backoff,
    /// A run of clean steps: the scale doubled.
    Growth,
}

impl Default for LossScaler {
    /// PyTorch's GradScaler defaults: 2^16, doubled after 2000 clean steps, halved on overflow.
    fn default() -> Self {
        LossScaler { scale: 65536.0, clean_steps: 0, growth_interval: 2000, min_scale: 1.0, max_scale: 16_777_216.0 }
    }
}

impl LossScaler {
    /// Records the outcome of a step whose gradients were (`finite`) or were not all finite.
    pub fn update(&mut self, finite: bool) -> ScaleEvent {
        if !finite {
            self.scale = (self.scale * 0.5).max(self.min_scale);
            self.clean_steps = 0;
            return ScaleEvent::Backoff;
        }
        self.clean_steps += 1;
        if self.clean_steps >= self.growth_interval {
            self.clean_steps = 0;
            if self.scale < self.max_scale {
                self.scale = (self.scale * 2.0).min(self.max_scale);
                return ScaleEvent::Growth;
            }
        }
        ScaleEvent::Unchanged
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overflow_halves_and_clean_runs_double() {
        let mut s = LossScaler { growth_interval: 3, ..Default::default() };
        assert_eq!(s.update(false), ScaleEvent::Backoff);
        assert_eq!(s.scale, 32768.0);
        assert_eq!((s.update(true), s.update(true)), (ScaleEvent::Unchanged, ScaleEvent::Unchanged));
        assert_eq!(s.update(true), ScaleEvent::Growth);
        assert_eq!((s.scale, s.clean_steps), (65536.0, 0));
        // An overflow resets the clean run.
        s.update(true);
        s.update(false);
        assert_eq!((s.scale, s.clean_steps), (32768.0, 0));
    }

    #[test]
    fn bounded_both_ways() {
        let mut s = LossScaler { scale: 1.0, ..Default::default() };
        s.update(false);
        assert_eq!(s.scale, 1.0);
        let mut s = LossScaler { scale: 16_777_216.0, growth_interval: 1, ..Default::default() };
        assert_eq!(s.update(true), ScaleEvent::Unchanged);
        assert_eq!(s.scale, 16_777_216.0);
    }
}
