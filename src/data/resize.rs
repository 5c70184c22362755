//! Image resizing as OpenCV's `INTER_LINEAR` does it on 8-bit images (Ultralytics resizes with it): bilinear with
//! half-pixel centres, no anti-aliasing, 11-bit fixed-point weights, and OpenCV's vertical pass, which drops the low
//! 4 bits of each product before summing. Matching it gives ember the same pixels as Ultralytics for the same image,
//! and so the same predictions (checked against `cv2.resize`: tests/it/resize.rs).

use image::RgbImage;

const BITS: i32 = 11;
const ONE: i32 = 1 << BITS;

/// Source indices and fixed-point weights along one axis, as OpenCV computes them: the source coordinate in f32, each
/// weight rounded on its own (their sum may be off 2048 by one). Horizontally (`clamp`) a tap past an edge takes the
/// edge pixel at full weight; vertically OpenCV keeps the fraction and only clips the rows.
fn taps(src: u32, dst: u32, clamp: bool) -> Vec<(usize, usize, i32, i32)> {
    let scale = 1.0 / (dst as f64 / src as f64);
    let last = src as i64 - 1;
    (0..dst)
        .map(|d| {
            let f = ((d as f64 + 0.5) * scale - 0.5) as f32;
            let mut s = f.floor() as i64;
            let mut frac = f - s as f32;
            if clamp && s < 0 {
                (s, frac) = (0, 0.0);
            }
            if clamp && s >= last {
                (s, frac) = (last, 0.0);
            }
            let w0 = ((1.0 - frac) * ONE as f32).round_ties_even() as i32;
            let w1 = (frac * ONE as f32).round_ties_even() as i32;
            (s.clamp(0, last) as usize, (s + 1).clamp(0, last) as usize, w0, w1)
        })
        .collect()
}

/// Resizes an RGB image to `w` x `h`.
pub fn resize_linear(img: &RgbImage, w: u32, h: u32) -> RgbImage {
    let (sw, sh) = img.dimensions();
    if (sw, sh) == (w, h) {
        return img.clone();
    }
    let (xt, yt) = (taps(sw, w, true), taps(sh, h, false));
    let src = img.as_raw();
    let row = |y: usize| -> Vec<i32> {
        let line = &src[y * sw as usize * 3..(y + 1) * sw as usize * 3];
        let mut out = Vec::with_capacity(w as usize * 3);
        for &(x0, x1, a0, a1) in &xt {
            for c in 0..3 {
                out.push(line[x0 * 3 + c] as i32 * a0 + line[x1 * 3 + c] as i32 * a1);
            }
        }
        out
    };
    let mut out = Vec::with_capacity((w * h * 3) as usize);
    let mut cache: Option<(usize, Vec<i32>, usize, Vec<i32>)> = None;
    for &(y0, y1, b0, b1) in &yt {
        let (r0, r1) = match cache.take() {
            Some((c0, v0, c1, v1)) if c0 == y0 && c1 == y1 => (v0, v1),
            Some((_, _, c1, v1)) if c1 == y0 => (v1, row(y1)),
            _ => (row(y0), row(y1)),
        };
        for (a, b) in r0.iter().zip(&r1) {
            let v = (((b0 * (a >> 4)) >> 16) + ((b1 * (b >> 4)) >> 16) + 2) >> 2;
            out.push(v.clamp(0, 255) as u8);
        }
        cache = Some((y0, r0, y1, r1));
    }
    RgbImage::from_raw(w, h, out).expect("sized buffer")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn halving_averages_pixel_pairs_and_identity_is_a_copy() {
        // 4x1 -> 2x1: half-pixel centres fall between source pixels 0,1 and 2,3.
        let img = RgbImage::from_raw(4, 1, vec![0, 0, 0, 100, 100, 100, 200, 200, 200, 250, 250, 250]).unwrap();
        let half = resize_linear(&img, 2, 1);
        assert_eq!(half.as_raw(), &vec![50, 50, 50, 225, 225, 225]);
        assert_eq!(resize_linear(&img, 4, 1), img);
        // Upscaling keeps the edges (clamped taps).
        let up = resize_linear(&RgbImage::from_raw(2, 1, vec![10, 10, 10, 30, 30, 30]).unwrap(), 4, 1);
        assert_eq!(up.as_raw(), &vec![10, 10, 10, 15, 15, 15, 25, 25, 25, 30, 30, 30]);
    }
}
