//! Box geometry of every training transform, on synthetic images whose object pixels are known: after
//! the transform, each box must still enclose exactly its object's pixels, within a pixel.

use std::path::Path;
use std::sync::Arc;

use ember::config::CacheMode;
use ember::data::augment::geometry::AffineParams;
use ember::data::augment::{AugmentParams, Labeled, TrainTransform};
use ember::data::cache::ImageStore;
use ember::data::recent::RecentImages;
use ember::data::worker::WorkerState;
use ember::data::{BoxLabel, Sample};
use image::{Rgb, RgbImage};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

const BG: [u8; 3] = [40, 40, 40];
const PAD: [u8; 3] = [114, 114, 114];
/// Object colour per class.
const COLOURS: [[u8; 3]; 4] = [[220, 30, 30], [30, 200, 40], [40, 60, 230], [230, 220, 30]];

/// Which class a pixel shows (nearest reference colour), or None for background/padding.
fn class_of(px: &[u8]) -> Option<usize> {
    let d = |c: &[u8; 3]| (0..3).map(|i| (px[i] as i32 - c[i] as i32).pow(2)).sum::<i32>();
    let bg = d(&BG).min(d(&PAD));
    let (best, dist) = COLOURS.iter().enumerate().map(|(k, c)| (k, d(c))).min_by_key(|&(_, d)| d).unwrap();
    (dist < bg).then_some(best)
}

/// An image of `size` with filled rectangles `(class, [x1, y1, x2, y2])` in pixels, saved as PNG.
fn write_sample(path: &Path, size: (u32, u32), rects: &[(usize, [u32; 4])]) -> Sample {
    let mut img = RgbImage::from_pixel(size.0, size.1, Rgb(BG));
    for &(c, [x1, y1, x2, y2]) in rects {
        for y in y1..y2 {
            for x in x1..x2 {
                img.put_pixel(x, y, Rgb(COLOURS[c]));
            }
        }
    }
    img.save(path).unwrap();
    let (w, h) = (size.0 as f32, size.1 as f32);
    let labels = rects
        .iter()
        .map(|&(class, [x1, y1, x2, y2])| {
            let [x1, y1, x2, y2] = [x1 as f32, y1 as f32, x2 as f32, y2 as f32];
            BoxLabel { class, xywh: [(x1 + x2) / 2.0 / w, (y1 + y2) / 2.0 / h, (x2 - x1) / w, (y2 - y1) / h] }
        })
        .collect();
    Sample { image: path.to_path_buf(), size, labels, polygons: vec![] }
}

/// Four images of different sizes and aspect ratios, one class each, objects clear of the borders.
fn samples(dir: &Path) -> Vec<Sample> {
    vec![
        write_sample(&dir.join("a.png"), (200, 150), &[(0, [40, 30, 100, 90])]),
        write_sample(&dir.join("b.png"), (160, 220), &[(1, [20, 60, 70, 160])]),
        write_sample(&dir.join("c.png"), (240, 240), &[(2, [100, 90, 190, 150])]),
        write_sample(&dir.join("d.png"), (180, 120), &[(3, [30, 20, 150, 50])]),
    ]
}

/// A loader worker with room for the four test images among its recent ones.
fn worker() -> WorkerState {
    WorkerState::new(RecentImages::for_split(5, 4))
}

fn transform(params: AugmentParams, imgsz: u32) -> TrainTransform {
    TrainTransform::new(params, Arc::new(ImageStore::uncached(imgsz)))
}

/// Each box must enclose exactly the pixels of its class near it (within `tol` pixels on each side).
fn assert_boxes_enclose_objects(out: &Labeled, tol: f32, what: &str) {
    check_boxes(out, tol, true, what)
}

/// As above; with `exact_at_border` false, a box cut by the image border only has to enclose its
/// pixels: a rotated or sheared object cut by the border keeps the box of its (clipped) corners, which is
/// looser than what is left visible (Ultralytics' boxes behave the same way).
fn check_boxes(out: &Labeled, tol: f32, exact_at_border: bool, what: &str) {
    let (w, h) = out.image.dimensions();
    for &(c, b) in &out.boxes {
        assert!(
            b[0] >= 0.0 && b[1] >= 0.0 && b[2] <= w as f32 && b[3] <= h as f32,
            "{what}: box {b:?} leaves the {w}x{h} image"
        );
        let margin = 4.0;
        let (xa, ya) = ((b[0] - margin).max(0.0) as u32, (b[1] - margin).max(0.0) as u32);
        let (xb, yb) = (((b[2] + margin).ceil() as u32).min(w), ((b[3] + margin).ceil() as u32).min(h));
        let mut ext = [f32::MAX, f32::MAX, f32::MIN, f32::MIN];
        for y in ya..yb {
            for x in xa..xb {
                if class_of(&out.image.get_pixel(x, y).0) == Some(c) {
                    let (x, y) = (x as f32, y as f32);
                    ext = [ext[0].min(x), ext[1].min(y), ext[2].max(x + 1.0), ext[3].max(y + 1.0)];
                }
            }
        }
        assert!(ext[0] != f32::MAX, "{what}: box {b:?} of class {c} encloses none of its object's pixels");
        let at_border = b[0] <= 0.0 || b[1] <= 0.0 || b[2] >= w as f32 || b[3] >= h as f32;
        for k in 0..4 {
            let inside = if k < 2 { ext[k] >= b[k] - tol } else { ext[k] <= b[k] + tol };
            assert!(inside, "{what}: class {c} box {b:?} does not enclose its pixels {ext:?}");
            if exact_at_border || !at_border {
                assert!((ext[k] - b[k]).abs() <= tol, "{what}: class {c} box {b:?} but its pixels span {ext:?}");
            }
        }
    }
}

/// Pixels of class `c` outside every class-`c` box (grown by a pixel).
fn stray_pixels(out: &Labeled, c: usize) -> usize {
    let boxes: Vec<_> = out.boxes.iter().filter(|(k, _)| *k == c).map(|(_, b)| *b).collect();
    out.image
        .enumerate_pixels()
        .filter(|(x, y, p)| {
            class_of(&p.0) == Some(c)
                && !boxes.iter().any(|b| {
                    *x as f32 >= b[0] - 1.0
                        && *y as f32 >= b[1] - 1.0
                        && (*x as f32) < b[2] + 1.0
                        && (*y as f32) < b[3] + 1.0
                })
        })
        .count()
}

fn affine(degrees: f64, translate: f64, scale: f64, shear: f64, perspective: f64) -> AugmentParams {
    AugmentParams { affine: AffineParams { degrees, translate, scale, shear, perspective }, ..AugmentParams::none() }
}

#[test]
fn plain_resize_and_centre() {
    let dir = tempfile::tempdir().unwrap();
    let samples = samples(dir.path());
    let t = transform(AugmentParams::none(), 256);
    for i in 0..samples.len() {
        let out = t.transform(&samples, i, 256, &mut ChaCha8Rng::seed_from_u64(0), &mut worker()).unwrap();
        assert_eq!(out.image.dimensions(), (256, 256));
        assert_eq!(out.boxes.len(), 1, "nothing is dropped without augmentation");
        assert_boxes_enclose_objects(&out, 1.0, &format!("image {i}"));
    }
    // Image a (200x150) is scaled by 256/200 = 1.28 and centred: its box moves exactly there.
    let out = t.transform(&samples, 0, 256, &mut ChaCha8Rng::seed_from_u64(0), &mut worker()).unwrap();
    let (sx, sy) = (256.0 / 200.0, 192.0 / 150.0); // resized 256x192
    let (px, py) = (0.0, (256.0 - 192.0) / 2.0);
    let want = [40.0 * sx + px, 30.0 * sy + py, 100.0 * sx + px, 90.0 * sy + py];
    for k in 0..4 {
        assert!((out.boxes[0].1[k] - want[k]).abs() < 1e-3, "{:?} vs {want:?}", out.boxes[0].1);
    }
}

#[test]
fn each_affine_parameter_moves_boxes_with_pixels() {
    let dir = tempfile::tempdir().unwrap();
    let samples = samples(dir.path());
    let cases = [
        ("degrees", affine(45.0, 0.0, 0.0, 0.0, 0.0)),
        ("translate", affine(0.0, 0.4, 0.0, 0.0, 0.0)),
        ("scale", affine(0.0, 0.0, 0.5, 0.0, 0.0)),
        ("shear", affine(0.0, 0.0, 0.0, 15.0, 0.0)),
        ("perspective", affine(0.0, 0.0, 0.0, 0.0, 0.001)),
        ("all", affine(30.0, 0.2, 0.5, 10.0, 0.0005)),
    ];
    let mut dropped = 0;
    for (name, params) in cases {
        let t = transform(params, 224);
        for seed in 0..6u64 {
            for i in 0..samples.len() {
                let out = t.transform(&samples, i, 224, &mut ChaCha8Rng::seed_from_u64(seed), &mut worker()).unwrap();
                assert_eq!(out.image.dimensions(), (224, 224));
                let turns = matches!(name, "degrees" | "shear" | "perspective" | "all");
                check_boxes(&out, 1.0, !turns, &format!("{name}, seed {seed}, image {i}"));
                let class = samples[i].labels[0].class;
                if out.boxes.is_empty() {
                    dropped += 1;
                    // Dropped only when little of the object is left (box candidates: < 10% of its area).
                    let left = stray_pixels(&out, class);
                    let [.., bw, bh] = samples[i].labels[0].xywh;
                    let area = bw * bh * 224.0 * 224.0 * 2.25; // at most scale 1.5
                    assert!((left as f32) < 0.1 * area + 3.0 * 224.0, "{name}: box dropped with {left} pixels visible");
                } else {
                    assert_eq!(
                        stray_pixels(&out, class),
                        0,
                        "{name}, seed {seed}, image {i}: object pixels outside the box"
                    );
                }
            }
        }
    }
    assert!(dropped < 20, "{dropped} boxes dropped: far more than these parameters should");
}

#[test]
fn box_candidates_drop_slivers_and_mostly_hidden_boxes() {
    use ember::data::augment::geometry::box_candidate;
    let before = [0.0, 0.0, 100.0, 100.0];
    assert!(box_candidate(before, [0.0, 0.0, 50.0, 50.0], 2.0, 100.0, 0.1));
    assert!(!box_candidate(before, [0.0, 0.0, 30.0, 30.0], 2.0, 100.0, 0.1), "9% of the area left");
    assert!(!box_candidate(before, [0.0, 0.0, 2.0, 100.0], 2.0, 100.0, 0.1), "2 pixels wide");
    assert!(
        !box_candidate([0.0, 0.0, 1000.0, 10.0], [0.0, 0.0, 1000.0, 9.0], 2.0, 100.0, 0.1),
        "aspect ratio above 100"
    );
    assert!(box_candidate([0.0, 0.0, 1000.0, 11.0], [0.0, 0.0, 1000.0, 11.0], 2.0, 100.0, 0.1));
}

#[test]
fn mosaic_places_four_images_and_their_boxes() {
    let dir = tempfile::tempdir().unwrap();
    let samples = samples(dir.path());
    let defaults = AugmentParams { mosaic: 1.0, ..affine(0.0, 0.1, 0.5, 0.0, 0.0) };
    let t = transform(defaults, 256);
    // Partners come from the worker's recent images: after a few samples it holds all four.
    let mut w = worker();
    for i in 0..4 {
        t.transform(&samples, i, 256, &mut ChaCha8Rng::seed_from_u64(99), &mut w).unwrap();
    }
    assert_eq!(w.recent.len(), 4);
    let mut most_classes = 0;
    for seed in 0..16u64 {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        // The raw 2s x 2s mosaic first: every tile's box is exact.
        let raw = t.mosaic4(&samples, (seed % 4) as usize, 256, &mut rng, &mut w).unwrap();
        assert_eq!(raw.image.dimensions(), (512, 512));
        assert_boxes_enclose_objects(&raw, 1.0, &format!("mosaic seed {seed}"));
        let out =
            t.transform(&samples, (seed % 4) as usize, 256, &mut ChaCha8Rng::seed_from_u64(seed), &mut w).unwrap();
        assert_eq!(out.image.dimensions(), (256, 256));
        assert_boxes_enclose_objects(&out, 1.0, &format!("mosaic + affine seed {seed}"));
        let mut classes: Vec<_> = out.boxes.iter().map(|b| b.0).collect();
        classes.sort();
        classes.dedup();
        most_classes = most_classes.max(classes.len());
    }
    assert!(most_classes >= 3, "a mosaic should show objects from several images; at most {most_classes} classes seen");
}

#[test]
fn flips_mirror_pixels_and_boxes() {
    let dir = tempfile::tempdir().unwrap();
    let samples = samples(dir.path());
    let plain = transform(AugmentParams::none(), 200)
        .transform(&samples, 1, 200, &mut ChaCha8Rng::seed_from_u64(3), &mut worker())
        .unwrap();
    let lr = transform(AugmentParams { fliplr: 1.0, ..AugmentParams::none() }, 200)
        .transform(&samples, 1, 200, &mut ChaCha8Rng::seed_from_u64(3), &mut worker())
        .unwrap();
    let ud = transform(AugmentParams { flipud: 1.0, ..AugmentParams::none() }, 200)
        .transform(&samples, 1, 200, &mut ChaCha8Rng::seed_from_u64(3), &mut worker())
        .unwrap();
    assert_eq!(lr.image, image::imageops::flip_horizontal(&plain.image));
    assert_eq!(ud.image, image::imageops::flip_vertical(&plain.image));
    let b = plain.boxes[0].1;
    assert_eq!(lr.boxes[0].1, [200.0 - b[2], b[1], 200.0 - b[0], b[3]]);
    assert_eq!(ud.boxes[0].1, [b[0], 200.0 - b[3], b[2], 200.0 - b[1]]);
    assert_boxes_enclose_objects(&lr, 1.0, "fliplr");
    assert_boxes_enclose_objects(&ud, 1.0, "flipud");
}

#[test]
fn hsv_changes_colours_not_geometry() {
    let dir = tempfile::tempdir().unwrap();
    let samples = samples(dir.path());
    let plain = transform(AugmentParams::none(), 192)
        .transform(&samples, 2, 192, &mut ChaCha8Rng::seed_from_u64(5), &mut worker())
        .unwrap();
    let params = AugmentParams { hsv: [0.015, 0.7, 0.4], ..AugmentParams::none() };
    let mut changed = 0;
    for seed in 0..4u64 {
        let out = transform(params, 192)
            .transform(&samples, 2, 192, &mut ChaCha8Rng::seed_from_u64(seed), &mut worker())
            .unwrap();
        assert_eq!(out.boxes, plain.boxes, "HSV jitter leaves boxes alone");
        changed += (out.image != plain.image) as usize;
        // Greys stay grey and strongly coloured pixels stay coloured: the object keeps its pixels.
        for (a, b) in plain.image.pixels().zip(out.image.pixels()) {
            let grey = |p: &Rgb<u8>| p.0[0] == p.0[1] && p.0[1] == p.0[2];
            let spread = |p: &Rgb<u8>| p.0.iter().max().unwrap() - p.0.iter().min().unwrap();
            if grey(a) {
                assert!(grey(b), "{a:?} -> {b:?}");
            }
            if spread(a) > 60 {
                assert!(!grey(b), "{a:?} -> {b:?}");
            }
        }
    }
    assert!(changed >= 3);
}

#[test]
fn cutmix_pastes_whole_regions_with_their_clipped_boxes() {
    let dir = tempfile::tempdir().unwrap();
    let samples = samples(dir.path());
    let t = transform(AugmentParams { cutmix: 1.0, ..AugmentParams::none() }, 224);
    let mut pasted = 0;
    for seed in 0..40u64 {
        let out = t
            .transform(&samples, (seed % 4) as usize, 224, &mut ChaCha8Rng::seed_from_u64(seed), &mut worker())
            .unwrap();
        assert_boxes_enclose_objects(&out, 1.0, &format!("cutmix seed {seed}"));
        pasted += (out.boxes.len() > 1) as usize;
    }
    assert!(pasted > 0, "CutMix never pasted a box in 40 tries");
}

#[test]
fn mixup_blends_images_and_keeps_both_label_sets() {
    let dir = tempfile::tempdir().unwrap();
    let samples = samples(dir.path());
    let t = transform(AugmentParams { mixup: 1.0, ..AugmentParams::none() }, 160);
    for seed in 0..4u64 {
        let out = t.transform(&samples, 0, 160, &mut ChaCha8Rng::seed_from_u64(seed), &mut worker()).unwrap();
        assert_eq!(out.boxes.len(), 2, "own box plus the mixed image's box");
        // Pixels lie between the two sources: nothing brighter than the brightest input channel.
        assert!(out.image.pixels().all(|p| p.0.iter().all(|&v| v <= 230)));
    }
}

#[test]
fn cached_images_give_the_same_result() {
    let dir = tempfile::tempdir().unwrap();
    let samples = samples(dir.path());
    let params = AugmentParams { mosaic: 1.0, hsv: [0.015, 0.7, 0.4], fliplr: 0.5, ..affine(5.0, 0.1, 0.5, 2.0, 0.0) };
    // One worker per run, as the loader has: its recent images carry from sample to sample.
    let run = |store: ImageStore| {
        let t = TrainTransform::new(params, Arc::new(store));
        let mut w = worker();
        (0..8u64)
            .map(|seed| {
                t.transform(&samples, (seed % 4) as usize, 192, &mut ChaCha8Rng::seed_from_u64(seed), &mut w).unwrap()
            })
            .collect::<Vec<_>>()
    };
    let same = |a: &[Labeled], b: &[Labeled]| a.iter().zip(b).all(|(a, b)| a.image == b.image && a.boxes == b.boxes);
    // Without a RAM cache, mosaic partners come from the worker's recent images, read from disk or decoded alike.
    let off = run(ImageStore::uncached(192));
    let disk_dir = dir.path().join("cache");
    let disk = run(ImageStore::new(samples.len(), 192, CacheMode::Disk, Some(disk_dir.clone())));
    let disk_again = run(ImageStore::new(samples.len(), 192, CacheMode::Disk, Some(disk_dir.clone())));
    assert_eq!(std::fs::read_dir(&disk_dir).unwrap().count(), 4, "one cache file per image");
    assert!(same(&off, &disk) && same(&off, &disk_again));
    // With it they are drawn from the whole split (Ultralytics' `cache=ram`): the same images, other mosaics.
    let ram = run(ImageStore::new(samples.len(), 192, CacheMode::Ram, None));
    assert!(same(&ram, &run(ImageStore::new(samples.len(), 192, CacheMode::Ram, None))));
    assert!(!same(&ram, &off), "RAM-cached mosaics take their partners from the whole split");
}
