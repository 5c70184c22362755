//! HWC -> CHW sixteen pixels at a time: three 16-byte loads, each plane's bytes gathered from them by shuffles.

use std::arch::x86_64::*;
use std::mem::MaybeUninit;

/// For plane `c` and input register `k` (bytes `16 k..16 k + 16` of 16 pixels), where each output byte comes
/// from (-1: not from this register).
const fn mask(c: usize, k: usize) -> [i8; 16] {
    let mut m = [-1i8; 16];
    let mut i = 0;
    while i < 16 {
        let from = 3 * i + c;
        if from / 16 == k {
            m[i] = (from % 16) as i8;
        }
        i += 1;
    }
    m
}

const MASKS: [[[i8; 16]; 3]; 3] = {
    let mut m = [[[0i8; 16]; 3]; 3];
    let mut c = 0;
    while c < 3 {
        let mut k = 0;
        while k < 3 {
            m[c][k] = mask(c, k);
            k += 1;
        }
        c += 1;
    }
    m
};

/// Splits whole groups of 16 pixels of `pixels` into `planes` (AVX2 must be present; SSSE3 is what runs).
/// Returns the pixels done.
pub(super) fn split(pixels: &[u8], [r, g, b]: [&mut [MaybeUninit<u8>]; 3]) -> usize {
    let n = (pixels.len() / 3).min(r.len()).min(g.len()).min(b.len()) / 16 * 16;
    // SAFETY: the caller checked AVX2; every group reads 48 bytes and writes 16 a plane, below `n` pixels.
    unsafe { split_groups(&pixels[..n * 3], [&mut r[..n], &mut g[..n], &mut b[..n]]) };
    n
}

#[target_feature(enable = "avx2")]
unsafe fn split_groups(pixels: &[u8], planes: [&mut [MaybeUninit<u8>]; 3]) {
    let load = |m: &[i8; 16]| _mm_loadu_si128(m.as_ptr().cast());
    let masks = MASKS.map(|per_plane| per_plane.map(|m| load(&m)));
    let [r, g, b] = planes;
    for (i, group) in pixels.chunks_exact(48).enumerate() {
        let p = group.as_ptr();
        let parts = [0, 16, 32].map(|o| _mm_loadu_si128(p.add(o).cast()));
        for (plane, m) in [&mut *r, &mut *g, &mut *b].into_iter().zip(&masks) {
            let v = _mm_or_si128(
                _mm_or_si128(_mm_shuffle_epi8(parts[0], m[0]), _mm_shuffle_epi8(parts[1], m[1])),
                _mm_shuffle_epi8(parts[2], m[2]),
            );
            _mm_storeu_si128(plane.as_mut_ptr().add(16 * i).cast(), v);
        }
    }
}
