//! A row's pixels in reverse order, sixteen pixels (48 bytes) from each end at a time, by byte shuffles.

use std::arch::x86_64::*;

use super::shuffle48::{masks, Shuffle48};

/// Output pixel `k` is input pixel `15 - k`, channels in order.
const MASKS: [[[i8; 16]; 3]; 3] = {
    let mut sources = [0; 48];
    let mut b = 0;
    while b < 48 {
        sources[b] = 3 * (15 - b / 3) + b % 3;
        b += 1;
    }
    masks(sources)
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
    let reverse = Shuffle48::new(&MASKS);
    for i in 0..blocks {
        let (front, back) = (row.add(48 * i), row.add(len - 48 * (i + 1)));
        let (f, b) = (reverse.apply(front), reverse.apply(back));
        for (o, (f, b)) in f.into_iter().zip(b).enumerate() {
            _mm_storeu_si128(front.add(16 * o).cast(), b);
            _mm_storeu_si128(back.add(16 * o).cast(), f);
        }
    }
}
