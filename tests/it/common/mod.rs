//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod flat_step;
pub mod loss_fixture;
pub mod amp_sources;
pub mod overflow;
pub mod reference_optimizer;

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

/// A fixed-seed model whose BatchNorm layers have non-trivial scale, shift, mean and variance, and whose
/// class-output biases are drawn from `class_bias` (a trained model's scores vary across the image; a fresh
/// one's sit at Ultralytics' tiny prior, where relative comparisons would measure sigmoid tails).
pub fn seeded_model(
    name: &str,
    nc: usize,
    seed: u64,
    class_bias: (f32, f32),
) -> ember::model::Yolo<ember::backend::Cpu> {
    use burn::tensor::backend::Backend;
    use ember::backend::Cpu;
    use ember::model::weights::named_tensors;
    use ember::model::{StateDict, Yolo};
    let device = Default::default();
    Cpu::seed(&device, seed);
    let mut model = Yolo::<Cpu>::new(name, nc, &device).unwrap();
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15 ^ seed;
    let mut next = move || {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((state >> 33) as f64 / (1u64 << 31) as f64) as f32
    };
    let mut tensors = std::collections::HashMap::new();
    for t in named_tensors::<Cpu, _>(&model, true) {
        let mut v = t.data.unwrap().to_vec::<f32>().unwrap();
        let (lo, hi) = if t.key.contains("cv3.") && t.key.ends_with(".2.bias") {
            class_bias
        } else if t.key.ends_with("bn.weight") {
            (0.5, 1.5)
        } else if t.key.ends_with("bn.bias") {
            (-0.2, 0.2)
        } else if t.key.ends_with("running_mean") {
            (-0.3, 0.3)
        } else if t.key.ends_with("running_var") {
            (0.5, 2.0)
        } else {
            (0.0, 0.0)
        };
        if hi > lo {
            v.iter_mut().for_each(|x| *x = lo + (hi - lo) * next());
        }
        tensors.insert(t.key, (t.shape, v));
    }
    model.load_state_dict(&StateDict { tensors, int_keys: vec![] }).unwrap();
    model
}

/// The first `n` coco8 training photos as one letterboxed loader batch at `imgsz`.
pub fn coco8_batch(imgsz: u32, n: usize) -> ember::data::Batch {
    use ember::data::scan::scan_split;
    use ember::data::{BatchLoader, LoaderConfig, Split};
    let root = shared_datasets().join("coco8/images/train");
    let samples = scan_split(&[root], 80, Split::Train).unwrap().samples;
    let config = LoaderConfig { imgsz, batch: n, workers: 2, shuffle: false, seed: 0, prefetch: 1 };
    BatchLoader::new(samples, config).unwrap().epoch(0).next().unwrap()
}

/// A tensor's values as f32, whatever its float type.
pub fn values<B: burn::tensor::backend::Backend, const D: usize>(t: burn::tensor::Tensor<B, D>) -> Vec<f32> {
    t.cast(burn::tensor::FloatDType::F32).into_data().convert::<f32>().to_vec().unwrap()
}

/// A `[2, 3, 8, 16]` batch whose pixels run through every byte value.
pub fn byte_ramp_batch() -> ember::data::Batch {
    let shape = [2, 3, 8, 16];
    ember::data::Batch {
        index: 0,
        pixels: (0..shape.iter().product::<usize>()).map(|i| (i * 7 % 256) as u8).collect(),
        shape,
        labels: vec![vec![]; 2],
        paths: vec![Default::default(); 2],
        letterboxes: vec![ember::data::Letterbox::new((16, 8), (16, 8)); 2],
        failures: vec![],
    }
}
