//! The separable warp's two passes: the vertical one eight values at a time, the horizontal one a pixel's three
//! channels in one register, four pixels a store.

use std::arch::x86_64::*;

/// The vertical pass over whole groups of 8 values (AVX2 must be present). Returns the values done.
pub(super) fn blend_rows(r0: &[u8], r1: &[u8], w: [i32; 2], out: &mut [i32]) -> usize {
    let done = out.len().min(r0.len()).min(r1.len()) / 8 * 8;
    // SAFETY: the caller checked AVX2; each group reads 8 bytes of both rows and writes 8 values, below `done`.
    unsafe { blend_groups(r0, r1, w, &mut out[..done]) };
    done
}

#[target_feature(enable = "avx2")]
unsafe fn blend_groups(r0: &[u8], r1: &[u8], [w0, w1]: [i32; 2], out: &mut [i32]) {
    let (w0, w1) = (_mm256_set1_epi32(w0), _mm256_set1_epi32(w1));
    for (i, group) in out.chunks_exact_mut(8).enumerate() {
        let p0 = _mm256_cvtepu8_epi32(_mm_loadl_epi64(r0.as_ptr().add(8 * i).cast()));
        let p1 = _mm256_cvtepu8_epi32(_mm_loadl_epi64(r1.as_ptr().add(8 * i).cast()));
        let b = _mm256_add_epi32(_mm256_mullo_epi32(p0, w0), _mm256_mullo_epi32(p1, w1));
        _mm256_storeu_si256(group.as_mut_ptr().cast(), b);
    }
}

/// The horizontal pass over groups of 4 pixels from the left (AVX2 must be present). A tap reads 4 values where
/// it needs 3 and a group stores 16 bytes for its 12, so it stops at the first group whose reads would leave
/// `blended` or whose store would leave `orow`. Returns the pixels done.
pub(super) fn taps(blended: &[i32], taps: &[(u32, i32, i32)], shift: u32, orow: &mut [u8]) -> usize {
    // Groups whose 16-byte store ends within the row.
    let groups = if orow.len() >= 16 { ((orow.len() - 4) / 12).min(taps.len() / 4) } else { 0 };
    // SAFETY: the caller checked AVX2; the stores of the first `groups` groups are within `orow`, and the loads
    // are checked tap by tap.
    unsafe { tap_groups(blended, &taps[..groups * 4], shift, orow) }
}

/// Returns the pixels done: all of `taps` unless one reads past `blended`.
#[target_feature(enable = "avx2")]
unsafe fn tap_groups(blended: &[i32], taps: &[(u32, i32, i32)], shift: u32, orow: &mut [u8]) -> usize {
    let round = _mm_set1_epi32(1 << (shift - 1));
    let count = _mm_cvtsi32_si128(shift as i32);
    let keep = _mm_setr_epi8(0, 1, 2, 4, 5, 6, 8, 9, 10, 12, 13, 14, -1, -1, -1, -1);
    // The left tap's 4 values and the right tap's 4 (3 on), as one checked slice of 7.
    let window = |&(slot, _, _): &(u32, i32, i32)| blended.get(slot as usize * 3..slot as usize * 3 + 7);
    let one = |w: &[i32], &(_, a, b): &(u32, i32, i32)| {
        let left = _mm_loadu_si128(w.as_ptr().cast());
        let right = _mm_loadu_si128(w.as_ptr().add(3).cast());
        let sum = _mm_add_epi32(_mm_mullo_epi32(left, _mm_set1_epi32(a)), _mm_mullo_epi32(right, _mm_set1_epi32(b)));
        _mm_sra_epi32(_mm_add_epi32(sum, round), count)
    };
    for (g, four) in taps.chunks_exact(4).enumerate() {
        let (Some(w0), Some(w1), Some(w2), Some(w3)) =
            (window(&four[0]), window(&four[1]), window(&four[2]), window(&four[3]))
        else {
            return g * 4;
        };
        let lo = _mm_packus_epi32(one(w0, &four[0]), one(w1, &four[1]));
        let hi = _mm_packus_epi32(one(w2, &four[2]), one(w3, &four[3]));
        let bytes = _mm_shuffle_epi8(_mm_packus_epi16(lo, hi), keep);
        _mm_storeu_si128(orow.as_mut_ptr().add(g * 12).cast(), bytes);
    }
    taps.len()
}
