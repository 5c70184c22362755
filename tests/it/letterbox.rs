//! Letterbox geometry: boxes land on the object's pixels and map back to the original image.

use crate::common;

use ember::data::loader::{LetterboxOnly, SampleTransform};
use ember::data::{BoxLabel, Letterbox, Sample};
use image::RgbImage;
use rand::SeedableRng;

/// Bounding box of the reddish pixels of a canvas.
fn red_extent(img: &RgbImage) -> [f32; 4] {
    let (mut x1, mut y1, mut x2, mut y2) = (u32::MAX, u32::MAX, 0, 0);
    for (x, y, p) in img.enumerate_pixels() {
        if p[0] > 150 && p[1] < 100 {
            (x1, y1, x2, y2) = (x1.min(x), y1.min(y), x2.max(x + 1), y2.max(y + 1));
        }
    }
    [x1 as f32, y1 as f32, x2 as f32, y2 as f32]
}

#[test]
fn geometry_of_wide_tall_and_exact_images() {
    let lb = Letterbox::new((200, 100), (128, 128));
    assert_eq!((lb.resized, lb.pad), ((128, 64), (0, 32)));
    let lb = Letterbox::new((100, 201), (64, 64));
    assert_eq!(lb.resized, (32, 64));
    assert_eq!(lb.pad, (16, 0));
    let lb = Letterbox::new((64, 64), (64, 64));
    assert_eq!((lb.resized, lb.pad, lb.scale), ((64, 64), (0, 0), 1.0));
    // An odd amount of padding: the extra pixel goes right/bottom, as Ultralytics does.
    let lb = Letterbox::new((100, 51), (64, 64));
    assert_eq!(lb.resized, (64, 33));
    assert_eq!(lb.pad.1, 15);
}

#[test]
fn boxes_land_on_the_object_and_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    for (size, rect) in [((200, 100), [50, 20, 90, 60]), ((90, 160), [10, 100, 70, 150]), ((333, 251), [0, 0, 120, 80])]
    {
        let path = dir.path().join(format!("img_{}x{}.png", size.0, size.1));
        common::write_image(&path, size, Some(rect), [220, 20, 20]);
        let (w, h) = (size.0 as f32, size.1 as f32);
        let [x1, y1, x2, y2] = rect.map(|v| v as f32);
        let label =
            BoxLabel { class: 0, xywh: [(x1 + x2) / 2.0 / w, (y1 + y2) / 2.0 / h, (x2 - x1) / w, (y2 - y1) / h] };
        let sample = Sample { image: path, size, labels: vec![label], polygons: vec![] };
        let imgsz = 128;
        let prepared = LetterboxOnly.apply(&sample, imgsz, &mut rand_chacha::ChaCha8Rng::seed_from_u64(0)).unwrap();
        assert_eq!(prepared.image.dimensions(), (imgsz, imgsz));

        // The label, now normalised to the canvas, encloses exactly the red pixels (within a pixel).
        let [cx, cy, bw, bh] = prepared.labels[0].xywh.map(|v| v * imgsz as f32);
        let boxed = [cx - bw / 2.0, cy - bh / 2.0, cx + bw / 2.0, cy + bh / 2.0];
        let seen = red_extent(&prepared.image);
        for k in 0..4 {
            assert!((boxed[k] - seen[k]).abs() <= 1.0, "{size:?}: label {boxed:?} vs pixels {seen:?}");
        }
        // Padding is gray 114.
        let lb = prepared.letterbox;
        if lb.pad.1 > 0 {
            assert_eq!(prepared.image.get_pixel(0, 0).0, [114, 114, 114]);
        }
        // And maps back to the original pixels.
        let back = lb.inverse_xyxy(lb.forward_xyxy([x1, y1, x2, y2]));
        for k in 0..4 {
            assert!((back[k] - [x1, y1, x2, y2][k]).abs() < 1e-3, "{back:?}");
        }
    }
}

#[test]
fn inverse_clips_to_the_original_image() {
    let lb = Letterbox::new((200, 100), (128, 128));
    assert_eq!(lb.inverse_xyxy([-5.0, 0.0, 200.0, 200.0]), [0.0, 0.0, 200.0, 100.0]);
}
