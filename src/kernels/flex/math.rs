//! Vectorisable sigmoid for ember's flex kernels (the SiLU fused into BatchNorm, the class loss).
//!
//! burn writes SiLU as `x * sigmoid(x)` with a single-threaded scalar sigmoid on flex, evaluated again in
//! the backward pass; SiLU then cost about as much as the convolutions around it (BENCHMARKS.md). ember's
//! kernels evaluate it with the branch-free exponential below, which the compiler vectorises (libm's
//! `expf` does not).

/// `1 / (1 + e^-x)` with a branch-free exponential, so the kernel loops that use it vectorise (libm's `exp` does not).
#[inline(always)]
pub(crate) fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

/// Cephes' single-precision `expf` (relative error about 2e-7 over the clamped range), written with
/// round-by-magic-number and exponent bit arithmetic instead of `floor` and `ldexp`.
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const ROUND: f32 = 12_582_912.0; // 1.5 * 2^23: adding it rounds to an integer in the low mantissa bits
    let x = x.clamp(-87.3, 88.0); // 2^n stays a normal float
    let shifted = x * LOG2E + ROUND;
    let n = shifted - ROUND;
    let r = x - n * 0.693_359_4 - n * -2.121_944_4e-4;
    let p = ((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r + 1.666_666_5e-1)
        * r
        + 5e-1;
    let e = p * r * r + r + 1.0;
    let k = (shifted.to_bits() as i32).wrapping_sub(ROUND.to_bits() as i32);
    e * f32::from_bits(((k + 127) << 23) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exponential_is_accurate_and_saturates() {
        for i in -1740..=1760 {
            let x = i as f32 * 0.05;
            let (ours, std) = (exp(x), x.exp());
            assert!(((ours - std) / std).abs() < 5e-7, "exp({x}) = {ours} vs {std}");
            // -87..88.5: normal floats
        }
        assert!(exp(-1000.0) > 0.0 && exp(1000.0).is_finite());
        assert_eq!(sigmoid(1000.0), 1.0);
        assert!(sigmoid(-1000.0) < 1e-37);
    }
}
