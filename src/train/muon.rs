//! The Muon half of Ultralytics' MuSGD: a Nesterov momentum update of a weight matrix (a conv filter
//! bank flattened to `[out, in*kh*kw]`) replaced by its nearest semi-orthogonal matrix, found with the
//! quintic Newton-Schulz iteration. Orthogonalising equalises the update's singular values, so rare
//! directions in the gradient move as fast as dominant ones.
//!
//! Matrices of the same shape are orthogonalised together, as one batched product per iteration (Ultralytics
//! batches them too), so a step costs a fixed number of kernels per shape rather than per matrix.

use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

use super::flat::Slot;

/// Coefficients of the quintic iteration, tuned (by Muon's authors) for the fastest growth of small
/// singular values; the result has singular values in roughly [0.5, 1.5], which is all Muon needs.
const NS_COEFFICIENTS: (f64, f64, f64) = (3.4445, -4.7750, 2.0315);
const NS_STEPS: usize = 5;

/// Approximate orthogonalisation `U V^T` of each matrix `g = U S V^T` of a batch `[n, rows, cols]`. Ultralytics
/// runs this in bfloat16 on GPUs; ember keeps FP32, the precision of its master weights.
pub fn newton_schulz5<B: Backend>(g: Tensor<B, 3>) -> Tensor<B, 3> {
    let [_, rows, cols] = g.dims();
    // Scale so the largest singular value is at most 1 (the Frobenius norm bounds it).
    let norm = g.clone().powi_scalar(2).sum_dim(2).sum_dim(1).sqrt().add_scalar(1e-7);
    let mut x = g.div(norm);
    // Work on the wide orientation: X X^T is then the smaller square.
    let tall = rows > cols;
    if tall {
        x = x.swap_dims(1, 2);
    }
    let (a, b, c) = NS_COEFFICIENTS;
    for _ in 0..NS_STEPS {
        let gram = x.clone().matmul(x.clone().swap_dims(1, 2));
        let poly = gram.clone().mul_scalar(b) + gram.clone().matmul(gram).mul_scalar(c);
        x = x.clone().mul_scalar(a) + poly.matmul(x);
    }
    if tall {
        x = x.swap_dims(1, 2);
    }
    x
}

/// The matrices of a flat buffer grouped by shape: `(rows, cols, scale, offsets)`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MatrixBuckets(Vec<(usize, usize, f64, Vec<usize>)>);

impl MatrixBuckets {
    /// Buckets of the 2-D and 4-D tensors among `slots` (a filter bank `[out, in, kh, kw]` is the matrix
    /// `[out, in*kh*kw]`).
    pub fn new<'a>(slots: impl Iterator<Item = &'a Slot>) -> Self {
        let mut buckets: Vec<(usize, usize, f64, Vec<usize>)> = Vec::new();
        for slot in slots {
            let (rows, cols) = (slot.shape[0], slot.shape[1..].iter().product::<usize>());
            // Ultralytics scales by the last two dimensions of the parameter: out/in for a matrix, kh/kw
            // (so 1) for a filter bank.
            let d = slot.shape.len();
            let scale = (slot.shape[d - 2] as f64 / slot.shape[d - 1] as f64).max(1.0).sqrt();
            match buckets.iter_mut().find(|(r, c, s, _)| (*r, *c, *s) == (rows, cols, scale)) {
                Some(bucket) => bucket.3.push(slot.offset),
                None => buckets.push((rows, cols, scale, vec![slot.offset])),
            }
        }
        MatrixBuckets(buckets)
    }
}

/// Muon's step direction for every matrix of the flat `update` (the momentum look-ahead), orthogonalised and
/// scaled; zero at every other element.
// burn slices a 1-D tensor with a one-range array, which clippy takes for a mistaken `vec![a..b]`.
#[allow(clippy::single_range_in_vec_init)]
pub fn muon_direction<B: Backend>(update: Tensor<B, 1>, buckets: &MatrixBuckets) -> Tensor<B, 1> {
    let mut direction = update.zeros_like();
    for (rows, cols, scale, offsets) in &buckets.0 {
        let (rows, cols, n) = (*rows, *cols, offsets.len());
        let size = rows * cols;
        let matrices: Vec<Tensor<B, 3>> =
            offsets.iter().map(|&o| update.clone().slice([o..o + size]).reshape([1, rows, cols])).collect();
        let orthogonal = newton_schulz5(Tensor::cat(matrices, 0)).mul_scalar(*scale).reshape([n * size]);
        for (j, &o) in offsets.iter().enumerate() {
            direction = direction.slice_assign([o..o + size], orthogonal.clone().slice([j * size..(j + 1) * size]));
        }
    }
    direction
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Cpu;

    #[test]
    fn orthogonalises_a_random_matrix() {
        let device = Default::default();
        // A badly conditioned 3x5 matrix: rows of very different length.
        let g = Tensor::<Cpu, 2>::from_floats(
            [[1.0, 2.0, 0.5, -1.0, 0.3], [0.01, -0.02, 0.03, 0.01, 0.0], [-0.5, 0.2, 0.9, 0.4, -0.7]],
            &device,
        );
        let x = newton_schulz5(g.unsqueeze_dim(0)).squeeze_dim::<2>(0);
        let gram: Vec<f32> = x.clone().matmul(x.transpose()).into_data().to_vec().unwrap();
        // The diagonal of X X^T averages the squared singular values, so each entry lies in Muon's band
        // around 1, although the input's rows differed in length by a factor of 60.
        for i in 0..3 {
            let s2 = gram[i * 3 + i];
            assert!((0.25..=2.25).contains(&s2), "row {i}: squared length {s2}");
        }
    }

    #[test]
    fn a_batch_orthogonalises_each_matrix_alone() {
        let device = Default::default();
        let a = Tensor::<Cpu, 3>::random([1, 4, 6], burn::tensor::Distribution::Normal(0.0, 1.0), &device);
        let b = Tensor::<Cpu, 3>::random([1, 4, 6], burn::tensor::Distribution::Normal(0.0, 3.0), &device);
        let both: Vec<f32> = newton_schulz5(Tensor::cat(vec![a.clone(), b.clone()], 0)).into_data().to_vec().unwrap();
        let alone: Vec<f32> = Tensor::cat(vec![newton_schulz5(a), newton_schulz5(b)], 0).into_data().to_vec().unwrap();
        let worst = both.iter().zip(&alone).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
        assert!(worst < 1e-6, "{worst:e}");
    }
}
