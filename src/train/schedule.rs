//! Learning-rate schedule, warmup and gradient accumulation, as Ultralytics 8.4.190's trainer runs them
//! (`engine/trainer.py`: `_build_train_pipeline`, `_get_warmup_iterations`, `_do_train`, `build_optimizer`).
//!
//! Python's `round` and NumPy's `.round()` send halves to the even neighbour (`round(2.5) == 2`), so every
//! rounding here is `round_ties_even`: with Rust's `round` a warmup of 4.5 batches or `nbs / batch = 2.5`
//! would come out one longer than Ultralytics'.

use super::optimizer::{GroupSettings, ParamGroup, MUSGD_HEAD_CLS_LR_GAIN};
use crate::config::{OptimizerChoice, OptimizerKind, Settings};

/// The per-epoch learning-rate factor: linear from 1 to `lrf`, or a cosine between them (`one_cycle`),
/// written in the order of Ultralytics' operations so that the factors agree to the last bit.
pub fn lr_factor(epoch: usize, epochs: usize, lrf: f64, cosine: bool) -> f64 {
    let (x, steps) = (epoch as f64, epochs.max(1) as f64);
    if cosine {
        ((1.0 - (x * std::f64::consts::PI / steps).cos()) / 2.0).max(0.0) * (lrf - 1.0) + 1.0
    } else {
        (1.0 - x / steps).max(0.0) * (1.0 - lrf) + lrf
    }
}

/// Warmup length in batches: `round(min(warmup_epochs, epochs - 1) * nb)`, so the last epoch is never warmup
/// (a one-epoch run has none); 0 means no warmup.
pub fn warmup_iterations(warmup_epochs: f64, epochs: usize, batches_per_epoch: usize) -> usize {
    let warmup_epochs = warmup_epochs.min(epochs.saturating_sub(1) as f64);
    if warmup_epochs > 0.0 {
        (warmup_epochs * batches_per_epoch as f64).round_ties_even() as usize
    } else {
        0
    }
}

/// Batches whose gradients are summed per optimizer step, before the cap: `max(round(nbs / batch), 1)`.
/// Weight decay is scaled with this value.
pub fn nominal_accumulate(nbs: usize, batch: usize) -> usize {
    ((nbs as f64 / batch as f64).round_ties_even() as usize).max(1)
}

/// `np.interp(x, [0, x1], [y0, y1])` as NumPy computes it (slope times offset plus start; `y1` from `x1` on).
fn interp(x: f64, x1: f64, y0: f64, y1: f64) -> f64 {
    if x >= x1 {
        return y1;
    }
    if x <= 0.0 {
        return y0;
    }
    (y1 - y0) / x1 * x + y0
}

/// What a schedule sets before one batch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepPlan {
    /// Settings of the three parameter groups, indexed by [`ParamGroup`] as `usize`.
    pub groups: [GroupSettings; 3],
    /// Batches whose gradients are summed before an optimizer step.
    pub accumulate: usize,
}

/// The `lr/pg*` columns of results.csv, in the order of 8.4.190's `build_optimizer` groups: decayed weights, norm
/// weights, biases; MuSGD splits each of those and its Muon group (matrices and filters, at the weights' lr) into
/// the head's classification branches (at `MUSGD_HEAD_CLS_LR_GAIN` x lr) and the rest, eight columns.
pub fn results_lr_columns(kind: OptimizerKind, groups: &[GroupSettings; 3]) -> Vec<f64> {
    let order = [ParamGroup::Weight, ParamGroup::Norm, ParamGroup::Bias];
    if kind != OptimizerKind::MuSGD {
        return order.iter().map(|&g| groups[g as usize].lr).collect();
    }
    let muon = ParamGroup::Weight;
    order.iter().chain([&muon]).flat_map(|&g| [groups[g as usize].head_cls_lr, groups[g as usize].lr]).collect()
}

/// How many `lr/pg*` columns results.csv has under `kind` (see [`results_lr_columns`]).
pub fn results_lr_column_count(kind: OptimizerKind) -> usize {
    if kind == OptimizerKind::MuSGD {
        8
    } else {
        3
    }
}

/// The settings of the recipe that the schedule needs.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    /// The optimizer: the `optimizer` setting, or what `optimizer=auto` picked.
    pub kind: OptimizerKind,
    /// Initial learning rate (Ultralytics lr0), or `optimizer=auto`'s pick.
    pub lr0: f64,
    /// Final learning rate as a fraction of lr0 (Ultralytics lrf).
    pub lrf: f64,
    /// SGD momentum or Adam beta1 (Ultralytics momentum, or `optimizer=auto`'s pick); warmup ramps SGD's to it.
    pub momentum: f64,
    /// Already scaled by batch * nominal accumulate / nbs.
    pub weight_decay: f64,
    /// SGD/MuSGD momentum at the start of warmup, ramped linearly to `momentum` (Ultralytics warmup_momentum).
    pub warmup_momentum: f64,
    /// Bias group's lr at the start of warmup, ramped to the scheduled lr; the other groups start at 0
    /// (Ultralytics warmup_bias_lr; 0 when `optimizer=auto` picked).
    pub warmup_bias_lr: f64,
    /// Warmup length in batches (0: none).
    pub warmup: usize,
    /// Epochs of the run, which the lr curve spans (`time=` re-estimates it, see [`Schedule::set_epochs`]).
    pub epochs: usize,
    /// Cosine lr curve from 1 to `lrf` instead of the linear one (Ultralytics cos_lr).
    pub cosine: bool,
    /// The accumulation after warmup (the nominal one, capped by the run's batch count); warmup ramps up to it.
    pub accumulate: usize,
    /// Batches per epoch.
    pub batches_per_epoch: usize,
    /// Optimizer iterations of the run at the nominal batch, which `optimizer=auto` decides from.
    pub iterations: usize,
    /// Whether `optimizer=auto` picked the optimizer, lr0 and momentum.
    pub auto: bool,
}

impl Schedule {
    /// The settings a run records in its `args.yaml`: as 8.4.190, an `optimizer=auto` pick is written back as the
    /// optimizer and lr0 it chose, with `warmup_bias_lr: 0.0` (the momentum stays the setting's).
    pub fn recorded_settings(&self, s: &Settings) -> Settings {
        let mut recorded = s.clone();
        if self.auto {
            recorded.optimizer = OptimizerChoice::Fixed(self.kind);
            recorded.lr0 = self.lr0;
            recorded.warmup_bias_lr = 0.0;
        }
        recorded
    }
}

impl Schedule {
    /// The schedule of a run of `s` over `train_images` images of `nc` classes, set up as Ultralytics'
    /// `_build_train_pipeline` and `build_optimizer` do.
    pub fn for_run(s: &Settings, train_images: usize, nc: usize) -> Schedule {
        Schedule::for_world(s, train_images, nc, 1)
    }

    /// The schedule of one of `world` processes training together: as 8.4.190 under DDP, each takes `batch /
    /// world` images a batch from its share of the epoch, and the recipe (accumulation, decay, iterations) follows
    /// the total batch.
    pub fn for_world(s: &Settings, train_images: usize, nc: usize, world: usize) -> Schedule {
        let (epochs, batch, nbs) = (s.epochs as usize, s.batch.images_or_default(), s.nbs as usize);
        let world = world.max(1);
        let batches_per_epoch = train_images.div_ceil(world).div_ceil((batch / world).max(1));
        let nominal = nominal_accumulate(nbs, batch);
        let weight_decay = s.weight_decay * (batch * nominal) as f64 / nbs as f64;
        // A time-limited run re-estimates its epochs as it goes, so Ultralytics does not cap it.
        let accumulate = if s.time.is_some() { nominal } else { nominal.min(batches_per_epoch * epochs).max(1) };
        let iterations = train_images.div_ceil(batch.max(nbs)) * epochs;
        let mut warmup_bias_lr = s.warmup_bias_lr;
        let auto = s.optimizer == OptimizerChoice::Auto;
        let (kind, lr0, momentum) = match s.optimizer {
            OptimizerChoice::Auto => {
                warmup_bias_lr = 0.0; // as Ultralytics: an `auto` pick starts the bias warmup at zero
                auto_optimizer(iterations, nc)
            }
            OptimizerChoice::Fixed(kind) => (kind, s.lr0, s.momentum),
        };
        let warmup = warmup_iterations(s.warmup_epochs, epochs, batches_per_epoch);
        // As in Ultralytics, warmup ramps an SGD momentum towards the `momentum` setting and leaves it there,
        // even when `auto` picked another value.
        let momentum = if kind.has_sgd_momentum() && warmup > 0 { s.momentum } else { momentum };
        Schedule {
            kind,
            lr0,
            lrf: s.lrf,
            momentum,
            weight_decay,
            warmup_momentum: s.warmup_momentum,
            warmup_bias_lr,
            warmup,
            epochs,
            cosine: s.cos_lr,
            accumulate,
            batches_per_epoch,
            iterations,
            auto,
        }
    }

    /// Settings for global batch iteration `ni` of `epoch`. Warmup covers `ni <= warmup`, so its last batch
    /// lands lr, momentum and accumulation exactly on their targets.
    pub fn plan(&self, ni: usize, epoch: usize) -> StepPlan {
        let lr = self.lr0 * lr_factor(epoch, self.epochs, self.lrf, self.cosine);
        let head_cls_lr = lr * MUSGD_HEAD_CLS_LR_GAIN;
        let group = |wd: f64| GroupSettings { lr, head_cls_lr, momentum: self.momentum, weight_decay: wd };
        let mut groups = [group(0.0), group(self.weight_decay), group(0.0)];
        let mut accumulate = self.accumulate;
        if self.warmup > 0 && ni <= self.warmup {
            let (x, x1) = (ni as f64, self.warmup as f64);
            accumulate = (interp(x, x1, 1.0, self.accumulate as f64).round_ties_even() as usize).max(1);
            for (j, g) in groups.iter_mut().enumerate() {
                let start = if j == ParamGroup::Bias as usize { self.warmup_bias_lr } else { 0.0 };
                g.lr = interp(x, x1, start, lr);
                g.head_cls_lr = interp(x, x1, start, head_cls_lr);
                if self.kind.has_sgd_momentum() {
                    g.momentum = interp(x, x1, self.warmup_momentum, self.momentum);
                }
            }
        }
        StepPlan { groups, accumulate }
    }
}

impl Schedule {
    /// `time=H` re-estimates the run's length after every epoch; as Ultralytics 8.4.190, the lr curve and the
    /// warmup follow the new count while the optimizer, its groups and the accumulation stay as they are.
    pub fn set_epochs(&mut self, epochs: usize, warmup_epochs: f64) {
        self.epochs = epochs;
        self.warmup = warmup_iterations(warmup_epochs, epochs, self.batches_per_epoch);
    }
}

/// The epochs a run limited to `hours` can take at its mean epoch time so far (`ceil(time / mean)`,
/// Ultralytics' `_do_train`).
pub fn epochs_for_time(hours: f64, elapsed_secs: f64, epochs_done: usize) -> usize {
    let mean = elapsed_secs / epochs_done.max(1) as f64;
    (hours * 3600.0 / mean.max(1e-9)).ceil() as usize
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
    fn warmup_leaves_the_last_epoch_out_and_rounds_half_to_even() {
        assert_eq!(warmup_iterations(3.0, 100, 10), 30, "no floor of 100 batches");
        assert_eq!(warmup_iterations(3.0, 2, 10), 10, "a 2-epoch run warms up for 1 epoch");
        assert_eq!(warmup_iterations(3.0, 1, 10), 0, "a 1-epoch run has no warmup");
        assert_eq!(warmup_iterations(0.9, 3, 5), 4, "4.5 rounds to 4 as in Python");
        assert_eq!(warmup_iterations(0.0, 100, 10), 0);
        assert_eq!(nominal_accumulate(40, 16), 2, "2.5 rounds to 2 as in Python");
        assert_eq!(nominal_accumulate(64, 16), 4);
        assert_eq!(nominal_accumulate(8, 16), 1);
    }

    fn test_schedule() -> Schedule {
        Schedule {
            kind: OptimizerKind::Sgd,
            lr0: 0.01,
            lrf: 0.01,
            momentum: 0.937,
            weight_decay: 0.0005,
            warmup_momentum: 0.8,
            warmup_bias_lr: 0.1,
            warmup: warmup_iterations(3.0, 100, 10),
            epochs: 100,
            cosine: false,
            accumulate: 4,
            batches_per_epoch: 10,
            iterations: 100,
            auto: false,
        }
    }

    #[test]
    fn warmup_ramps_lr_momentum_and_accumulation_up_to_the_nominal() {
        let s = test_schedule();
        assert_eq!(s.warmup, 30);
        let p0 = s.plan(0, 0);
        let bias = ParamGroup::Bias as usize;
        assert_eq!((p0.groups[bias].lr, p0.groups[1].lr, p0.groups[0].momentum, p0.accumulate), (0.1, 0.0, 0.8, 1));
        let p = s.plan(30, 3);
        assert!((p.groups[1].lr - 0.01 * lr_factor(3, 100, 0.01, false)).abs() < 1e-12);
        assert_eq!((p.groups[0].momentum, p.accumulate), (0.937, 4));
        assert!((0..=40).all(|ni| s.plan(ni, ni / 10).accumulate <= 4), "never past the nominal");
        assert_eq!(p.groups[ParamGroup::Weight as usize].weight_decay, 0.0005);
        assert_eq!(p.groups[ParamGroup::Norm as usize].weight_decay, 0.0);
    }

    #[test]
    fn time_limit_re_estimates_epochs_and_warmup() {
        // 3 epochs done in 90 s of a 0.1 h (360 s) budget: 30 s each, so 12 epochs in all.
        assert_eq!(epochs_for_time(0.1, 90.0, 3), 12);
        assert_eq!(epochs_for_time(0.1, 91.0, 3), 12); // ceil(11.87)
        assert_eq!(epochs_for_time(0.1, 400.0, 1), 1);
        let mut s = test_schedule();
        s.set_epochs(2, 3.0);
        // Warmup never covers the last epoch: min(3, 2 - 1) epochs of batches.
        assert_eq!((s.epochs, s.warmup), (2, s.batches_per_epoch));
        let (lr_then, lr_now) = (test_schedule().plan(50, 5).groups[1].lr, s.plan(50, 5).groups[1].lr);
        assert!(lr_now < lr_then, "a shorter run decays faster: {lr_now} vs {lr_then}");
    }

    #[test]
    fn auto_picks_adamw_for_short_runs() {
        let (kind, lr, m) = auto_optimizer(100, 80);
        assert_eq!(kind, OptimizerKind::AdamW);
        assert_eq!((lr, m), (0.000119, 0.9));
        assert_eq!(auto_optimizer(20_000, 80), (OptimizerKind::MuSGD, 0.01, 0.9));
    }
}
