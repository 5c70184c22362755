//! The label half of the transforms (Ultralytics' `Instances`): boxes in pixel xyxy, each with its polygon
//! when the dataset has them. Polygons only change how boxes are made: after a warp a box is the extent of
//! the polygon's visible part (`segment2box`), and the filters keep smaller remnants (`area_thr` 0.01).

use super::geometry::{apply_point, box_candidate, clip_box, warp_box, Mat3};
use crate::data::polygon::{extent_xywh, resample, resample_count, visible_box, Polygon};
use crate::data::Sample;

/// Boxes as (class, pixel xyxy).
pub type Boxes = Vec<(usize, [f32; 4])>;

/// A sample's labels in the pixels of its `w x h` image. Polygons are resampled first
/// (`update_labels_info`), and their boxes come from them, in float32 as Ultralytics computes its label boxes.
pub fn pixel_labels(sample: &Sample, w: u32, h: u32) -> (Boxes, Vec<Polygon>) {
    let (w, h) = (w as f32, h as f32);
    let to_pixels = |[cx, cy, bw, bh]: [f32; 4]| {
        [(cx - bw / 2.0) * w, (cy - bh / 2.0) * h, (cx + bw / 2.0) * w, (cy + bh / 2.0) * h]
    };
    if sample.polygons.is_empty() {
        return (sample.labels.iter().map(|b| (b.class, to_pixels(b.xywh))).collect(), Vec::new());
    }
    let n = resample_count(&sample.polygons);
    let boxes = sample.labels.iter().zip(&sample.polygons).map(|(b, p)| (b.class, to_pixels(extent_xywh(p)))).collect();
    let polygons =
        sample.polygons.iter().map(|p| resample(p, n).into_iter().map(|[x, y]| [x * w, y * h]).collect()).collect();
    (boxes, polygons)
}

/// Mosaic's label step (`_cat_labels`): each tile's labels shifted by its (padw, padh), polygons brought to
/// one point count, everything clipped to the `side` square canvas, zero-area boxes dropped.
pub fn mosaic_labels(tiles: Vec<(Boxes, Vec<Polygon>, (f32, f32))>, side: f32) -> (Boxes, Vec<Polygon>) {
    let (mut boxes, mut polygons) = (Boxes::new(), Vec::new());
    for (tile_boxes, tile_polygons, (padw, padh)) in tiles {
        boxes.extend(tile_boxes.into_iter().map(|(c, b)| (c, [b[0] + padw, b[1] + padh, b[2] + padw, b[3] + padh])));
        polygons.extend(
            tile_polygons.into_iter().map(|p| p.into_iter().map(|[x, y]| [x + padw, y + padh]).collect::<Polygon>()),
        );
    }
    // `Instances.concatenate`: images whose longest polygon exceeded 1000 points have longer polygons.
    let n = polygons.iter().map(Vec::len).max().unwrap_or(0);
    for p in polygons.iter_mut().filter(|p| p.len() != n) {
        *p = resample(p, n);
    }
    let boxes: Boxes = boxes.into_iter().map(|(c, b)| (c, clip_box(b, side, side))).collect();
    let keep: Vec<bool> = boxes.iter().map(|(_, b)| b[2] > b[0] && b[3] > b[1]).collect();
    let polygons = polygons
        .into_iter()
        .zip(&keep)
        .filter(|(_, &k)| k)
        .map(|(p, _)| clip_points(p, [0.0, 0.0, side, side]))
        .collect();
    (boxes.into_iter().zip(&keep).filter(|(_, &k)| k).map(|(b, _)| b).collect(), polygons)
}

/// `RandomPerspective.apply_instances`: labels moved through `m` onto an `side x side` canvas, clipped, and
/// filtered by `box_candidates` against the input box times the drawn `scale`. Box labels: the box of the
/// warped corners, `area_thr` 0.1. Polygon labels: the box of the warped polygon's visible part, the polygon
/// clipped to it, `area_thr` 0.01.
pub fn warp_labels(boxes: Boxes, polygons: Vec<Polygon>, m: &Mat3, scale: f64, side: u32) -> (Boxes, Vec<Polygon>) {
    let side = side as f32;
    let scale = scale as f32;
    if polygons.is_empty() {
        let boxes = boxes
            .into_iter()
            .filter_map(|(c, b)| {
                let after = clip_box(warp_box(m, b), side, side);
                let before = b.map(|v| v * scale);
                box_candidate(before, after, 2.0, 100.0, 0.1).then_some((c, after))
            })
            .collect();
        return (boxes, polygons);
    }
    let (mut kept_boxes, mut kept_polygons) = (Boxes::new(), Vec::new());
    for ((c, b), polygon) in boxes.into_iter().zip(polygons) {
        let warped: Polygon = polygon
            .iter()
            .map(|p| {
                let (x, y) = apply_point(m, p[0] as f64, p[1] as f64);
                [x as f32, y as f32]
            })
            .collect();
        let visible = visible_box(&warped, side, side);
        let after = clip_box(visible, side, side);
        let before = b.map(|v| v * scale);
        if box_candidate(before, after, 2.0, 100.0, 0.01) {
            kept_boxes.push((c, after));
            kept_polygons.push(clip_points(clip_points(warped, visible), [0.0, 0.0, side, side]));
        }
    }
    (kept_boxes, kept_polygons)
}

/// Each point's coordinates clipped to the xyxy `area` (`np.clip`: a degenerate area collapses them).
pub fn clip_points(polygon: Polygon, area: [f32; 4]) -> Polygon {
    polygon.into_iter().map(|[x, y]| [x.max(area[0]).min(area[2]), y.max(area[1]).min(area[3])]).collect()
}

/// Mirrors labels top-bottom on an image of height `h`.
pub fn flip_vertical(boxes: &mut Boxes, polygons: &mut [Polygon], h: f32) {
    boxes.iter_mut().for_each(|(_, b)| *b = [b[0], h - b[3], b[2], h - b[1]]);
    polygons.iter_mut().flatten().for_each(|p| p[1] = h - p[1]);
}

/// Mirrors labels left-right on an image of width `w`.
pub fn flip_horizontal(boxes: &mut Boxes, polygons: &mut [Polygon], w: f32) {
    boxes.iter_mut().for_each(|(_, b)| *b = [w - b[2], b[1], w - b[0], b[3]]);
    polygons.iter_mut().flatten().for_each(|p| p[0] = w - p[0]);
}
