//! The pixels of a 4-image mosaic (Ultralytics' layout: four images around a centre on a `2s x 2s` gray
//! canvas), kept as the tiles and where they go. The warp reads it row by row, so the canvas, four times
//! the output's size, is never drawn whole on the default (scale-and-shift) path.

use std::ops::Range;
use std::sync::Arc;

use image::RgbImage;

use super::geometry::{RowSource, Run};

/// Tiles a mosaic holds: Ultralytics' 4-image layout.
pub const MAX_TILES: usize = 4;

/// One image's rectangle on the canvas.
#[derive(Debug, Clone)]
struct Tile {
    image: Arc<RgbImage>,
    /// Top-left corner of the copied part, in the tile.
    from: (usize, usize),
    /// Where that corner lands on the canvas.
    to: (usize, usize),
    /// Width and height of the copied part.
    size: (usize, usize),
}

/// A square mosaic canvas as its tiles; the uncovered area is the gray pad value. Read it as a [`RowSource`],
/// or draw it whole with [`render`](Self::render).
#[derive(Debug, Clone)]
pub struct MosaicTiles {
    side: usize,
    tiles: Vec<Tile>,
}

impl MosaicTiles {
    /// An empty (all gray) `side x side` canvas, in pixels: `2s` for a mosaic at `imgsz` `s`.
    pub fn new(side: u32) -> MosaicTiles {
        MosaicTiles { side: side as usize, tiles: Vec::with_capacity(MAX_TILES) }
    }

    /// Places the `size` (w, h) rectangle of `image` at `from` onto the canvas at `to`; later tiles cover
    /// earlier ones. A mosaic has at most [`MAX_TILES`].
    pub fn place(&mut self, image: Arc<RgbImage>, from: (usize, usize), to: (usize, usize), size: (usize, usize)) {
        assert!(self.tiles.len() < MAX_TILES, "a mosaic has at most {MAX_TILES} tiles");
        if size.0 > 0 && size.1 > 0 {
            self.tiles.push(Tile { image, from, to, size });
        }
    }

    /// The whole canvas, drawn.
    pub fn render(&self) -> RgbImage {
        let mut raw = Vec::with_capacity(self.side * self.side * 3);
        for y in 0..self.side {
            self.draw_row(y, &mut raw);
        }
        RgbImage::from_raw(self.side as u32, self.side as u32, raw).expect("sized canvas")
    }
}

impl RowSource for MosaicTiles {
    fn dimensions(&self) -> (u32, u32) {
        (self.side as u32, self.side as u32)
    }

    fn row_runs<'a>(&'a self, y: usize, cols: Range<usize>, runs: &mut Vec<Run<'a>>) {
        // Where the tile that shows changes: the ends of `cols` and each tile's edges within them.
        let on_row = || self.tiles.iter().filter(|t| (t.to.1..t.to.1 + t.size.1).contains(&y));
        let mut edges = [0usize; 2 + 2 * MAX_TILES];
        let mut n = 0;
        for c in [cols.start, cols.end].into_iter().chain(on_row().flat_map(|t| [t.to.0, t.to.0 + t.size.0])) {
            if cols.contains(&c) || c == cols.end {
                edges[n] = c;
                n += 1;
            }
        }
        let edges = &mut edges[..n];
        edges.sort_unstable();
        for pair in edges.windows(2).filter(|p| p[0] < p[1]) {
            let (a, b) = (pair[0], pair[1]);
            // Later tiles cover earlier ones.
            let pixels = on_row().rfind(|t| t.to.0 <= a && b <= t.to.0 + t.size.0).map(|t| {
                let stride = t.image.width() as usize * 3;
                let start = (t.from.1 + y - t.to.1) * stride + (t.from.0 + a - t.to.0) * 3;
                &t.image.as_raw()[start..start + (b - a) * 3]
            });
            runs.push((b, pixels));
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;
    use crate::data::augment::geometry::{warp_into, Mat3, WarpBuffers};
    use crate::data::letterbox::PAD_VALUE;

    /// Random tiles, overlapping or apart, some reaching the canvas edges, and the canvas they paint, one
    /// pixel at a time, later tiles over earlier ones.
    fn random_mosaic(rng: &mut ChaCha8Rng, side: usize) -> (MosaicTiles, RgbImage) {
        let mut tiles = MosaicTiles::new(side as u32);
        let mut canvas = RgbImage::from_pixel(side as u32, side as u32, image::Rgb([PAD_VALUE; 3]));
        for _ in 0..rng.gen_range(0..=MAX_TILES) {
            let (w, h) = (rng.gen_range(1..side), rng.gen_range(1..side));
            let image = RgbImage::from_fn(w as u32, h as u32, |_, _| image::Rgb(rng.gen()));
            let to = (rng.gen_range(0..side), rng.gen_range(0..side));
            let size = (rng.gen_range(0..=(side - to.0).min(w)), rng.gen_range(0..=(side - to.1).min(h)));
            let from = (rng.gen_range(0..=w - size.0), rng.gen_range(0..=h - size.1));
            for (dy, dx) in (0..size.1).flat_map(|dy| (0..size.0).map(move |dx| (dy, dx))) {
                let px = *image.get_pixel((from.0 + dx) as u32, (from.1 + dy) as u32);
                canvas.put_pixel((to.0 + dx) as u32, (to.1 + dy) as u32, px);
            }
            tiles.place(Arc::new(image), from, to, size);
        }
        (tiles, canvas)
    }

    /// The runs of every row, over column ranges of every kind, give the painted canvas's pixels.
    #[test]
    fn row_runs_give_the_painted_canvas() {
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        for _ in 0..200 {
            let side = rng.gen_range(2..40);
            let (tiles, canvas) = random_mosaic(&mut rng, side);
            assert!(tiles.render() == canvas);
            for y in 0..side {
                let a = rng.gen_range(0..=side);
                let cols = a..rng.gen_range(a..=side);
                let mut runs = Vec::new();
                tiles.row_runs(y, cols.clone(), &mut runs);
                let mut drawn = Vec::new();
                let mut start = cols.start;
                for (end, pixels) in runs {
                    assert!(end > start || cols.is_empty(), "an empty run");
                    match pixels {
                        Some(p) => drawn.extend_from_slice(p),
                        None => drawn.resize(drawn.len() + (end - start) * 3, PAD_VALUE),
                    }
                    start = end;
                }
                assert_eq!(start, cols.end);
                let stride = side * 3;
                assert_eq!(drawn, &canvas.as_raw()[y * stride + cols.start * 3..y * stride + cols.end * 3]);
            }
        }
    }

    /// The warp reads a mosaic's tiles in place and gives the pixels it gives from the drawn canvas.
    #[test]
    fn warping_the_tiles_equals_warping_the_drawn_canvas() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        for _ in 0..100 {
            let side = rng.gen_range(8..80);
            let (tiles, canvas) = random_mosaic(&mut rng, side);
            let s = rng.gen_range(0.3..2.5);
            let shift = side as f64;
            let m: Mat3 =
                [[s, 0.0, rng.gen_range(-shift..shift)], [0.0, s, rng.gen_range(-shift..shift)], [0.0, 0.0, 1.0]];
            let (mut from_tiles, mut from_canvas) = (RgbImage::new(48, 40), RgbImage::new(48, 40));
            warp_into(&tiles, &m, &mut from_tiles, &mut WarpBuffers::default());
            warp_into(&canvas, &m, &mut from_canvas, &mut WarpBuffers::default());
            assert!(from_tiles == from_canvas, "scale {s}");
        }
    }
}
