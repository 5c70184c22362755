//! Polygon label files used for detection, against Ultralytics 8.4.190 itself
//! (`tools/reference/polygon_fixture.py`): resampling, `segment2box`, the affine with its 0.01 area filter,
//! mosaic, CutMix's 0.01 paste threshold, and which datasets keep their polygons. Then a generated polygon
//! dataset through the augmenting loader and a short training run.

use crate::common;

use std::path::Path;
use std::sync::Arc;

use ember::config::{Overrides, Settings};
use ember::data::augment::geometry::Mat3;
use ember::data::augment::instances::{mosaic_labels, pixel_labels, warp_labels, Boxes};
use ember::data::augment::{paste, AugmentParams, Labeled, TrainTransform};
use ember::data::cache::ImageStore;
use ember::data::labels::parse_labels;
use ember::data::polygon::{resample, visible_box, Polygon};
use ember::data::recent::RecentImages;
use ember::data::scan::{drop_mixed_polygons, scan_split};
use ember::data::synthetic::{generate, SyntheticConfig};
use ember::data::worker::WorkerState;
use ember::data::{BatchLoader, LoaderConfig, Sample, Split};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::Value;

const NC: usize = 3;

fn fixture() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/polygon/polygon.json");
    let f: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert_eq!(f["ultralytics"], "8.4.190");
    f
}

fn f32s(v: &Value) -> Vec<f32> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect()
}

fn points(v: &Value) -> Polygon {
    v.as_array().unwrap().iter().map(|p| f32s(p).try_into().unwrap()).collect()
}

fn boxes(v: &Value) -> Vec<[f32; 4]> {
    v.as_array().unwrap().iter().map(|b| f32s(b).try_into().unwrap()).collect()
}

fn matrix(v: &Value) -> Mat3 {
    let rows: Vec<Vec<f32>> = v.as_array().unwrap().iter().map(f32s).collect();
    std::array::from_fn(|i| std::array::from_fn(|j| rows[i][j] as f64))
}

fn max_diff(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// A sample of `size` whose labels are the fixture's label file `stem`.
fn sample(f: &Value, stem: &str, size: (u32, u32)) -> Sample {
    let text = f["labels"][stem].as_str().unwrap();
    let parsed = parse_labels(text, NC, Path::new(stem)).unwrap();
    Sample { image: stem.into(), size, labels: parsed.boxes, polygons: parsed.polygons }
}

fn size(v: &Value) -> (u32, u32) {
    (v[0].as_u64().unwrap() as u32, v[1].as_u64().unwrap() as u32)
}

/// Ember's boxes equal Python's up to order (Python's duplicate removal sorts a file's lines) and `tol` px;
/// returns the largest difference.
fn assert_same_boxes(ours: &Boxes, classes: &Value, theirs: &Value, tol: f32, what: &str) -> f32 {
    let theirs: Vec<(usize, [f32; 4])> =
        classes.as_array().unwrap().iter().map(|c| c.as_u64().unwrap() as usize).zip(boxes(theirs)).collect();
    assert_eq!(ours.len(), theirs.len(), "{what}: ember {ours:?}\nUltralytics {theirs:?}");
    let mut worst = 0f32;
    let mut used = vec![false; ours.len()];
    for (c, b) in &theirs {
        let (i, d) = ours
            .iter()
            .enumerate()
            .filter(|(i, (oc, _))| !used[*i] && oc == c)
            .map(|(i, (_, ob))| (i, max_diff(ob, b)))
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .unwrap_or_else(|| panic!("{what}: no class-{c} box left for {b:?} in {ours:?}"));
        assert!(d <= tol, "{what}: class {c} box {b:?} vs ember {:?}: {d} px", ours[i].1);
        used[i] = true;
        worst = worst.max(d);
    }
    worst
}

#[test]
fn resampling_matches_ultralytics() {
    let f = fixture();
    for case in f["resample"].as_array().unwrap() {
        let out = resample(&points(&case["points"]), case["n"].as_u64().unwrap() as usize);
        let want = points(&case["out"]);
        assert_eq!(out.len(), want.len());
        for (k, (a, b)) in out.iter().zip(&want).enumerate() {
            assert_eq!(a, b, "point {k} of {} ", want.len());
        }
    }
}

#[test]
fn visible_box_matches_segment2box() {
    let f = fixture();
    for case in f["segment2box"].as_array().unwrap() {
        let (w, h) = (case["w"].as_f64().unwrap() as f32, case["h"].as_f64().unwrap() as f32);
        let p = points(&case["points"]);
        let want: [f32; 4] = f32s(&case["box"]).try_into().unwrap();
        assert_eq!(visible_box(&p, w, h), want, "{p:?}");
    }
}

#[test]
fn affine_on_polygons_matches_random_perspective() {
    let f = fixture();
    let mut worst = 0f32;
    for case in f["affine"].as_array().unwrap() {
        let (w, h) = size(&case["image"]);
        let s = sample(&f, case["stem"].as_str().unwrap(), (w, h));
        let (b, p) = pixel_labels(&s, w, h);
        let (out, polygons) = warp_labels(b, p, &matrix(&case["M"]), case["scale"].as_f64().unwrap(), 160);
        assert_eq!(out.len(), polygons.len());
        let what = format!("{} seed {}", case["stem"], case["seed"]);
        worst = worst.max(assert_same_boxes(&out, &case["cls"], &case["boxes"], 1e-3, &what));
    }
    println!("affine: max box difference {worst:e} px");
}

#[test]
fn mosaic_then_affine_matches_ultralytics() {
    let f = fixture();
    let (mut worst_mosaic, mut worst) = (0f32, 0f32);
    for case in f["mosaic"].as_array().unwrap() {
        let imgsz = case["imgsz"].as_u64().unwrap() as u32;
        let tiles = (0..4)
            .map(|i| {
                let (w, h) = size(&case["images"][i]);
                let (b, p) = pixel_labels(&sample(&f, case["stems"][i].as_str().unwrap(), (w, h)), w, h);
                let pad = &case["pads"][i];
                (b, p, (pad[0].as_i64().unwrap() as f32, pad[1].as_i64().unwrap() as f32))
            })
            .collect();
        let (b, p) = mosaic_labels(tiles, (2 * imgsz) as f32);
        assert_eq!(p.iter().map(Vec::len).max().unwrap() as u64, case["mosaic_points"].as_u64().unwrap());
        worst_mosaic =
            worst_mosaic.max(assert_same_boxes(&b, &case["mosaic_cls"], &case["mosaic_boxes"], 1e-4, "mosaic"));
        let (out, _) = warp_labels(b, p, &matrix(&case["M"]), case["scale"].as_f64().unwrap(), imgsz);
        let what = format!("mosaic seed {}", case["seed"]);
        worst = worst.max(assert_same_boxes(&out, &case["cls"], &case["boxes"], 1e-3, &what));
    }
    println!("mosaic: max box difference {worst_mosaic:e} px before the affine, {worst:e} px after");
}

#[test]
fn cutmix_pastes_remnants_down_to_one_percent_with_polygons() {
    let f = fixture();
    let rect = |b: &[f32; 4]| resample(&[[b[0], b[1]], [b[2], b[1]], [b[2], b[3]], [b[0], b[3]]], 1000);
    for case in f["cutmix"].as_array().unwrap() {
        let with_polygons = case["polygons"].as_bool().unwrap();
        let (w, h) = size(&case["size"]);
        let labeled = |v: &Value| {
            let bs = boxes(v);
            Labeled {
                image: image::RgbImage::new(w, h),
                boxes: bs.iter().enumerate().map(|(i, b)| (i % NC, *b)).collect(),
                polygons: if with_polygons { bs.iter().map(rect).collect() } else { vec![] },
            }
        };
        let mut out = labeled(&case["main"]);
        paste(&mut out, &labeled(&case["other"]), f32s(&case["area"]).try_into().unwrap());
        assert_same_boxes(&out.boxes, &case["cls"], &case["boxes"], 0.0, &format!("cutmix polygons={with_polygons}"));
        assert_eq!(out.polygons.len(), if with_polygons { out.boxes.len() } else { 0 });
    }
}

#[test]
fn datasets_keep_polygons_only_when_every_box_has_one() {
    let f = fixture();
    for case in f["datasets"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let images = dir.path().join("images");
        for (stem, text) in case["files"].as_object().unwrap() {
            common::write_image(&images.join(format!("{stem}.png")), (64, 48), None, [0, 0, 0]);
            common::write(&dir.path().join("labels").join(format!("{stem}.txt")), text.as_str().unwrap());
        }
        let mut scan = scan_split(std::slice::from_ref(&images), NC, Split::Train).unwrap();
        let dropped = drop_mixed_polygons(&mut scan.samples);
        let ours: Vec<(String, [usize; 2])> = scan
            .samples
            .iter()
            .map(|s| (s.image.file_stem().unwrap().to_string_lossy().into(), [s.labels.len(), s.polygons.len()]))
            .collect();
        let theirs: Vec<(String, [usize; 2])> = case["kept"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), [v[0].as_u64().unwrap() as usize, v[1].as_u64().unwrap() as usize]))
            .collect();
        assert_eq!(ours, theirs, "{name}");
        assert_eq!(dropped.is_some(), name == "mixed_files", "{name}: {dropped:?}");
    }
}

/// A generated dataset with each box written as a 4-point polygon.
fn polygon_shapes(dir: &Path, train: usize, val: usize) -> std::path::PathBuf {
    let yaml = generate(dir, &SyntheticConfig { train_images: train, val_images: val, size: 64, ..Default::default() })
        .unwrap();
    for split in ["train", "val"] {
        for entry in std::fs::read_dir(dir.join("labels").join(split)).unwrap() {
            let path = entry.unwrap().path();
            let text: String = std::fs::read_to_string(&path)
                .unwrap()
                .lines()
                .map(|l| {
                    let v: Vec<f32> = l.split_whitespace().map(|x| x.parse().unwrap()).collect();
                    let (x1, y1, x2, y2) = (v[1] - v[3] / 2.0, v[2] - v[4] / 2.0, v[1] + v[3] / 2.0, v[2] + v[4] / 2.0);
                    format!("{} {x1:.6} {y1:.6} {x2:.6} {y1:.6} {x2:.6} {y2:.6} {x1:.6} {y2:.6}\n", v[0])
                })
                .collect();
            std::fs::write(&path, text).unwrap();
        }
    }
    yaml
}

#[test]
fn generated_polygon_dataset_augments_and_trains() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = polygon_shapes(&dir.path().join("data"), 8, 4);
    let scan = scan_split(&[dir.path().join("data/images/train")], NC, Split::Train).unwrap();
    assert!(scan.corrupt.is_empty(), "{:?}", scan.corrupt);
    assert!(scan.samples.iter().all(|s| s.polygons.len() == s.labels.len() && !s.labels.is_empty()));

    // Every augmentation on, rotated and sheared: boxes stay on the canvas, polygons stay with their boxes.
    let mut params = AugmentParams::from_settings(&Settings::resolve(&Default::default()).unwrap());
    (params.affine.degrees, params.affine.shear, params.mixup, params.cutmix) = (30.0, 10.0, 0.5, 0.5);
    let t = TrainTransform::new(params, Arc::new(ImageStore::uncached(64)));
    let mut worker = WorkerState::new(RecentImages::for_split(scan.samples.len(), 4));
    for seed in 0..40 {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let out = t.transform(&scan.samples, seed as usize % scan.samples.len(), 64, &mut rng, &mut worker).unwrap();
        assert!(out.polygons.is_empty() || out.polygons.len() == out.boxes.len(), "seed {seed}");
        for (_, b) in &out.boxes {
            assert!(b[0] >= 0.0 && b[1] >= 0.0 && b[2] <= 64.0 && b[3] <= 64.0 && b[2] > b[0] && b[3] > b[1], "{b:?}");
        }
    }
    let loader = BatchLoader::with_transform(
        scan.samples,
        LoaderConfig { imgsz: 64, batch: 4, workers: 2, shuffle: true, seed: 0, prefetch: 1 },
        Arc::new(t),
    )
    .unwrap();
    let batches: Vec<_> = loader.epoch(0).collect();
    assert_eq!(batches.len(), 2);
    assert!(batches.iter().all(|b| b.failures.is_empty() && b.labels.iter().any(|l| !l.is_empty())));

    let mut recipe = common::recipe(&yaml, &dir.path().join("runs"), "polygons", 1);
    recipe.extend([("degrees", "10".to_string()), ("cutmix", "0.5".into()), ("close_mosaic", "0".into())]);
    let settings =
        Settings::resolve(&Overrides { values: recipe.iter().map(|(k, v)| (k.to_string(), v.clone())).collect() })
            .unwrap();
    let run = ember::commands::train::run(&settings).unwrap();
    assert_eq!(run.epochs_completed, 1);
}
