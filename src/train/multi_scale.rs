//! Multi-scale training (`multi_scale`), as Ultralytics 8.4.190's detection trainer does it in
//! `preprocess_batch`: each batch is resized, bilinearly, to a size drawn from
//! `[max(stride, imgsz * (1 - f)), imgsz * (1 + f) + stride)` rounded down to a multiple of the stride,
//! its longer side to that size and each side then rounded up to a stride multiple.

use burn::tensor::backend::Backend;
use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};
use burn::tensor::Tensor;
use rand::Rng;

/// The size a batch is trained at: Python's `random.randrange(lo, hi) // stride * stride`.
pub fn draw_size(imgsz: usize, fraction: f64, stride: usize, rng: &mut impl Rng) -> usize {
    let lo = stride.max((imgsz as f64 * (1.0 - fraction)) as usize);
    let hi = (imgsz as f64 * (1.0 + fraction) + stride as f64) as usize;
    rng.gen_range(lo..hi.max(lo + 1)) / stride * stride
}

/// The `[h, w]` a batch of `[h, w]` images becomes at `size`: scaled so the longer side is `size`, each
/// side rounded up to a stride multiple; `None` when the scale is 1.
pub fn rescaled(hw: [usize; 2], size: usize, stride: usize) -> Option<[usize; 2]> {
    let scale = size as f64 / hw[0].max(hw[1]) as f64;
    (scale != 1.0).then(|| hw.map(|x| (x as f64 * scale / stride as f64).ceil() as usize * stride))
}

/// `x` resized to `[h, w]` as PyTorch's `interpolate(mode="bilinear", align_corners=False)`.
pub fn resize<B: Backend>(x: Tensor<B, 4>, hw: [usize; 2]) -> Tensor<B, 4> {
    let options = InterpolateOptions { mode: InterpolateMode::Bilinear, align_corners: false };
    interpolate(x, hw, options)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn sizes_follow_ultralytics_rule() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
        let sizes: Vec<usize> = (0..2000).map(|_| draw_size(640, 0.5, 32, &mut rng)).collect();
        // randrange(320, 992) // 32 * 32: every multiple of 32 from 320 to 960.
        assert!(sizes.iter().all(|s| s % 32 == 0 && (320..=960).contains(s)));
        for s in (320..=960).step_by(32) {
            assert!(sizes.contains(&s), "{s} never drawn");
        }
        // Small images: never below one stride.
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        assert!((0..200).all(|_| draw_size(64, 0.9, 32, &mut rng) >= 32));
        assert_eq!(rescaled([640, 640], 640, 32), None);
        assert_eq!(rescaled([640, 640], 480, 32), Some([480, 480]));
        // A rectangular batch keeps its aspect, each side rounded up: 384 x 640 at 500 -> 300 x 500 -> 320 x 512.
        assert_eq!(rescaled([384, 640], 500, 32), Some([320, 512]));
    }
}
