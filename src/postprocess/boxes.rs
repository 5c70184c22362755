//! Axis-aligned box geometry on plain `f32` arrays.
//!
//! All arithmetic is done in `f32`, in the same operation order as the PyTorch reference, so that IoU values
//! (and therefore threshold decisions) agree bit for bit with Ultralytics.

/// Epsilon added to the IoU denominator by Ultralytics' `box_iou` (cast to `f32`).
pub const IOU_EPS: f32 = 1e-7;

/// Center-size box `[cx, cy, w, h]` to corner box `[x1, y1, x2, y2]`.
#[inline]
pub fn xywh_to_xyxy(b: [f32; 4]) -> [f32; 4] {
    let hw = b[2] / 2.0;
    let hh = b[3] / 2.0;
    [b[0] - hw, b[1] - hh, b[0] + hw, b[1] + hh]
}

/// Corner box `[x1, y1, x2, y2]` to center-size box `[cx, cy, w, h]`.
#[inline]
pub fn xyxy_to_xywh(b: [f32; 4]) -> [f32; 4] {
    [(b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0, b[2] - b[0], b[3] - b[1]]
}

/// Corner box `[x1, y1, x2, y2]` to COCO's top-left/size box `[x1, y1, w, h]`.
#[inline]
pub fn xyxy_to_ltwh(b: [f32; 4]) -> [f32; 4] {
    [b[0], b[1], b[2] - b[0], b[3] - b[1]]
}

/// Area of a corner box (negative widths are not clamped, as in the reference).
#[inline]
pub fn area(b: &[f32; 4]) -> f32 {
    (b[2] - b[0]) * (b[3] - b[1])
}

/// Intersection area of two corner boxes (0 when disjoint).
#[inline]
pub fn intersection(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let w = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let h = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    w * h
}

/// IoU of two corner boxes exactly as Ultralytics' `box_iou`: `inter / (area_a + area_b - inter + 1e-7)`.
#[inline]
pub fn iou(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let inter = intersection(a, b);
    inter / (area(a) + area(b) - inter + IOU_EPS)
}

/// Pairwise IoU matrix, row-major `rows.len() x cols.len()`.
pub fn iou_matrix(rows: &[[f32; 4]], cols: &[[f32; 4]]) -> Vec<f32> {
    let mut out = Vec::with_capacity(rows.len() * cols.len());
    for r in rows {
        for c in cols {
            out.push(iou(r, c));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions_round_trip() {
        let b = [10.0, 20.0, 4.0, 6.0];
        let x = xywh_to_xyxy(b);
        assert_eq!(x, [8.0, 17.0, 12.0, 23.0]);
        assert_eq!(xyxy_to_xywh(x), b);
        assert_eq!(xyxy_to_ltwh(x), [8.0, 17.0, 4.0, 6.0]);
    }

    #[test]
    fn iou_basic() {
        let a = [0.0, 0.0, 10.0, 10.0];
        let b = [5.0, 0.0, 15.0, 10.0];
        let v = iou(&a, &b);
        assert!((v - 50.0 / 150.0).abs() < 1e-6);
        assert_eq!(iou(&a, &[20.0, 20.0, 30.0, 30.0]), 0.0);
        assert!((iou(&a, &a) - 1.0).abs() < 1e-6);
    }
}
