//! The input pipeline's per-pixel loops with AVX2, for the x86-64 CPUs that have it (detected at run time;
//! other CPUs, and what a call leaves over, take the scalar definitions). Each function runs the same integer
//! and float operations, in the same order, as the definition it stands in for, so the pixels are identical;
//! the definitions' own modules (`augment::color`, `augment::geometry`, `resize`) test that. Each returns how
//! much it did, 0 without AVX2, and the caller finishes the rest with the definition.

#[cfg(target_arch = "x86_64")]
mod flip;
#[cfg(target_arch = "x86_64")]
mod hsv;
#[cfg(target_arch = "x86_64")]
mod planar;
#[cfg(target_arch = "x86_64")]
mod resize;
#[cfg(target_arch = "x86_64")]
mod shuffle48;
#[cfg(target_arch = "x86_64")]
mod warp;

pub use crate::backend::SimdLevel;

/// The widest kernels this CPU runs (detected once, lowered by `EMBER_SIMD`: [`crate::backend::simd_cap`]):
/// AVX-512 needs F, BW and VBMI here.
pub fn widest() -> SimdLevel {
    static WIDEST: std::sync::OnceLock<SimdLevel> = std::sync::OnceLock::new();
    *WIDEST.get_or_init(|| detected().min(crate::backend::simd_cap()))
}

#[cfg(target_arch = "x86_64")]
fn detected() -> SimdLevel {
    let avx512 = is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512bw")
        && is_x86_feature_detected!("avx512vbmi");
    match (is_x86_feature_detected!("avx2"), avx512) {
        (true, true) => SimdLevel::Avx512,
        (true, false) => SimdLevel::Avx2,
        _ => SimdLevel::Baseline,
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn detected() -> SimdLevel {
    SimdLevel::Baseline
}

#[cfg(target_arch = "x86_64")]
fn avx2() -> bool {
    widest() >= SimdLevel::Avx2
}

/// Eight i32 lanes as 8 bytes in the low half of a register, saturated to 0..=255 (OpenCV's clamp).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn narrow(x: std::arch::x86_64::__m256i) -> std::arch::x86_64::__m128i {
    use std::arch::x86_64::*;
    let words = _mm256_packus_epi32(x, x);
    let bytes = _mm256_packus_epi16(words, words);
    _mm_unpacklo_epi32(_mm256_castsi256_si128(bytes), _mm256_extracti128_si256::<1>(bytes))
}

/// The HSV jitter (`augment::color`) over RGB `bytes`, whole groups of 16 (AVX-512) or 8 (AVX2) pixels,
/// through the hue, saturation and value tables, with the kernels of `level` or the widest below it the CPU runs
/// (callers pass [`widest`]; tests each level). Returns the bytes done.
pub fn hsv_jitter(level: SimdLevel, tables: [&[u8; 256]; 3], bytes: &mut [u8]) -> usize {
    #[cfg(target_arch = "x86_64")]
    match level.min(widest()) {
        SimdLevel::Avx512 => return hsv::jitter(tables, bytes, true),
        SimdLevel::Avx2 => return hsv::jitter(tables, bytes, false),
        SimdLevel::Baseline => {}
    }
    let _ = (level, tables, bytes);
    0
}

/// The left-right flip (`augment::geometry`) of one row of RGB pixels: blocks of pixels from both ends swapped
/// and reversed. Returns the pixels done at each end; the caller reverses the pixels between.
pub fn flip_row_ends(row: &mut [u8]) -> usize {
    #[cfg(target_arch = "x86_64")]
    if avx2() {
        return flip::reverse_ends(row);
    }
    let _ = row;
    0
}

/// HWC -> CHW (`loader::planar`): whole groups of 16 pixels of interleaved RGB `pixels` into the three planes.
/// Returns the pixels done.
pub fn planar(pixels: &[u8], planes: [&mut [std::mem::MaybeUninit<u8>]; 3]) -> usize {
    #[cfg(target_arch = "x86_64")]
    if avx2() {
        return planar::split(pixels, planes);
    }
    let _ = (pixels, planes);
    0
}

/// Asks the CPU to bring `bytes` into its caches ahead of use (a hint; nothing on other architectures).
pub fn prefetch(bytes: &[u8]) {
    #[cfg(target_arch = "x86_64")]
    for line in bytes.chunks(64) {
        // SAFETY: a prefetch of memory the slice holds; SSE is part of x86-64.
        unsafe { std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(line.as_ptr().cast()) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = bytes;
}

/// The warp's vertical pass (`augment::geometry`): `out[i] = r0[i] * w[0] + r1[i] * w[1]`. Returns the values done.
pub fn warp_blend_rows(r0: &[u8], r1: &[u8], w: [i32; 2], out: &mut [i32]) -> usize {
    #[cfg(target_arch = "x86_64")]
    if avx2() {
        return warp::blend_rows(r0, r1, w, out);
    }
    let _ = (r0, r1, w, out);
    0
}

/// The warp's horizontal pass (`augment::geometry`): output pixel `k` from `blended` at its tap `[slot, a, b]`,
/// `(left * a + right * b + 2^(shift-1)) >> shift`, with the kernels of `level` or the widest below it the CPU
/// runs. Returns the pixels done, from the left.
pub fn warp_taps(level: SimdLevel, blended: &[i32], taps: &[[i32; 3]], shift: u32, orow: &mut [u8]) -> usize {
    #[cfg(target_arch = "x86_64")]
    match level.min(widest()) {
        SimdLevel::Avx512 => return warp::taps(blended, taps, shift, orow, true),
        SimdLevel::Avx2 => return warp::taps(blended, taps, shift, orow, false),
        SimdLevel::Baseline => {}
    }
    let _ = (level, blended, taps, shift, orow);
    0
}

/// The resize's horizontal pass (`resize`): output pixel `k` of a source row is
/// `line[x0] * a0 + line[x1] * a1` per channel at its tap `(x0, x1, a0, a1)`. Returns the pixels done, from the left.
pub fn resize_row(line: &[u8], taps: &[(usize, usize, i32, i32)], out: &mut [i32]) -> usize {
    #[cfg(target_arch = "x86_64")]
    if avx2() {
        return resize::row(line, taps, out);
    }
    let _ = (line, taps, out);
    0
}

/// The resize's vertical pass (`resize`), OpenCV's: `(((b0 * (a >> 4)) >> 16) + ((b1 * (b >> 4)) >> 16) + 2) >> 2`,
/// saturated to u8. Returns the values done, from the left.
pub fn resize_blend(r0: &[i32], r1: &[i32], b: [i32; 2], out: &mut [u8]) -> usize {
    #[cfg(target_arch = "x86_64")]
    if avx2() {
        return resize::blend(r0, r1, b, out);
    }
    let _ = (r0, r1, b, out);
    0
}
