//! Image resizing as OpenCV's `INTER_LINEAR` does it on 8-bit images (Ultralytics resizes with it): bilinear with
//! half-pixel centres, no anti-aliasing, 11-bit fixed-point weights, and OpenCV's vertical pass, which drops the low
//! 4 bits of each product before summing. Matching it gives ember the same pixels as Ultralytics for the same image,
//! and so the same predictions (checked against `cv2.resize`: tests/it/resize.rs).

use image::RgbImage;

use super::simd;

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
    let stride = sw as usize * 3;
    let line = |y: usize| &src[y * stride..(y + 1) * stride];
    // The horizontally resized source rows the current output row blends, and which rows they are; one spare
    // value for the vectorised pass, which writes 4 values a pixel.
    let width = w as usize * 3;
    let mut rows = [vec![0i32; width + 1], vec![0i32; width + 1]];
    let mut held: [Option<usize>; 2] = [None, None];
    let mut out = vec![0u8; width * h as usize];
    for (&(y0, y1, b0, b1), orow) in yt.iter().zip(out.chunks_exact_mut(width)) {
        // The next output row mostly needs this one's lower row as its upper one.
        if held[0] != Some(y0) && held[1] == Some(y0) {
            rows.swap(0, 1);
            held.swap(0, 1);
        }
        for (k, y) in [y0, y1].into_iter().enumerate() {
            if held[k] != Some(y) {
                horizontal(line(y), &xt, &mut rows[k]);
                held[k] = Some(y);
            }
        }
        let (r0, r1) = (&rows[0][..width], &rows[1][..width]);
        let done = simd::resize_blend(r0, r1, [b0, b1], orow);
        vertical(&r0[done..], &r1[done..], [b0, b1], &mut orow[done..]);
    }
    RgbImage::from_raw(w, h, out).expect("sized buffer")
}

/// The horizontal pass of one source row: each output pixel's two taps, at 2^11 times the pixel scale.
fn horizontal(line: &[u8], xt: &[(usize, usize, i32, i32)], out: &mut [i32]) {
    let done = simd::resize_row(line, xt, out);
    for (k, &(x0, x1, a0, a1)) in xt.iter().enumerate().skip(done) {
        for c in 0..3 {
            out[k * 3 + c] = line[x0 * 3 + c] as i32 * a0 + line[x1 * 3 + c] as i32 * a1;
        }
    }
}

/// OpenCV's vertical pass, which drops the low 4 bits of each product before summing.
fn vertical(r0: &[i32], r1: &[i32], [b0, b1]: [i32; 2], out: &mut [u8]) {
    for ((o, a), b) in out.iter_mut().zip(r0).zip(r1) {
        let v = (((b0 * (a >> 4)) >> 16) + ((b1 * (b >> 4)) >> 16) + 2) >> 2;
        *o = v.clamp(0, 255) as u8;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The resize one value at a time (the vertical pass is the scalar one): the vectorised passes must give its
    /// pixels.
    fn resize_scalar(img: &RgbImage, w: u32, h: u32) -> Vec<u8> {
        let (xt, yt) = (taps(img.width(), w, true), taps(img.height(), h, false));
        let stride = img.width() as usize * 3;
        let row = |y: usize| -> Vec<i32> {
            let line = &img.as_raw()[y * stride..(y + 1) * stride];
            xt.iter()
                .flat_map(|&(x0, x1, a0, a1)| {
                    (0..3).map(move |c| line[x0 * 3 + c] as i32 * a0 + line[x1 * 3 + c] as i32 * a1)
                })
                .collect()
        };
        let mut out = vec![0; xt.len() * 3 * yt.len()];
        for (&(y0, y1, b0, b1), orow) in yt.iter().zip(out.chunks_exact_mut(xt.len() * 3)) {
            vertical(&row(y0), &row(y1), [b0, b1], orow);
        }
        out
    }

    #[test]
    fn vectorised_passes_give_the_scalar_pixels() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        for ((sw, sh), (w, h)) in
            [((640, 480), (320, 240)), ((500, 375), (640, 480)), ((7, 5), (3, 11)), ((97, 61), (160, 101))]
        {
            let img = RgbImage::from_fn(sw, sh, |_, _| image::Rgb([rng.gen(), rng.gen(), rng.gen()]));
            assert!(resize_linear(&img, w, h).as_raw() == &resize_scalar(&img, w, h), "{sw}x{sh} -> {w}x{h}");
        }
    }

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
