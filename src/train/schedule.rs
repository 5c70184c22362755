//! Learning-rate schedule, warmup and gradient accumulation, as Ultralytics' trainer runs them.

use super::optimizer::{GroupSettings, OptimizerKind};

/// The per-epoch learning-rate factor: linear from 1 to `lrf`, or a cosine between them.
pub fn lr_factor(epoch: usize, epochs: usize, lrf: f64, cosine: bool) -> f64 {
    let x = epoch as f64 / epochs.max(1) as f64;
    if cosine {
        ((1.0 - (x * std::f64::consts::PI).cos()) / 2.0) * (lrf - 1.0) + 1.0
    } else {
        (1.0 - x).max(0.0) * (1.0 - lrf) + lrf
    }
}

/// Warmup length in optimizer iterations: at least 100, or none when `warmup_epochs` is 0.
pub fn warmup_iterations(warmup_epochs: f64, batches_per_epoch: usize) -> Option<usize> {
    (warmup_epochs > 0.0).then(|| ((warmup_epochs * batches_per_epoch as f64).round() as usize).max(100))
}

fn interp(x: f64, x1: f64, y0: f64, y1: f64) -> f64 {
    if x1 <= 0.0 {
        return y1;
    }
    let t = (x / x1).clamp(0.0, 1.0);
    y0 + t * (y1 - y0)
}

/// What a schedule sets before one batch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepPlan {
    pub groups: [GroupSettings; 3],
    /// Batches whose gradients are summed before an optimizer step.
    pub accumulate: usize,
}

/// The settings of the recipe that the schedule needs.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    pub kind: OptimizerKind,
    pub lr0: f64,
    pub lrf: f64,
    pub momentum: f64,
    /// Already scaled by batch * accumulate / nbs.
    pub weight_decay: f64,
    pub warmup_momentum: f64,
    pub warmup_bias_lr: f64,
    pub warmup: Option<usize>,
    pub epochs: usize,
    pub cosine: bool,
    pub batch: usize,
    pub nbs: usize,
}

impl Schedule {
    /// Settings for global batch iteration `ni` of `epoch`.
    pub fn plan(&self, ni: usize, epoch: usize) -> StepPlan {
        let lf = lr_factor(epoch, self.epochs, self.lrf, self.cosine);
        let full_accumulate = (self.nbs as f64 / self.batch as f64).round().max(1.0);
        let group = |lr: f64, wd: f64| GroupSettings { lr, momentum: self.momentum, weight_decay: wd };
        let mut groups = [group(self.lr0 * lf, 0.0), group(self.lr0 * lf, self.weight_decay), group(self.lr0 * lf, 0.0)];
        let mut accumulate = full_accumulate as usize;
        if let Some(nw) = self.warmup.filter(|nw| ni <= *nw) {
            let (x, x1) = (ni as f64, nw as f64);
            accumulate = interp(x, x1, 1.0, self.nbs as f64 / self.batch as f64).round().max(1.0) as usize;
            for (j, g) in groups.iter_mut().enumerate() {
                let start = if j == 0 { self.warmup_bias_lr } else { 0.0 };
                g.lr = interp(x, x1, start, self.lr0 * lf);
                if self.kind.has_sgd_momentum() {
                    g.momentum = interp(x, x1, self.warmup_momentum, self.momentum);
                }
            }
        }
        StepPlan { groups, accumulate }
    }
}

/// Ultralytics' `optimizer=auto`: AdamW with a learning rate fitted to the class count for short
/// runs, MuSGD for long ones. Returns (kind, lr0, momentum).
pub fn auto_optimizer(iterations: usize, nc: usize) -> (OptimizerKind, f64, f64) {
    if iterations > 10_000 {
        (OptimizerKind::MuSGD, 0.01, 0.9)
    } else {
        let lr = (0.002 * 5.0 / (4.0 + nc as f64) * 1e6).round() / 1e6;
        (OptimizerKind::AdamW, lr, 0.9)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_and_cosine_factors() {
        assert_eq!(lr_factor(0, 100, 0.01, false), 1.0);
        assert!((lr_factor(50, 100, 0.01, false) - 0.505).abs() < 1e-12);
        assert!((lr_factor(100, 100, 0.01, true) - 0.01).abs() < 1e-12);
        assert!((lr_factor(50, 100, 0.01, true) - 0.505).abs() < 1e-12);
    }

    #[test]
    fn warmup_ramps_lr_momentum_and_accumulation() {
        let s = Schedule {
            kind: OptimizerKind::Sgd,
            lr0: 0.01,
            lrf: 0.01,
            momentum: 0.937,
            weight_decay: 0.0005,
            warmup_momentum: 0.8,
            warmup_bias_lr: 0.1,
            warmup: warmup_iterations(3.0, 10),
            epochs: 100,
            cosine: false,
            batch: 16,
            nbs: 64,
        };
        assert_eq!(s.warmup, Some(100));
        let p0 = s.plan(0, 0);
        assert_eq!((p0.groups[0].lr, p0.groups[1].lr, p0.groups[0].momentum, p0.accumulate), (0.1, 0.0, 0.8, 1));
        let p = s.plan(100, 9);
        assert!((p.groups[1].lr - 0.01 * lr_factor(9, 100, 0.01, false)).abs() < 1e-12);
        assert_eq!((p.groups[0].momentum, p.accumulate), (0.937, 4));
        assert_eq!(p.groups[1].weight_decay, 0.0005);
        assert_eq!(p.groups[2].weight_decay, 0.0);
    }

    #[test]
    fn auto_picks_adamw_for_short_runs() {
        let (kind, lr, m) = auto_optimizer(100, 80);
        assert_eq!(kind, OptimizerKind::AdamW);
        assert_eq!((lr, m), (0.000119, 0.9));
        assert_eq!(auto_optimizer(20_000, 80), (OptimizerKind::MuSGD, 0.01, 0.9));
    }
}
