//! Drawing detections on images: box outlines in per-class colours and filled labels with the class name and
//! score, rendered with a font compiled into the binary (a Latin-1 subset of DejaVu Sans; see
//! `assets/fonts/LICENSE-DejaVu.txt`), so no system font is needed.

use ab_glyph::{point, Font, FontRef, PxScale, ScaleFont};
use image::{Rgb, RgbImage};

use crate::postprocess::Detection;

pub(crate) static FONT_BYTES: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans-Latin1.ttf");

/// Ultralytics' 20-colour palette, by class id modulo 20.
const PALETTE: [u32; 20] = [
    0xFF3838, 0xFF9D97, 0xFF701F, 0xFFB21D, 0xCFD231, 0x48F90A, 0x92CC17, 0x3DDB86, 0x1A9334, 0x00D4BB, 0x2C99A8,
    0x00C2FF, 0x344593, 0x6473FF, 0x0018EC, 0x8438FF, 0x520085, 0xCB38FF, 0xFF95C8, 0xFF37C7,
];

/// The colour of a class's boxes and label backgrounds: Ultralytics' palette entry `class % 20`.
pub fn class_colour(class: usize) -> Rgb<u8> {
    let c = PALETTE[class % PALETTE.len()];
    Rgb([(c >> 16) as u8, (c >> 8) as u8, c as u8])
}

/// Default line width for an image: Ultralytics' `max(round((w + h) / 2 * 0.003), 2)`.
pub fn default_line_width(width: u32, height: u32) -> u32 {
    (((width + height) as f64 / 2.0 * 0.003).round() as u32).max(2)
}

/// What to draw and how.
#[derive(Debug, Clone)]
pub struct DrawStyle {
    /// Box outline thickness in pixels (Ultralytics line_width); None: [`default_line_width`] of the image.
    pub line_width: Option<u32>,
    /// Put the class name in each label (Ultralytics show_labels).
    pub show_labels: bool,
    /// Put the score, two decimals, in each label (Ultralytics show_conf); with `show_labels` off too, no label.
    pub show_conf: bool,
}

impl Default for DrawStyle {
    fn default() -> Self {
        DrawStyle { line_width: None, show_labels: true, show_conf: true }
    }
}

fn font() -> FontRef<'static> {
    FontRef::try_from_slice(FONT_BYTES).expect("the embedded font parses")
}

fn fill_rect(img: &mut RgbImage, x1: i64, y1: i64, x2: i64, y2: i64, colour: Rgb<u8>) {
    let (w, h) = (img.width() as i64, img.height() as i64);
    for y in y1.max(0)..y2.min(h) {
        for x in x1.max(0)..x2.min(w) {
            img.put_pixel(x as u32, y as u32, colour);
        }
    }
}

/// A rectangle outline of thickness `lw` drawn inside `[x1, y1, x2, y2]` (clipped to the image).
pub fn draw_box(img: &mut RgbImage, xyxy: [f32; 4], colour: Rgb<u8>, lw: u32) {
    let [x1, y1, x2, y2] = xyxy.map(|v| v.round() as i64);
    let lw = lw.max(1) as i64;
    fill_rect(img, x1, y1, x2, y1 + lw, colour);
    fill_rect(img, x1, y2 - lw, x2, y2, colour);
    fill_rect(img, x1, y1, x1 + lw, y2, colour);
    fill_rect(img, x2 - lw, y1, x2, y2, colour);
}

/// Width and height in pixels of `text` at `px`.
pub fn text_size(text: &str, px: f32) -> (u32, u32) {
    let font = font();
    let scaled = font.as_scaled(PxScale::from(px));
    let mut width = 0.0f32;
    let mut prev = None;
    for ch in text.chars() {
        let id = scaled.glyph_id(ch);
        if let Some(p) = prev {
            width += scaled.kern(p, id);
        }
        width += scaled.h_advance(id);
        prev = Some(id);
    }
    (width.ceil() as u32, (scaled.ascent() - scaled.descent()).ceil() as u32)
}

/// Render `text` with its top-left corner at `(x, y)`, blending `colour` by glyph coverage.
pub fn draw_text(img: &mut RgbImage, text: &str, x: f32, y: f32, px: f32, colour: Rgb<u8>) {
    let font = font();
    let scaled = font.as_scaled(PxScale::from(px));
    let baseline = y + scaled.ascent();
    let mut caret = x;
    let mut prev = None;
    let (w, h) = (img.width() as i32, img.height() as i32);
    for ch in text.chars() {
        let id = scaled.glyph_id(ch);
        if let Some(p) = prev {
            caret += scaled.kern(p, id);
        }
        let glyph = id.with_scale_and_position(PxScale::from(px), point(caret, baseline));
        caret += scaled.h_advance(id);
        prev = Some(id);
        if let Some(outlined) = font.outline_glyph(glyph) {
            let bounds = outlined.px_bounds();
            outlined.draw(|gx, gy, cov| {
                let (px_x, px_y) = (bounds.min.x as i32 + gx as i32, bounds.min.y as i32 + gy as i32);
                if px_x < 0 || px_y < 0 || px_x >= w || px_y >= h || cov <= 0.0 {
                    return;
                }
                let dst = img.get_pixel_mut(px_x as u32, px_y as u32);
                let a = cov.min(1.0);
                for c in 0..3 {
                    dst.0[c] = (dst.0[c] as f32 * (1.0 - a) + colour.0[c] as f32 * a).round() as u8;
                }
            });
        }
    }
}

/// Draw every detection: outline, then a filled label box above it (inside when it would leave the image).
pub fn annotate(img: &mut RgbImage, detections: &[Detection], names: &[String], style: &DrawStyle) {
    let (w, h) = img.dimensions();
    let lw = style.line_width.unwrap_or_else(|| default_line_width(w, h)).max(1);
    let px = (((w + h) as f32 / 2.0 * 0.035).round()).max(12.0);
    for d in detections {
        let colour = class_colour(d.class);
        draw_box(img, d.xyxy, colour, lw);
        if !style.show_labels && !style.show_conf {
            continue;
        }
        let name = names.get(d.class).cloned().unwrap_or_else(|| d.class.to_string());
        let label = match (style.show_labels, style.show_conf) {
            (true, true) => format!("{name} {:.2}", d.score),
            (true, false) => name,
            _ => format!("{:.2}", d.score),
        };
        let (tw, th) = text_size(&label, px);
        let (pad_x, pad_y) = (lw as f32, (lw as f32 / 2.0).max(1.0));
        let (bw, bh) = (tw as f32 + 2.0 * pad_x, th as f32 + 2.0 * pad_y);
        let x1 = d.xyxy[0].max(0.0).min((w as f32 - bw).max(0.0));
        let above = d.xyxy[1] - bh >= 0.0;
        let y1 = if above { d.xyxy[1] - bh } else { d.xyxy[1].max(0.0) };
        fill_rect(
            img,
            x1.round() as i64,
            y1.round() as i64,
            (x1 + bw).round() as i64,
            (y1 + bh).round() as i64,
            colour,
        );
        let luma = 0.299 * colour.0[0] as f32 + 0.587 * colour.0[1] as f32 + 0.114 * colour.0[2] as f32;
        let text_colour = if luma > 150.0 { Rgb([0, 0, 0]) } else { Rgb([255, 255, 255]) };
        draw_text(img, &label, x1 + pad_x, y1 + pad_y, px, text_colour);
    }
}
