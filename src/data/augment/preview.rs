//! `--save-batches`: a training batch as one JPEG grid with its boxes drawn, so a person can check
//! that the augmented boxes still sit on their objects.

use std::path::Path;

use anyhow::{Context, Result};
use image::{Rgb, RgbImage};

use crate::data::Batch;

/// A distinct colour per class.
fn class_colour(class: usize) -> Rgb<u8> {
    const PALETTE: [[u8; 3]; 10] = [
        [255, 56, 56],
        [255, 157, 151],
        [255, 112, 31],
        [255, 178, 29],
        [207, 210, 49],
        [72, 249, 10],
        [26, 147, 52],
        [0, 212, 187],
        [44, 153, 168],
        [0, 194, 255],
    ];
    Rgb(PALETTE[class % PALETTE.len()])
}

/// Draws an xyxy rectangle outline `thickness` pixels wide (clipped to the image).
pub fn draw_box(img: &mut RgbImage, b: [f32; 4], colour: Rgb<u8>, thickness: u32) {
    let (w, h) = (img.width() as i64, img.height() as i64);
    let [x1, y1, x2, y2] = b.map(|v| v.round() as i64);
    let mut put = |x: i64, y: i64| {
        if x >= 0 && y >= 0 && x < w && y < h {
            img.put_pixel(x as u32, y as u32, colour);
        }
    };
    for t in 0..thickness as i64 {
        for x in x1..x2 {
            put(x, y1 + t);
            put(x, y2 - 1 - t);
        }
        for y in y1..y2 {
            put(x1 + t, y);
            put(x2 - 1 - t, y);
        }
    }
}

/// The batch's images in a grid (HWC), boxes drawn in class colours.
pub fn batch_grid(batch: &Batch) -> RgbImage {
    let [n, _, h, w] = batch.shape;
    let cols = (n as f64).sqrt().ceil().max(1.0) as usize;
    let rows = n.div_ceil(cols).max(1);
    let mut grid = RgbImage::from_pixel((cols * w) as u32, (rows * h) as u32, Rgb([255, 255, 255]));
    let plane = h * w;
    for i in 0..n {
        let base = i * 3 * plane;
        let mut tile = RgbImage::new(w as u32, h as u32);
        for (p, px) in tile.pixels_mut().enumerate() {
            *px = Rgb([batch.pixels[base + p], batch.pixels[base + plane + p], batch.pixels[base + 2 * plane + p]]);
        }
        for b in &batch.labels[i] {
            let [cx, cy, bw, bh] = b.xywh;
            let (wf, hf) = (w as f32, h as f32);
            let xyxy = [(cx - bw / 2.0) * wf, (cy - bh / 2.0) * hf, (cx + bw / 2.0) * wf, (cy + bh / 2.0) * hf];
            draw_box(&mut tile, xyxy, class_colour(b.class), 2);
        }
        image::imageops::replace(&mut grid, &tile, ((i % cols) * w) as i64, ((i / cols) * h) as i64);
    }
    grid
}

/// Writes `batch` as a JPEG grid at `path`.
pub fn save_batch_jpeg(batch: &Batch, path: &Path) -> Result<()> {
    batch_grid(batch).save(path).with_context(|| format!("cannot write {}", path.display()))
}
