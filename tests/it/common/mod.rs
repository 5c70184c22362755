//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod overflow;

use std::path::{Path, PathBuf};

use image::{Rgb, RgbImage};

/// The shared read-only datasets: `$EMBER_DATASETS`, else `../shared/datasets` beside the checkout.
pub fn shared_datasets() -> PathBuf {
    let dir = std::env::var_os("EMBER_DATASETS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/datasets"));
    assert!(
        dir.join("coco8").is_dir(),
        "the test datasets are missing: expected coco8/ under {} (set EMBER_DATASETS)",
        dir.display()
    );
    dir
}

/// A solid-colour image with one filled rectangle, saved at `path` (format from the extension).
pub fn write_image(path: &Path, size: (u32, u32), rect: Option<[u32; 4]>, colour: [u8; 3]) {
    let mut img = RgbImage::from_pixel(size.0, size.1, Rgb([40, 40, 40]));
    if let Some([x1, y1, x2, y2]) = rect {
        for y in y1..y2 {
            for x in x1..x2 {
                img.put_pixel(x, y, Rgb(colour));
            }
        }
    }
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    img.save(path).unwrap();
}

pub fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// A short, deterministic recipe: no warmup accumulation, a step per batch.
pub fn recipe(yaml: &Path, project: &Path, name: &str, epochs: u32) -> Vec<(&'static str, String)> {
    vec![
        ("data", yaml.display().to_string()),
        ("model", "yolo26n".into()),
        ("imgsz", "64".into()),
        ("batch", "8".into()),
        ("nbs", "8".into()),
        ("workers", "2".into()),
        ("epochs", epochs.to_string()),
        ("optimizer", "AdamW".into()),
        ("lr0", "0.003".into()),
        ("warmup_epochs", "1".into()),
        ("project", project.display().to_string()),
        ("name", name.into()),
        ("exist_ok", "true".into()),
    ]
}

/// The head's output from raw branch tensors: `[boxes, scores]` (one-to-many) or
/// `[boxes, scores, boxes, scores]` (one-to-many, then one-to-one).
pub fn head_output<B: burn::tensor::backend::Backend>(
    t: &[burn::tensor::Tensor<B, 3>],
    feature_sizes: &[[usize; 2]],
    strides: &[f32],
    reg_max: usize,
) -> ember::model::DetectOutput<B> {
    use ember::model::HeadOutput;
    let head = |i: usize| HeadOutput { boxes: t[i].clone(), scores: t[i + 1].clone() };
    ember::model::DetectOutput {
        one2many: head(0),
        one2one: (t.len() == 4).then(|| head(2)),
        feature_sizes: feature_sizes.to_vec(),
        strides: strides.to_vec(),
        reg_max,
    }
}
