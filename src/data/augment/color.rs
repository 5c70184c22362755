//! Colour jitter in HSV space, as Ultralytics does it: random gains in `[-1, 1] * (hsv_h, hsv_s, hsv_v)`,
//! applied through lookup tables on OpenCV's 8-bit HSV (hue 0-179, saturation and value 0-255).

use image::RgbImage;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::data::simd;

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
    let luts = GainTables::new(r);
    let raw: &mut [u8] = img;
    let done = simd::hsv_jitter(simd::widest(), [&luts.hue, &luts.sat, &luts.val], raw);
    jitter(&luts, tables(), raw[done..].as_chunks_mut::<3>().0);
}

/// The drawn gains as Ultralytics' three lookup tables over OpenCV's 8-bit hue, saturation and value.
struct GainTables {
    hue: [u8; 256],
    sat: [u8; 256],
    val: [u8; 256],
}

impl GainTables {
    fn new(r: [f64; 3]) -> GainTables {
        let mut t = GainTables { hue: [0; 256], sat: [0; 256], val: [0; 256] };
        for x in 0..256usize {
            let xf = x as f64;
            t.hue[x] = (xf + r[0] * 180.0).rem_euclid(180.0) as u8;
            t.sat[x] = (xf * (r[1] + 1.0)).clamp(0.0, 255.0) as u8;
            t.val[x] = (xf * (r[2] + 1.0)).clamp(0.0, 255.0) as u8;
        }
        t.sat[0] = 0; // a grey stays grey
        t
    }
}

/// The jitter one pixel at a time: the definition the vectorised path must equal.
fn jitter(luts: &GainTables, t: &Tables, pixels: &mut [[u8; 3]]) {
    for px in pixels {
        let [r, g, b] = *px;
        if r == g && g == b {
            // A grey (the padding, most often): no saturation, so only the value changes.
            *px = [luts.val[r as usize]; 3];
            continue;
        }
        let [h, s, v] = forward(t, *px);
        *px = backward(t, [luts.hue[h as usize], luts.sat[s as usize], luts.val[v as usize]]);
    }
}

/// The divisions and per-hue constants of both conversions, computed once.
struct Tables {
    /// OpenCV's `sdiv_table` and `hdiv_table` (12-bit fixed point), by value and by max - min.
    sdiv: [i32; 256],
    hdiv: [i32; 256],
    /// Saturation as a fraction, by 8-bit saturation; each hue's fraction of its sector. (A table of the
    /// products by hue and saturation would not stay in cache.)
    sat: [f32; 256],
    frac: [f32; 180],
    /// Per 8-bit hue: which of (v, p, q, t) each of r, g, b takes.
    sector: [[u8; 3]; 180],
}

fn tables() -> &'static Tables {
    static TABLES: std::sync::OnceLock<Tables> = std::sync::OnceLock::new();
    TABLES.get_or_init(|| {
        const SHIFT: i32 = 12;
        let mut t = Tables { sdiv: [0; 256], hdiv: [0; 256], sat: [0.0; 256], frac: [0.0; 180], sector: [[0; 3]; 180] };
        for i in 1..256 {
            t.sdiv[i] = (255.0 * (1 << SHIFT) as f64 / i as f64).round() as i32;
            t.hdiv[i] = (180.0 * (1 << SHIFT) as f64 / (6.0 * i as f64)).round() as i32;
        }
        // Indexes into (v, p, q, t) per sector, as OpenCV's HSV2RGB assigns them.
        const ORDER: [[u8; 3]; 6] = [[0, 3, 1], [2, 0, 1], [1, 0, 3], [1, 2, 0], [3, 1, 0], [0, 1, 2]];
        for h in 0..180 {
            let hh = (h as f32 * 2.0) / 60.0; // sector 0..6
            let sector = hh.floor();
            t.frac[h] = hh - sector;
            t.sector[h] = ORDER[sector as usize % 6];
        }
        for (s8, sat) in t.sat.iter_mut().enumerate() {
            *sat = s8 as f32 / 255.0;
        }
        t
    })
}

/// OpenCV's 8-bit RGB -> HSV (hue halved to fit 0-179), with its fixed-point rounding; the hue's three cases
/// chosen without branches, as neighbouring pixels rarely agree on their largest channel.
fn forward(t: &Tables, [r, g, b]: [u8; 3]) -> [u8; 3] {
    const SHIFT: i32 = 12;
    let (r, g, b) = (r as i32, g as i32, b as i32);
    let v = r.max(g).max(b);
    let diff = v - r.min(g).min(b);
    let s = (diff * t.sdiv[v as usize] + (1 << (SHIFT - 1))) >> SHIFT;
    let is_r = -((v == r) as i32);
    let is_g = -((v == g) as i32) & !is_r;
    let h = ((g - b) & is_r) | ((b - r + 2 * diff) & is_g) | ((r - g + 4 * diff) & !(is_r | is_g));
    let h = (h * t.hdiv[diff as usize] + (1 << (SHIFT - 1))) >> SHIFT;
    let h = h + (180 & (h >> 31));
    [h.clamp(0, 179) as u8, s.clamp(0, 255) as u8, v as u8]
}

/// OpenCV's 8-bit HSV -> RGB: every channel is the value times 1, 1 - s, 1 - s f or 1 - s (1 - f).
fn backward(t: &Tables, [h, s, v]: [u8; 3]) -> [u8; 3] {
    let (v, s, f) = (v as f32, t.sat[s as usize], t.frac[h as usize]);
    let vals = [v, v * (1.0 - s), v * (1.0 - s * f), v * (1.0 - s * (1.0 - f))].map(|c| (c + 0.5) as u8);
    t.sector[h as usize].map(|k| vals[k as usize & 3])
}

/// OpenCV's 8-bit RGB -> HSV (hue halved to fit 0-179), with its fixed-point rounding.
pub fn rgb_to_hsv(rgb: [u8; 3]) -> [u8; 3] {
    forward(tables(), rgb)
}

/// OpenCV's 8-bit HSV -> RGB.
pub fn hsv_to_rgb(hsv: [u8; 3]) -> [u8; 3] {
    backward(tables(), [hsv[0].min(179), hsv[1], hsv[2]])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::simd::SimdLevel;

    /// The conversions as first written, one pixel at a time in floating point: the reference the
    /// table-driven ones must equal.
    fn rgb_to_hsv_reference([r, g, b]: [u8; 3]) -> [u8; 3] {
        const SHIFT: i32 = 12;
        let (r, g, b) = (r as i32, g as i32, b as i32);
        let v = r.max(g).max(b);
        let diff = v - r.min(g).min(b);
        let sdiv = if v == 0 { 0 } else { (255.0 * (1 << SHIFT) as f64 / v as f64).round() as i32 };
        let hdiv = if diff == 0 { 0 } else { (180.0 * (1 << SHIFT) as f64 / (6.0 * diff as f64)).round() as i32 };
        let s = (diff * sdiv + (1 << (SHIFT - 1))) >> SHIFT;
        let h = if v == r {
            g - b
        } else if v == g {
            b - r + 2 * diff
        } else {
            r - g + 4 * diff
        };
        let mut h = (h * hdiv + (1 << (SHIFT - 1))) >> SHIFT;
        if h < 0 {
            h += 180;
        }
        [h.clamp(0, 179) as u8, s.clamp(0, 255) as u8, v as u8]
    }

    fn hsv_to_rgb_reference([h, s, v]: [u8; 3]) -> [u8; 3] {
        let v = v as f32;
        if s == 0 {
            return [v as u8; 3];
        }
        let s = s as f32 / 255.0;
        let hh = (h as f32 * 2.0) / 60.0;
        let sector = hh.floor();
        let f = hh - sector;
        let (p, q, t) = (v * (1.0 - s), v * (1.0 - s * f), v * (1.0 - s * (1.0 - f)));
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

    #[test]
    fn tables_give_the_reference_conversions_exactly() {
        for r in (0..=255u8).step_by(3) {
            for g in 0..=255u8 {
                for b in (0..=255u8).step_by(5) {
                    assert_eq!(rgb_to_hsv([r, g, b]), rgb_to_hsv_reference([r, g, b]), "{r} {g} {b}");
                }
            }
        }
        for h in 0..180u8 {
            for s in 0..=255u8 {
                for v in 0..=255u8 {
                    assert_eq!(hsv_to_rgb([h, s, v]), hsv_to_rgb_reference([h, s, v]), "{h} {s} {v}");
                }
            }
        }
    }

    /// The vectorised levels this CPU runs, each tested.
    fn levels() -> Vec<SimdLevel> {
        [SimdLevel::Avx2, SimdLevel::Avx512].into_iter().filter(|&l| l <= simd::widest()).collect()
    }

    /// `bytes` jittered by the kernels of `level`, the definition finishing what they leave.
    fn jittered(level: SimdLevel, luts: &GainTables, bytes: &[u8]) -> Vec<u8> {
        let mut out = bytes.to_vec();
        let done = simd::hsv_jitter(level, [&luts.hue, &luts.sat, &luts.val], &mut out);
        jitter(luts, tables(), out[done..].as_chunks_mut::<3>().0);
        out
    }

    /// Every 24-bit colour through each vectorised kernel and through the scalar definition, for gains that
    /// shift the hue both ways and push saturation and value past 255.
    #[test]
    fn every_colour_jitters_as_the_scalar_definition() {
        let all: Vec<u8> = (0..1u32 << 24).flat_map(|i| [(i >> 16) as u8, (i >> 8) as u8, i as u8]).collect();
        for r in [[0.0137, 0.62, -0.35], [-0.015, -0.7, 0.4], [0.5, 1.0, 1.0], [-0.999, -1.0, -1.0]] {
            let luts = GainTables::new(r);
            let mut scalar = all.clone();
            jitter(&luts, tables(), scalar.as_chunks_mut::<3>().0);
            for level in levels() {
                let fast = jittered(level, &luts, &all);
                if let Some((i, _)) = fast.iter().zip(&scalar).enumerate().find(|(_, (a, b))| a != b) {
                    let px = i / 3 * 3;
                    panic!(
                        "{level:?}, gains {r:?}: colour {:?} became {:?}, the definition gives {:?}",
                        &all[px..px + 3],
                        &fast[px..px + 3],
                        &scalar[px..px + 3]
                    );
                }
            }
        }
    }

    /// Runs of one grey (the vectorised kernels' shortcut) next to groups where one byte breaks the run, for
    /// every grey level: the same as the definition.
    #[test]
    fn runs_of_one_grey_jitter_as_the_scalar_definition() {
        let mut bytes = Vec::new();
        for grey in 0..=255u8 {
            bytes.extend(std::iter::repeat_n(grey, 48 * 3));
            for broken in [0, 7, 15, 16, 23, 24, 40, 47] {
                let mut group = [grey; 48];
                group[broken] = grey.wrapping_add(1 + broken as u8);
                bytes.extend(group);
            }
        }
        for r in [[0.0137, 0.62, -0.35], [-0.015, -0.7, 0.4], [0.5, 1.0, 1.0]] {
            let luts = GainTables::new(r);
            let mut scalar = bytes.clone();
            jitter(&luts, tables(), scalar.as_chunks_mut::<3>().0);
            for level in levels() {
                assert!(jittered(level, &luts, &bytes) == scalar, "{level:?}, gains {r:?}");
            }
        }
    }

    /// The vectorised kernels take the hue table as a rotation; a table that is not one goes through the table.
    #[test]
    fn a_hue_table_that_is_not_a_rotation_is_looked_up() {
        let mut luts = GainTables::new([0.0137, 0.62, -0.35]);
        for (h, entry) in luts.hue.iter_mut().enumerate().take(180) {
            *entry = (h * 7 % 180) as u8;
        }
        let all: Vec<u8> = (0..1u32 << 24).flat_map(|i| [(i >> 16) as u8, (i >> 8) as u8, i as u8]).collect();
        let mut scalar = all.clone();
        jitter(&luts, tables(), scalar.as_chunks_mut::<3>().0);
        for level in levels() {
            assert!(jittered(level, &luts, &all) == scalar, "{level:?}");
        }
    }

    /// Why the vectorised path may divide instead of looking OpenCV's division tables up.
    #[test]
    fn f32_divisions_rounded_to_nearest_give_the_division_tables() {
        let t = tables();
        for i in 1..256 {
            assert_eq!((255.0f32 * 4096.0 / i as f32).round_ties_even() as i32, t.sdiv[i], "sdiv {i}");
            assert_eq!((180.0f32 * 4096.0 / 6.0 / i as f32).round_ties_even() as i32, t.hdiv[i], "hdiv {i}");
        }
    }

    const PIXELS: [[u8; 3]; 8] = [
        [220, 30, 30],
        [30, 200, 40],
        [40, 60, 230],
        [230, 220, 30],
        [40, 40, 40],
        [200, 120, 60],
        [10, 10, 250],
        [128, 200, 255],
    ];

    /// Values from OpenCV 4 (`cvtColor` BGR2HSV, the same LUTs as Ultralytics' RandomHSV, HSV2BGR),
    /// computed once with the Ultralytics environment.
    #[test]
    fn matches_opencv() {
        let hsv = [
            [0, 220, 220],
            [62, 217, 200],
            [117, 211, 230],
            [28, 222, 230],
            [0, 0, 40],
            [13, 178, 200],
            [120, 245, 250],
            [103, 127, 255],
        ];
        for (p, want) in PIXELS.iter().zip(hsv) {
            assert_eq!(rgb_to_hsv(*p), want, "{p:?}");
        }
        let cases: [([f64; 3], [[u8; 3]; 8]); 3] = [
            (
                [0.01, 0.5, -0.3],
                [
                    [154, 5, 0],
                    [0, 140, 14],
                    [0, 11, 161],
                    [161, 156, 0],
                    [28, 28, 28],
                    [140, 65, 0],
                    [6, 0, 175],
                    [45, 116, 178],
                ],
            ),
            (
                [-0.015, -0.6, 0.35],
                [
                    [255, 167, 176],
                    [172, 255, 169],
                    [171, 188, 255],
                    [255, 240, 167],
                    [54, 54, 54],
                    [255, 208, 184],
                    [157, 167, 255],
                    [205, 238, 255],
                ],
            ),
            (
                [0.005, 0.2, 0.1],
                [
                    [242, 0, 0],
                    [0, 220, 15],
                    [2, 27, 253],
                    [253, 236, 0],
                    [44, 44, 44],
                    [220, 116, 36],
                    [0, 0, 255],
                    [103, 189, 255],
                ],
            ),
        ];
        for (r, want) in cases {
            let mut img = RgbImage::from_fn(8, 1, |x, _| image::Rgb(PIXELS[x as usize]));
            apply_hsv_gains(&mut img, r);
            for (x, w) in want.iter().enumerate() {
                let got = img.get_pixel(x as u32, 0).0;
                for c in 0..3 {
                    assert!(
                        (got[c] as i32 - w[c] as i32).abs() <= 1,
                        "gains {r:?}, {:?}: {got:?} vs OpenCV {w:?}",
                        PIXELS[x]
                    );
                }
            }
        }
    }
}
