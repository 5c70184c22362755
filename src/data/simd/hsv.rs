//! The HSV jitter eight pixels at a time: OpenCV's divisions as f32 divisions, the hue table as the rotation
//! it is, the saturation and value tables gathered, OpenCV's per-hue sector a choice by masks.

use std::arch::x86_64::*;

use super::narrow;

/// Jitters the whole groups of 8 pixels in `bytes` through the hue, saturation and value tables (AVX2 must be
/// present). Returns the bytes done.
pub(super) fn jitter(tables: [&[u8; 256]; 3], bytes: &mut [u8]) -> usize {
    let done = bytes.len() / 24 * 24;
    let wide = WideTables::new(tables);
    // SAFETY: the caller checked AVX2; `done` is whole groups of 8 pixels (24 bytes).
    unsafe { jitter_groups(&wide, &mut bytes[..done]) };
    done
}

/// The tables widened to i32, as gathers read them, and the hue's as the rotation it is.
struct WideTables {
    hue: [i32; 256],
    /// `k` when the hue table is `(h + k) mod 180` on every hue (it is, but for rounding at the edges).
    hue_shift: Option<i32>,
    sat: [i32; 256],
    val: [i32; 256],
}

impl WideTables {
    fn new([hue, sat, val]: [&[u8; 256]; 3]) -> WideTables {
        let k = hue[0] as i32;
        let rotation = (0..180).all(|h| hue[h as usize] as i32 == (h + k) % 180);
        WideTables {
            hue: hue.map(i32::from),
            hue_shift: rotation.then_some(k),
            sat: sat.map(i32::from),
            val: val.map(i32::from),
        }
    }
}

/// Byte shuffles: where each of 8 pixels' R, G and B sit in the group's bytes 0..16 (`lo`) and 8..24 (`hi`);
/// -1 clears.
const R_LO: [i8; 16] = [0, 3, 6, 9, 12, 15, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1];
const R_HI: [i8; 16] = [-1, -1, -1, -1, -1, -1, 10, 13, -1, -1, -1, -1, -1, -1, -1, -1];
const G_LO: [i8; 16] = [1, 4, 7, 10, 13, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1];
const G_HI: [i8; 16] = [-1, -1, -1, -1, -1, 8, 11, 14, -1, -1, -1, -1, -1, -1, -1, -1];
const B_LO: [i8; 16] = [2, 5, 8, 11, 14, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1];
const B_HI: [i8; 16] = [-1, -1, -1, -1, -1, 9, 12, 15, -1, -1, -1, -1, -1, -1, -1, -1];
/// And back: bytes 0..16 and 16..24 of the group from (R, G) in one register's halves and B in another's low half.
const OUT_RG_LO: [i8; 16] = [0, 8, -1, 1, 9, -1, 2, 10, -1, 3, 11, -1, 4, 12, -1, 5];
const OUT_B_LO: [i8; 16] = [-1, -1, 0, -1, -1, 1, -1, -1, 2, -1, -1, 3, -1, -1, 4, -1];
const OUT_RG_HI: [i8; 16] = [13, -1, 6, 14, -1, 7, 15, -1, -1, -1, -1, -1, -1, -1, -1, -1];
const OUT_B_HI: [i8; 16] = [-1, 5, -1, -1, 6, -1, -1, 7, -1, -1, -1, -1, -1, -1, -1, -1];

/// OpenCV's `sdiv_table[v]` is round(255 * 2^12 / v), `hdiv_table[d]` round(180 * 2^12 / (6 d)).
const SDIV_NUMERATOR: f32 = 255.0 * 4096.0;
const HDIV_NUMERATOR: f32 = 180.0 * 4096.0 / 6.0;

#[target_feature(enable = "avx2")]
unsafe fn load_mask(m: &[i8; 16]) -> __m128i {
    _mm_loadu_si128(m.as_ptr().cast())
}

#[target_feature(enable = "avx2")]
unsafe fn gather(table: &[i32; 256], index: __m256i) -> __m256i {
    _mm256_i32gather_epi32::<4>(table.as_ptr(), index)
}

/// # Safety
/// AVX2 must be present; `bytes.len()` must be a multiple of 24.
#[target_feature(enable = "avx2")]
unsafe fn jitter_groups(w: &WideTables, bytes: &mut [u8]) {
    debug_assert_eq!(bytes.len() % 24, 0);
    let (r_lo, r_hi, g_lo, g_hi, b_lo, b_hi) =
        (load_mask(&R_LO), load_mask(&R_HI), load_mask(&G_LO), load_mask(&G_HI), load_mask(&B_LO), load_mask(&B_HI));
    let (o_rg_lo, o_b_lo, o_rg_hi, o_b_hi) =
        (load_mask(&OUT_RG_LO), load_mask(&OUT_B_LO), load_mask(&OUT_RG_HI), load_mask(&OUT_B_HI));
    let (i32s, f32s) = (_mm256_set1_epi32, _mm256_set1_ps);
    let half_unit = i32s(1 << 11); // 0.5 in OpenCV's 12-bit fixed point
    let (zero, h_max, s_max, h_circle) = (_mm256_setzero_si256(), i32s(179), i32s(255), i32s(180));
    let (one, half, two, sixty, f255) = (f32s(1.0), f32s(0.5), f32s(2.0), f32s(60.0), f32s(255.0));
    for group in bytes.chunks_exact_mut(24) {
        let p = group.as_mut_ptr();
        let lo = _mm_loadu_si128(p.cast());
        let hi = _mm_loadu_si128(p.add(8).cast());
        // Eight pixels of one grey (the padding a mosaic and its warp leave): no
        // saturation, so only the value table applies, as in the definition.
        let first = _mm_set1_epi8(*p as i8);
        if _mm_movemask_epi8(_mm_and_si128(_mm_cmpeq_epi8(lo, first), _mm_cmpeq_epi8(hi, first))) == 0xFFFF {
            let grey = _mm_set1_epi8(w.val[*p as usize] as u8 as i8);
            _mm_storeu_si128(p.cast(), grey);
            _mm_storel_epi64(p.add(16).cast(), grey);
            continue;
        }
        let channel =
            |m_lo, m_hi| _mm256_cvtepu8_epi32(_mm_or_si128(_mm_shuffle_epi8(lo, m_lo), _mm_shuffle_epi8(hi, m_hi)));
        let (r, g, b) = (channel(r_lo, r_hi), channel(g_lo, g_hi), channel(b_lo, b_hi));

        // RGB -> HSV, as color::forward.
        let v = _mm256_max_epi32(_mm256_max_epi32(r, g), b);
        let diff = _mm256_sub_epi32(v, _mm256_min_epi32(_mm256_min_epi32(r, g), b));
        // OpenCV's division tables as f32 divisions rounded to nearest: equal on all 255 entries (tested), and
        // 0 * (the overflowed 1/0) is 0 as the tables' zero entries give.
        let sdiv = _mm256_cvtps_epi32(_mm256_div_ps(f32s(SDIV_NUMERATOR), _mm256_cvtepi32_ps(v)));
        let s = _mm256_add_epi32(_mm256_mullo_epi32(diff, sdiv), half_unit);
        let s = _mm256_min_epi32(_mm256_max_epi32(_mm256_srai_epi32::<12>(s), zero), s_max);
        let is_r = _mm256_cmpeq_epi32(v, r);
        let is_g = _mm256_andnot_si256(is_r, _mm256_cmpeq_epi32(v, g));
        let two_diff = _mm256_add_epi32(diff, diff);
        let from_r = _mm256_sub_epi32(g, b);
        let from_g = _mm256_add_epi32(_mm256_sub_epi32(b, r), two_diff);
        let from_b = _mm256_add_epi32(_mm256_sub_epi32(r, g), _mm256_add_epi32(two_diff, two_diff));
        let h = _mm256_or_si256(
            _mm256_or_si256(_mm256_and_si256(from_r, is_r), _mm256_and_si256(from_g, is_g)),
            _mm256_andnot_si256(_mm256_or_si256(is_r, is_g), from_b),
        );
        let hdiv = _mm256_cvtps_epi32(_mm256_div_ps(f32s(HDIV_NUMERATOR), _mm256_cvtepi32_ps(diff)));
        let h = _mm256_srai_epi32::<12>(_mm256_add_epi32(_mm256_mullo_epi32(h, hdiv), half_unit));
        let h = _mm256_add_epi32(h, _mm256_and_si256(h_circle, _mm256_srai_epi32::<31>(h)));
        let h = _mm256_min_epi32(_mm256_max_epi32(h, zero), h_max);

        // The gains.
        let h = match w.hue_shift {
            Some(k) => {
                let h = _mm256_add_epi32(h, i32s(k));
                _mm256_sub_epi32(h, _mm256_and_si256(h_circle, _mm256_cmpgt_epi32(h, h_max)))
            }
            None => gather(&w.hue, h),
        };
        let (s, v) = (gather(&w.sat, s), gather(&w.val, v));

        // HSV -> RGB, as color::backward (no fused multiply-adds: the scalar code rounds each product).
        let v = _mm256_cvtepi32_ps(v);
        let s = _mm256_div_ps(_mm256_cvtepi32_ps(s), f255);
        let hh = _mm256_div_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(h), two), sixty);
        let sector_f = _mm256_floor_ps(hh);
        let f = _mm256_sub_ps(hh, sector_f);
        let round = |c: __m256| _mm256_cvttps_epi32(_mm256_add_ps(c, half));
        let val = round(v);
        let p_ = round(_mm256_mul_ps(v, _mm256_sub_ps(one, s)));
        let q = round(_mm256_mul_ps(v, _mm256_sub_ps(one, _mm256_mul_ps(s, f))));
        let t_ = round(_mm256_mul_ps(v, _mm256_sub_ps(one, _mm256_mul_ps(s, _mm256_sub_ps(one, f)))));
        let sector = _mm256_cvttps_epi32(sector_f);
        let is = |k: i32| _mm256_cmpeq_epi32(sector, i32s(k));
        let (e0, e1, e2, e3, e4, e5) = (is(0), is(1), is(2), is(3), is(4), is(5));
        let pick = |base, a, ma, b, mb, c, mc| {
            _mm256_blendv_epi8(_mm256_blendv_epi8(_mm256_blendv_epi8(base, a, ma), b, mb), c, mc)
        };
        // OpenCV's sectors: (r, g, b) = (v,t,p) (q,v,p) (p,v,t) (p,q,v) (t,p,v) (v,p,q).
        let r = pick(val, q, e1, p_, _mm256_or_si256(e2, e3), t_, e4);
        let g = pick(p_, t_, e0, val, _mm256_or_si256(e1, e2), q, e3);
        let b = pick(p_, t_, e2, val, _mm256_or_si256(e3, e4), q, e5);

        let rg = _mm_unpacklo_epi64(narrow(r), narrow(g));
        let b = narrow(b);
        let out_lo = _mm_or_si128(_mm_shuffle_epi8(rg, o_rg_lo), _mm_shuffle_epi8(b, o_b_lo));
        let out_hi = _mm_or_si128(_mm_shuffle_epi8(rg, o_rg_hi), _mm_shuffle_epi8(b, o_b_hi));
        _mm_storeu_si128(p.cast(), out_lo);
        _mm_storel_epi64(p.add(16).cast(), out_hi);
    }
}
