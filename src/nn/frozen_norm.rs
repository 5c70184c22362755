//! BatchNorm layers frozen by `freeze` (src/train/freeze.rs): Ultralytics puts them in eval mode, so they
//! normalise with their running statistics and keep them. They are remembered by the parameter id of their scale,
//! in a process-wide set, rather than by a field of the module: ids survive every rebuild of a module (optimizer
//! steps, weight loads, checkpoint restores). Reading the scale's `is_require_grad()` in the forward pass instead
//! broke the exact repeat of a diverged epoch (tests/it/train.rs `diverged_epoch_is_repeated_from_last`, mosaic
//! closed): after the restore some BatchNorm layers took that path, for a reason not found.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::RwLock;

use burn::module::ParamId;

static ANY_FROZEN: AtomicBool = AtomicBool::new(false);
static FROZEN: RwLock<Option<HashSet<ParamId>>> = RwLock::new(None);

/// Marks the BatchNorm whose scale is `scale` as frozen.
pub fn freeze_norm(scale: ParamId) {
    FROZEN.write().expect("frozen-norm set").get_or_insert_with(HashSet::new).insert(scale);
    ANY_FROZEN.store(true, Ordering::Release);
}

/// Whether the BatchNorm whose scale is `scale` is frozen (one atomic load when nothing is).
pub fn is_frozen_norm(scale: ParamId) -> bool {
    ANY_FROZEN.load(Ordering::Acquire)
        && FROZEN.read().expect("frozen-norm set").as_ref().is_some_and(|s| s.contains(&scale))
}
