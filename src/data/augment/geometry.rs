//! Geometric transforms that move pixels and boxes together: the random affine/perspective warp,
//! flips, and Ultralytics' box-candidate filter.
//!
//! Coordinates are continuous pixels: pixel `(i, j)` covers `[i, i+1) x [j, j+1)`, so a box
//! `[x1, y1, x2, y2]` around pixels `x1..x2` encloses them exactly. The warp samples each output
//! pixel's centre through the inverse matrix, so boxes and pixels share one geometry.

use std::ops::Range;

use image::RgbImage;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::data::letterbox::PAD_VALUE;
use crate::data::simd;

/// A 3x3 homogeneous matrix, row-major.
pub type Mat3 = [[f64; 3]; 3];

/// The matrix product `a @ b`: applying it is applying `b`, then `a`.
pub fn matmul(a: &Mat3, b: &Mat3) -> Mat3 {
    let mut c = [[0.0; 3]; 3];
    for i in 0..3 {
        for j in 0..3 {
            c[i][j] = (0..3).map(|k| a[i][k] * b[k][j]).sum();
        }
    }
    c
}

/// The inverse of `m`, or `None` when it is singular (|determinant| < 1e-12).
pub fn invert(m: &Mat3) -> Option<Mat3> {
    let det = m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1]) - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
        + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0]);
    if det.abs() < 1e-12 {
        return None;
    }
    let inv = 1.0 / det;
    let mut r = [[0.0; 3]; 3];
    r[0][0] = (m[1][1] * m[2][2] - m[1][2] * m[2][1]) * inv;
    r[0][1] = (m[0][2] * m[2][1] - m[0][1] * m[2][2]) * inv;
    r[0][2] = (m[0][1] * m[1][2] - m[0][2] * m[1][1]) * inv;
    r[1][0] = (m[1][2] * m[2][0] - m[1][0] * m[2][2]) * inv;
    r[1][1] = (m[0][0] * m[2][2] - m[0][2] * m[2][0]) * inv;
    r[1][2] = (m[0][2] * m[1][0] - m[0][0] * m[1][2]) * inv;
    r[2][0] = (m[1][0] * m[2][1] - m[1][1] * m[2][0]) * inv;
    r[2][1] = (m[0][1] * m[2][0] - m[0][0] * m[2][1]) * inv;
    r[2][2] = (m[0][0] * m[1][1] - m[0][1] * m[1][0]) * inv;
    Some(r)
}

/// Maps a point through `m` (with the perspective divide).
pub fn apply_point(m: &Mat3, x: f64, y: f64) -> (f64, f64) {
    let w = m[2][0] * x + m[2][1] * y + m[2][2];
    ((m[0][0] * x + m[0][1] * y + m[0][2]) / w, (m[1][0] * x + m[1][1] * y + m[1][2]) / w)
}

/// The affine/perspective parameters, named and scaled as Ultralytics' hyper-parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AffineParams {
    /// Rotation range, +/- degrees.
    pub degrees: f64,
    /// Translation range, +/- fraction of the output size around its centre.
    pub translate: f64,
    /// Scale gain: the scale is drawn from `[1 - scale, 1 + scale]`.
    pub scale: f64,
    /// Shear range, +/- degrees.
    pub shear: f64,
    /// Perspective range, +/- (0 - 0.001).
    pub perspective: f64,
}

/// Draws the matrix `T @ S @ R @ P @ C` (Ultralytics' order) that centres an image of `input` (w, h),
/// applies perspective, rotation and scale, shear, then moves it to a random point near the centre
/// of an `output` (w, h) canvas. Returns the matrix and the drawn scale.
pub fn random_matrix(p: &AffineParams, input: (u32, u32), output: (u32, u32), rng: &mut ChaCha8Rng) -> (Mat3, f64) {
    let mut uniform = |lo: f64, hi: f64| if hi > lo { rng.gen_range(lo..hi) } else { lo };
    let c: Mat3 = [[1.0, 0.0, -(input.0 as f64) / 2.0], [0.0, 1.0, -(input.1 as f64) / 2.0], [0.0, 0.0, 1.0]];
    let px = uniform(-p.perspective, p.perspective);
    let py = uniform(-p.perspective, p.perspective);
    let persp: Mat3 = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [px, py, 1.0]];
    let angle = uniform(-p.degrees, p.degrees).to_radians();
    let s = uniform(1.0 - p.scale, 1.0 + p.scale);
    // OpenCV's getRotationMatrix2D(angle, centre 0, scale): counter-clockwise in image coordinates.
    let (sin, cos) = (angle.sin() * s, angle.cos() * s);
    let rot: Mat3 = [[cos, sin, 0.0], [-sin, cos, 0.0], [0.0, 0.0, 1.0]];
    let shx = uniform(-p.shear, p.shear).to_radians().tan();
    let shy = uniform(-p.shear, p.shear).to_radians().tan();
    let shear: Mat3 = [[1.0, shx, 0.0], [shy, 1.0, 0.0], [0.0, 0.0, 1.0]];
    let tx = uniform(0.5 - p.translate, 0.5 + p.translate) * output.0 as f64;
    let ty = uniform(0.5 - p.translate, 0.5 + p.translate) * output.1 as f64;
    let t: Mat3 = [[1.0, 0.0, tx], [0.0, 1.0, ty], [0.0, 0.0, 1.0]];
    let m = matmul(&t, &matmul(&shear, &matmul(&rot, &matmul(&persp, &c))));
    (m, s)
}

/// Rows of RGB pixels (3 bytes a pixel) that a warp reads: a decoded image, or a mosaic's tiles.
pub trait RowSource {
    /// Width and height in pixels.
    fn dimensions(&self) -> (u32, u32);

    /// Columns `cols` of row `y` (below the height) as runs, left to right, that cover `cols` exactly: each
    /// run's end column and its pixels, `None` where the row is gray padding. The warp reads the runs in
    /// place, so a mosaic is never copied into rows.
    fn row_runs<'a>(&'a self, y: usize, cols: Range<usize>, runs: &mut Vec<Run<'a>>);

    /// Appends row `y` (below the height), drawn whole, to `buf`.
    fn draw_row(&self, y: usize, buf: &mut Vec<u8>) {
        let mut runs = Vec::new();
        self.row_runs(y, 0..self.dimensions().0 as usize, &mut runs);
        let mut start = 0;
        for (end, pixels) in runs {
            match pixels {
                Some(p) => buf.extend_from_slice(p),
                None => buf.resize(buf.len() + (end - start) * 3, PAD_VALUE),
            }
            start = end;
        }
    }
}

/// A run of a row: its end column (it starts where the previous one ended) and its pixels, `None` for padding.
pub type Run<'a> = (usize, Option<&'a [u8]>);

impl RowSource for RgbImage {
    fn dimensions(&self) -> (u32, u32) {
        RgbImage::dimensions(self)
    }
    fn row_runs<'a>(&'a self, y: usize, cols: Range<usize>, runs: &mut Vec<Run<'a>>) {
        let start = (y * self.width() as usize + cols.start) * 3;
        runs.push((cols.end, Some(&self.as_raw()[start..start + cols.len() * 3])));
    }
}

/// Fixed-point interpolation weights: each axis in 1/2048ths, as OpenCV's resize, so a bilinear sum of u8
/// pixels stays within i32.
const BITS: u32 = 11;
const ONE: i32 = 1 << BITS;
/// How many output rows ahead the separable warp fetches source rows into cache.
const PREFETCH_ROWS: usize = 2;

/// Buffers a warp reuses from image to image.
#[derive(Debug, Default)]
pub struct WarpBuffers {
    pad_row: Vec<u8>,
    blended: Vec<i32>,
    /// Per output column: the blended-row slot of its left tap and the two weights.
    taps: Vec<[i32; 3]>,
    canvas: Vec<u8>,
}

/// Warps `src` into a new `size` canvas through `m` (source -> destination), bilinear, padding gray.
pub fn warp(src: &RgbImage, m: &Mat3, size: (u32, u32)) -> RgbImage {
    let mut out = RgbImage::new(size.0, size.1);
    warp_into(src, m, &mut out, &mut WarpBuffers::default());
    out
}

/// Warps `src` through `m` into all of `out`: each output pixel centre is mapped back through `m`'s inverse
/// and interpolated between the four nearest source pixel centres, with fixed-point weights; what falls
/// outside the source is padding. Scale-and-shift matrices (the default augmentation: no rotation, shear or
/// perspective) take a separable path that blends whole rows; it gives the same pixels as the general one.
pub fn warp_into(src: &impl RowSource, m: &Mat3, out: &mut RgbImage, bufs: &mut WarpBuffers) {
    let Some(inv) = invert(m) else {
        out.fill(PAD_VALUE);
        return;
    };
    let affine = inv[2][0] == 0.0 && inv[2][1] == 0.0;
    if affine && inv[0][1] == 0.0 && inv[1][0] == 0.0 {
        warp_separable(src, &inv, out, bufs);
    } else {
        warp_general(src, &inv, affine, out, bufs);
    }
}

/// Where output coordinate `c` (a pixel centre) falls in the source: the tap left of (or above) it and the
/// fixed-point weight of the tap after it. Source pixel centres sit at integer + 0.5.
fn tap(c: f64) -> (i64, i32) {
    let c = c - 0.5;
    let c0 = c.floor();
    (c0 as i64, ((c - c0) * ONE as f64).round() as i32)
}

/// Rounds a sum weighted by two axes of fixed-point weights back to a u8.
fn narrow(v: i32) -> u8 {
    ((v + (1 << (2 * BITS - 1))) >> (2 * BITS)) as u8
}

fn warp_separable(src: &impl RowSource, inv: &Mat3, out: &mut RgbImage, bufs: &mut WarpBuffers) {
    let (sw, sh) = src.dimensions();
    let (sw, sh) = (sw as i64, sh as i64);
    let ow = out.width() as usize;
    let pad = PAD_VALUE as i32 * ONE;
    // Blended rows hold the source row with one pad pixel on each side: slot k is source column k - 1.
    let slots = sw as usize + 2;
    bufs.taps.clear();
    let (mut lo, mut hi) = (slots, 0);
    for x in 0..ow {
        // inv[0][1] is zero: the general path's `+ inv[0][1] * yc` adds nothing.
        let u = inv[0][0] * (x as f64 + 0.5) + inv[0][2];
        let (x0, w1) = tap(u);
        if !(u - 0.5 > -1.0 && u - 0.5 < sw as f64) {
            bufs.taps.push([0, ONE, 0]); // entirely outside: the pad slot alone
            continue;
        }
        let slot = (x0 + 1) as usize;
        lo = lo.min(slot);
        hi = hi.max(slot + 1);
        bufs.taps.push([slot as i32, ONE - w1, w1]);
    }
    bufs.blended.clear();
    // One spare value: the vectorised horizontal pass reads 4 values where a tap has 3.
    bufs.blended.resize(slots * 3 + 1, pad);
    bufs.pad_row.clear();
    bufs.pad_row.resize(sw as usize * 3, PAD_VALUE);
    // Source columns the taps read (slots 1..=sw), as a range.
    let (c_lo, c_hi) = if lo <= hi { (lo.max(1) - 1, hi.min(sw as usize)) } else { (0, 0) };
    let stride = ow * 3;
    let oraw: &mut [u8] = out;
    let (mut runs0, mut runs1, mut ahead) = (Vec::with_capacity(8), Vec::with_capacity(8), Vec::with_capacity(8));
    let source_row = |y: usize| tap(inv[1][1] * (y as f64 + 0.5) + inv[1][2]).0;
    for (y, orow) in oraw.chunks_exact_mut(stride).enumerate() {
        // The source rows a few output rows on, fetched into cache while this row is computed: reading the
        // tiles from memory is what the vertical pass waits on.
        let next = source_row(y + PREFETCH_ROWS);
        for y in [next, next + 1].into_iter().filter(|y| (0..sh).contains(y)) {
            ahead.clear();
            src.row_runs(y as usize, c_lo..c_hi, &mut ahead);
            ahead.iter().filter_map(|&(_, p)| p).for_each(simd::prefetch);
        }
        let v = inv[1][1] * (y as f64 + 0.5) + inv[1][2];
        if !(v - 0.5 > -1.0 && v - 0.5 < sh as f64) {
            orow.fill(PAD_VALUE);
            continue;
        }
        let (y0, w1) = tap(v);
        let w = [ONE - w1, w1];
        for (runs, y) in [(&mut runs0, y0), (&mut runs1, y0 + 1)] {
            runs.clear();
            match (0..sh).contains(&y) {
                true => src.row_runs(y as usize, c_lo..c_hi, runs),
                false => runs.push((c_hi, None)),
            }
        }
        blend_runs(&runs0, &runs1, c_lo, w, &bufs.pad_row, &mut bufs.blended[3..]);
        let done = simd::warp_taps(simd::widest(), &bufs.blended, &bufs.taps, 2 * BITS, orow);
        apply_taps(&bufs.blended, &bufs.taps[done..], &mut orow[done * 3..]);
    }
}

/// The vertical pass over two rows given as runs from column `start`: piece by piece where both rows keep
/// to one run, padding against padding as the padding itself. `blended` starts at column 0.
fn blend_runs<'a>(
    runs0: &[Run<'a>],
    runs1: &[Run<'a>],
    start: usize,
    w: [i32; 2],
    pad_row: &'a [u8],
    blended: &mut [i32],
) {
    let (mut r0, mut r1) = (runs0.iter().peekable(), runs1.iter().peekable());
    let (mut from0, mut from1, mut c) = (start, start, start);
    while let (Some(&&(end0, p0)), Some(&&(end1, p1))) = (r0.peek(), r1.peek()) {
        let end = end0.min(end1);
        let out = &mut blended[c * 3..end * 3];
        let piece = |run_start: usize, pixels: Option<&'a [u8]>| -> &'a [u8] {
            match pixels {
                Some(p) => &p[(c - run_start) * 3..(end - run_start) * 3],
                None => &pad_row[..(end - c) * 3],
            }
        };
        if p0.is_none() && p1.is_none() {
            out.fill(PAD_VALUE as i32 * ONE);
        } else {
            let (a, b) = (piece(from0, p0), piece(from1, p1));
            let done = simd::warp_blend_rows(a, b, w, out);
            blend_rows(&a[done..], &b[done..], w, &mut out[done..]);
        }
        c = end;
        if end0 == end {
            r0.next();
            from0 = end;
        }
        if end1 == end {
            r1.next();
            from1 = end;
        }
    }
}

/// The vertical pass: two source rows weighted into one, at 2^11 times the pixel scale.
fn blend_rows(r0: &[u8], r1: &[u8], [w0, w1]: [i32; 2], out: &mut [i32]) {
    for ((b, &p0), &p1) in out.iter_mut().zip(r0).zip(r1) {
        *b = p0 as i32 * w0 + p1 as i32 * w1;
    }
}

/// The horizontal pass: each output pixel from its two taps of the blended row (slot `k` is source column
/// `k - 1`, so the pad pixel is slot 0), rounded back to u8.
fn apply_taps(blended: &[i32], taps: &[[i32; 3]], orow: &mut [u8]) {
    for (px, &[slot, a, b]) in orow.chunks_exact_mut(3).zip(taps) {
        let i = slot as usize * 3;
        let (left, right) = (&blended[i..i + 3], &blended[i + 3..i + 6]);
        for c in 0..3 {
            px[c] = narrow(left[c] * a + right[c] * b);
        }
    }
}

fn warp_general(src: &impl RowSource, inv: &Mat3, affine: bool, out: &mut RgbImage, bufs: &mut WarpBuffers) {
    let (sw, sh) = src.dimensions();
    let stride = sw as usize * 3;
    // The general path reads anywhere in the source: draw it whole once.
    bufs.canvas.clear();
    for y in 0..sh as usize {
        src.draw_row(y, &mut bufs.canvas);
    }
    let sraw = &bufs.canvas;
    let (sw, sh) = (sw as i64, sh as i64);
    let fetch = |x: i64, y: i64, c: usize| -> i32 {
        if x < 0 || y < 0 || x >= sw || y >= sh {
            PAD_VALUE as i32
        } else {
            sraw[y as usize * stride + x as usize * 3 + c] as i32
        }
    };
    let ow = out.width() as usize;
    let oraw: &mut [u8] = out;
    for (y, row) in oraw.chunks_exact_mut(ow * 3).enumerate() {
        let yc = y as f64 + 0.5;
        for (x, px) in row.chunks_exact_mut(3).enumerate() {
            let xc = x as f64 + 0.5;
            let (u, v) = if affine {
                (inv[0][0] * xc + inv[0][1] * yc + inv[0][2], inv[1][0] * xc + inv[1][1] * yc + inv[1][2])
            } else {
                apply_point(inv, xc, yc)
            };
            if !(u - 0.5 > -1.0 && v - 0.5 > -1.0 && u - 0.5 < sw as f64 && v - 0.5 < sh as f64) {
                px.fill(PAD_VALUE); // entirely outside
                continue;
            }
            let ((x0, wx), (y0, wy)) = (tap(u), tap(v));
            let w = [(ONE - wx) * (ONE - wy), wx * (ONE - wy), (ONE - wx) * wy, wx * wy];
            for (c, out) in px.iter_mut().enumerate() {
                let v = fetch(x0, y0, c) * w[0]
                    + fetch(x0 + 1, y0, c) * w[1]
                    + fetch(x0, y0 + 1, c) * w[2]
                    + fetch(x0 + 1, y0 + 1, c) * w[3];
                *out = narrow(v);
            }
        }
    }
}

/// Maps an xyxy box through `m`: the extent of its four transformed corners.
pub fn warp_box(m: &Mat3, b: [f32; 4]) -> [f32; 4] {
    let corners = [(b[0], b[1]), (b[2], b[3]), (b[0], b[3]), (b[2], b[1])];
    let mut out = [f32::MAX, f32::MAX, f32::MIN, f32::MIN];
    for (x, y) in corners {
        let (u, v) = apply_point(m, x as f64, y as f64);
        out = [out[0].min(u as f32), out[1].min(v as f32), out[2].max(u as f32), out[3].max(v as f32)];
    }
    out
}

/// Clamps an xyxy pixel box into the `w x h` image (a box wholly outside collapses to zero width or height).
pub fn clip_box(b: [f32; 4], w: f32, h: f32) -> [f32; 4] {
    [b[0].clamp(0.0, w), b[1].clamp(0.0, h), b[2].clamp(0.0, w), b[3].clamp(0.0, h)]
}

/// Ultralytics' filter after a warp: keep a box when it is wider and taller than `wh_thr` pixels,
/// keeps more than `area_thr` of its (scaled) area and is not a sliver beyond aspect ratio `ar_thr`.
pub fn box_candidate(before: [f32; 4], after: [f32; 4], wh_thr: f32, ar_thr: f32, area_thr: f32) -> bool {
    let eps = 1e-16f32;
    let (w1, h1) = (before[2] - before[0], before[3] - before[1]);
    let (w2, h2) = (after[2] - after[0], after[3] - after[1]);
    let ar = (w2 / (h2 + eps)).max(h2 / (w2 + eps));
    w2 > wh_thr && h2 > wh_thr && w2 * h2 / (w1 * h1 + eps) > area_thr && ar < ar_thr
}

/// Mirrors the image left-right in place.
pub fn flip_horizontal(img: &mut RgbImage) {
    let w = img.width() as usize;
    for row in img.chunks_exact_mut(w * 3) {
        let done = simd::flip_row_ends(row);
        let (pixels, _) = row[done * 3..(w - done) * 3].as_chunks_mut::<3>();
        pixels.reverse();
    }
}

/// Mirrors the image top-bottom in place.
pub fn flip_vertical(img: &mut RgbImage) {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let stride = w * 3;
    let raw: &mut [u8] = img;
    for y in 0..h / 2 {
        let (top, bottom) = raw.split_at_mut((h - 1 - y) * stride);
        top[y * stride..(y + 1) * stride].swap_with_slice(&mut bottom[..stride]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::simd::SimdLevel;
    use rand::SeedableRng;

    /// Both passes of the separable warp through the dispatch (vectorised where the CPU allows) against their
    /// scalar definitions, at widths that leave remainders.
    #[test]
    fn vectorised_passes_equal_the_definitions() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        for width in [1usize, 5, 6, 7, 40, 333, 640] {
            let src = width + 2;
            let r0: Vec<u8> = (0..src * 3).map(|_| rng.gen()).collect();
            let r1: Vec<u8> = (0..src * 3).map(|_| rng.gen()).collect();
            let w = rng.gen_range(0..=ONE);
            let mut fast = vec![0; src * 3 + 1];
            let done = simd::warp_blend_rows(&r0, &r1, [ONE - w, w], &mut fast[..src * 3]);
            blend_rows(&r0[done..], &r1[done..], [ONE - w, w], &mut fast[done..src * 3]);
            let mut scalar = vec![0; src * 3 + 1];
            blend_rows(&r0, &r1, [ONE - w, w], &mut scalar[..src * 3]);
            assert_eq!(fast, scalar, "vertical, width {width}");
            let taps: Vec<[i32; 3]> = (0..width)
                .map(|_| {
                    let b = rng.gen_range(0..=ONE);
                    [rng.gen_range(0..=src as i32 - 2), ONE - b, b]
                })
                .collect();
            let mut scalar_row = vec![0u8; width * 3];
            apply_taps(&scalar, &taps, &mut scalar_row);
            for level in [SimdLevel::Avx2, SimdLevel::Avx512].into_iter().filter(|&l| l <= simd::widest()) {
                let mut fast_row = vec![0u8; width * 3];
                let done = simd::warp_taps(level, &scalar, &taps, 2 * BITS, &mut fast_row);
                apply_taps(&scalar, &taps[done..], &mut fast_row[done * 3..]);
                assert_eq!(fast_row, scalar_row, "horizontal, {level:?}, width {width}");
            }
        }
    }

    /// The flip (vectorised where the CPU allows) puts every pixel where reversing the row puts it, at widths
    /// around the vectorised blocks.
    #[test]
    fn flip_reverses_every_row() {
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        for w in [1u32, 15, 16, 31, 32, 33, 47, 63, 64, 65, 100, 640] {
            let img = RgbImage::from_fn(w, 3, |_, _| image::Rgb([rng.gen(), rng.gen(), rng.gen()]));
            let mut flipped = img.clone();
            flip_horizontal(&mut flipped);
            for (x, y, px) in img.enumerate_pixels() {
                assert_eq!(flipped.get_pixel(w - 1 - x, y), px, "width {w}, pixel ({x}, {y})");
            }
        }
    }

    /// Scale-and-shift matrices take the separable path; the general one must give the same pixels.
    #[test]
    fn separable_path_equals_the_general_one() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let src = RgbImage::from_fn(97, 61, |_, _| image::Rgb([rng.gen(), rng.gen(), rng.gen()]));
        for _ in 0..20 {
            let s = rng.gen_range(0.3..2.5);
            let (tx, ty) = (rng.gen_range(-60.0..120.0), rng.gen_range(-60.0..120.0));
            let m: Mat3 = [[s, 0.0, tx], [0.0, s, ty], [0.0, 0.0, 1.0]];
            let inv = invert(&m).unwrap();
            let (mut separable, mut general) = (RgbImage::new(128, 96), RgbImage::new(128, 96));
            warp_separable(&src, &inv, &mut separable, &mut WarpBuffers::default());
            warp_general(&src, &inv, true, &mut general, &mut WarpBuffers::default());
            assert!(separable == general, "scale {s}, shift ({tx}, {ty})");
        }
    }
}
