//! Geometric transforms that move pixels and boxes together: the random affine/perspective warp,
//! flips, and Ultralytics' box-candidate filter.
//!
//! Coordinates are continuous pixels: pixel `(i, j)` covers `[i, i+1) x [j, j+1)`, so a box
//! `[x1, y1, x2, y2]` around pixels `x1..x2` encloses them exactly. The warp samples each output
//! pixel's centre through the inverse matrix, so boxes and pixels share one geometry.

use image::RgbImage;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::data::letterbox::PAD_VALUE;

/// A 3x3 homogeneous matrix, row-major.
pub type Mat3 = [[f64; 3]; 3];

pub const IDENTITY: Mat3 = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];

pub fn matmul(a: &Mat3, b: &Mat3) -> Mat3 {
    let mut c = [[0.0; 3]; 3];
    for i in 0..3 {
        for j in 0..3 {
            c[i][j] = (0..3).map(|k| a[i][k] * b[k][j]).sum();
        }
    }
    c
}

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

/// Warps `src` into a new `size` canvas through `m` (source -> destination), bilinear, padding gray.
pub fn warp(src: &RgbImage, m: &Mat3, size: (u32, u32)) -> RgbImage {
    let (ow, oh) = size;
    let mut out = RgbImage::from_pixel(ow, oh, image::Rgb([PAD_VALUE; 3]));
    let Some(inv) = invert(m) else { return out };
    let (sw, sh) = (src.width() as i64, src.height() as i64);
    let sraw = src.as_raw();
    let stride = sw as usize * 3;
    let affine = inv[2][0] == 0.0 && inv[2][1] == 0.0;
    let pad = PAD_VALUE as f32;
    let fetch = |x: i64, y: i64, c: usize| -> f32 {
        if x < 0 || y < 0 || x >= sw || y >= sh {
            pad
        } else {
            sraw[y as usize * stride + x as usize * 3 + c] as f32
        }
    };
    let oraw: &mut [u8] = &mut out;
    for (y, row) in oraw.chunks_exact_mut(ow as usize * 3).enumerate() {
        let yc = y as f64 + 0.5;
        for (x, px) in row.chunks_exact_mut(3).enumerate() {
            let xc = x as f64 + 0.5;
            let (u, v) = if affine {
                (inv[0][0] * xc + inv[0][1] * yc + inv[0][2], inv[1][0] * xc + inv[1][1] * yc + inv[1][2])
            } else {
                apply_point(&inv, xc, yc)
            };
            // Source pixel centres sit at integer + 0.5.
            let (u, v) = (u - 0.5, v - 0.5);
            if !(u > -1.0 && v > -1.0 && u < sw as f64 && v < sh as f64) {
                continue; // entirely outside: keep the pad
            }
            let (x0, y0) = (u.floor() as i64, v.floor() as i64);
            let (fx, fy) = ((u - x0 as f64) as f32, (v - y0 as f64) as f32);
            let w = [(1.0 - fx) * (1.0 - fy), fx * (1.0 - fy), (1.0 - fx) * fy, fx * fy];
            if x0 >= 0 && y0 >= 0 && x0 + 1 < sw && y0 + 1 < sh {
                let i = y0 as usize * stride + x0 as usize * 3;
                for c in 0..3 {
                    let v = sraw[i + c] as f32 * w[0]
                        + sraw[i + 3 + c] as f32 * w[1]
                        + sraw[i + stride + c] as f32 * w[2]
                        + sraw[i + stride + 3 + c] as f32 * w[3];
                    px[c] = (v + 0.5).clamp(0.0, 255.0) as u8;
                }
            } else {
                for (c, out) in px.iter_mut().enumerate().take(3) {
                    let v = fetch(x0, y0, c) * w[0]
                        + fetch(x0 + 1, y0, c) * w[1]
                        + fetch(x0, y0 + 1, c) * w[2]
                        + fetch(x0 + 1, y0 + 1, c) * w[3];
                    *out = (v + 0.5).clamp(0.0, 255.0) as u8;
                }
            }
        }
    }
    out
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
        for x in 0..w / 2 {
            let (a, b) = (x * 3, (w - 1 - x) * 3);
            for c in 0..3 {
                row.swap(a + c, b + c);
            }
        }
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
