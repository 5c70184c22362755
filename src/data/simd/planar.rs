//! HWC -> CHW sixteen pixels at a time: 48 bytes in, each plane's 16 gathered from them by byte shuffles.

use std::arch::x86_64::*;
use std::mem::MaybeUninit;

use super::shuffle48::{masks, Shuffle48};

/// Plane `c`'s 16 bytes take channel `c` of each pixel.
const MASKS: [[[i8; 16]; 3]; 3] = {
    let mut sources = [0; 48];
    let mut b = 0;
    while b < 48 {
        sources[b] = 3 * (b % 16) + b / 16;
        b += 1;
    }
    masks(sources)
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
    let split = Shuffle48::new(&MASKS);
    let [r, g, b] = planes;
    for (i, group) in pixels.chunks_exact(48).enumerate() {
        for (plane, v) in [&mut *r, &mut *g, &mut *b].into_iter().zip(split.apply(group.as_ptr())) {
            _mm_storeu_si128(plane.as_mut_ptr().add(16 * i).cast(), v);
        }
    }
}
