//! Letterboxing: scale an image to fit a square canvas, keeping its aspect ratio, and pad with gray.

use image::RgbImage;

/// Ultralytics' padding gray.
pub const PAD_VALUE: u8 = 114;

/// The geometry of one letterbox: original size, scale and padding.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Letterbox {
    /// Original image width and height in pixels.
    pub original: (u32, u32),
    /// Canvas width and height.
    pub canvas: (u32, u32),
    /// Size of the scaled image inside the canvas.
    pub resized: (u32, u32),
    /// Scale factor applied to the original.
    pub scale: f32,
    /// Left and top padding in pixels.
    pub pad: (u32, u32),
}

impl Letterbox {
    /// The geometry for fitting `original` (w, h) into a `canvas` (w, h), centred.
    pub fn new(original: (u32, u32), canvas: (u32, u32)) -> Letterbox {
        let (w0, h0) = (original.0 as f64, original.1 as f64);
        let scale = (canvas.0 as f64 / w0).min(canvas.1 as f64 / h0);
        // Ultralytics sizes the resized image with ceil (in double precision), capped by the canvas.
        let resized =
            (((w0 * scale).ceil() as u32).clamp(1, canvas.0), ((h0 * scale).ceil() as u32).clamp(1, canvas.1));
        let scale = scale as f32;
        let (dw, dh) = ((canvas.0 - resized.0) as f32 / 2.0, (canvas.1 - resized.1) as f32 / 2.0);
        // The same rounding as Ultralytics: an odd remainder puts the extra pixel on the right/bottom.
        let pad = ((dw - 0.1).round().max(0.0) as u32, (dh - 0.1).round().max(0.0) as u32);
        Letterbox { original, canvas, resized, scale, pad }
    }

    /// Normalised (to the original image) centre-form box -> canvas pixels xyxy.
    pub fn forward_xywhn(&self, xywh: [f32; 4]) -> [f32; 4] {
        let (w0, h0) = (self.original.0 as f32, self.original.1 as f32);
        let [cx, cy, w, h] = xywh;
        self.forward_xyxy([(cx - w / 2.0) * w0, (cy - h / 2.0) * h0, (cx + w / 2.0) * w0, (cy + h / 2.0) * h0])
    }

    /// Original-image pixel xyxy -> canvas pixel xyxy.
    pub fn forward_xyxy(&self, b: [f32; 4]) -> [f32; 4] {
        let (sx, sy) = self.axis_scales();
        let (px, py) = (self.pad.0 as f32, self.pad.1 as f32);
        [b[0] * sx + px, b[1] * sy + py, b[2] * sx + px, b[3] * sy + py]
    }

    /// Canvas pixel xyxy -> original-image pixel xyxy, clipped to the image.
    pub fn inverse_xyxy(&self, b: [f32; 4]) -> [f32; 4] {
        let (sx, sy) = self.axis_scales();
        let (px, py) = (self.pad.0 as f32, self.pad.1 as f32);
        let (w0, h0) = (self.original.0 as f32, self.original.1 as f32);
        [
            ((b[0] - px) / sx).clamp(0.0, w0),
            ((b[1] - py) / sy).clamp(0.0, h0),
            ((b[2] - px) / sx).clamp(0.0, w0),
            ((b[3] - py) / sy).clamp(0.0, h0),
        ]
    }

    /// Exact per-axis scales (the resized size is rounded to whole pixels).
    fn axis_scales(&self) -> (f32, f32) {
        (self.resized.0 as f32 / self.original.0 as f32, self.resized.1 as f32 / self.original.1 as f32)
    }

    /// Draws `image` into a new canvas with this geometry.
    pub fn apply(&self, image: &RgbImage) -> RgbImage {
        debug_assert_eq!(image.dimensions(), self.original);
        let resized = if image.dimensions() == self.resized {
            image.clone()
        } else {
            crate::data::resize::resize_linear(image, self.resized.0, self.resized.1)
        };
        let mut canvas = RgbImage::from_pixel(self.canvas.0, self.canvas.1, image::Rgb([PAD_VALUE; 3]));
        image::imageops::replace(&mut canvas, &resized, self.pad.0 as i64, self.pad.1 as i64);
        canvas
    }
}
