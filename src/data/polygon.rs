//! Object polygons (from segmentation-style label lines), kept for detection as Ultralytics 8.4.190 does:
//! resampled to a fixed number of points (`ops.resample_segments`), and turned into the box of their part
//! inside the image after a warp (`ops.segment2box`). Arithmetic follows the reference's dtypes (float32
//! points, float64 interpolation) so that boxes agree to float32 rounding.

/// A closed polygon: `[x, y]` points, the last joined to the first.
pub type Polygon = Vec<[f32; 2]>;

/// Points per polygon after resampling (`update_labels_info`: `segment_resamples`).
pub const RESAMPLED_POINTS: usize = 1000;

/// The point count `update_labels_info` resamples an image's polygons to: 1000, or one more than its
/// longest polygon when that has more than 1000 points.
pub fn resample_count(polygons: &[Polygon]) -> usize {
    let longest = polygons.iter().map(Vec::len).max().unwrap_or(0);
    if longest > RESAMPLED_POINTS {
        longest + 1
    } else {
        RESAMPLED_POINTS
    }
}

/// `resample_segments(n)` for one polygon: a polygon of `n` points is returned as is; otherwise the closed
/// outline (first point appended) is interpolated at `n` evenly spaced positions along its vertex index,
/// merged with the vertices themselves when it has fewer than `n`, so every vertex survives.
pub fn resample(polygon: &[[f32; 2]], n: usize) -> Polygon {
    if polygon.len() == n || polygon.is_empty() {
        return polygon.to_vec();
    }
    let closed: Vec<[f32; 2]> = polygon.iter().chain(std::iter::once(&polygon[0])).copied().collect();
    let len = closed.len();
    let positions =
        if len < n { merge_sorted(&linspace((len - 1) as f64, n - len), len) } else { linspace((len - 1) as f64, n) };
    positions.into_iter().map(|x| [interp(x, &closed, 0), interp(x, &closed, 1)]).collect()
}

/// `np.linspace(0, stop, num)`: `i * step`, the last value exactly `stop`.
fn linspace(stop: f64, num: usize) -> Vec<f64> {
    match num {
        0 => vec![],
        1 => vec![0.0],
        _ => {
            let step = stop / (num - 1) as f64;
            (0..num).map(|i| if i == num - 1 { stop } else { i as f64 * step }).collect()
        }
    }
}

/// `np.insert(x, np.searchsorted(x, xp), xp)` with `xp = 0..len`: the vertex indices merged into `x`,
/// each before the equal values.
fn merge_sorted(x: &[f64], len: usize) -> Vec<f64> {
    let mut out = Vec::with_capacity(x.len() + len);
    let mut rest = x.iter().peekable();
    for v in 0..len {
        let v = v as f64;
        while let Some(&&a) = rest.peek() {
            if a >= v {
                break;
            }
            out.push(a);
            rest.next();
        }
        out.push(v);
    }
    out.extend(rest);
    out
}

/// `np.interp(x, arange(len), fp)` on coordinate `axis`, in float64, stored as float32.
fn interp(x: f64, points: &[[f32; 2]], axis: usize) -> f32 {
    let last = points.len() - 1;
    if x >= last as f64 {
        return points[last][axis];
    }
    let j = (x.floor().max(0.0) as usize).min(last - 1);
    let (a, b) = (points[j][axis] as f64, points[j + 1][axis] as f64);
    if x == j as f64 {
        return a as f32;
    }
    ((b - a) * (x - j as f64) + a) as f32
}

/// `segments2boxes` then `xyxy2xywh`, in float32: the label box Ultralytics keeps beside a polygon.
pub fn extent_xywh(polygon: &[[f32; 2]]) -> [f32; 4] {
    let [x1, y1, x2, y2] = extent(polygon);
    [(x1 + x2) / 2.0, (y1 + y2) / 2.0, x2 - x1, y2 - y1]
}

/// The polygon's xyxy extent.
pub fn extent(polygon: &[[f32; 2]]) -> [f32; 4] {
    polygon.iter().fold([f32::INFINITY, f32::INFINITY, f32::NEG_INFINITY, f32::NEG_INFINITY], |b, p| {
        [b[0].min(p[0]), b[1].min(p[1]), b[2].max(p[0]), b[3].max(p[1])]
    })
}

/// `segment2box(segment, width, height)`: the xyxy extent of the polygon's part inside `[0, w] x [0, h]`
/// (its inside points, its edges' crossings of the borders, and the image corners it encloses); zeros
/// when nothing of it is inside.
pub fn visible_box(polygon: &[[f32; 2]], w: f32, h: f32) -> [f32; 4] {
    if polygon.is_empty() {
        return [0.0; 4];
    }
    let [xmin, ymin, xmax, ymax] = extent(polygon);
    if xmin >= 0.0 && ymin >= 0.0 && xmax <= w && ymax <= h {
        return [xmin, ymin, xmax, ymax];
    }
    if xmax < 0.0 || ymax < 0.0 || xmin > w || ymin > h {
        return [0.0; 4];
    }
    let mut out = [f32::INFINITY, f32::INFINITY, f32::NEG_INFINITY, f32::NEG_INFINITY];
    let mut found = false;
    let mut add = |p: [f32; 2]| {
        out = [out[0].min(p[0]), out[1].min(p[1]), out[2].max(p[0]), out[3].max(p[1])];
        found = true;
    };
    for &p in polygon.iter().filter(|p| p[0] >= 0.0 && p[1] >= 0.0 && p[0] <= w && p[1] <= h) {
        add(p);
    }
    // Borders x = 0, x = w, y = 0, y = h: the axis they cut, their value, the other axis' limit.
    let borders = [(0, 0.0, h), (0, w, h), (1, 0.0, w), (1, h, w)];
    for (i, &start) in polygon.iter().enumerate() {
        let end = polygon[(i + 1) % polygon.len()];
        let delta = [end[0] - start[0], end[1] - start[1]];
        for &(axis, bound, limit) in &borders {
            // A parallel edge gives t = +-inf or NaN, which the range test rejects.
            let t = (bound - start[axis]) / delta[axis];
            let inter = [start[0] + t * delta[0], start[1] + t * delta[1]];
            let other = inter[1 - axis];
            if (0.0..=1.0).contains(&t) && (0.0..=limit).contains(&other) {
                add(inter);
            }
        }
    }
    for corner in [[0.0, 0.0], [w, 0.0], [0.0, h], [w, h]] {
        if point_polygon_test(polygon, corner) >= 0 {
            add(corner);
        }
    }
    if found {
        out
    } else {
        [0.0; 4]
    }
}

/// OpenCV's `pointPolygonTest(contour, pt, measureDist=false)` on a float contour: 1 inside, 0 on an
/// edge or vertex, -1 outside (crossing count, with its exact tie rules).
pub fn point_polygon_test(polygon: &[[f32; 2]], pt: [f32; 2]) -> i32 {
    let Some(&last) = polygon.last() else { return -1 };
    let (px, py) = (pt[0], pt[1]);
    let mut v = last;
    let mut crossings = 0;
    for &next in polygon {
        let v0 = v;
        v = next;
        if (v0[1] <= py && v[1] <= py) || (v0[1] > py && v[1] > py) || (v0[0] < px && v[0] < px) {
            let on_edge = py == v[1]
                && (px == v[0] || (py == v0[1] && ((v0[0] <= px && px <= v[0]) || (v[0] <= px && px <= v0[0]))));
            if on_edge {
                return 0;
            }
            continue;
        }
        let mut dist = (py - v0[1]) as f64 * (v[0] - v0[0]) as f64 - (px - v0[0]) as f64 * (v[1] - v0[1]) as f64;
        if dist == 0.0 {
            return 0;
        }
        if v[1] < v0[1] {
            dist = -dist;
        }
        crossings += (dist > 0.0) as i32;
    }
    if crossings % 2 == 0 {
        -1
    } else {
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resampling_keeps_every_vertex_and_the_count() {
        let square = vec![[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]];
        let r = resample(&square, 1000);
        assert_eq!(r.len(), 1000);
        for p in &square {
            assert!(r.contains(p), "{p:?} lost");
        }
        assert_eq!(extent(&r), [0.0, 0.0, 1.0, 1.0]);
        assert_eq!(resample(&r, 1000), r, "a polygon of n points stays as it is");
    }

    #[test]
    fn point_test_inside_outside_and_on_the_edge() {
        let tri = vec![[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]];
        assert_eq!(point_polygon_test(&tri, [1.0, 1.0]), 1);
        assert_eq!(point_polygon_test(&tri, [9.0, 9.0]), -1);
        assert_eq!(point_polygon_test(&tri, [5.0, 5.0]), 0);
        assert_eq!(point_polygon_test(&tri, [0.0, 0.0]), 0);
    }
}
