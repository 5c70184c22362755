//! The training input pipeline alone: decode, mosaic, random affine, HSV, flips and letterbox into a batch,
//! on a given number of loader workers (Ultralytics' default augmentation), over coco128's photos.
//!
//!     cargo bench --bench input_pipeline -- [imgsz] [batch] [workers] [batches]
//!     (defaults: 640 16 1 8; images from $EMBER_DATASETS/coco128, else ../shared/datasets)
//!
//! What a GPU step needs from the CPU: at N images/s of training, N / (images/s per worker) workers.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use ember::config::{CacheMode, Settings};
use ember::data::augment::{AugmentParams, TrainTransform};
use ember::data::cache::ImageStore;
use ember::data::scan::scan_split;
use ember::data::{BatchLoader, LoaderConfig, Split};

fn main() {
    let args: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let imgsz = args.first().copied().unwrap_or(640) as u32;
    let batch = args.get(1).copied().unwrap_or(16);
    let workers = args.get(2).copied().unwrap_or(1);
    let batches = args.get(3).copied().unwrap_or(8);
    let datasets = std::env::var_os("EMBER_DATASETS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/datasets")));
    let samples = scan_split(&[datasets.join("coco128/images/train2017")], 80, Split::Train).expect("coco128").samples;
    let settings = Settings::resolve(&Default::default()).unwrap();
    let store = Arc::new(ImageStore::new(samples.len(), imgsz, CacheMode::Off, None));
    let transform = Arc::new(TrainTransform::new(AugmentParams::from_settings(&settings), store));
    let config = LoaderConfig { imgsz, batch, workers, shuffle: true, seed: 0, prefetch: 2 };
    let loader = BatchLoader::with_transform(samples, config, transform).unwrap();
    // The first batch warms the page cache and the workers; the rest are timed.
    let mut epoch = loader.epoch(0);
    let _ = epoch.next().expect("a batch");
    let started = Instant::now();
    let mut images = 0;
    for b in epoch.take(batches) {
        images += b.len();
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "input pipeline, {imgsz} px, batch {batch}, {workers} worker(s): {images} images in {secs:.2} s = {:.1} images/s ({:.1} per worker)",
        images as f64 / secs,
        images as f64 / secs / workers as f64
    );
}
