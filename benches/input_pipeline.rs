//! The training input pipeline alone: decode, mosaic (partners from each worker's recent images, as in
//! Ultralytics), random affine, HSV, flips, into u8 batches, with Ultralytics' default augmentation.
//!
//!     cargo bench --bench input_pipeline -- [profile] [IMAGES] [imgsz] [batch] [workers] [batches] [warmup]
//!     (defaults: coco128's train2017 under $EMBER_DATASETS, else ../shared/datasets; 640 16 1 8 1)
//!
//! Rate (the default): images/s of the batch loader after `warmup` batches, over `batches` batches, running
//! on across epochs as training does. `profile`: one thread, milliseconds per image in each stage.
//! What a GPU step needs from the CPU: at N images/s of training, N / (images/s per worker) workers.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ember::config::{CacheMode, Settings};
use ember::data::augment::{AugmentParams, TrainTransform};
use ember::data::cache::ImageStore;
use ember::data::loader::{planar, SampleTransform};
use ember::data::recent::RecentImages;
use ember::data::scan::scan_split;
use ember::data::worker::{StageTimes, WorkerState};
use ember::data::{BatchLoader, LoaderConfig, Split};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn main() {
    // As `ember` runs: freed buffers kept for reuse (EMBER_DEFAULT_MALLOC=1: glibc's defaults).
    if std::env::var_os("EMBER_DEFAULT_MALLOC").is_none() {
        ember::backend::keep_freed_memory();
    }
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let profile = args.iter().any(|a| a == "profile");
    let images = args.iter().find(|a| a.contains('/')).map(PathBuf::from).unwrap_or_else(|| {
        let datasets = std::env::var_os("EMBER_DATASETS")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/datasets")));
        datasets.join("coco128/images/train2017")
    });
    let numbers: Vec<usize> = args.iter().filter_map(|a| a.parse().ok()).collect();
    let arg = |i: usize, default: usize| numbers.get(i).copied().unwrap_or(default);
    let (imgsz, batch, workers, batches, warmup) = (arg(0, 640) as u32, arg(1, 16), arg(2, 1), arg(3, 8), arg(4, 1));
    let samples = scan_split(&[images], 80, Split::Train).expect("an images folder").samples;
    let settings = Settings::resolve(&Default::default()).unwrap();
    let store = Arc::new(ImageStore::new(samples.len(), imgsz, CacheMode::Off, None));
    let transform = TrainTransform::new(AugmentParams::from_settings(&settings), store);
    let config = LoaderConfig { imgsz, batch, workers, shuffle: true, seed: 0, prefetch: 2 };
    let loader = BatchLoader::with_transform(samples, config, Arc::new(transform)).unwrap();
    if profile {
        return stage_profile(&loader, imgsz, batch, batches, warmup);
    }
    // Epochs follow each other as in training; workers keep their recent images from one to the next.
    let mut stream = (0..).flat_map(|epoch| loader.epoch(epoch));
    for _ in 0..warmup {
        stream.next().expect("a batch");
    }
    let started = Instant::now();
    let images_done: usize = stream.take(batches).map(|b| b.len()).sum();
    let secs = started.elapsed().as_secs_f64();
    let workers = loader.workers();
    println!(
        "ember {images_done} images in {secs:.2} s = {:.1} images/s, {workers} worker(s), {:.1} per worker ({} images, {imgsz} px, batch {batch})",
        images_done as f64 / secs,
        images_done as f64 / secs / workers as f64,
        loader.samples().len(),
    );
}

/// CPU time of this thread: a stage's cost even when other jobs share the cores.
fn thread_cpu_time() -> Duration {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec, which `t` is.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// One worker's work on this thread, stage by stage, in the loader's order (CPU time of the thread).
fn stage_profile(loader: &BatchLoader, imgsz: u32, batch: usize, batches: usize, warmup: usize) {
    let samples = loader.samples();
    let transform = TrainTransform::new(
        AugmentParams::from_settings(&Settings::resolve(&Default::default()).unwrap()),
        Arc::new(ImageStore::new(samples.len(), imgsz, CacheMode::Off, None)),
    );
    let mut worker = WorkerState::new(RecentImages::for_split(samples.len(), batch));
    let order = (0..).flat_map(|epoch| loader.order(epoch).into_iter().map(move |i| (epoch, i)));
    let plane = imgsz as usize * imgsz as usize;
    let mut pixels = Vec::with_capacity(batch * 3 * plane);
    let (mut started, mut done) = (Duration::ZERO, 0);
    for (k, (epoch, i)) in order.take((warmup + batches) * batch).enumerate() {
        if k == warmup * batch {
            worker.stages = Some(StageTimes::new(thread_cpu_time));
            started = thread_cpu_time();
        }
        let mut rng = ChaCha8Rng::seed_from_u64(epoch as u64 * 1_000_003 + i as u64);
        let prepared = transform.prepare(samples, i, imgsz, (imgsz, imgsz), &mut rng, &mut worker).expect("an image");
        let t = worker.clock();
        if k % batch == 0 {
            pixels.clear();
        }
        planar(&prepared.image, &mut pixels);
        worker.buffers.recycle(prepared.image);
        worker.lap("collate (to the CHW batch)", t);
        done += (k >= warmup * batch) as usize;
    }
    let total = thread_cpu_time() - started;
    let stages = worker.stages.take().expect("profiled").totals;
    let ms = |d: Duration| 1000.0 * d.as_secs_f64() / done as f64;
    for (name, spent) in &stages {
        println!("ember stage | {name} | {:.2} ms", ms(*spent));
    }
    let other = total.saturating_sub(stages.iter().map(|(_, d)| *d).sum());
    println!("ember stage | other (labels, rng, bookkeeping) | {:.2} ms", ms(other));
    println!(
        "ember stage | total | {:.2} ms CPU ({:.1} images/s of CPU time)",
        ms(total),
        done as f64 / total.as_secs_f64()
    );
}
