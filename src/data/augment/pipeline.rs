//! The trainer's input pipeline: the augmenting training loader, the letterbox validation loader (both
//! on the `--cache` image store), mosaic closing for the last `close_mosaic` epochs, the per-epoch
//! data-wait report and `--save-batches`.

use std::path::Path;
use std::sync::Arc;

use anyhow::Result;

use super::preview::save_batch_jpeg;
use super::{AugmentParams, StoreLetterbox, TrainTransform};
use crate::config::{CacheMode, Settings};
use crate::data::cache::ImageStore;
use crate::data::loader::{workers_per_process, LetterboxOnly};
use crate::data::{Batch, BatchLoader, LoaderConfig, Sample};

/// Training batches saved by `--save-batches`.
pub const SAVED_BATCHES: usize = 3;

/// The training transform shared by the loaders, and whether mosaic has been closed for the run's last epochs.
pub struct TrainPipeline {
    transform: Arc<TrainTransform>,
    closed: bool,
}

impl TrainPipeline {
    /// The training and validation loaders for `settings`, in one of `processes_here` training processes
    /// that share this machine's cores.
    pub fn loaders(
        s: &Settings,
        train: Vec<Sample>,
        val: Vec<Sample>,
        batch: usize,
        processes_here: usize,
    ) -> Result<(TrainPipeline, BatchLoader, BatchLoader)> {
        let workers = workers_per_process(s.workers as usize, processes_here);
        tracing::debug!("loader workers a process: {workers} ({processes_here} training processes on this machine)");
        let config = |batch: usize, shuffle: bool| LoaderConfig {
            imgsz: s.imgsz,
            batch,
            workers,
            shuffle,
            seed: s.seed,
            prefetch: 2,
        };
        let train_store = Arc::new(ImageStore::new(train.len(), s.imgsz, s.cache, None));
        let transform = Arc::new(TrainTransform::new(AugmentParams::from_settings(s), train_store));
        let train_loader = BatchLoader::with_transform(train, config(batch, true), transform.clone())?;
        let val_loader = if s.cache == CacheMode::Off {
            BatchLoader::with_transform(val, config(batch * 2, false), Arc::new(LetterboxOnly))?
        } else {
            let store = Arc::new(ImageStore::new(val.len(), s.imgsz, s.cache, None));
            BatchLoader::with_transform(val, config(batch * 2, false), Arc::new(StoreLetterbox::new(store)))?
        };
        // Validation always uses rectangular batches, as Ultralytics' validator does (less padding, same
        // numbers); the models' largest stride is 32.
        let val_loader = val_loader.with_rect(32);
        Ok((TrainPipeline { transform, closed: false }, train_loader, val_loader))
    }

    /// Before each epoch: turns mosaic (with MixUp and CutMix) off for the last `close_mosaic` epochs,
    /// as Ultralytics does (also when a resumed run starts inside them). Returns whether mosaic was on and
    /// is now closed (Ultralytics then prints "Closing dataloader mosaic").
    pub fn begin_epoch(&mut self, loader: &mut BatchLoader, epoch: usize, epochs: usize, close_mosaic: usize) -> bool {
        // Ultralytics 8.4.190: `epoch >= epochs - close_mosaic` in Python ints, so a run of no more than
        // close_mosaic epochs has no mosaic at all (its fixture run printed "Closing dataloader mosaic" first).
        if !self.closed && close_mosaic > 0 && epoch + close_mosaic >= epochs {
            self.closed = true;
            loader.set_transform(Arc::new(self.transform.with_params(self.transform.params.without_mosaic())));
            return self.transform.params.mosaic > 0.0;
        }
        false
    }
}

/// `--save-batches`: writes the first training batches of a run as `train_batch{i}.jpg` in the run folder.
pub fn maybe_save_batch(s: &Settings, run_dir: &Path, first_epoch: bool, index: usize, batch: &Batch) {
    if s.save_batches && first_epoch && index < SAVED_BATCHES {
        let path = run_dir.join(format!("train_batch{index}.jpg"));
        if let Err(e) = save_batch_jpeg(batch, &path) {
            tracing::warn!("{e:#}");
        }
    }
}
