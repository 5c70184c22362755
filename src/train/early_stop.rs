//! Early stopping on validation fitness, with Ultralytics 8.4.190's rules: `best` is rewritten when the fitness
//! equals the best so far (ties go to the later epoch), and the patience counts epochs since the last strictly
//! better one, or restarts at every epoch while the best is 0 (nothing learnt yet).

/// The best fitness so far and how long ago it was reached.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EarlyStopping {
    /// Best validation fitness so far (mAP50-95); `-inf` at the start of a new run.
    pub best_fitness: f64,
    /// Epochs without improvement after which the run stops; 0 never stops.
    pub patience: usize,
    epochs_without_improvement: usize,
}

/// What one epoch's fitness means for the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// The epoch's weights are the best so far (or tie with them): `best` is rewritten.
    pub improved: bool,
    /// The patience is used up.
    pub stop: bool,
}

impl EarlyStopping {
    /// A run whose best fitness so far is `best_fitness` (`-inf` for a new run, the checkpoint's for a resumed one).
    pub fn new(patience: usize, best_fitness: f64) -> Self {
        EarlyStopping { best_fitness, patience, epochs_without_improvement: 0 }
    }

    /// Records an epoch's fitness.
    pub fn update(&mut self, fitness: f64) -> Verdict {
        let improved = fitness >= self.best_fitness;
        if fitness > self.best_fitness || self.best_fitness == 0.0 {
            self.epochs_without_improvement = 0;
        } else {
            self.epochs_without_improvement += 1;
        }
        self.best_fitness = self.best_fitness.max(fitness);
        Verdict { improved, stop: self.patience > 0 && self.epochs_without_improvement >= self.patience }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stops_after_patience_epochs_without_a_strictly_better_fitness() {
        let mut e = EarlyStopping::new(2, f64::NEG_INFINITY);
        assert_eq!(e.update(0.5), Verdict { improved: true, stop: false });
        assert_eq!(e.update(0.5), Verdict { improved: true, stop: false }, "a tie rewrites best but is no progress");
        assert_eq!(e.update(0.4), Verdict { improved: false, stop: true });
        assert_eq!(e.best_fitness, 0.5);
    }

    #[test]
    fn a_better_epoch_restarts_the_count_and_zero_fitness_never_stops() {
        let mut e = EarlyStopping::new(2, f64::NEG_INFINITY);
        e.update(0.3);
        assert!(!e.update(0.2).stop);
        assert!(!e.update(0.35).stop);
        assert!(!e.update(0.1).stop);
        assert!(e.update(0.1).stop);

        let mut nothing_learnt = EarlyStopping::new(1, f64::NEG_INFINITY);
        for _ in 0..5 {
            assert_eq!(nothing_learnt.update(0.0), Verdict { improved: true, stop: false });
        }
        let mut never = EarlyStopping::new(0, 0.9);
        for _ in 0..5 {
            assert!(!never.update(0.1).stop, "patience 0 disables early stopping");
        }
    }
}
