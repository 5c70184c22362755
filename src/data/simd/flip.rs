//! A row's pixels in reverse order, sixteen pixels (48 bytes) from each end at a time, by byte shuffles.

use std::arch::x86_64::*;

/// For output register `j` and input register `k` of 16 reversed pixels, where each output byte comes from
/// (-1: not from this register).
const fn mask(j: usize, k: usize) -> [i8; 16] {
    let mut m = [-1i8; 16];
    let mut i = 0;
    while i < 16 {
        let b = 16 * j + i;
        let from = 3 * (15 - b / 3) + b % 3;
        if from / 16 == k {
            m[i] = (from % 16) as i8;
        }
        i += 1;
    }
    m
}

const MASKS: [[[i8; 16]; 3]; 3] = {
    let mut m = [[[0i8; 16]; 3]; 3];
    let mut j = 0;
    while j < 3 {
        let mut k = 0;
        while k < 3 {
            m[j][k] = mask(j, k);
            k += 1;
        }
        j += 1;
    }
    m
};

/// Swaps and reverses blocks of 16 pixels from both ends of `row` while they do not meet (AVX2 must be
/// present). Returns the pixels done at each end: the middle is left to reverse.
pub(super) fn reverse_ends(row: &mut [u8]) -> usize {
    let pixels = row.len() / 3;
    let blocks = pixels / 32;
    // SAFETY: the caller checked AVX2; block `i` covers bytes 48 i.. and, from the end, ..len - 48 i, which
    // do not overlap for i below pixels / 32.
    unsafe { reverse_blocks(row.as_mut_ptr(), pixels * 3, blocks) };
    blocks * 16
}

#[target_feature(enable = "avx2")]
unsafe fn reverse_blocks(row: *mut u8, len: usize, blocks: usize) {
    let masks = MASKS.map(|per_out| per_out.map(|m| _mm_loadu_si128(m.as_ptr().cast())));
    let reversed = |p: *const u8| {
        let parts = [0, 16, 32].map(|o| _mm_loadu_si128(p.add(o).cast()));
        masks.map(|m| {
            _mm_or_si128(
                _mm_or_si128(_mm_shuffle_epi8(parts[0], m[0]), _mm_shuffle_epi8(parts[1], m[1])),
                _mm_shuffle_epi8(parts[2], m[2]),
            )
        })
    };
    for i in 0..blocks {
        let (front, back) = (row.add(48 * i), row.add(len - 48 * (i + 1)));
        let (f, b) = (reversed(front), reversed(back));
        for (o, (f, b)) in f.into_iter().zip(b).enumerate() {
            _mm_storeu_si128(front.add(16 * o).cast(), b);
            _mm_storeu_si128(back.add(16 * o).cast(), f);
        }
    }
}
