//! The HSV jitter 8 pixels at a time with AVX2, 16 with AVX-512: OpenCV's divisions as f32 divisions, the hue
//! table as the rotation it is, the saturation and value tables gathered (AVX2) or looked up by byte permutes
//! (AVX-512 VBMI), OpenCV's per-hue sector a choice by masks. A group's 24 (48) bytes are read as 32 (64), so
//! the last group of a slice is left to the definition, and split into channels by byte shuffles. Both kernels run the definition's operations, lane by lane.
//! The 16-lane kernel writes its 48 bytes as a 32- and a 16-byte store: as one masked store it ran slower
//! than the 8-lane kernel on AMD Zen 5 (0.75 against 0.64 ms a 640x640 image; 0.40 ms as two stores).

use std::arch::x86_64::*;

/// Jitters the whole groups of pixels in `bytes` through the hue, saturation and value tables, 16 at a time
/// where `avx512` (the caller checked AVX-512 F, BW and VBMI), else 8 (the caller checked AVX2). Returns the
/// bytes done.
pub(super) fn jitter(tables: [&[u8; 256]; 3], bytes: &mut [u8], avx512: bool) -> usize {
    let wide = WideTables::new(tables);
    // Whole groups of 16 pixels (48 bytes) whose 64-byte load stays within `bytes`, or of 8 (24) whose 32 do.
    let (group, read) = if avx512 { (48, 64) } else { (24, 32) };
    let done = (bytes.len() + group).saturating_sub(read) / group * group;
    // SAFETY: the caller checked the features; each group of `..done` reads `read` bytes from its start,
    // within `bytes`.
    unsafe {
        match avx512 {
            true => jitter_groups_512(&wide, bytes.as_mut_ptr(), done),
            false => jitter_groups(&wide, bytes.as_mut_ptr(), done),
        }
    }
    done
}

/// The tables as gathers read them: the hue's widened to i32 (and as the rotation it is), the saturation's as
/// the fraction the conversion back takes (OpenCV's `s / 255`), the value's as f32.
struct WideTables {
    hue: [i32; 256],
    /// `k` when the hue table is `(h + k) mod 180` on every hue (it is, but for rounding at the edges).
    hue_shift: Option<i32>,
    sat_fraction: [f32; 256],
    val_f32: [f32; 256],
    /// The saturation and value tables as bytes: the 16-lane kernel looks them up by byte permutes, and a
    /// group of one grey takes its value from the value table alone.
    sat_bytes: [u8; 256],
    val_bytes: [u8; 256],
}

impl WideTables {
    fn new([hue, sat, val]: [&[u8; 256]; 3]) -> WideTables {
        let k = hue[0] as i32;
        let rotation = (0..180).all(|h| hue[h as usize] as i32 == (h + k) % 180);
        WideTables {
            hue: hue.map(i32::from),
            hue_shift: rotation.then_some(k),
            sat_fraction: sat.map(|s| s as f32 / 255.0),
            val_f32: val.map(f32::from),
            sat_bytes: *sat,
            val_bytes: *val,
        }
    }
}

/// The group's dwords 0-2 (pixels 0-3) to the low lane and 3-5 (pixels 4-7) to the high one.
const SPLIT_LANES: [i32; 8] = [0, 1, 2, 0, 3, 4, 5, 0];
/// Within a lane, channel `c` of its 4 pixels as i32s (-1 clears).
const fn channel_mask(c: i8) -> [i8; 32] {
    let mut m = [-1i8; 32];
    let mut i = 0;
    while i < 8 {
        m[4 * i] = 3 * (i as i8 % 4) + c;
        i += 1;
    }
    m
}
const CHANNELS: [[i8; 32]; 3] = [channel_mask(0), channel_mask(1), channel_mask(2)];
/// And back: each lane's 4 pixels (as R | G << 8 | B << 16) to 12 bytes, then the lanes' 12 bytes together.
const PACK_PIXELS: [i8; 32] =
    [0, 1, 2, 4, 5, 6, 8, 9, 10, 12, 13, 14, -1, -1, -1, -1, 0, 1, 2, 4, 5, 6, 8, 9, 10, 12, 13, 14, -1, -1, -1, -1];
const JOIN_LANES: [i32; 8] = [0, 1, 2, 4, 5, 6, 3, 7];

/// OpenCV's `sdiv_table[v]` is round(255 * 2^12 / v), `hdiv_table[d]` round(180 * 2^12 / (6 d)).
const SDIV_NUMERATOR: f32 = 255.0 * 4096.0;
const HDIV_NUMERATOR: f32 = 180.0 * 4096.0 / 6.0;

#[target_feature(enable = "avx2")]
unsafe fn load_mask<T>(m: &[T]) -> __m256i {
    debug_assert_eq!(std::mem::size_of_val(m), 32);
    _mm256_loadu_si256(m.as_ptr().cast())
}

#[target_feature(enable = "avx2")]
unsafe fn gather(table: &[i32; 256], index: __m256i) -> __m256i {
    _mm256_i32gather_epi32::<4>(table.as_ptr(), index)
}

#[target_feature(enable = "avx2")]
unsafe fn gather_f32(table: &[f32; 256], index: __m256i) -> __m256 {
    _mm256_i32gather_ps::<4>(table.as_ptr(), index)
}

/// # Safety
/// AVX2 must be present; `len` is a multiple of 24, and 32 bytes may be read from `bytes + len - 24`.
#[target_feature(enable = "avx2")]
unsafe fn jitter_groups(w: &WideTables, bytes: *mut u8, len: usize) {
    debug_assert_eq!(len % 24, 0);
    let (split, pack, join) = (load_mask(&SPLIT_LANES), load_mask(&PACK_PIXELS), load_mask(&JOIN_LANES));
    let [r_of, g_of, b_of] = CHANNELS.map(|m| load_mask(&m));
    let (i32s, f32s) = (_mm256_set1_epi32, _mm256_set1_ps);
    let half_unit = i32s(1 << 11); // 0.5 in OpenCV's 12-bit fixed point
    let (h_max, h_circle) = (i32s(179), i32s(180));
    let (one, half, two, sixty) = (f32s(1.0), f32s(0.5), f32s(2.0), f32s(60.0));
    for start in (0..len).step_by(24) {
        let p = bytes.add(start);
        let group = _mm256_loadu_si256(p.cast());
        // Eight pixels of one grey (the padding a mosaic and its warp leave): no saturation, so only the
        // value table applies, as in the definition.
        let first = _mm256_set1_epi8(*p as i8);
        if _mm256_movemask_epi8(_mm256_cmpeq_epi8(group, first)) & 0x00ff_ffff == 0x00ff_ffff {
            let grey = _mm_set1_epi8(w.val_bytes[*p as usize] as i8);
            _mm_storeu_si128(p.cast(), grey);
            _mm_storel_epi64(p.add(16).cast(), grey);
            continue;
        }
        let lanes = _mm256_permutevar8x32_epi32(group, split);
        let (r, g, b) =
            (_mm256_shuffle_epi8(lanes, r_of), _mm256_shuffle_epi8(lanes, g_of), _mm256_shuffle_epi8(lanes, b_of));

        // RGB -> HSV, as color::forward.
        let v = _mm256_max_epi32(_mm256_max_epi32(r, g), b);
        let diff = _mm256_sub_epi32(v, _mm256_min_epi32(_mm256_min_epi32(r, g), b));
        // OpenCV's division tables as f32 divisions rounded to nearest: equal on all 255 entries (tested), and
        // 0 * (the overflowed 1/0) is 0 as the tables' zero entries give.
        let sdiv = _mm256_cvtps_epi32(_mm256_div_ps(f32s(SDIV_NUMERATOR), _mm256_cvtepi32_ps(v)));
        let s = _mm256_add_epi32(_mm256_mullo_epi32(diff, sdiv), half_unit);
        // OpenCV clamps s to 0..=255 and h to 0..=179; both are always within (every colour is tested).
        let s = _mm256_srai_epi32::<12>(s);
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

        // The gains.
        let h = match w.hue_shift {
            Some(k) => {
                let h = _mm256_add_epi32(h, i32s(k));
                _mm256_sub_epi32(h, _mm256_and_si256(h_circle, _mm256_cmpgt_epi32(h, h_max)))
            }
            None => gather(&w.hue, h),
        };
        let (s, v) = (gather_f32(&w.sat_fraction, s), gather_f32(&w.val_f32, v));

        // HSV -> RGB, as color::backward (no fused multiply-adds: the scalar code rounds each product).
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

        // Every channel is within 0..=255 (a value times a factor in [0, 1], rounded), so they pack by shifts.
        let rgb = _mm256_or_si256(r, _mm256_or_si256(_mm256_slli_epi32::<8>(g), _mm256_slli_epi32::<16>(b)));
        let out = _mm256_permutevar8x32_epi32(_mm256_shuffle_epi8(rgb, pack), join);
        _mm_storeu_si128(p.cast(), _mm256_castsi256_si128(out));
        _mm_storel_epi64(p.add(16).cast(), _mm256_extracti128_si256::<1>(out));
    }
}

/// Channel `c` of 16 pixels as the low byte of 16 dwords.
const fn channel_bytes(c: u8) -> [u8; 64] {
    let mut m = [0u8; 64];
    let mut i = 0;
    while i < 16 {
        m[4 * i] = 3 * i as u8 + c;
        i += 1;
    }
    m
}
const CHANNEL_BYTES: [[u8; 64]; 3] = [channel_bytes(0), channel_bytes(1), channel_bytes(2)];
/// And back: 16 dwords (R | G << 8 | B << 16) to 48 bytes.
const PIXEL_BYTES: [u8; 64] = {
    let mut m = [0u8; 64];
    let mut j = 0;
    while j < 48 {
        m[j] = (4 * (j / 3) + j % 3) as u8;
        j += 1;
    }
    m
};
/// The low byte of every dword, and a group's 48 bytes.
const LOW_BYTES: __mmask64 = 0x1111_1111_1111_1111;
const GROUP_BYTES: __mmask64 = (1 << 48) - 1;

/// The AVX2 kernel's operations on 16 lanes.
///
/// # Safety
/// AVX-512 F, BW and VBMI must be present; `len` is a multiple of 48, and 64 bytes may be read from
/// `bytes + len - 48`.
#[target_feature(enable = "avx512f,avx512bw,avx512vbmi")]
unsafe fn jitter_groups_512(w: &WideTables, bytes: *mut u8, len: usize) {
    debug_assert_eq!(len % 48, 0);
    let load = |m: &[u8; 64]| _mm512_loadu_si512(m.as_ptr().cast());
    let (sat, val) = (ByteTable::new(&w.sat_bytes), ByteTable::new(&w.val_bytes));
    let [r_of, g_of, b_of] = CHANNEL_BYTES.map(|m| load(&m));
    let to_bytes = load(&PIXEL_BYTES);
    let (i32s, f32s) = (_mm512_set1_epi32, _mm512_set1_ps);
    let half_unit = i32s(1 << 11); // 0.5 in OpenCV's 12-bit fixed point
    let (zero, h_max, h_circle) = (_mm512_setzero_si512(), i32s(179), i32s(180));
    let (one, half, two, sixty) = (f32s(1.0), f32s(0.5), f32s(2.0), f32s(60.0));
    for start in (0..len).step_by(48) {
        let p = bytes.add(start);
        let group = _mm512_loadu_si512(p.cast());
        // Sixteen pixels of one grey: only the value table applies, as in the definition.
        if _mm512_cmpeq_epi8_mask(group, _mm512_set1_epi8(*p as i8)) & GROUP_BYTES == GROUP_BYTES {
            let grey = _mm512_set1_epi8(w.val_bytes[*p as usize] as i8);
            _mm256_storeu_si256(p.cast(), _mm512_castsi512_si256(grey));
            _mm_storeu_si128(p.add(32).cast(), _mm512_castsi512_si128(grey));
            continue;
        }
        let channel = |of| _mm512_maskz_permutexvar_epi8(LOW_BYTES, of, group);
        let (r, g, b) = (channel(r_of), channel(g_of), channel(b_of));

        // RGB -> HSV, as color::forward.
        let v = _mm512_max_epi32(_mm512_max_epi32(r, g), b);
        let diff = _mm512_sub_epi32(v, _mm512_min_epi32(_mm512_min_epi32(r, g), b));
        let sdiv = _mm512_cvtps_epi32(_mm512_div_ps(f32s(SDIV_NUMERATOR), _mm512_cvtepi32_ps(v)));
        let s = _mm512_srai_epi32::<12>(_mm512_add_epi32(_mm512_mullo_epi32(diff, sdiv), half_unit));
        let is_r = _mm512_cmpeq_epi32_mask(v, r);
        let is_g = _mm512_cmpeq_epi32_mask(v, g);
        let two_diff = _mm512_add_epi32(diff, diff);
        let from_r = _mm512_sub_epi32(g, b);
        let from_g = _mm512_add_epi32(_mm512_sub_epi32(b, r), two_diff);
        let from_b = _mm512_add_epi32(_mm512_sub_epi32(r, g), _mm512_add_epi32(two_diff, two_diff));
        // Red wins over green, green over blue.
        let h = _mm512_mask_blend_epi32(is_r, _mm512_mask_blend_epi32(is_g, from_b, from_g), from_r);
        let hdiv = _mm512_cvtps_epi32(_mm512_div_ps(f32s(HDIV_NUMERATOR), _mm512_cvtepi32_ps(diff)));
        let h = _mm512_srai_epi32::<12>(_mm512_add_epi32(_mm512_mullo_epi32(h, hdiv), half_unit));
        let h = _mm512_mask_add_epi32(h, _mm512_cmplt_epi32_mask(h, zero), h, h_circle);

        // The gains.
        let h = match w.hue_shift {
            Some(k) => {
                let h = _mm512_add_epi32(h, i32s(k));
                _mm512_mask_sub_epi32(h, _mm512_cmpgt_epi32_mask(h, h_max), h, h_circle)
            }
            None => _mm512_i32gather_epi32::<4>(h, w.hue.as_ptr()),
        };
        // The saturation and value tables by byte permutes (a gather of 16 cost a third of the kernel).
        let s = _mm512_div_ps(_mm512_cvtepi32_ps(sat.look_up(s)), f32s(255.0));
        let v = _mm512_cvtepi32_ps(val.look_up(v));

        // HSV -> RGB, as color::backward (no fused multiply-adds).
        let hh = _mm512_div_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(h), two), sixty);
        let sector_f = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC }>(hh);
        let f = _mm512_sub_ps(hh, sector_f);
        let round = |c: __m512| _mm512_cvttps_epi32(_mm512_add_ps(c, half));
        let val = round(v);
        let p_ = round(_mm512_mul_ps(v, _mm512_sub_ps(one, s)));
        let q = round(_mm512_mul_ps(v, _mm512_sub_ps(one, _mm512_mul_ps(s, f))));
        let t_ = round(_mm512_mul_ps(v, _mm512_sub_ps(one, _mm512_mul_ps(s, _mm512_sub_ps(one, f)))));
        let sector = _mm512_cvttps_epi32(sector_f);
        let is = |k: i32| _mm512_cmpeq_epi32_mask(sector, i32s(k));
        let (e0, e1, e2, e3, e4, e5) = (is(0), is(1), is(2), is(3), is(4), is(5));
        let pick = |base, a, ma, b, mb, c, mc| {
            _mm512_mask_blend_epi32(mc, _mm512_mask_blend_epi32(mb, _mm512_mask_blend_epi32(ma, base, a), b), c)
        };
        // OpenCV's sectors: (r, g, b) = (v,t,p) (q,v,p) (p,v,t) (p,q,v) (t,p,v) (v,p,q).
        let r = pick(val, q, e1, p_, e2 | e3, t_, e4);
        let g = pick(p_, t_, e0, val, e1 | e2, q, e3);
        let b = pick(p_, t_, e2, val, e3 | e4, q, e5);

        let rgb = _mm512_or_si512(r, _mm512_or_si512(_mm512_slli_epi32::<8>(g), _mm512_slli_epi32::<16>(b)));
        let out = _mm512_permutexvar_epi8(to_bytes, rgb);
        _mm256_storeu_si256(p.cast(), _mm512_castsi512_si256(out));
        _mm_storeu_si128(p.add(32).cast(), _mm512_extracti32x4_epi32::<2>(out));
    }
}

/// A 256-byte table in four registers, looked up 16 dwords at a time (indexes 0..=255 in the dwords).
#[derive(Clone, Copy)]
struct ByteTable([__m512i; 4]);

impl ByteTable {
    #[target_feature(enable = "avx512f,avx512bw,avx512vbmi")]
    unsafe fn new(table: &[u8; 256]) -> ByteTable {
        ByteTable([0, 64, 128, 192].map(|o| _mm512_loadu_si512(table.as_ptr().add(o).cast())))
    }

    /// `table[i]` for each dword `i`: the low and high halves by 7-bit permutes, chosen by bit 7.
    #[target_feature(enable = "avx512f,avx512bw,avx512vbmi")]
    unsafe fn look_up(&self, index: __m512i) -> __m512i {
        let [a, b, c, d] = self.0;
        let low = _mm512_permutex2var_epi8(a, index, b);
        let high = _mm512_permutex2var_epi8(c, index, d);
        let bytes = _mm512_mask_blend_epi8(_mm512_movepi8_mask(index), low, high);
        _mm512_and_si512(bytes, _mm512_set1_epi32(0xff))
    }
}
