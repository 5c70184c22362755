//! How Ultralytics 8.4.190's predictor letterboxes an image (`LetterBox` in `BasePredictor.pre_transform`) and maps
//! its boxes back (`ops.scale_boxes`): scaled to fit `imgsz x imgsz` (sides rounded half to even, as Python's
//! `round`), then padded either to the square or, when every image of the batch has the same shape, only to the
//! smallest multiple of the model's stride (`auto`).

use image::RgbImage;

use crate::data::Letterbox;

/// The geometry of one predicted image.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PredictLetterbox {
    /// Original width and height.
    pub original: (u32, u32),
    /// Width and height of the network input.
    pub canvas: (u32, u32),
    /// Width and height of the scaled image inside it.
    pub resized: (u32, u32),
    /// Left and top padding.
    pub pad: (u32, u32),
}

/// Python's `round` of a float: halves to the even neighbour.
fn py_round(x: f64) -> i64 {
    x.round_ties_even() as i64
}

impl PredictLetterbox {
    /// `LetterBox(imgsz, auto=minimal, stride=stride)` for an image of `original` (w, h).
    pub fn new(original: (u32, u32), imgsz: u32, stride: u32, minimal: bool) -> PredictLetterbox {
        let (w0, h0) = (original.0 as f64, original.1 as f64);
        let side = imgsz as f64;
        let r = (side / h0).min(side / w0);
        let resized = (py_round(w0 * r).max(1) as u32, py_round(h0 * r).max(1) as u32);
        let (mut dw, mut dh) = (imgsz.saturating_sub(resized.0), imgsz.saturating_sub(resized.1));
        if minimal {
            (dw, dh) = (dw % stride, dh % stride);
        }
        let (dw, dh) = (dw as f64 / 2.0, dh as f64 / 2.0);
        let (left, right) = (py_round(dw - 0.1), py_round(dw + 0.1));
        let (top, bottom) = (py_round(dh - 0.1), py_round(dh + 0.1));
        let canvas = (resized.0 + (left + right) as u32, resized.1 + (top + bottom) as u32);
        PredictLetterbox { original, canvas, resized, pad: (left as u32, top as u32) }
    }

    /// The network input: the image resized (bilinear, as `cv2.INTER_LINEAR`) onto a gray canvas.
    pub fn apply(&self, image: &RgbImage) -> RgbImage {
        let geometry = Letterbox {
            original: self.original,
            canvas: self.canvas,
            resized: self.resized,
            scale: self.resized.0 as f32 / self.original.0 as f32,
            pad: self.pad,
        };
        geometry.apply(image)
    }

    /// Input-pixel xyxy -> original-image pixel xyxy, clipped to the image (`scale_boxes`, which derives the
    /// scale and padding from the input and original shapes alone).
    pub fn inverse_xyxy(&self, b: [f32; 4]) -> [f32; 4] {
        let (w0, h0) = (self.original.0 as f64, self.original.1 as f64);
        let (cw, ch) = (self.canvas.0 as f64, self.canvas.1 as f64);
        let gain = (ch / h0).min(cw / w0);
        let (new_w, new_h) = (py_round(w0 * gain).max(1) as f64, py_round(h0 * gain).max(1) as f64);
        let (gain_x, gain_y) = ((new_w / w0) as f32, (new_h / h0) as f32);
        let pad_x = py_round((cw - new_w) / 2.0 - 0.1) as f32;
        let pad_y = py_round((ch - new_h) / 2.0 - 0.1) as f32;
        let (w0, h0) = (w0 as f32, h0 as f32);
        [
            ((b[0] - pad_x) / gain_x).clamp(0.0, w0),
            ((b[1] - pad_y) / gain_y).clamp(0.0, h0),
            ((b[2] - pad_x) / gain_x).clamp(0.0, w0),
            ((b[3] - pad_y) / gain_y).clamp(0.0, h0),
        ]
    }
}

/// Whether a batch gets the smallest rectangles: when all its images have one shape (8.4.190's `same_shapes`);
/// otherwise every image goes onto the `imgsz` square, so that the batch stacks.
pub fn same_shapes(sizes: &[(u32, u32)]) -> bool {
    sizes.windows(2).all(|w| w[0] == w[1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smallest_stride_rectangle_or_the_square() {
        // 640x480 at 320: 320x240 scaled, padded to 256 rows (8 above, 8 below).
        let lb = PredictLetterbox::new((640, 480), 320, 32, true);
        assert_eq!((lb.canvas, lb.resized, lb.pad), ((320, 256), (320, 240), (0, 8)));
        let lb = PredictLetterbox::new((640, 480), 320, 32, false);
        assert_eq!((lb.canvas, lb.pad), ((320, 320), (0, 40)));
        // 427 rows at half scale are 213.5, which Python rounds to 214; 106 rows of padding leave 10.
        let lb = PredictLetterbox::new((640, 427), 320, 32, true);
        assert_eq!((lb.canvas, lb.resized, lb.pad), ((320, 224), (320, 214), (0, 5)));
        // A thin image keeps one pixel; an odd padding puts the extra pixel after.
        let lb = PredictLetterbox::new((3000, 1), 320, 32, true);
        assert_eq!((lb.resized, lb.canvas), ((320, 1), (320, 32)));
        let lb = PredictLetterbox::new((101, 100), 64, 32, false);
        assert_eq!((lb.resized, lb.pad, lb.canvas), ((64, 63), (0, 0), (64, 64)));
    }

    #[test]
    fn boxes_map_back_to_the_original_and_are_clipped() {
        let lb = PredictLetterbox::new((640, 480), 320, 32, true);
        assert_eq!(lb.inverse_xyxy([10.0, 8.0, 170.0, 128.0]), [20.0, 0.0, 340.0, 240.0]);
        assert_eq!(lb.inverse_xyxy([-5.0, 0.0, 330.0, 300.0]), [0.0, 0.0, 640.0, 480.0]);
        assert!(same_shapes(&[(640, 480), (640, 480)]) && !same_shapes(&[(640, 480), (480, 640)]));
        assert!(same_shapes(&[]));
    }
}
