//! OpenCV's bilinear resize, both passes: the horizontal one a pixel's three channels in one register, the
//! vertical one eight values at a time with OpenCV's dropped bits.

use std::arch::x86_64::*;

use super::narrow;

/// The horizontal pass from the left (AVX2 must be present), until a tap's 4-byte loads would leave `line` or
/// its 4-value store would leave `out`. Returns the pixels done.
pub(super) fn row(line: &[u8], taps: &[(usize, usize, i32, i32)], out: &mut [i32]) -> usize {
    // SAFETY: the caller checked AVX2; every load and store is checked before it is made.
    unsafe { row_pixels(line, taps, out) }
}

#[target_feature(enable = "avx2")]
unsafe fn row_pixels(line: &[u8], taps: &[(usize, usize, i32, i32)], out: &mut [i32]) -> usize {
    let pixel = |p: &[u8]| _mm_cvtepu8_epi32(_mm_cvtsi32_si128(p.as_ptr().cast::<i32>().read_unaligned()));
    for (k, &(x0, x1, a0, a1)) in taps.iter().enumerate() {
        let (Some(p0), Some(p1), Some(o)) =
            (line.get(x0 * 3..x0 * 3 + 4), line.get(x1 * 3..x1 * 3 + 4), out.get_mut(k * 3..k * 3 + 4))
        else {
            return k;
        };
        let sum = _mm_add_epi32(
            _mm_mullo_epi32(pixel(p0), _mm_set1_epi32(a0)),
            _mm_mullo_epi32(pixel(p1), _mm_set1_epi32(a1)),
        );
        _mm_storeu_si128(o.as_mut_ptr().cast(), sum);
    }
    taps.len()
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
