//! The training input pipeline on real photos: deterministic augmented batches whatever the worker
//! count, mosaic closing, the data-wait clock and `--save-batches` grids.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use ember::config::CacheMode;
use ember::data::augment::pipeline::TrainPipeline;
use ember::data::augment::preview::batch_grid;
use ember::data::augment::{AugmentParams, TrainTransform};
use ember::data::cache::ImageStore;
use ember::data::scan::scan_split;
use ember::data::{BatchLoader, LoaderConfig, Sample, Split};

fn coco8() -> Vec<Sample> {
    let root = common::shared_datasets().join("coco8/images");
    scan_split(&[root.join("train"), root.join("val")], 80, Split::Train).unwrap().samples
}

fn defaults() -> AugmentParams {
    let s = ember::config::Settings::resolve(&Default::default()).unwrap();
    AugmentParams::from_settings(&s)
}

fn augmented_epoch(workers: usize, cache: CacheMode, epoch: usize) -> Vec<(Vec<u8>, Vec<Vec<ember::data::BoxLabel>>)> {
    let samples = coco8();
    let store = Arc::new(ImageStore::new(samples.len(), 128, cache, None));
    let transform = Arc::new(TrainTransform::new(defaults(), store));
    let config = LoaderConfig { imgsz: 128, batch: 4, workers, shuffle: true, seed: 3, prefetch: 2 };
    let loader = BatchLoader::with_transform(samples, config, transform).unwrap();
    loader.epoch(epoch).map(|b| (b.pixels, b.labels)).collect()
}

#[test]
fn augmented_batches_are_fixed_by_seed_epoch_and_workers() {
    let one = augmented_epoch(1, CacheMode::Off, 0);
    assert_eq!(one.len(), 2);
    assert_eq!(one, augmented_epoch(1, CacheMode::Off, 0));
    assert_ne!(one, augmented_epoch(1, CacheMode::Off, 1), "a new epoch draws new augmentations");
    // With images cached in RAM, mosaic partners are drawn from the whole split: nothing depends on which
    // worker makes a batch.
    assert_eq!(augmented_epoch(1, CacheMode::Ram, 0), augmented_epoch(2, CacheMode::Ram, 0));
    for (pixels, labels) in &one {
        assert_eq!(pixels.len(), 4 * 3 * 128 * 128);
        for b in labels.iter().flatten() {
            let [cx, cy, w, h] = b.xywh;
            assert!(w > 2.0 / 128.0 && h > 2.0 / 128.0, "box candidates keep boxes over 2 pixels: {b:?}");
            assert!(
                cx - w / 2.0 >= -1e-5
                    && cy - h / 2.0 >= -1e-5
                    && cx + w / 2.0 <= 1.0 + 1e-5
                    && cy + h / 2.0 <= 1.0 + 1e-5,
                "clipped: {b:?}"
            );
        }
    }
}

/// Ultralytics' workers keep their mosaic buffer from epoch to epoch; ember's keep their recent images
/// only from epochs that ran to the end, so an epoch stopped early changes nothing that follows.
#[test]
fn recent_images_carry_over_complete_epochs_only() {
    let loader = || {
        let samples = coco8();
        let store = Arc::new(ImageStore::new(samples.len(), 96, CacheMode::Off, None));
        let transform = Arc::new(TrainTransform::new(defaults(), store));
        let config = LoaderConfig { imgsz: 96, batch: 4, workers: 1, shuffle: true, seed: 5, prefetch: 2 };
        BatchLoader::with_transform(samples, config, transform).unwrap()
    };
    let pixels = |loader: &BatchLoader, epoch| loader.epoch(epoch).map(|b| b.pixels).collect::<Vec<_>>();
    let fresh = pixels(&loader(), 1);
    let stopped = loader();
    assert_eq!(stopped.epoch(0).next().map(|b| b.len()), Some(4));
    assert_eq!(pixels(&stopped, 1), fresh, "a stopped epoch leaves the workers as they were");
    let completed = loader();
    assert_eq!(completed.epoch(0).count(), 2);
    assert_ne!(pixels(&completed, 1), fresh, "after a whole epoch, mosaics draw on the images it loaded");
}

#[test]
fn mosaic_closes_for_the_last_epochs() {
    let s = ember::config::Settings::resolve(&Default::default()).unwrap();
    let samples = coco8();
    let (mut pipeline, mut train, _val) = TrainPipeline::loaders(&s, samples.clone(), samples, 4, 1).unwrap();
    // With mosaic, a batch shows more boxes than its 4 images hold; the 2s canvas is scaled down.
    let boxes = |loader: &BatchLoader, epoch| loader.epoch(epoch).map(|b| b.instances()).sum::<usize>();
    pipeline.begin_epoch(&mut train, 0, 20, 10);
    let open = boxes(&train, 0);
    assert!(open > 30, "mosaic is on in the first epoch of 20, got {open} boxes");
    pipeline.begin_epoch(&mut train, 9, 20, 10);
    let still_open = boxes(&train, 9);
    assert!(still_open > 30, "still open at epoch 10 of 20, got {still_open} boxes");
    pipeline.begin_epoch(&mut train, 10, 20, 10);
    let closed = boxes(&train, 10);
    assert!(closed <= 30, "without mosaic an epoch holds at most coco8's 30 boxes, got {closed}");
    assert!(open > closed, "mosaic epochs show more boxes ({open}) than closed ones ({closed})");

    // Ultralytics 8.4.190 closes when `epoch >= epochs - close_mosaic`: a 5-epoch run has no mosaic at all.
    let (mut short, mut t3, _) = TrainPipeline::loaders(&s, coco8(), coco8(), 4, 1).unwrap();
    short.begin_epoch(&mut t3, 0, 5, 10);
    assert!(boxes(&t3, 0) <= 30, "a run shorter than close_mosaic has no mosaic, got {} boxes", boxes(&t3, 0));
}

#[test]
fn wait_clock_counts_time_blocked_on_data() {
    let samples = coco8();
    let config = LoaderConfig { imgsz: 64, batch: 2, workers: 1, shuffle: false, seed: 0, prefetch: 1 };
    let loader = BatchLoader::new(samples, config).unwrap();
    let batches = loader.epoch(0);
    let clock = batches.wait_clock();
    let mut n = 0;
    for _ in batches {
        n += 1;
    }
    assert_eq!(n, 4);
    let fast = clock.total();
    assert!(fast > Duration::ZERO, "the first batch at least is waited for");
    // A slow consumer finds batches ready: it waits less per batch than a fast one.
    let batches = loader.epoch(0);
    let clock = batches.wait_clock();
    for _ in batches {
        std::thread::sleep(Duration::from_millis(150));
    }
    assert!(
        clock.total() < fast + Duration::from_millis(100),
        "slow consumer waited {:?}, fast {:?}",
        clock.total(),
        fast
    );
}

#[test]
fn saved_batch_grid_shows_images_and_boxes() {
    let samples = coco8();
    let config = LoaderConfig { imgsz: 96, batch: 4, workers: 2, shuffle: false, seed: 0, prefetch: 1 };
    let loader = BatchLoader::new(samples, config).unwrap();
    let batch = loader.epoch(0).next().unwrap();
    let grid = batch_grid(&batch);
    assert_eq!(grid.dimensions(), (2 * 96, 2 * 96));
    // The top-left pixel of image 0 is copied from the batch (CHW -> HWC) unless a box edge covers it.
    let b = &batch.labels[1][0];
    let [cx, cy, w, h] = b.xywh;
    let (x1, y1) = (((cx - w / 2.0) * 96.0).round() as u32, ((cy - h / 2.0) * 96.0).round() as u32);
    let on_edge = grid.get_pixel(96 + x1 + 2, y1);
    let plane = 96 * 96;
    let under = [0, 1, 2].map(|c| batch.pixels[3 * plane + c * plane + (y1 as usize) * 96 + x1 as usize + 2]);
    assert_ne!(on_edge.0, under, "the box outline is drawn over image 1");
    let dir = tempfile::tempdir().unwrap();
    ember::data::augment::preview::save_batch_jpeg(&batch, &dir.path().join("b.jpg")).unwrap();
    assert_eq!(image::open(dir.path().join("b.jpg")).unwrap().width(), 192);
}

#[test]
fn rect_batches_fit_their_images_and_keep_boxes_exact() {
    let samples = coco8();
    let config = LoaderConfig { imgsz: 320, batch: 3, workers: 2, shuffle: false, seed: 0, prefetch: 1 };
    let square: Vec<_> = BatchLoader::new(samples.clone(), config.clone()).unwrap().epoch(0).collect();
    let loader = BatchLoader::new(samples.clone(), config).unwrap().with_rect(32);
    let order = loader.order(0);
    let ratio = |i: usize| samples[i].size.1 as f64 / samples[i].size.0 as f64;
    assert!(order.windows(2).all(|w| ratio(w[0]) <= ratio(w[1])), "sorted by aspect ratio");
    let batches: Vec<_> = loader.epoch(0).collect();
    assert_eq!(batches.len(), 3);
    let mut pixels = (0, 0);
    for b in &batches {
        let [n, _, h, w] = b.shape;
        assert!(h % 32 == 0 && w % 32 == 0 && h <= 352 && w <= 352, "{h}x{w}");
        assert_eq!(b.pixels.len(), n * 3 * h * w);
        pixels.0 += n * h * w;
        for (k, lb) in b.letterboxes.iter().enumerate() {
            assert_eq!(lb.canvas, (w as u32, h as u32));
            // Every image fits its canvas at the same scale as in the square layout (long side 320).
            let i = samples.iter().position(|s| s.image == b.paths[k]).unwrap();
            let long = lb.resized.0.max(lb.resized.1);
            assert!(long == 320 || samples[i].size.0.max(samples[i].size.1) < 320, "{:?}", lb);
            // Boxes map back to the same original-image pixels as the square layout's.
            let sq = square
                .iter()
                .flat_map(|sb| sb.paths.iter().zip(&sb.labels).zip(&sb.letterboxes))
                .find(|((p, _), _)| **p == b.paths[k])
                .unwrap();
            for (a, bb) in b.labels[k].iter().zip(sq.0 .1.iter()) {
                let back = |l: &ember::data::BoxLabel, lb: &ember::data::Letterbox| {
                    let (cw, ch) = (lb.canvas.0 as f32, lb.canvas.1 as f32);
                    let [cx, cy, bw, bh] = l.xywh;
                    lb.inverse_xyxy([
                        (cx - bw / 2.0) * cw,
                        (cy - bh / 2.0) * ch,
                        (cx + bw / 2.0) * cw,
                        (cy + bh / 2.0) * ch,
                    ])
                };
                let (p, q) = (back(a, lb), back(bb, sq.1));
                for c in 0..4 {
                    assert!((p[c] - q[c]).abs() < 1e-2, "{p:?} vs {q:?}");
                }
            }
        }
    }
    pixels.1 = square.iter().map(|b| b.len() * 320 * 320).sum();
    // coco8 is mostly landscape: its rect batches hold fewer pixels than squares.
    assert!(pixels.0 < pixels.1, "rect batches have less padding: {} vs {} pixels", pixels.0, pixels.1);
}
