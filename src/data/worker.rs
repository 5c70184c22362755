//! What one loader worker keeps from sample to sample: its recent images (Ultralytics' mosaic buffer, kept
//! from epoch to epoch like Ultralytics' persistent workers) and the pixel buffers it reuses instead of
//! allocating per image.

use std::time::{Duration, Instant};

use image::RgbImage;

use super::augment::geometry::WarpBuffers;
use super::recent::RecentImages;

#[derive(Debug, Default)]
pub struct WorkerState {
    pub recent: RecentImages,
    pub buffers: PixelBuffers,
    /// Time per stage, when a profile asks for it (`benches/input_pipeline.rs`).
    pub stages: Option<StageTimes>,
}

impl WorkerState {
    pub fn new(recent: RecentImages) -> WorkerState {
        WorkerState { recent, buffers: PixelBuffers::default(), stages: None }
    }

    /// Adds the time since `started` to `stage`, when profiling; returns now, the next stage's start.
    pub fn lap(&mut self, stage: &'static str, started: Instant) -> Instant {
        let now = Instant::now();
        if let Some(stages) = &mut self.stages {
            stages.add(stage, now - started);
        }
        now
    }
}

/// Total time per named stage, in the order stages were first seen.
#[derive(Debug, Default, Clone)]
pub struct StageTimes(pub Vec<(&'static str, Duration)>);

impl StageTimes {
    pub fn add(&mut self, stage: &'static str, spent: Duration) {
        match self.0.iter_mut().find(|(name, _)| *name == stage) {
            Some((_, total)) => *total += spent,
            None => self.0.push((stage, spent)),
        }
    }
}

/// Image buffers handed back after use, and the warp's row buffers.
#[derive(Debug, Default)]
pub struct PixelBuffers {
    spare: Vec<Vec<u8>>,
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
