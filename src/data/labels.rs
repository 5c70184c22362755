//! YOLO label files: one `class cx cy w h` line per box, normalised to the image size.
//! Polygon lines (`class x1 y1 x2 y2 ...`, as segmentation datasets write them) give their bounding
//! boxes and are kept beside them, as Ultralytics does for detection (see `polygon.rs`).

use std::fmt;
use std::path::{Path, PathBuf};

use super::polygon::Polygon;

/// One box: class id and normalised centre-x, centre-y, width, height.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BoxLabel {
    /// Class id, below the dataset's `nc`.
    pub class: usize,
    /// Centre x, centre y, width, height, as fractions (0-1) of the image's width and height.
    pub xywh: [f32; 4],
}

/// The boxes of one label file, with the repairs that were made.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ParsedLabels {
    /// One per distinct line (polygon lines give their extent), clipped to [0, 1]; in file order, or sorted
    /// as Ultralytics' `np.unique` when duplicates were dropped.
    pub boxes: Vec<BoxLabel>,
    /// The polygon of each box, as written (unclipped), when the file holds polygon lines; else empty.
    pub polygons: Vec<Polygon>,
    /// Boxes whose coordinates left [0, 1] and were clipped.
    pub clipped: usize,
    /// Repeated lines that were dropped.
    pub duplicates: usize,
}

/// Why a label file cannot be used; the image is then skipped.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelIssue {
    /// The label file.
    pub file: PathBuf,
    /// 1-based line number.
    pub line: usize,
    /// What is wrong with that line, for the user.
    pub message: String,
}

impl fmt::Display for LabelIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file.display(), self.line, self.message)
    }
}

impl std::error::Error for LabelIssue {}

/// The label file of an image: the last `images` folder in the path becomes `labels`, the
/// extension `.txt`.
pub fn label_path_for(image: &Path) -> PathBuf {
    let comps: Vec<_> = image.components().collect();
    let pos = comps.iter().rposition(|c| c.as_os_str() == "images");
    let mut out = PathBuf::new();
    for (i, c) in comps.iter().enumerate() {
        if Some(i) == pos {
            out.push("labels");
        } else {
            out.push(c.as_os_str());
        }
    }
    out.set_extension("txt");
    out
}

/// Ultralytics' `verify_image_label` refuses such a file (the image is skipped).
const MIXED_LINES: &str = "the file mixes box lines (5 values) and polygon lines";

/// What makes two label lines the same, and orders the lines once duplicates are dropped, as 8.4.190's
/// `verify_image_label` does: a box line by its values as float32 (`np.unique` over the rows, compared as
/// numbers), a polygon line by the bytes of its float32 class and points (`np.unique` over `tobytes()`).
#[derive(Debug, Clone, PartialEq)]
enum LineKey {
    Box([f32; 5]),
    Polygon(Vec<u8>),
}

impl LineKey {
    fn of(values: &[f64]) -> LineKey {
        let v: Vec<f32> = values.iter().map(|&x| x as f32).collect();
        match v.len() {
            5 => LineKey::Box([v[0], v[1], v[2], v[3], v[4]]),
            _ => LineKey::Polygon(v.iter().flat_map(|x| x.to_le_bytes()).collect()),
        }
    }

    fn cmp(&self, other: &LineKey) -> std::cmp::Ordering {
        match (self, other) {
            (LineKey::Box(a), LineKey::Box(b)) => {
                a.iter().zip(b).map(|(x, y)| x.total_cmp(y)).find(|o| o.is_ne()).unwrap_or(std::cmp::Ordering::Equal)
            }
            (LineKey::Polygon(a), LineKey::Polygon(b)) => a.cmp(b),
            (LineKey::Box(_), LineKey::Polygon(_)) => std::cmp::Ordering::Less,
            (LineKey::Polygon(_), LineKey::Box(_)) => std::cmp::Ordering::Greater,
        }
    }
}

/// Parses and checks the text of a label file for a dataset of `nc` classes.
pub fn parse_labels(text: &str, nc: usize, file: &Path) -> Result<ParsedLabels, LabelIssue> {
    let mut out = ParsedLabels::default();
    let mut keys: Vec<LineKey> = Vec::new();
    let mut box_lines = false;
    let issue = |line: usize, message: String| LabelIssue { file: file.to_path_buf(), line, message };
    for (i, raw) in text.lines().enumerate() {
        let line_no = i + 1;
        let fields: Vec<&str> = raw.split_whitespace().collect();
        if fields.is_empty() {
            continue;
        }
        let mut values = Vec::with_capacity(fields.len());
        for f in &fields {
            match f.parse::<f64>() {
                Ok(v) if v.is_finite() => values.push(v),
                _ => return Err(issue(line_no, format!("'{f}' is not a number"))),
            }
        }
        let class = values[0];
        if class < 0.0 || class.fract() != 0.0 {
            return Err(issue(line_no, format!("class id '{}' is not a whole number >= 0", fields[0])));
        }
        let class = class as usize;
        if class >= nc {
            return Err(issue(
                line_no,
                format!("class id {class} is out of range: the dataset has {nc} classes (0..{})", nc.saturating_sub(1)),
            ));
        }
        let mut polygon = None;
        let (mut x1, mut y1, mut x2, mut y2) = match values.len() {
            5 => {
                box_lines = true;
                let (cx, cy, w, h) = (values[1], values[2], values[3], values[4]);
                if w <= 0.0 || h <= 0.0 {
                    return Err(issue(line_no, format!("box width and height must be positive, got {w} x {h}")));
                }
                (cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0)
            }
            n if n >= 7 && n % 2 == 1 => {
                let xs = values[1..].iter().step_by(2);
                let ys = values[2..].iter().step_by(2);
                let fold = |it: std::iter::StepBy<std::slice::Iter<f64>>| {
                    it.fold((f64::MAX, f64::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)))
                };
                let ((x1, x2), (y1, y2)) = (fold(xs), fold(ys));
                polygon = Some(values[1..].chunks_exact(2).map(|p| [p[0] as f32, p[1] as f32]).collect::<Polygon>());
                (x1, y1, x2, y2)
            }
            n => {
                return Err(issue(line_no, format!("expected 5 values (class cx cy w h), found {n}")));
            }
        };
        // Rounding in converted datasets leaves edges a hair outside [0, 1]: clip those silently.
        const TOLERANCE: f64 = 1e-3;
        let outside = x1 < -TOLERANCE || y1 < -TOLERANCE || x2 > 1.0 + TOLERANCE || y2 > 1.0 + TOLERANCE;
        if !outside {
            (x1, y1, x2, y2) = (x1.max(0.0), y1.max(0.0), x2.min(1.0), y2.min(1.0));
        } else {
            // Normalised coordinates far outside the image usually mean pixel units: refuse those.
            if x2 > 1.5 || y2 > 1.5 || x1 < -0.5 || y1 < -0.5 {
                return Err(issue(line_no, "coordinates are not normalised to [0, 1] (pixel units?)".into()));
            }
            (x1, y1, x2, y2) = (x1.clamp(0.0, 1.0), y1.clamp(0.0, 1.0), x2.clamp(0.0, 1.0), y2.clamp(0.0, 1.0));
            if x2 - x1 <= 0.0 || y2 - y1 <= 0.0 {
                return Err(issue(line_no, "box lies outside the image".into()));
            }
            out.clipped += 1;
        }
        let b = BoxLabel {
            class,
            xywh: [((x1 + x2) / 2.0) as f32, ((y1 + y2) / 2.0) as f32, (x2 - x1) as f32, (y2 - y1) as f32],
        };
        if (polygon.is_some() && box_lines) || (polygon.is_none() && !out.polygons.is_empty()) {
            return Err(issue(line_no, MIXED_LINES.into()));
        }
        // Distinct polygons may share a class and a box: a polygon line repeats only with the same points.
        let key = LineKey::of(&values);
        if keys.contains(&key) {
            out.duplicates += 1;
            continue;
        }
        keys.push(key);
        out.boxes.push(b);
        out.polygons.extend(polygon);
    }
    if out.duplicates > 0 {
        sort_as_unique(&mut out, &keys);
    }
    Ok(out)
}

/// After dropping duplicates 8.4.190 keeps `np.unique`'s order, the lines sorted by their [`LineKey`]; a file
/// without duplicates keeps its own order.
fn sort_as_unique(out: &mut ParsedLabels, keys: &[LineKey]) {
    let mut order: Vec<usize> = (0..keys.len()).collect();
    order.sort_by(|&i, &j| keys[i].cmp(&keys[j]));
    out.boxes = order.iter().map(|&i| out.boxes[i]).collect();
    if !out.polygons.is_empty() {
        out.polygons = order.iter().map(|&i| out.polygons[i].clone()).collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_path_rule() {
        assert_eq!(
            label_path_for(Path::new("/d/coco/images/train/a.jpg")),
            PathBuf::from("/d/coco/labels/train/a.txt")
        );
        // Only the last `images` component is replaced.
        assert_eq!(label_path_for(Path::new("/images/x/images/b.png")), PathBuf::from("/images/x/labels/b.txt"));
    }

    #[test]
    fn polygon_lines_keep_their_points_and_repeat_only_with_the_same_points() {
        let f = Path::new("p.txt");
        let text = "0 0.1 0.1 0.5 0.1 0.3 0.5\n0 0.1 0.1 0.5 0.1 0.1 0.5 0.5 0.5\n0 0.1 0.1 0.5 0.1 0.3 0.5\n";
        let p = parse_labels(text, 1, f).unwrap();
        assert_eq!(p.boxes.len(), 2, "same box, different polygons: both kept");
        assert_eq!(p.boxes[0], p.boxes[1]);
        assert_eq!(p.duplicates, 1);
        // Sorted by bytes (np.unique over tobytes()): after four equal floats the triangle's 0.3 (9a 99 99 3e) comes
        // before the square's 0.1 (cd cc cc 3d).
        assert_eq!(p.polygons[0], vec![[0.1, 0.1], [0.5, 0.1], [0.3, 0.5]]);
        let mixed = parse_labels("0 0.1 0.1 0.5 0.1 0.3 0.5\n0 0.5 0.5 0.2 0.2\n", 1, f).unwrap_err();
        assert_eq!(mixed.line, 2);
        assert_eq!(parse_labels("0 0.5 0.5 0.2 0.2\n", 1, f).unwrap().polygons.len(), 0);
    }

    /// The orders 8.4.190's `verify_image_label` leaves (checked with its `np.unique` calls): sorted rows once a
    /// duplicate is dropped, by value for boxes and by bytes for polygons; the file's own order otherwise.
    #[test]
    fn duplicates_are_dropped_in_ultralytics_order() {
        let f = Path::new("d.txt");
        let text = "2 0.5 0.5 0.2 0.2\n0 0.9 0.1 0.1 0.1\n2 0.5 0.5 0.2 0.2\n0 0.3 0.7 0.1 0.1\n1 0.05 0.5 0.1 0.1\n";
        let p = parse_labels(text, 3, f).unwrap();
        assert_eq!(p.duplicates, 1);
        let rows: Vec<(usize, f32)> = p.boxes.iter().map(|b| (b.class, b.xywh[0])).collect();
        assert_eq!(rows, [(0, 0.3), (0, 0.9), (1, 0.05), (2, 0.5)]);
        let p = parse_labels("2 0.5 0.5 0.2 0.2\n0 0.9 0.1 0.1 0.1\n", 3, f).unwrap();
        assert_eq!(p.boxes.iter().map(|b| b.class).collect::<Vec<_>>(), [2, 0], "no duplicate: the file's order");
        let text = "0 0.1 0.1 0.5 0.1 0.3 0.5\n0 0.5 0.1 0.9 0.1 0.7 0.5\n0 0.5 0.1 0.9 0.1 0.7 0.5\n";
        let p = parse_labels(text, 1, f).unwrap();
        assert_eq!(p.polygons[0][0], [0.5, 0.1], "0.5 (00 00 00 3f) sorts before 0.1 (cd cc cc 3d) as bytes");
        assert_eq!(p.polygons[1][0], [0.1, 0.1]);
    }
}
