//! COCO-format JSON for pycocotools / faster-coco-eval: detections (`predictions.json`) and a ground-truth file
//! built from YOLO labels.
//!
//! Conventions follow Ultralytics' `DetectionValidator`: the image id is the file stem as an integer when it is
//! numeric and the stem string otherwise; `bbox` is `[x_left, y_top, width, height]` in original-image pixels rounded
//! to 3 decimals, `score` rounded to 5; category ids come from a class map (`1..=nc` by default, or COCO's 91-id map
//! for COCO itself).

use std::path::Path;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use crate::postprocess::{xyxy_to_ltwh, Detection};

/// Image id as Ultralytics derives it from a file name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ImageId {
    /// Numeric stem (e.g. `000000000009.jpg` -> 9).
    Num(u64),
    /// Any other stem.
    Str(String),
}

impl ImageId {
    /// Id of an image file: its stem, as a number when all digits.
    pub fn from_path(path: impl AsRef<Path>) -> Self {
        let stem = path.as_ref().file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        if !stem.is_empty() && stem.chars().all(|c| c.is_ascii_digit()) {
            if let Ok(n) = stem.parse::<u64>() {
                return ImageId::Num(n);
            }
        }
        ImageId::Str(stem)
    }

    /// JSON value (number or string).
    pub fn to_json(&self) -> Value {
        match self {
            ImageId::Num(n) => json!(n),
            ImageId::Str(s) => json!(s),
        }
    }
}

/// Category ids `1..=nc` (Ultralytics' default for non-COCO datasets).
pub fn default_class_map(nc: usize) -> Vec<u64> {
    (1..=nc as u64).collect()
}

/// COCO's 80 training classes to the 91 original category ids.
pub fn coco80_to_coco91() -> Vec<u64> {
    vec![
        1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 27, 28, 31, 32, 33, 34,
        35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63,
        64, 65, 67, 70, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 84, 85, 86, 87, 88, 89, 90,
    ]
}

fn round_to(v: f64, decimals: usize) -> f64 {
    // decimal rounding of the exact value, like Python's round()
    format!("{:.*}", decimals, v).parse().unwrap_or(v)
}

fn category(class_map: &[u64], class: usize) -> Result<u64> {
    class_map
        .get(class)
        .copied()
        .with_context(|| format!("class {class} has no entry in the category map ({} entries)", class_map.len()))
}

/// COCO detection entries for one image. `dets` must already be in original-image pixels.
pub fn detections_to_coco(
    image_id: &ImageId,
    file_name: &str,
    dets: &[Detection],
    class_map: &[u64],
) -> Result<Vec<Value>> {
    dets.iter()
        .map(|d| {
            let b = xyxy_to_ltwh(d.xyxy);
            Ok(json!({
                "image_id": image_id.to_json(),
                "file_name": file_name,
                "category_id": category(class_map, d.class)?,
                "bbox": b.iter().map(|&v| round_to(v as f64, 3)).collect::<Vec<f64>>(),
                "score": round_to(d.score as f64, 5),
            }))
        })
        .collect()
}

/// One image of a ground-truth file.
#[derive(Debug, Clone)]
pub struct GtImage {
    /// Image id.
    pub id: ImageId,
    /// File name (no directory).
    pub file_name: String,
    /// Original width in pixels.
    pub width: u32,
    /// Original height in pixels.
    pub height: u32,
    /// Label boxes `[x1, y1, x2, y2]` in original-image pixels.
    pub boxes_xyxy: Vec<[f32; 4]>,
    /// Label classes.
    pub classes: Vec<usize>,
}

/// A complete COCO ground-truth document (`info`, `images`, `annotations` with `area` and `iscrowd: 0`,
/// `categories`) that pycocotools' `COCO` loads directly.
pub fn ground_truth_to_coco(images: &[GtImage], names: &[String], class_map: &[u64]) -> Result<Value> {
    let mut imgs = Vec::with_capacity(images.len());
    let mut anns = Vec::new();
    let mut next_id = 1u64;
    for im in images {
        if im.boxes_xyxy.len() != im.classes.len() {
            bail!("image {}: {} boxes but {} classes", im.file_name, im.boxes_xyxy.len(), im.classes.len());
        }
        imgs.push(json!({"id": im.id.to_json(), "file_name": im.file_name, "width": im.width, "height": im.height}));
        for (b, &c) in im.boxes_xyxy.iter().zip(&im.classes) {
            let l = xyxy_to_ltwh(*b);
            let bbox: Vec<f64> = l.iter().map(|&v| v as f64).collect();
            anns.push(json!({
                "id": next_id,
                "image_id": im.id.to_json(),
                "category_id": category(class_map, c)?,
                "bbox": bbox,
                "area": bbox[2] * bbox[3],
                "iscrowd": 0,
            }));
            next_id += 1;
        }
    }
    let cats: Vec<Value> = class_map
        .iter()
        .enumerate()
        .map(|(i, &id)| json!({"id": id, "name": names.get(i).cloned().unwrap_or_else(|| i.to_string())}))
        .collect();
    Ok(json!({
        "info": {"description": "ground truth written by ember from YOLO labels"},
        "licenses": [],
        "images": imgs,
        "annotations": anns,
        "categories": cats,
    }))
}

/// Parses a YOLO label file's text (`class cx cy w h`, normalised) into pixel corner boxes for a `width x height`
/// image. Blank lines are skipped; malformed lines are errors. Extra columns (segments) are not supported.
pub fn parse_yolo_labels(text: &str, width: u32, height: u32) -> Result<(Vec<[f32; 4]>, Vec<usize>)> {
    let (w, h) = (width as f32, height as f32);
    let mut boxes = Vec::new();
    let mut classes = Vec::new();
    for (ln, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() != 5 {
            bail!("label line {}: expected 5 fields `class cx cy w h`, found {}", ln + 1, f.len());
        }
        let c: usize = f[0].parse().with_context(|| format!("label line {}: bad class `{}`", ln + 1, f[0]))?;
        let mut v = [0f32; 4];
        for k in 0..4 {
            v[k] = f[k + 1].parse().with_context(|| format!("label line {}: bad number `{}`", ln + 1, f[k + 1]))?;
        }
        boxes.push([
            (v[0] - v[2] / 2.0) * w,
            (v[1] - v[3] / 2.0) * h,
            (v[0] + v[2] / 2.0) * w,
            (v[1] + v[3] / 2.0) * h,
        ]);
        classes.push(c);
    }
    Ok((boxes, classes))
}

/// Writes any JSON value to a file (pretty-printing off, as COCO files are large).
pub fn write_json(path: impl AsRef<Path>, value: &Value) -> Result<()> {
    let path = path.as_ref();
    let text = serde_json::to_string(value).context("serialising JSON")?;
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}
