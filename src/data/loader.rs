//! Batches for the model: images decoded and letterboxed on worker threads, prefetched while the
//! model computes, in an order fixed by the seed and the epoch.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use crossbeam_channel::{bounded, Receiver};
use image::RgbImage;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::image_io::decode_rgb;
use super::{BoxLabel, Letterbox, Sample};

/// How batches are made.
#[derive(Debug, Clone)]
pub struct LoaderConfig {
    /// Square canvas size in pixels.
    pub imgsz: u32,
    pub batch: usize,
    /// Decoding threads.
    pub workers: usize,
    /// Shuffle the order each epoch (training) or keep the scan order (validation).
    pub shuffle: bool,
    pub seed: u64,
    /// Batches made ahead of the one being consumed.
    pub prefetch: usize,
}

impl Default for LoaderConfig {
    fn default() -> Self {
        LoaderConfig { imgsz: 640, batch: 16, workers: 8, shuffle: false, seed: 0, prefetch: 2 }
    }
}

/// One image made ready for the model.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub image: RgbImage,
    /// Boxes normalised to the prepared image (centre x, centre y, width, height).
    pub labels: Vec<BoxLabel>,
    pub letterbox: Letterbox,
}

/// Turns a sample into a model input; augmentation plugs in here. Must be deterministic given `rng`.
pub trait SampleTransform: Send + Sync {
    fn apply(&self, sample: &Sample, imgsz: u32, rng: &mut ChaCha8Rng) -> Result<Prepared>;

    /// Prepares `samples[index]`; transforms that mix several images (mosaic, MixUp) draw the others
    /// from `samples` with `rng`. The loader calls this one.
    fn apply_at(&self, samples: &[Sample], index: usize, imgsz: u32, rng: &mut ChaCha8Rng) -> Result<Prepared> {
        self.apply(&samples[index], imgsz, rng)
    }
}

/// Decode and letterbox, nothing else: the validation transform.
#[derive(Debug, Clone, Copy, Default)]
pub struct LetterboxOnly;

impl SampleTransform for LetterboxOnly {
    fn apply(&self, sample: &Sample, imgsz: u32, _rng: &mut ChaCha8Rng) -> Result<Prepared> {
        let image = decode_rgb(&sample.image)?;
        let lb = Letterbox::new(image.dimensions(), (imgsz, imgsz));
        let canvas = lb.apply(&image);
        let labels = sample
            .labels
            .iter()
            .map(|b| {
                let [x1, y1, x2, y2] = lb.forward_xywhn(b.xywh);
                let s = imgsz as f32;
                BoxLabel { class: b.class, xywh: [(x1 + x2) / 2.0 / s, (y1 + y2) / 2.0 / s, (x2 - x1) / s, (y2 - y1) / s] }
            })
            .collect();
        Ok(Prepared { image: canvas, labels, letterbox: lb })
    }
}

/// A batch of images in `[batch, 3, height, width]` layout, RGB, 0-255.
#[derive(Debug, Clone)]
pub struct Batch {
    /// Position of this batch in the epoch.
    pub index: usize,
    pub pixels: Vec<u8>,
    /// `[batch, 3, height, width]`.
    pub shape: [usize; 4],
    /// Per image, boxes normalised to the canvas.
    pub labels: Vec<Vec<BoxLabel>>,
    pub paths: Vec<PathBuf>,
    pub letterboxes: Vec<Letterbox>,
    /// Images that failed to load and were left out, with the reason.
    pub failures: Vec<(PathBuf, String)>,
}

impl Batch {
    pub fn len(&self) -> usize {
        self.shape[0]
    }
    pub fn is_empty(&self) -> bool {
        self.shape[0] == 0
    }
    pub fn instances(&self) -> usize {
        self.labels.iter().map(Vec::len).sum()
    }
}

/// Makes batches from scanned samples.
pub struct BatchLoader {
    samples: Arc<Vec<Sample>>,
    config: LoaderConfig,
    transform: Arc<dyn SampleTransform>,
    pool: Arc<rayon::ThreadPool>,
}

impl BatchLoader {
    pub fn new(samples: Vec<Sample>, config: LoaderConfig) -> Result<BatchLoader> {
        Self::with_transform(samples, config, Arc::new(LetterboxOnly))
    }

    pub fn with_transform(samples: Vec<Sample>, config: LoaderConfig, transform: Arc<dyn SampleTransform>) -> Result<BatchLoader> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(config.workers.max(1))
            .thread_name(|i| format!("ember-loader-{i}"))
            .build()
            .context("cannot start the loader threads")?;
        Ok(BatchLoader { samples: Arc::new(samples), config, transform, pool: Arc::new(pool) })
    }

    pub fn samples(&self) -> &[Sample] {
        &self.samples
    }

    /// Replaces the transform for the epochs started from now on (e.g. mosaic off for the last epochs).
    pub fn set_transform(&mut self, transform: Arc<dyn SampleTransform>) {
        self.transform = transform;
    }

    pub fn config(&self) -> &LoaderConfig {
        &self.config
    }

    pub fn num_batches(&self) -> usize {
        self.samples.len().div_ceil(self.config.batch.max(1))
    }

    /// The sample order of an epoch: a seeded shuffle, or the scan order.
    pub fn order(&self, epoch: usize) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.samples.len()).collect();
        if self.config.shuffle {
            order.shuffle(&mut ChaCha8Rng::seed_from_u64(mix(self.config.seed, epoch as u64, u64::MAX)));
        }
        order
    }

    /// Iterates over one epoch's batches; loading runs ahead on the worker threads.
    pub fn epoch(&self, epoch: usize) -> EpochBatches {
        let (tx, rx) = bounded(self.config.prefetch.max(1));
        let order = self.order(epoch);
        let (samples, transform, pool, config) =
            (self.samples.clone(), self.transform.clone(), self.pool.clone(), self.config.clone());
        let producer = std::thread::Builder::new()
            .name("ember-batcher".into())
            .spawn(move || {
                for (index, chunk) in order.chunks(config.batch.max(1)).enumerate() {
                    let prepared: Vec<_> = pool.install(|| {
                        chunk
                            .par_iter()
                            .map(|&i| {
                                let mut rng = ChaCha8Rng::seed_from_u64(mix(config.seed, epoch as u64, i as u64));
                                (i, transform.apply_at(&samples, i, config.imgsz, &mut rng))
                            })
                            .collect()
                    });
                    let batch = assemble(index, &samples, prepared, config.imgsz);
                    if tx.send(batch).is_err() {
                        return; // the consumer stopped early
                    }
                }
            })
            .expect("spawn the batcher thread");
        EpochBatches { rx, producer: Some(producer), wait: WaitClock::default() }
    }
}

/// A seed per (run seed, epoch, sample), so a sample's augmentation does not depend on which
/// worker thread happens to load it.
fn mix(seed: u64, epoch: u64, item: u64) -> u64 {
    let mut z = seed ^ epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ item.wrapping_mul(0xD1B5_4A32_D192_ED03);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn assemble(index: usize, samples: &[Sample], prepared: Vec<(usize, Result<Prepared>)>, imgsz: u32) -> Batch {
    let side = imgsz as usize;
    let plane = side * side;
    let mut batch = Batch {
        index,
        pixels: Vec::with_capacity(prepared.len() * 3 * plane),
        shape: [0, 3, side, side],
        labels: vec![],
        paths: vec![],
        letterboxes: vec![],
        failures: vec![],
    };
    for (i, result) in prepared {
        match result {
            Ok(p) => {
                // HWC (interleaved) -> CHW (planar), one pass per channel.
                let raw = p.image.as_raw();
                for c in 0..3 {
                    batch.pixels.extend(raw.iter().skip(c).step_by(3));
                }
                batch.labels.push(p.labels);
                batch.paths.push(samples[i].image.clone());
                batch.letterboxes.push(p.letterbox);
                batch.shape[0] += 1;
            }
            Err(e) => batch.failures.push((samples[i].image.clone(), format!("{e:#}"))),
        }
    }
    batch
}

/// Time the consumer spent blocked waiting for batches; shared, so it can be read while (or after) the
/// epoch's iterator is consumed by a `for` loop.
#[derive(Debug, Clone, Default)]
pub struct WaitClock(Arc<AtomicU64>);

impl WaitClock {
    pub fn total(&self) -> Duration {
        Duration::from_nanos(self.0.load(Ordering::Relaxed))
    }
    fn add(&self, d: Duration) {
        self.0.fetch_add(d.as_nanos() as u64, Ordering::Relaxed);
    }
}

/// The batches of one epoch, in order.
pub struct EpochBatches {
    rx: Receiver<Batch>,
    producer: Option<JoinHandle<()>>,
    wait: WaitClock,
}

impl EpochBatches {
    /// The clock that accumulates how long `next()` blocked (the model waiting on data).
    pub fn wait_clock(&self) -> WaitClock {
        self.wait.clone()
    }
}

impl Iterator for EpochBatches {
    type Item = Batch;
    fn next(&mut self) -> Option<Batch> {
        if let Ok(batch) = self.rx.try_recv() {
            return Some(batch);
        }
        let started = Instant::now();
        let batch = self.rx.recv().ok();
        self.wait.add(started.elapsed());
        batch
    }
}

impl Drop for EpochBatches {
    fn drop(&mut self) {
        // Unblock a producer waiting on a full channel, then wait for it.
        let rx = std::mem::replace(&mut self.rx, bounded(0).1);
        drop(rx);
        if let Some(h) = self.producer.take() {
            let _ = h.join();
        }
    }
}
