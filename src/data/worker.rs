//! What one loader worker keeps from sample to sample: its recent images (Ultralytics' mosaic buffer, kept
//! from epoch to epoch like Ultralytics' persistent workers) and the pixel buffers it reuses instead of
//! allocating per image.

use std::time::Duration;

use image::RgbImage;

use super::augment::geometry::WarpBuffers;
use super::recent::RecentImages;

/// One worker thread's state, owned by that thread and passed to every [`SampleTransform::prepare`] it runs.
///
/// [`SampleTransform::prepare`]: super::loader::SampleTransform::prepare
#[derive(Debug, Default)]
pub struct WorkerState {
    /// The images this worker loaded last (mosaic partners), handed on from epoch to epoch by the loader.
    pub recent: RecentImages,
    /// Buffers reused from image to image.
    pub buffers: PixelBuffers,
    /// Time per stage, when a profile asks for it (`benches/input_pipeline.rs`).
    pub stages: Option<StageTimes>,
}

impl WorkerState {
    /// A worker starting from `recent` (empty at the first epoch), with no spare buffers and no profiling.
    pub fn new(recent: RecentImages) -> WorkerState {
        WorkerState { recent, buffers: PixelBuffers::default(), stages: None }
    }

    /// The profile's clock (zero when not profiling): where a stage starts.
    pub fn clock(&self) -> Duration {
        self.stages.as_ref().map_or(Duration::ZERO, |s| (s.clock)())
    }

    /// Adds the time since `started` to `stage`, when profiling; returns the next stage's start.
    pub fn lap(&mut self, stage: &'static str, started: Duration) -> Duration {
        let Some(stages) = &mut self.stages else { return Duration::ZERO };
        let now = (stages.clock)();
        match stages.totals.iter_mut().find(|(name, _)| *name == stage) {
            Some((_, total)) => *total += now.saturating_sub(started),
            None => stages.totals.push((stage, now.saturating_sub(started))),
        }
        now
    }
}

/// Total time per named stage, in the order stages were first seen, on a clock of the profile's choosing
/// (a thread's CPU time measures a stage's work even on a busy machine).
#[derive(Debug, Clone)]
pub struct StageTimes {
    clock: fn() -> Duration,
    /// `(stage, total time)`, stages named as in [`WorkerState::lap`] (`decode`, `resize`, `mosaic`, ...).
    pub totals: Vec<(&'static str, Duration)>,
}

impl StageTimes {
    /// No stage timed yet, timed with `clock` (a time since any fixed start).
    pub fn new(clock: fn() -> Duration) -> StageTimes {
        StageTimes { clock, totals: Vec::new() }
    }
}

/// Image buffers handed back after use, and the warp's row buffers.
#[derive(Debug, Default)]
pub struct PixelBuffers {
    spare: Vec<Vec<u8>>,
    /// The random affine warp's row buffers.
    pub warp: WarpBuffers,
}

impl PixelBuffers {
    /// A `w x h` image whose pixels are whatever the buffer held: the caller writes every one.
    pub fn image(&mut self, w: u32, h: u32) -> RgbImage {
        let mut raw = self.spare.pop().unwrap_or_default();
        raw.resize(w as usize * h as usize * 3, 0);
        RgbImage::from_raw(w, h, raw).expect("sized buffer")
    }

    /// Takes an image's buffer back for the next [`PixelBuffers::image`].
    pub fn recycle(&mut self, image: RgbImage) {
        // Mixing images needs three at once; more than a few spares would only hold memory.
        if self.spare.len() < 4 {
            self.spare.push(image.into_raw());
        }
    }
}
