//! OpenCV's bilinear resize, both passes: the horizontal one a pixel's three channels in one register, the
//! vertical one eight values at a time with OpenCV's dropped bits.

use std::arch::x86_64::*;

use super::narrow;

/// The horizontal pass from the left while a tap's 4-byte loads stay in `line` and the 4-value stores in `out`
/// (AVX2 must be present). Returns the pixels done.
pub(super) fn row(line: &[u8], taps: &[(usize, usize, i32, i32)], out: &mut [i32]) -> usize {
    let fits = |k: usize, t: &(usize, usize, i32, i32)| t.0.max(t.1) * 3 + 4 <= line.len() && k * 3 + 4 <= out.len();
    let done = taps.iter().enumerate().position(|(k, t)| !fits(k, t)).unwrap_or(taps.len());
    // SAFETY: the caller checked AVX2; every load and store of the first `done` taps is within the slices.
    unsafe { row_pixels(line, &taps[..done], out) };
    done
}

#[target_feature(enable = "avx2")]
unsafe fn row_pixels(line: &[u8], taps: &[(usize, usize, i32, i32)], out: &mut [i32]) {
    let pixel =
        |x: usize| _mm_cvtepu8_epi32(_mm_cvtsi32_si128(line.as_ptr().add(x * 3).cast::<i32>().read_unaligned()));
    for (k, &(x0, x1, a0, a1)) in taps.iter().enumerate() {
        let sum = _mm_add_epi32(
            _mm_mullo_epi32(pixel(x0), _mm_set1_epi32(a0)),
            _mm_mullo_epi32(pixel(x1), _mm_set1_epi32(a1)),
        );
        _mm_storeu_si128(out.as_mut_ptr().add(k * 3).cast(), sum);
    }
}

/// The vertical pass over whole groups of 8 values (AVX2 must be present). Returns the values done.
pub(super) fn blend(r0: &[i32], r1: &[i32], b: [i32; 2], out: &mut [u8]) -> usize {
    let done = out.len().min(r0.len()).min(r1.len()) / 8 * 8;
    // SAFETY: the caller checked AVX2; each group reads 8 values of both rows and writes 8 bytes, below `done`.
    unsafe { blend_groups(r0, r1, b, &mut out[..done]) };
    done
}

#[target_feature(enable = "avx2")]
unsafe fn blend_groups(r0: &[i32], r1: &[i32], [b0, b1]: [i32; 2], out: &mut [u8]) {
    let (b0, b1, two) = (_mm256_set1_epi32(b0), _mm256_set1_epi32(b1), _mm256_set1_epi32(2));
    let term = |row: &[i32], i: usize, b| {
        let a = _mm256_loadu_si256(row.as_ptr().add(i).cast());
        _mm256_srai_epi32::<16>(_mm256_mullo_epi32(b, _mm256_srai_epi32::<4>(a)))
    };
    for (g, group) in out.chunks_exact_mut(8).enumerate() {
        let v = _mm256_add_epi32(_mm256_add_epi32(term(r0, 8 * g, b0), term(r1, 8 * g, b1)), two);
        let v = _mm256_srai_epi32::<2>(v);
        _mm_storel_epi64(group.as_mut_ptr().cast(), narrow(v));
    }
}
