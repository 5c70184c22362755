//! The flex kernels' element loops compiled for the widest vectors the CPU has, chosen at run time.
//!
//! A release build targets baseline x86-64, so the compiler vectorises ember's loops with SSE2: four f32
//! lanes and no more. [`widest!`] compiles a loop function three times (baseline, AVX2, AVX-512) and calls
//! the one the CPU runs. The three run the same IEEE operations in the same order (nothing is contracted
//! into fused multiply-adds, lane sums keep their own fixed lane count), so results are identical bit for
//! bit whichever runs; `tests` checks that on this machine's widest level against the baseline.

/// The vector instruction sets a `widest!` function chooses between.
pub(crate) use crate::backend::SimdLevel as Level;

/// The widest level this CPU runs (detected once), lowered by `EMBER_SIMD` ([`crate::backend::simd_cap`]).
pub(crate) fn level() -> Level {
    static LEVEL: std::sync::OnceLock<Level> = std::sync::OnceLock::new();
    *LEVEL.get_or_init(|| detected().min(crate::backend::simd_cap()))
}

/// Every feature a level's functions are compiled with (the `target_feature` lists of [`widest!`]).
#[cfg(target_arch = "x86_64")]
fn detected() -> Level {
    let avx2 = is_x86_feature_detected!("avx2")
        && is_x86_feature_detected!("fma")
        && is_x86_feature_detected!("bmi1")
        && is_x86_feature_detected!("bmi2");
    let avx512 = avx2
        && is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512bw")
        && is_x86_feature_detected!("avx512dq")
        && is_x86_feature_detected!("avx512vl");
    match (avx512, avx2) {
        (true, _) => Level::Avx512,
        (false, true) => Level::Avx2,
        _ => Level::Baseline,
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn detected() -> Level {
    Level::Baseline
}

/// `fn name(args) -> ret { body }` compiled for each [`Level`], the call going to the widest the CPU runs.
/// The body must be plain loops over its arguments and `#[inline(always)]` helpers (what it calls without
/// inlining runs at the baseline).
macro_rules! widest {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$meta])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn body($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,bmi1,bmi2")]
                unsafe fn avx512($($arg: $ty),*) $(-> $ret)? { body($($arg),*) }
                #[target_feature(enable = "avx2,fma,bmi1,bmi2")]
                unsafe fn avx2($($arg: $ty),*) $(-> $ret)? { body($($arg),*) }
                match $crate::kernels::flex::wide::level() {
                    // SAFETY: `level` reports only instruction sets the running CPU has.
                    $crate::kernels::flex::wide::Level::Avx512 => return unsafe { avx512($($arg),*) },
                    $crate::kernels::flex::wide::Level::Avx2 => return unsafe { avx2($($arg),*) },
                    $crate::kernels::flex::wide::Level::Baseline => {}
                }
            }
            body($($arg),*)
        }
    };
}
pub(crate) use widest;

#[cfg(test)]
mod tests {
    use super::*;

    widest! {
        /// A loop of the kinds the kernels run: a transcendental per element and a lane sum.
        fn silu_and_sum(dst: &mut [f32], src: &[f32]) -> f64 {
            let mut lanes = [0f32; 8];
            for (k, (y, &x)) in dst.iter_mut().zip(src).enumerate() {
                *y = x * crate::kernels::flex::math::sigmoid(x);
                lanes[k % 8] += *y * x;
            }
            lanes.iter().map(|&v| v as f64).sum()
        }
    }

    #[test]
    fn the_widest_level_equals_the_baseline_bit_for_bit() {
        let src: Vec<f32> = (0..10_007).map(|i| ((i * 7919) % 20_011) as f32 / 997.0 - 10.0).collect();
        let mut wide = vec![0f32; src.len()];
        let wide_sum = silu_and_sum(&mut wide, &src);
        #[cfg(target_arch = "x86_64")]
        if level() != Level::Baseline {
            eprintln!("comparing {:?} with the baseline", level());
        }
        // The baseline, called directly.
        let mut base = vec![0f32; src.len()];
        let mut lanes = [0f32; 8];
        for (k, (y, &x)) in base.iter_mut().zip(&src).enumerate() {
            *y = x * crate::kernels::flex::math::sigmoid(x);
            lanes[k % 8] += *y * x;
        }
        let base_sum: f64 = lanes.iter().map(|&v| v as f64).sum();
        assert!(wide.iter().zip(&base).all(|(a, b)| a.to_bits() == b.to_bits()));
        assert_eq!(wide_sum.to_bits(), base_sum.to_bits());
    }
}
