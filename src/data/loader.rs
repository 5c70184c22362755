//! Batches for the model, made ahead on worker threads while the model computes, in an order fixed by
//! the seed and the epoch. As in Ultralytics' DataLoader, each worker makes whole batches (batch k on
//! worker k mod workers) and keeps its own state from batch to batch: its recent images (mosaic partners)
//! and reused pixel buffers. Batches are u8, `[batch, 3, h, w]`; the device scales them.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Result;
use burn::tensor::{backend::Backend, DType, Int, Tensor, TensorCreationOptions, TensorData};
use crossbeam_channel::{bounded, Receiver};
use image::RgbImage;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::image_io::decode_rgb;
use super::recent::RecentImages;
use super::simd;
use super::worker::WorkerState;
use super::{BoxLabel, Letterbox, Sample};

/// How batches are made.
#[derive(Debug, Clone)]
pub struct LoaderConfig {
    /// Square canvas size in pixels.
    pub imgsz: u32,
    /// Images per batch (the last batch of an epoch may have fewer).
    pub batch: usize,
    /// Decoding threads.
    pub workers: usize,
    /// Shuffle the order each epoch (training) or keep the scan order (validation).
    pub shuffle: bool,
    /// Seeds the epoch order and each sample's augmentation (with the epoch and sample index).
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
    /// The canvas: `imgsz` square, or a rectangular batch's (w, h).
    pub image: RgbImage,
    /// Boxes normalised to the prepared image (centre x, centre y, width, height).
    pub labels: Vec<BoxLabel>,
    /// How the original image maps to the canvas, for mapping predictions back (validation).
    pub letterbox: Letterbox,
}

/// Turns a sample into a model input; augmentation plugs in here. Must be deterministic given `rng` and
/// the worker's state.
pub trait SampleTransform: Send + Sync {
    /// Prepares one sample on its own (nothing to mix it with), on an `imgsz` square.
    fn apply(&self, sample: &Sample, imgsz: u32, rng: &mut ChaCha8Rng) -> Result<Prepared>;

    /// Prepares `samples[index]` on a `canvas` (w, h), which is `imgsz` square except in rectangular batches;
    /// labels normalised to the canvas. Transforms that mix several images (mosaic, MixUp) draw the others
    /// from `samples`, or from the worker's recent images. The loader calls this one.
    fn prepare(
        &self,
        samples: &[Sample],
        index: usize,
        imgsz: u32,
        canvas: (u32, u32),
        rng: &mut ChaCha8Rng,
        _worker: &mut WorkerState,
    ) -> Result<Prepared> {
        if canvas != (imgsz, imgsz) {
            anyhow::bail!("this transform makes square images only, not {}x{}", canvas.0, canvas.1);
        }
        self.apply(&samples[index], imgsz, rng)
    }
}

/// Letterboxes `image` (already decoded, any size) for `sample` into `canvas` (w, h), never beyond
/// `imgsz` on the long side (a rectangular canvas is a little larger than the image, as in
/// Ultralytics, and is padded, not filled); labels normalised to the canvas. The geometry refers to
/// the sample's original size, so predictions map back to it.
pub fn letterbox_prepared(sample: &Sample, image: &RgbImage, imgsz: u32, canvas: (u32, u32)) -> Prepared {
    let mut lb = Letterbox::new(sample.size, canvas);
    let (w0, h0) = sample.size;
    let cap = imgsz as f64 / w0.max(h0) as f64;
    if lb.scale as f64 > cap {
        let resized = (
            ((w0 as f64 * cap).ceil() as u32).clamp(1, canvas.0),
            ((h0 as f64 * cap).ceil() as u32).clamp(1, canvas.1),
        );
        let cap = cap as f32;
        let (dw, dh) = ((canvas.0 - resized.0) as f32 / 2.0, (canvas.1 - resized.1) as f32 / 2.0);
        let pad = ((dw - 0.1).round().max(0.0) as u32, (dh - 0.1).round().max(0.0) as u32);
        lb = Letterbox { original: sample.size, canvas, resized, scale: cap, pad };
    }
    let mut out = RgbImage::from_pixel(canvas.0, canvas.1, image::Rgb([super::letterbox::PAD_VALUE; 3]));
    if image.dimensions() == lb.resized {
        image::imageops::replace(&mut out, image, lb.pad.0 as i64, lb.pad.1 as i64);
    } else {
        let resized = crate::data::resize::resize_linear(image, lb.resized.0, lb.resized.1);
        image::imageops::replace(&mut out, &resized, lb.pad.0 as i64, lb.pad.1 as i64);
    }
    let (cw, ch) = (canvas.0 as f32, canvas.1 as f32);
    let labels = sample
        .labels
        .iter()
        .map(|b| {
            let [x1, y1, x2, y2] = lb.forward_xywhn(b.xywh);
            BoxLabel {
                class: b.class,
                xywh: [(x1 + x2) / 2.0 / cw, (y1 + y2) / 2.0 / ch, (x2 - x1) / cw, (y2 - y1) / ch],
            }
        })
        .collect();
    Prepared { image: out, labels, letterbox: lb }
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
                BoxLabel {
                    class: b.class,
                    xywh: [(x1 + x2) / 2.0 / s, (y1 + y2) / 2.0 / s, (x2 - x1) / s, (y2 - y1) / s],
                }
            })
            .collect();
        Ok(Prepared { image: canvas, labels, letterbox: lb })
    }

    fn prepare(
        &self,
        samples: &[Sample],
        index: usize,
        imgsz: u32,
        canvas: (u32, u32),
        _rng: &mut ChaCha8Rng,
        _worker: &mut WorkerState,
    ) -> Result<Prepared> {
        let sample = &samples[index];
        Ok(letterbox_prepared(sample, &decode_rgb(&sample.image)?, imgsz, canvas))
    }
}

/// A batch of images in `[batch, 3, height, width]` layout, RGB, 0-255.
#[derive(Debug, Clone)]
pub struct Batch {
    /// Position of this batch in the epoch.
    pub index: usize,
    /// The images, u8 0-255, laid out as `shape` (planar RGB, image after image).
    pub pixels: Vec<u8>,
    /// `[batch, 3, height, width]`.
    pub shape: [usize; 4],
    /// Per image, boxes normalised to the canvas.
    pub labels: Vec<Vec<BoxLabel>>,
    /// Per image, its file.
    pub paths: Vec<PathBuf>,
    /// Per image, how its original pixels map to the canvas (to bring predictions back to the original).
    pub letterboxes: Vec<Letterbox>,
    /// Images that failed to load and were left out, with the reason.
    pub failures: Vec<(PathBuf, String)>,
}

impl Batch {
    /// Images in the batch (failed ones left out), so it may be below the configured batch size.
    pub fn len(&self) -> usize {
        self.shape[0]
    }
    /// Whether every image of the batch failed to load (or it had none).
    pub fn is_empty(&self) -> bool {
        self.shape[0] == 0
    }
    /// Boxes in the batch, all images together.
    pub fn instances(&self) -> usize {
        self.labels.iter().map(Vec::len).sum()
    }
}

/// Turns a loader batch into the model input: `[b, 3, h, w]`, 0..1, f32. The u8 pixels go to the device as
/// they are and are scaled there (a quarter of the bytes of an f32 copy, which the host never makes).
pub fn batch_tensor<B: Backend>(batch: &Batch, device: &B::Device) -> Tensor<B, 4> {
    let data = TensorData::new(batch.pixels.clone(), batch.shape);
    let options = TensorCreationOptions::new(device.clone()).with_dtype(DType::U8);
    Tensor::<B, 4, Int>::from_data(data, options).float().mul_scalar(1.0 / 255.0)
}

/// Makes batches from scanned samples.
pub struct BatchLoader {
    samples: Arc<Vec<Sample>>,
    config: LoaderConfig,
    transform: Arc<dyn SampleTransform>,
    /// Each worker's recent images as the last complete epoch left them (Ultralytics' workers persist
    /// between epochs); an epoch stopped early leaves them as they were, so a run does not depend on timing.
    recent: Arc<Mutex<Vec<RecentImages>>>,
    /// Rectangular batches: the fixed order (by aspect ratio) and each batch's canvas (w, h).
    rect: Option<RectOrder>,
    /// This process's share of each epoch in a data-parallel run.
    shard: Shard,
}

/// One process's share of the samples in a data-parallel run, as PyTorch's `DistributedSampler` deals them:
/// every process draws the same epoch order, padded by its own start to a multiple of `count`, and takes every
/// `count`-th sample from `rank` on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// This process's index, `0..count`.
    pub rank: usize,
    /// The number of processes (the world size); 1 when not distributed.
    pub count: usize,
}

impl Default for Shard {
    fn default() -> Self {
        Shard { rank: 0, count: 1 }
    }
}

impl Shard {
    /// Samples per process per epoch, out of `samples`.
    pub fn share(&self, samples: usize) -> usize {
        samples.div_ceil(self.count.max(1))
    }

    /// This shard of an epoch's `order`.
    pub fn take(&self, order: Vec<usize>) -> Vec<usize> {
        if self.count <= 1 || order.is_empty() {
            return order;
        }
        let total = self.share(order.len()) * self.count;
        (self.rank..total).step_by(self.count).map(|i| order[i % order.len()]).collect()
    }
}

/// The sample order of rectangular batches and each batch's canvas `(w, h)`.
type RectOrder = (Vec<usize>, Vec<(u32, u32)>);

impl BatchLoader {
    /// A loader that letterboxes each image, no augmentation ([`LetterboxOnly`]): for validation.
    pub fn new(samples: Vec<Sample>, config: LoaderConfig) -> Result<BatchLoader> {
        Self::with_transform(samples, config, Arc::new(LetterboxOnly))
    }

    /// A loader that prepares each sample with `transform` (e.g. the augmenting `TrainTransform`).
    pub fn with_transform(
        samples: Vec<Sample>,
        config: LoaderConfig,
        transform: Arc<dyn SampleTransform>,
    ) -> Result<BatchLoader> {
        let config = LoaderConfig { workers: worker_count(config.workers), ..config };
        Ok(BatchLoader {
            samples: Arc::new(samples),
            config,
            transform,
            recent: Arc::new(Mutex::new(Vec::new())),
            rect: None,
            shard: Shard::default(),
        })
    }

    /// Only `shard`'s share of every epoch (data-parallel training).
    pub fn sharded(mut self, shard: Shard) -> BatchLoader {
        self.shard = shard;
        self
    }

    /// All the split's samples in scan order (not sharded); [`order`](Self::order) indexes into it.
    pub fn samples(&self) -> &[Sample] {
        &self.samples
    }

    /// Rectangular batches (`--rect`, Ultralytics' validation layout): samples sorted by aspect ratio,
    /// each batch letterboxed to the smallest canvas that fits its images' shape at `imgsz`, sides
    /// rounded up to a multiple of `stride` after half a stride of padding. No shuffling.
    pub fn with_rect(mut self, stride: u32) -> BatchLoader {
        let ar: Vec<f64> = self.samples.iter().map(|s| s.size.1 as f64 / s.size.0.max(1) as f64).collect();
        let mut order: Vec<usize> = (0..self.samples.len()).collect();
        order.sort_by(|&a, &b| ar[a].total_cmp(&ar[b]).then(a.cmp(&b)));
        let (imgsz, stride) = (self.config.imgsz as f64, stride.max(1) as f64);
        let shapes = order
            .chunks(self.config.batch.max(1))
            .map(|chunk| {
                let (lo, hi) = chunk.iter().fold((f64::MAX, f64::MIN), |(lo, hi), &i| (lo.min(ar[i]), hi.max(ar[i])));
                // (h, w) as fractions of imgsz.
                let (h, w) = if hi < 1.0 {
                    (hi, 1.0)
                } else if lo > 1.0 {
                    (1.0, 1.0 / lo)
                } else {
                    (1.0, 1.0)
                };
                let side = |f: f64| ((f * imgsz / stride + 0.5).ceil() * stride) as u32;
                (side(w), side(h))
            })
            .collect();
        self.rect = Some((order, shapes));
        self
    }

    /// Replaces the transform for the epochs started from now on (e.g. mosaic off for the last epochs).
    /// Like Ultralytics' loader reset, the workers start again with no recent images.
    pub fn set_transform(&mut self, transform: Arc<dyn SampleTransform>) {
        self.transform = transform;
        self.recent.lock().expect("recent images").clear();
    }

    /// The workers an epoch runs on: as configured, but no more than there are batches.
    pub fn workers(&self) -> usize {
        self.config.workers.clamp(1, self.num_batches().max(1))
    }
    /// Batches per epoch (this shard's share; the last batch may be short).
    pub fn num_batches(&self) -> usize {
        let samples = if self.rect.is_some() { self.samples.len() } else { self.shard.share(self.samples.len()) };
        samples.div_ceil(self.config.batch.max(1))
    }

    /// The sample order of an epoch (this shard's part of it): a seeded shuffle, or the scan order.
    pub fn order(&self, epoch: usize) -> Vec<usize> {
        if let Some((order, _)) = &self.rect {
            return order.clone(); // rectangular (validation) batches are never sharded: their canvases are per batch
        }
        let mut order: Vec<usize> = (0..self.samples.len()).collect();
        if self.config.shuffle {
            order.shuffle(&mut ChaCha8Rng::seed_from_u64(mix(self.config.seed, epoch as u64, u64::MAX)));
        }
        self.shard.take(order)
    }

    /// Iterates over one epoch's batches; loading runs ahead on the worker threads.
    pub fn epoch(&self, epoch: usize) -> EpochBatches {
        let order = self.order(epoch);
        let chunks: Arc<Vec<Vec<usize>>> =
            Arc::new(order.chunks(self.config.batch.max(1)).map(<[usize]>::to_vec).collect());
        let workers = self.workers();
        let mut recent = self.recent.lock().expect("recent images").clone();
        recent.resize_with(workers, || RecentImages::for_split(self.samples.len(), self.config.batch.max(1)));
        // Batches made ahead, shared between the workers (at least one each).
        let ahead = self.config.prefetch.div_ceil(workers).max(1);
        let rect_shapes = Arc::new(self.rect.as_ref().map(|(_, shapes)| shapes.clone()));
        let (mut receivers, mut producers) = (Vec::with_capacity(workers), Vec::with_capacity(workers));
        for (w, recent) in recent.into_iter().enumerate() {
            let (tx, rx) = bounded(ahead);
            let (samples, transform, config, chunks, rect_shapes) = (
                self.samples.clone(),
                self.transform.clone(),
                self.config.clone(),
                chunks.clone(),
                rect_shapes.clone(),
            );
            let producer = std::thread::Builder::new()
                .name(format!("ember-loader-{w}"))
                .spawn(move || {
                    let mut worker = WorkerState::new(recent);
                    for index in (w..chunks.len()).step_by(workers) {
                        let canvas = rect_shapes.as_ref().as_ref().map_or((config.imgsz, config.imgsz), |s| s[index]);
                        let job = BatchJob {
                            index,
                            chunk: &chunks[index],
                            canvas,
                            epoch,
                            samples: &samples,
                            config: &config,
                        };
                        let batch = job.make(transform.as_ref(), &mut worker);
                        if tx.send(Made::Batch(batch)).is_err() {
                            return; // the consumer stopped early
                        }
                    }
                    let _ = tx.send(Made::Finished(worker.recent));
                })
                .expect("spawn a loader thread");
            receivers.push(rx);
            producers.push(producer);
        }
        EpochBatches {
            receivers,
            producers,
            next: 0,
            batches: chunks.len(),
            recent: self.recent.clone(),
            wait: WaitClock::default(),
        }
    }
}

/// What a worker sends: a batch, then, after its last one, its recent images.
enum Made {
    Batch(Batch),
    Finished(RecentImages),
}

/// One batch for a worker to make.
struct BatchJob<'a> {
    index: usize,
    chunk: &'a [usize],
    canvas: (u32, u32),
    epoch: usize,
    samples: &'a [Sample],
    config: &'a LoaderConfig,
}

impl BatchJob<'_> {
    /// Prepares the batch's samples in order, each straight into its place in the batch.
    fn make(&self, transform: &dyn SampleTransform, worker: &mut WorkerState) -> Batch {
        let (w, h) = (self.canvas.0 as usize, self.canvas.1 as usize);
        let plane = w * h;
        let mut batch = Batch {
            index: self.index,
            pixels: Vec::with_capacity(self.chunk.len() * 3 * plane),
            shape: [0, 3, h, w],
            labels: Vec::with_capacity(self.chunk.len()),
            paths: Vec::with_capacity(self.chunk.len()),
            letterboxes: Vec::with_capacity(self.chunk.len()),
            failures: vec![],
        };
        for &i in self.chunk {
            let mut rng = ChaCha8Rng::seed_from_u64(mix(self.config.seed, self.epoch as u64, i as u64));
            match transform.prepare(self.samples, i, self.config.imgsz, self.canvas, &mut rng, worker) {
                // The batch is the images' planes one after another, so each must fill the canvas.
                Ok(p) if p.image.dimensions() != self.canvas => batch.failures.push((
                    self.samples[i].image.clone(),
                    format!("prepared as {:?}, not the batch's {:?}", p.image.dimensions(), self.canvas),
                )),
                Ok(p) => {
                    planar(&p.image, &mut batch.pixels);
                    worker.buffers.recycle(p.image);
                    batch.labels.push(p.labels);
                    batch.paths.push(self.samples[i].image.clone());
                    batch.letterboxes.push(p.letterbox);
                    batch.shape[0] += 1;
                }
                Err(e) => batch.failures.push((self.samples[i].image.clone(), format!("{e:#}"))),
            }
        }
        batch
    }
}

/// HWC (interleaved) -> CHW (planar), appended to `out`: the image's three planes.
pub fn planar(image: &RgbImage, out: &mut Vec<u8>) {
    let plane = image.width() as usize * image.height() as usize;
    out.reserve(3 * plane);
    // Written straight into the spare capacity: zeroing a batch first cost 3% of the loader at 640.
    let (r, rest) = out.spare_capacity_mut()[..3 * plane].split_at_mut(plane);
    let (g, b) = rest.split_at_mut(plane);
    let done = simd::planar(image.as_raw(), [&mut *r, &mut *g, &mut *b]);
    let (pixels, _) = image.as_raw()[done * 3..].as_chunks::<3>();
    for (((px, r), g), b) in pixels.iter().zip(&mut r[done..]).zip(&mut g[done..]).zip(&mut b[done..]) {
        r.write(px[0]);
        g.write(px[1]);
        b.write(px[2]);
    }
    // SAFETY: the `3 * plane` bytes past the length are written: each plane's first `done` by the vectorised
    // split, the rest by the loop.
    unsafe { out.set_len(out.len() + 3 * plane) };
}

/// Ultralytics' worker count on one device (or on the CPU): `min(cpu_count, workers)`, at least one.
pub fn worker_count(requested: usize) -> usize {
    workers_per_process(requested, 1)
}

/// Ultralytics' worker count when `processes` training processes share this machine's cores:
/// `min(cpu_count / processes, workers)`, at least one. (8.4.190 divides by the CUDA devices the machine
/// has; ember by the processes of the run on it, which is the same in a run over every device and also
/// holds for CPU processes.)
pub fn workers_per_process(requested: usize, processes: usize) -> usize {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    split_workers(requested, cpus, processes)
}

fn split_workers(requested: usize, cpus: usize, processes: usize) -> usize {
    requested.min(cpus / processes.max(1)).max(1)
}

/// A seed per (run seed, epoch, sample), so a sample's augmentation does not depend on which
/// worker thread happens to load it.
fn mix(seed: u64, epoch: u64, item: u64) -> u64 {
    let mut z = seed ^ epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ item.wrapping_mul(0xD1B5_4A32_D192_ED03);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Time the consumer spent blocked waiting for batches; shared, so it can be read while (or after) the
/// epoch's iterator is consumed by a `for` loop.
#[derive(Debug, Clone, Default)]
pub struct WaitClock(Arc<AtomicU64>);

impl WaitClock {
    /// The time blocked so far, summed over all `next()` calls.
    pub fn total(&self) -> Duration {
        Duration::from_nanos(self.0.load(Ordering::Relaxed))
    }
    fn add(&self, d: Duration) {
        self.0.fetch_add(d.as_nanos() as u64, Ordering::Relaxed);
    }
}

/// The batches of one epoch, in order.
pub struct EpochBatches {
    /// One channel per worker; batch k comes from worker k mod workers.
    receivers: Vec<Receiver<Made>>,
    producers: Vec<JoinHandle<()>>,
    next: usize,
    batches: usize,
    recent: Arc<Mutex<Vec<RecentImages>>>,
    wait: WaitClock,
}

impl EpochBatches {
    /// The clock that accumulates how long `next()` blocked (the model waiting on data).
    pub fn wait_clock(&self) -> WaitClock {
        self.wait.clone()
    }

    /// After the last batch: keeps each worker's recent images for the next epoch.
    fn keep_recent(&mut self) {
        let finished: Option<Vec<RecentImages>> = self
            .receivers
            .iter()
            .map(|rx| match rx.recv() {
                Ok(Made::Finished(recent)) => Some(recent),
                _ => None,
            })
            .collect();
        if let Some(recent) = finished {
            *self.recent.lock().expect("recent images") = recent;
        }
    }
}

impl Iterator for EpochBatches {
    type Item = Batch;
    fn next(&mut self) -> Option<Batch> {
        if self.next >= self.batches {
            if self.next == self.batches {
                self.next += 1;
                self.keep_recent();
            }
            return None;
        }
        let rx = &self.receivers[self.next % self.receivers.len()];
        self.next += 1;
        let made = match rx.try_recv() {
            Ok(made) => Ok(made),
            Err(_) => {
                let started = Instant::now();
                let made = rx.recv();
                self.wait.add(started.elapsed());
                made
            }
        };
        match made {
            Ok(Made::Batch(batch)) => Some(batch),
            // A worker that stopped (it panicked) ends the epoch.
            _ => {
                self.next = self.batches + 1;
                None
            }
        }
    }
}

impl Drop for EpochBatches {
    fn drop(&mut self) {
        // Unblock workers waiting on full channels, then wait for them.
        self.receivers.clear();
        for h in self.producers.drain(..) {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use image::RgbImage;

    use super::{planar, split_workers, Shard};

    /// The planes (vectorised where the CPU allows) hold each pixel's channels, at sizes that leave remainders.
    #[test]
    fn planar_splits_every_pixel_into_its_plane() {
        for (w, h) in [(1, 1), (5, 3), (16, 1), (17, 3), (33, 7), (640, 2)] {
            let img = RgbImage::from_fn(w, h, |x, y| {
                image::Rgb([(x * 7 + y) as u8, (x * 13 + 2 * y) as u8, (x + y * 5) as u8])
            });
            let plane = (w * h) as usize;
            let mut out = vec![7u8; 5];
            planar(&img, &mut out);
            assert_eq!(out.drain(..5).collect::<Vec<_>>(), [7; 5], "appended after what `out` held");
            for (i, px) in img.pixels().enumerate() {
                assert_eq!([out[i], out[plane + i], out[2 * plane + i]], px.0, "{w}x{h}, pixel {i}");
            }
        }
    }

    /// 8.4.190's `min(cpu_count / devices, workers)`: 16 cores and 8 workers asked for, one process takes 8,
    /// four processes 4 each, more processes than cores still 1 each.
    #[test]
    fn processes_on_one_machine_split_its_cores_between_their_workers() {
        assert_eq!(split_workers(8, 16, 1), 8);
        assert_eq!(split_workers(8, 16, 4), 4);
        assert_eq!(split_workers(8, 16, 3), 5);
        assert_eq!(split_workers(8, 2, 4), 1);
        assert_eq!(split_workers(0, 16, 1), 1);
        assert_eq!(split_workers(8, 16, 0), 8, "no process count counts as one");
    }

    #[test]
    fn shards_deal_one_order_padded_from_its_start() {
        let order = vec![7, 3, 5, 0, 1];
        let deal = |rank| Shard { rank, count: 2 }.take(order.clone());
        assert_eq!(deal(0), [7, 5, 1]);
        assert_eq!(deal(1), [3, 0, 7]); // padded with the order's first sample, as DistributedSampler
        assert_eq!(Shard::default().take(order.clone()), order);
    }
}
