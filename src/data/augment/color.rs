//! Colour jitter in HSV space, as Ultralytics does it: random gains in `[-1, 1] * (hsv_h, hsv_s, hsv_v)`,
//! applied through lookup tables on OpenCV's 8-bit HSV (hue 0-179, saturation and value 0-255).

use image::RgbImage;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// Draws the three gains and jitters `img` in place. Boxes are unchanged.
pub fn random_hsv(img: &mut RgbImage, gains: [f64; 3], rng: &mut ChaCha8Rng) {
    if gains.iter().all(|&g| g == 0.0) {
        return;
    }
    let r: [f64; 3] = [0, 1, 2].map(|i| rng.gen_range(-1.0..1.0) * gains[i]);
    apply_hsv_gains(img, r);
}

/// Applies drawn gains `r` (hue shift as a fraction of the hue circle, saturation and value factors - 1).
pub fn apply_hsv_gains(img: &mut RgbImage, r: [f64; 3]) {
    let mut lut_hue = [0u8; 256];
    let mut lut_sat = [0u8; 256];
    let mut lut_val = [0u8; 256];
    for x in 0..256usize {
        let xf = x as f64;
        lut_hue[x] = (xf + r[0] * 180.0).rem_euclid(180.0) as u8;
        lut_sat[x] = (xf * (r[1] + 1.0)).clamp(0.0, 255.0) as u8;
        lut_val[x] = (xf * (r[2] + 1.0)).clamp(0.0, 255.0) as u8;
    }
    lut_sat[0] = 0; // a grey stays grey
    for px in img.chunks_exact_mut(3) {
        let [h, s, v] = rgb_to_hsv([px[0], px[1], px[2]]);
        let rgb = hsv_to_rgb([lut_hue[h as usize], lut_sat[s as usize], lut_val[v as usize]]);
        px.copy_from_slice(&rgb);
    }
}

/// OpenCV's 8-bit RGB -> HSV (hue halved to fit 0-179).
pub fn rgb_to_hsv([r, g, b]: [u8; 3]) -> [u8; 3] {
    let (rf, gf, bf) = (r as f32, g as f32, b as f32);
    let v = rf.max(gf).max(bf);
    let min = rf.min(gf).min(bf);
    let diff = v - min;
    let s = if v > 0.0 { diff * 255.0 / v } else { 0.0 };
    let mut h = if diff == 0.0 {
        0.0
    } else if v == rf {
        60.0 * (gf - bf) / diff
    } else if v == gf {
        120.0 + 60.0 * (bf - rf) / diff
    } else {
        240.0 + 60.0 * (rf - gf) / diff
    };
    if h < 0.0 {
        h += 360.0;
    }
    let h = (h / 2.0).round();
    [if h >= 180.0 { 0 } else { h as u8 }, s.round() as u8, v as u8]
}

/// OpenCV's 8-bit HSV -> RGB.
pub fn hsv_to_rgb([h, s, v]: [u8; 3]) -> [u8; 3] {
    let v = v as f32;
    if s == 0 {
        let g = v as u8;
        return [g, g, g];
    }
    let s = s as f32 / 255.0;
    let hh = (h as f32 * 2.0) / 60.0; // sector 0..6
    let sector = hh.floor();
    let f = hh - sector;
    let p = v * (1.0 - s);
    let q = v * (1.0 - s * f);
    let t = v * (1.0 - s * (1.0 - f));
    let (r, g, b) = match sector as i32 % 6 {
        0 => (v, t, p),
        1 => (q, v, p),
        2 => (p, v, t),
        3 => (p, q, v),
        4 => (t, p, v),
        _ => (v, p, q),
    };
    [r, g, b].map(|c| (c + 0.5).clamp(0.0, 255.0) as u8)
}
