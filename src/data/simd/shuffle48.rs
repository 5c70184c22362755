//! 48 bytes (16 RGB pixels) rearranged by byte shuffles: three 16-byte registers in, three out, each output
//! byte taken from wherever a table says. The CHW split and the flip are two such tables.

use std::arch::x86_64::*;

/// Which input byte (0..48) each output byte takes.
pub(super) type Sources = [usize; 48];

/// The shuffle masks for `sources`, as `[output register][input register]`; -1 where an output byte does not
/// come from that input register.
pub(super) const fn masks(sources: Sources) -> [[[i8; 16]; 3]; 3] {
    let mut m = [[[-1i8; 16]; 3]; 3];
    let mut b = 0;
    while b < 48 {
        let from = sources[b];
        m[b / 16][from / 16][b % 16] = (from % 16) as i8;
        b += 1;
    }
    m
}

/// The masks loaded, once per call of a loop.
#[derive(Clone, Copy)]
pub(super) struct Shuffle48([[__m128i; 3]; 3]);

impl Shuffle48 {
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn new(masks: &[[[i8; 16]; 3]; 3]) -> Shuffle48 {
        Shuffle48(masks.map(|per_out| per_out.map(|m| _mm_loadu_si128(m.as_ptr().cast()))))
    }

    /// The three output registers from the 48 bytes at `p`.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn apply(&self, p: *const u8) -> [__m128i; 3] {
        let parts = [0, 16, 32].map(|o| _mm_loadu_si128(p.add(o).cast()));
        self.0.map(|m| {
            _mm_or_si128(
                _mm_or_si128(_mm_shuffle_epi8(parts[0], m[0]), _mm_shuffle_epi8(parts[1], m[1])),
                _mm_shuffle_epi8(parts[2], m[2]),
            )
        })
    }
}
