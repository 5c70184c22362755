//! Image resizing as OpenCV's `INTER_LINEAR` does it (Ultralytics resizes with it): bilinear with
//! half-pixel centres, no anti-aliasing, 11-bit fixed-point weights. Matching it keeps ember's inputs, and
//! so its predictions and metrics, within a grey level of Ultralytics' for the same image.

use image::RgbImage;

const BITS: i32 = 11;
const ONE: i32 = 1 << BITS;

/// Source index and fixed-point weights along one axis.
fn taps(src: u32, dst: u32) -> Vec<(usize, usize, i32, i32)> {
    let scale = src as f64 / dst as f64;
    (0..dst)
        .map(|d| {
            let f = (d as f64 + 0.5) * scale - 0.5;
            let mut s = f.floor() as i64;
            let mut frac = f - s as f64;
            if s < 0 {
                s = 0;
                frac = 0.0;
            }
            if s >= src as i64 - 1 {
                s = src as i64 - 1;
                frac = 0.0;
            }
            let w1 = (frac * ONE as f64).round() as i32;
            let s0 = s as usize;
            let s1 = (s0 + 1).min(src as usize - 1);
            (s0, s1, ONE - w1, w1)
        })
        .collect()
}

/// Resizes an RGB image to `w` x `h`.
pub fn resize_linear(img: &RgbImage, w: u32, h: u32) -> RgbImage {
    let (sw, sh) = img.dimensions();
    if (sw, sh) == (w, h) {
        return img.clone();
    }
    let (xt, yt) = (taps(sw, w), taps(sh, h));
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
            let v = ((*a as i64 * b0 as i64 + *b as i64 * b1 as i64 + (1i64 << (2 * BITS - 1))) >> (2 * BITS)) as i32;
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
