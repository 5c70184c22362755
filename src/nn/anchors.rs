//! Anchor points (grid-cell centres) and per-anchor strides for the detection levels.

use burn::tensor::{backend::Backend, Tensor, TensorData};

/// Anchor centres of all levels, level by level, row-major within a level (`y` outer, `x` inner),
/// matching the order of the head's flattened `[.., h*w]` outputs.
#[derive(Debug, Clone, PartialEq)]
pub struct Anchors {
    /// `(x, y)` in grid units of the anchor's own level (`col + 0.5`, `row + 0.5`).
    pub points: Vec<[f32; 2]>,
    /// Stride (pixels per grid cell) of each anchor.
    pub strides: Vec<f32>,
}

impl Anchors {
    pub fn len(&self) -> usize {
        self.points.len()
    }

    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    /// Anchor points `[A, 2]` (grid units) and strides `[A, 1]` as tensors.
    pub fn to_tensors<B: Backend>(&self, device: &B::Device) -> (Tensor<B, 2>, Tensor<B, 2>) {
        let n = self.len();
        let pts: Vec<f32> = self.points.iter().flatten().copied().collect();
        (
            Tensor::from_data(TensorData::new(pts, [n, 2]), device),
            Tensor::from_data(TensorData::new(self.strides.clone(), [n, 1]), device),
        )
    }
}

/// Anchor points for feature maps of sizes `feature_sizes` (`(h, w)` per level) with the given strides,
/// offset `grid_cell_offset` (0.5: cell centres), as Ultralytics' `make_anchors`.
pub fn make_anchors(feature_sizes: &[[usize; 2]], strides: &[f32], grid_cell_offset: f32) -> Anchors {
    assert_eq!(feature_sizes.len(), strides.len(), "one stride per level");
    let total: usize = feature_sizes.iter().map(|s| s[0] * s[1]).sum();
    let mut points = Vec::with_capacity(total);
    let mut out_strides = Vec::with_capacity(total);
    for (&[h, w], &s) in feature_sizes.iter().zip(strides) {
        for y in 0..h {
            for x in 0..w {
                points.push([x as f32 + grid_cell_offset, y as f32 + grid_cell_offset]);
                out_strides.push(s);
            }
        }
    }
    Anchors { points, strides: out_strides }
}
