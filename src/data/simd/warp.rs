//! The separable warp's two passes: the vertical one sixteen values at a time as pairs of 16-bit products
//! (a pixel times a weight of at most 2^11 fits), the horizontal one two pixels a register with AVX2, four
//! with AVX-512, four a store.

use std::arch::x86_64::*;

/// The vertical pass over whole groups of 16 values (AVX2 must be present). Returns the values done.
pub(super) fn blend_rows(r0: &[u8], r1: &[u8], w: [i32; 2], out: &mut [i32]) -> usize {
    let done = out.len().min(r0.len()).min(r1.len()) / 16 * 16;
    // Both weights fit i16 (they sum to 2^11), so one madd gives the exact i32 sums.
    debug_assert!(w.iter().all(|w| (0..=i16::MAX as i32).contains(w)));
    // SAFETY: the caller checked AVX2; each group reads 16 bytes of both rows and writes 16 values, below `done`.
    unsafe { blend_groups(r0, r1, w, &mut out[..done]) };
    done
}

#[target_feature(enable = "avx2")]
unsafe fn blend_groups(r0: &[u8], r1: &[u8], [w0, w1]: [i32; 2], out: &mut [i32]) {
    let weights = _mm256_set1_epi32((w1 << 16) | (w0 & 0xffff));
    for (i, group) in out.chunks_exact_mut(16).enumerate() {
        let p0 = _mm256_cvtepu8_epi16(_mm_loadu_si128(r0.as_ptr().add(16 * i).cast()));
        let p1 = _mm256_cvtepu8_epi16(_mm_loadu_si128(r1.as_ptr().add(16 * i).cast()));
        // Per 128-bit lane, values 0-3 (8-11) and 4-7 (12-15) as (r0, r1) pairs.
        let low = _mm256_madd_epi16(_mm256_unpacklo_epi16(p0, p1), weights);
        let high = _mm256_madd_epi16(_mm256_unpackhi_epi16(p0, p1), weights);
        let q = group.as_mut_ptr();
        _mm256_storeu_si256(q.cast(), _mm256_permute2x128_si256::<0x20>(low, high));
        _mm256_storeu_si256(q.add(8).cast(), _mm256_permute2x128_si256::<0x31>(low, high));
    }
}

/// The horizontal pass over groups of 4 pixels from the left (AVX2 must be present). A tap reads 4 values where
/// it needs 3, a pair of taps is loaded as 8 words where it has 6, and a group stores 16 bytes for its 12, so it
/// stops at the first group whose reads would leave `blended` or `taps` or whose store would leave `orow`.
/// Returns the pixels done.
/// With `avx512` (the caller checked AVX-512 F), the four taps of a group are loaded as 16 words.
pub(super) fn taps(blended: &[i32], taps: &[[i32; 3]], shift: u32, orow: &mut [u8], avx512: bool) -> usize {
    // Groups whose 16-byte store ends within the row and whose tap loads (the last pair's 8 words, or the
    // four taps' 16) are within the taps.
    let stores = if orow.len() >= 16 { (orow.len() - 4) / 12 } else { 0 };
    let words = taps.as_flattened();
    let loaded = if avx512 { words.len().saturating_sub(4) } else { words.len().saturating_sub(2) };
    let groups = stores.min(taps.len() / 4).min(loaded / 12);
    // SAFETY: the caller checked the features; the stores of the first `groups` groups are within `orow`,
    // their tap loads within `taps`, and the loads from `blended` are checked tap by tap.
    unsafe {
        match avx512 {
            true => tap_groups_512(blended, words, groups, shift, orow),
            false => tap_groups(blended, words, groups, shift, orow),
        }
    }
}

/// Returns the pixels done: all `groups` groups unless a tap reads past `blended`.
#[target_feature(enable = "avx2")]
unsafe fn tap_groups(blended: &[i32], words: &[i32], groups: usize, shift: u32, orow: &mut [u8]) -> usize {
    let round = _mm256_set1_epi32(1 << (shift - 1));
    let count = _mm_cvtsi32_si128(shift as i32);
    let keep = _mm_setr_epi8(0, 1, 2, 4, 5, 6, 8, 9, 10, 12, 13, 14, -1, -1, -1, -1);
    // From a pair of taps loaded as (slot, a, b, slot, a, b, -, -): each tap's weights over its pixel's lane.
    let (left_weights, right_weights) =
        (_mm256_setr_epi32(1, 1, 1, 1, 4, 4, 4, 4), _mm256_setr_epi32(2, 2, 2, 2, 5, 5, 5, 5));
    // The left tap's 4 values and the right tap's 4 (3 on), as one checked slice of 7.
    let window = |slot: i32| blended.get(slot as usize * 3..slot as usize * 3 + 7);
    for g in 0..groups {
        let mut pairs = [_mm256_setzero_si256(); 2];
        for (h, pair) in pairs.iter_mut().enumerate() {
            let t = 3 * (4 * g + 2 * h);
            let (Some(first), Some(second)) = (window(words[t]), window(words[t + 3])) else {
                return 4 * g;
            };
            let taps = _mm256_loadu_si256(words.as_ptr().add(t).cast());
            let left = _mm256_loadu2_m128i(second.as_ptr().cast(), first.as_ptr().cast());
            let right = _mm256_loadu2_m128i(second.as_ptr().add(3).cast(), first.as_ptr().add(3).cast());
            let sum = _mm256_add_epi32(
                _mm256_mullo_epi32(left, _mm256_permutevar8x32_epi32(taps, left_weights)),
                _mm256_mullo_epi32(right, _mm256_permutevar8x32_epi32(taps, right_weights)),
            );
            *pair = _mm256_sra_epi32(_mm256_add_epi32(sum, round), count);
        }
        // Per lane, pixels (0, 2) and (1, 3) as words, then bytes; interleaved back to 0, 1, 2, 3.
        let words16 = _mm256_packus_epi32(pairs[0], pairs[1]);
        let bytes = _mm256_packus_epi16(words16, words16);
        let ordered = _mm_unpacklo_epi32(_mm256_castsi256_si128(bytes), _mm256_extracti128_si256::<1>(bytes));
        _mm_storeu_si128(orow.as_mut_ptr().add(g * 12).cast(), _mm_shuffle_epi8(ordered, keep));
    }
    4 * groups
}

/// `tap_groups` with a group's four pixels in one register.
#[target_feature(enable = "avx512f")]
unsafe fn tap_groups_512(blended: &[i32], words: &[i32], groups: usize, shift: u32, orow: &mut [u8]) -> usize {
    let round = _mm512_set1_epi32(1 << (shift - 1));
    let count = _mm_cvtsi32_si128(shift as i32);
    let keep = _mm_setr_epi8(0, 1, 2, 4, 5, 6, 8, 9, 10, 12, 13, 14, -1, -1, -1, -1);
    // From four taps loaded as (slot, a, b) x 4: each tap's weights over its pixel's four lanes.
    let left_weights = _mm512_setr_epi32(1, 1, 1, 1, 4, 4, 4, 4, 7, 7, 7, 7, 10, 10, 10, 10);
    let right_weights = _mm512_setr_epi32(2, 2, 2, 2, 5, 5, 5, 5, 8, 8, 8, 8, 11, 11, 11, 11);
    let window = |slot: i32| blended.get(slot as usize * 3..slot as usize * 3 + 7);
    for g in 0..groups {
        let t = 12 * g;
        let (Some(w0), Some(w1), Some(w2), Some(w3)) =
            (window(words[t]), window(words[t + 3]), window(words[t + 6]), window(words[t + 9]))
        else {
            return 4 * g;
        };
        let taps = _mm512_loadu_si512(words.as_ptr().add(t).cast());
        let four = |offset: usize| {
            let at = |w: &[i32]| _mm_loadu_si128(w.as_ptr().add(offset).cast());
            let v = _mm512_castsi128_si512(at(w0));
            let v = _mm512_inserti32x4::<1>(v, at(w1));
            let v = _mm512_inserti32x4::<2>(v, at(w2));
            _mm512_inserti32x4::<3>(v, at(w3))
        };
        let sum = _mm512_add_epi32(
            _mm512_mullo_epi32(four(0), _mm512_permutexvar_epi32(left_weights, taps)),
            _mm512_mullo_epi32(four(3), _mm512_permutexvar_epi32(right_weights, taps)),
        );
        let pixels = _mm512_sra_epi32(_mm512_add_epi32(sum, round), count);
        // Each sum is within 0..=255 (a weighted mean of bytes), so narrowing does not saturate.
        let bytes = _mm512_cvtusepi32_epi8(pixels);
        _mm_storeu_si128(orow.as_mut_ptr().add(g * 12).cast(), _mm_shuffle_epi8(bytes, keep));
    }
    4 * groups
}
