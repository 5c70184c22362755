//! The Muon half of Ultralytics' MuSGD: a Nesterov momentum update of a weight matrix (a conv filter
//! bank flattened to `[out, in*kh*kw]`) replaced by its nearest semi-orthogonal matrix, found with the
//! quintic Newton-Schulz iteration. Orthogonalising equalises the update's singular values, so rare
//! directions in the gradient move as fast as dominant ones.

use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

/// Coefficients of the quintic iteration, tuned (by Muon's authors) for the fastest growth of small
/// singular values; the result has singular values in roughly [0.5, 1.5], which is all Muon needs.
const NS_COEFFICIENTS: (f64, f64, f64) = (3.4445, -4.7750, 2.0315);
const NS_STEPS: usize = 5;

/// Approximate orthogonalisation `U V^T` of `g = U S V^T`. Ultralytics runs this in bfloat16 on GPUs;
/// ember keeps FP32, the precision of its master weights.
pub fn newton_schulz5<B: Backend>(g: Tensor<B, 2>) -> Tensor<B, 2> {
    let [rows, cols] = g.dims();
    // Scale so the largest singular value is at most 1 (the Frobenius norm bounds it).
    let norm = g.clone().powi_scalar(2).sum().sqrt().add_scalar(1e-7).reshape([1, 1]);
    let mut x = g.div(norm);
    // Work on the wide orientation: X X^T is then the smaller square.
    let tall = rows > cols;
    if tall {
        x = x.transpose();
    }
    let (a, b, c) = NS_COEFFICIENTS;
    for _ in 0..NS_STEPS {
        let gram = x.clone().matmul(x.clone().transpose());
        let poly = gram.clone().mul_scalar(b) + gram.clone().matmul(gram).mul_scalar(c);
        x = x.clone().mul_scalar(a) + poly.matmul(x);
    }
    if tall {
        x = x.transpose();
    }
    x
}

/// Muon's step direction for one parameter of PyTorch shape `shape` (2-D or 4-D), from its flattened
/// gradient and momentum buffer (updated in place: `m = beta*m + (1-beta)*g`). Returns the new
/// buffer and the flattened update.
pub fn muon_update<B: Backend>(
    grad: Tensor<B, 1>,
    momentum: Option<Tensor<B, 1>>,
    beta: f64,
    shape: &[usize],
) -> (Tensor<B, 1>, Tensor<B, 1>) {
    let momentum = match momentum {
        Some(m) => m.mul_scalar(beta) + grad.clone().mul_scalar(1.0 - beta),
        None => grad.clone().mul_scalar(1.0 - beta),
    };
    // Nesterov: look ahead along the new momentum.
    let update = momentum.clone().mul_scalar(beta) + grad.mul_scalar(1.0 - beta);
    let rows = shape[0];
    let cols = shape[1..].iter().product::<usize>();
    // Ultralytics scales by the last two dimensions of the parameter: out/in for a matrix, kh/kw
    // (so 1) for a filter bank.
    let d = shape.len();
    let scale = (shape[d - 2] as f64 / shape[d - 1] as f64).max(1.0).sqrt();
    let orthogonal = newton_schulz5(update.reshape([rows, cols])).reshape([rows * cols]).mul_scalar(scale);
    (momentum, orthogonal)
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
        let x = newton_schulz5(g);
        let gram: Vec<f32> = x.clone().matmul(x.transpose()).into_data().to_vec().unwrap();
        // The diagonal of X X^T averages the squared singular values, so each entry lies in Muon's band
        // around 1, although the input's rows differed in length by a factor of 60.
        for i in 0..3 {
            let s2 = gram[i * 3 + i];
            assert!((0.25..=2.25).contains(&s2), "row {i}: squared length {s2}");
        }
    }
}
