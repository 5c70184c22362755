//! The pixels of a 4-image mosaic (Ultralytics' layout: four images around a centre on a `2s x 2s` gray
//! canvas), kept as the tiles and where they go. The warp reads it row by row, so the canvas, four times
//! the output's size, is never drawn whole on the default (scale-and-shift) path.

use std::sync::Arc;

use image::RgbImage;

use super::geometry::RowSource;
use crate::data::letterbox::PAD_VALUE;

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
        MosaicTiles { side: side as usize, tiles: Vec::with_capacity(4) }
    }

    /// Places the `size` (w, h) rectangle of `image` at `from` onto the canvas at `to`; later tiles cover
    /// earlier ones.
    pub fn place(&mut self, image: Arc<RgbImage>, from: (usize, usize), to: (usize, usize), size: (usize, usize)) {
        if size.0 > 0 && size.1 > 0 {
            self.tiles.push(Tile { image, from, to, size });
        }
    }

    /// The whole canvas, drawn.
    pub fn render(&self) -> RgbImage {
        let mut raw = Vec::with_capacity(self.side * self.side * 3);
        let mut row = Vec::new();
        for y in 0..self.side {
            self.draw_row(y, &mut row);
            raw.extend_from_slice(&row);
        }
        RgbImage::from_raw(self.side as u32, self.side as u32, raw).expect("sized canvas")
    }
}

impl RowSource for MosaicTiles {
    fn dimensions(&self) -> (u32, u32) {
        (self.side as u32, self.side as u32)
    }

    fn draw_row(&self, y: usize, buf: &mut Vec<u8>) {
        buf.clear();
        buf.resize(self.side * 3, PAD_VALUE);
        for t in self.tiles.iter().filter(|t| (t.to.1..t.to.1 + t.size.1).contains(&y)) {
            let stride = t.image.width() as usize * 3;
            let start = (t.from.1 + y - t.to.1) * stride + t.from.0 * 3;
            buf[t.to.0 * 3..(t.to.0 + t.size.0) * 3].copy_from_slice(&t.image.as_raw()[start..start + t.size.0 * 3]);
        }
    }
}
