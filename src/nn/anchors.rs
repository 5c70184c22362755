//! Anchor points (grid-cell centres) and per-anchor strides for the detection levels.

use burn::tensor::{backend::Backend, Tensor, TensorData};

use super::onnx::OnnxGraph;

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
    /// Number of anchors `A` over all levels.
    pub fn len(&self) -> usize {
        self.points.len()
    }

    /// Whether there are no anchors (no levels, or only empty feature maps).
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

/// The anchors in an ONNX graph: points `[1, 2, A]` (all x, then all y) and strides `[1, 1, A]`; constants for
/// `static_sizes`, else computed from the shapes of the level features `feats`.
pub fn anchors_onnx(
    g: &mut dyn OnnxGraph,
    feats: &[String],
    strides: &[f32],
    static_sizes: Option<&[[usize; 2]]>,
) -> (String, String) {
    if let Some(sizes) = static_sizes {
        let grid = make_anchors(sizes, strides, 0.5);
        let n = grid.len();
        let xs: Vec<f32> = grid.points.iter().map(|p| p[0]).chain(grid.points.iter().map(|p| p[1])).collect();
        return (g.weight("anchors", &[1, 2, n], &xs), g.weight("strides", &[1, 1, n], &grid.strides));
    }
    let (mut points, mut stride_rows) = (Vec::new(), Vec::new());
    let constants = GridConstants { zero: g.int_scalar("zero", 0), one: g.int_scalar("one", 1), half: g.scalar(0.5) };
    for (x, &s) in feats.iter().zip(strides) {
        let (point_rows, stride_row) = level_anchors_onnx(g, x, s, &constants);
        points.push(point_rows);
        stride_rows.push(stride_row);
    }
    let pr: Vec<&str> = points.iter().map(String::as_str).collect();
    let sr: Vec<&str> = stride_rows.iter().map(String::as_str).collect();
    let p = g.concat(&pr, 1);
    let s = g.concat(&sr, 1);
    (g.unsqueeze(&p, &[0]), g.unsqueeze(&s, &[0]))
}

/// The constants every level's grid uses: int64 0 and 1 (a `Range`), float 0.5 (the cell centre).
struct GridConstants {
    zero: String,
    one: String,
    half: String,
}

/// One level's cell centres `[2, h*w]` and its stride row `[1, h*w]`, from the shape of its feature `x`.
fn level_anchors_onnx(g: &mut dyn OnnxGraph, x: &str, stride: f32, c: &GridConstants) -> (String, String) {
    let (zero, one, half_px) = (&c.zero, &c.one, &c.half);
    let shape = g.op("Shape", &[x], vec![]);
    let h = g.slice1(&shape, 2, 3);
    let w = g.slice1(&shape, 3, 4);
    let axis0 = g.ints("axes", &[0]);
    let hs = g.op("Squeeze", &[&h, &axis0], vec![]);
    let ws = g.op("Squeeze", &[&w, &axis0], vec![]);
    let ry = g.op("Range", &[zero, &hs, one], vec![]);
    let rx = g.op("Range", &[zero, &ws, one], vec![]);
    let fy = g.cast_to_float(&ry);
    let fx = g.cast_to_float(&rx);
    let fy = g.add(&fy, half_px);
    let fx = g.add(&fx, half_px);
    let hw = g.concat(&[&h, &w], 0);
    let gx = g.unsqueeze(&fx, &[0]); // [1, w]
    let gy = g.unsqueeze(&fy, &[1]); // [h, 1]
    let gx = g.op("Expand", &[&gx, &hw], vec![]);
    let gy = g.op("Expand", &[&gy, &hw], vec![]);
    let gx = g.reshape(&gx, &[1, -1]);
    let gy = g.reshape(&gy, &[1, -1]);
    let points = g.concat(&[&gx, &gy], 0);
    let sc = g.weight("stride", &[1, 1], &[stride]);
    let zero_f = g.scalar(0.0);
    let st = g.op("Mul", &[&gx, &zero_f], vec![]);
    (points, g.add(&st, &sc))
}
