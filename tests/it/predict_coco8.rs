//! `ember predict` on real photos: the same predictions as Ultralytics 8.4.190's predictor, annotated images the size
//! of their sources, YOLO-format labels, every kind of `--source`, and unreadable images skipped.

use crate::common;

use std::path::PathBuf;

use ember::cli;
use ember::commands::predict::{self, collect_sources, PredictOptions};
use ember::config::Settings;
use ember::validate::ValOptions;

const IMGSZ: u32 = 160;

fn val_images() -> Vec<PathBuf> {
    let dir = common::shared_datasets().join("coco8/images/val");
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "jpg"))
        .collect();
    v.sort();
    assert_eq!(v.len(), 4);
    v
}

/// Ultralytics 8.4.190's own predictions (tools/reference/predict_fixture.py): yolo26n trained on coco8, at 320,
/// one photo at a time (each its own stride rectangle), two at a time (a rectangle for two photos of one shape, the
/// square for two of different shapes) and NMS-free. Bound: the same network input shapes, the same detections in
/// the same order and classes, every score within 1e-5 and every box edge within 1e-3 px of Ultralytics'.
#[test]
fn predictions_equal_ultralytics_on_the_same_weights_and_photos() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/predict/yolo26n_coco8_320.json");
    let fixture: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert_eq!(fixture["ultralytics"], "8.4.190");
    let weights = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(fixture["weights"].as_str().unwrap());
    let model =
        ember::model::load_model::<ember::backend::Cpu>(&weights, "yolo26n", &Default::default()).unwrap().model;
    let (mut worst_score, mut worst_edge, mut compared) = (0f32, 0f32, 0);
    for run in fixture["runs"].as_array().unwrap() {
        let name = run["name"].as_str().unwrap();
        let opts = PredictOptions {
            imgsz: fixture["imgsz"].as_u64().unwrap() as u32,
            batch: run["batch"].as_u64().unwrap() as usize,
            conf: fixture["conf"].as_f64().unwrap() as f32,
            iou: 0.7,
            max_det: 300,
            agnostic: false,
            classes: None,
            end2end: !run["nms"].as_bool().unwrap(),
            half: false,
        };
        let images = run["images"].as_array().unwrap();
        let paths: Vec<PathBuf> =
            images.iter().map(|i| common::shared_datasets().join(i["path"].as_str().unwrap())).collect();
        let results = predict::predict_images(&model, &paths, &opts, false, |_, _| {}).unwrap();
        for (image, result) in images.iter().zip(&results) {
            let (r, at) = (result.as_ref().unwrap(), format!("{name}: {}", image["path"]));
            let input = image["input"].as_array().unwrap();
            let input = (input[1].as_u64().unwrap() as u32, input[0].as_u64().unwrap() as u32);
            assert_eq!(r.input_size, input, "{at}: network input (w, h)");
            let want = image["detections"].as_array().unwrap();
            assert_eq!(r.detections.len(), want.len(), "{at}: detections");
            for (d, w) in r.detections.iter().zip(want) {
                let w: Vec<f32> = w.as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
                assert_eq!(d.class, w[5] as usize, "{at}: class of {w:?}, ember {d:?}");
                worst_score = worst_score.max((d.score - w[4]).abs());
                worst_edge = (0..4).fold(worst_edge, |m, k| m.max((d.xyxy[k] - w[k]).abs()));
                compared += 1;
            }
        }
    }
    println!("{compared} detections: largest score difference {worst_score:.2e}, box edge {worst_edge:.2e} px");
    assert!(compared > 100, "{compared} detections compared");
    assert!(worst_score <= 1e-5, "scores differ by up to {worst_score:e}");
    assert!(worst_edge <= 1e-3, "box edges differ by up to {worst_edge} px");
}

/// The class filter keeps exactly the detections of the named classes (NMS runs per class).
#[test]
fn the_class_filter_keeps_only_the_named_classes() {
    let model = common::seeded_model("yolo26n", 80, 11, (-3.0, 0.0));
    let images = val_images();
    let opts = PredictOptions {
        imgsz: IMGSZ,
        batch: 1,
        conf: 0.05,
        iou: 0.7,
        max_det: 300,
        agnostic: false,
        classes: None,
        end2end: false,
        half: false,
    };
    let all = predict::predict_images(&model, &images, &opts, false, |_, _| {}).unwrap();
    let keep = all.iter().flatten().flat_map(|r| r.detections.iter().map(|d| d.class)).next().expect("detections");
    let filtered = predict::predict_images(
        &model,
        &images,
        &PredictOptions { classes: Some(vec![keep]), ..opts.clone() },
        false,
        |_, _| {},
    )
    .unwrap();
    for (a, f) in all.iter().flatten().zip(filtered.iter().flatten()) {
        let kept: Vec<_> = a.detections.iter().filter(|d| d.class == keep).collect();
        assert_eq!(f.detections.iter().collect::<Vec<_>>(), kept, "{}", a.path.display());
    }
}

fn settings(args: &[&str]) -> Settings {
    let mut v = vec!["ember".to_string(), "predict".to_string()];
    v.extend(args.iter().map(|s| s.to_string()));
    let inv = cli::parse(v).unwrap_or_else(|_| panic!("bad args {args:?}"));
    Settings::resolve(&inv.overrides).unwrap()
}

#[test]
fn predict_command_writes_annotated_images_and_labels() {
    let dir = tempfile::tempdir().unwrap();
    let weights = dir.path().join("seeded.safetensors");
    common::seeded_model("yolov8n", 80, 11, (-3.0, 0.0)).save_safetensors(&weights).unwrap();
    let images = val_images();
    // A list file: two coco8 photos (absolute) and one unreadable image (relative to the list).
    common::write(&dir.path().join("broken.jpg"), "this is not a jpeg");
    let list = dir.path().join("list.txt");
    common::write(&list, &format!("{}\n{}\nbroken.jpg\n", images[0].display(), images[1].display()));
    let coco8 = common::shared_datasets().join("coco8.yaml");
    let project = dir.path().join("runs");
    let s = settings(&[
        "--weights",
        weights.to_str().unwrap(),
        "--model",
        "yolov8n",
        "--source",
        list.to_str().unwrap(),
        "--data",
        coco8.to_str().unwrap(),
        "--imgsz",
        "160",
        "--conf",
        "0.05",
        "--save-txt",
        "--save-conf",
        "--project",
        project.to_str().unwrap(),
        "--batch",
        "2",
    ]);
    let summary = predict::run(&s).unwrap();
    assert_eq!(summary.run_dir, project.join("predict"));
    assert_eq!(summary.results.len(), 2);
    assert_eq!(summary.skipped.len(), 1);
    assert!(summary.skipped[0].0.ends_with("broken.jpg"));
    let mut boxes = 0;
    for (r, src) in summary.results.iter().zip(&images) {
        let out = summary.run_dir.join(src.file_name().unwrap());
        let annotated = image::open(&out).unwrap().to_rgb8();
        let original = image::open(src).unwrap().to_rgb8();
        assert_eq!(annotated.dimensions(), original.dimensions(), "{}", out.display());
        let label_file = summary.run_dir.join("labels").join(src.file_name().unwrap()).with_extension("txt");
        assert_eq!(label_file.is_file(), !r.detections.is_empty(), "a label file exactly for images with detections");
        let labels = std::fs::read_to_string(&label_file).unwrap_or_default();
        assert_eq!(labels.lines().count(), r.detections.len());
        for line in labels.lines() {
            let f: Vec<f32> = line.split(' ').map(|t| t.parse().unwrap()).collect();
            assert_eq!(f.len(), 6, "class cx cy w h conf");
            assert!(f[0] < 80.0 && f[1..5].iter().all(|v| (0.0..=1.0).contains(v)) && f[5] > 0.05, "{line}");
        }
        if !r.detections.is_empty() {
            // Boxes were drawn: the annotated copy differs from the source (beyond JPEG re-encoding noise).
            let changed = annotated
                .pixels()
                .zip(original.pixels())
                .filter(|(a, b)| a.0.iter().zip(b.0).any(|(x, y)| x.abs_diff(y) > 60))
                .count();
            assert!(changed > 100, "{}: only {changed} pixels changed", out.display());
        }
        boxes += r.detections.len();
    }
    assert!(boxes > 0);
    // A second run goes to predict2.
    let again = predict::run(&settings(&[
        "--weights",
        weights.to_str().unwrap(),
        "--model",
        "yolov8n",
        "--source",
        images[2].to_str().unwrap(),
        "--imgsz",
        "160",
        "--project",
        project.to_str().unwrap(),
    ]))
    .unwrap();
    assert_eq!(again.run_dir, project.join("predict2"));
    assert!(again.run_dir.join(images[2].file_name().unwrap()).is_file());
}

#[test]
fn sources_folder_glob_list_and_errors() {
    let coco = common::shared_datasets().join("coco8/images/val");
    let by_dir = collect_sources(coco.to_str().unwrap()).unwrap();
    assert_eq!(by_dir, val_images());
    let by_glob = collect_sources(&format!("{}/*49*.jpg", coco.display())).unwrap();
    assert_eq!(by_glob.len(), 1);
    assert!(collect_sources("/definitely/not/here.jpg").is_err());
    assert!(collect_sources(&format!("{}/*.nothing", coco.display())).is_err());
    let dir = tempfile::tempdir().unwrap();
    assert!(collect_sources(dir.path().to_str().unwrap()).is_err(), "an empty folder is an error");
    let none = dir.path().join("empty.txt");
    common::write(&none, "\n# nothing\n");
    assert!(collect_sources(none.to_str().unwrap()).is_err());
    // Missing weights are a clear error naming the file.
    let s = settings(&["--weights", "/nope/w.safetensors", "--source", coco.to_str().unwrap()]);
    let err = predict::run(&s).err().expect("missing weights");
    assert!(format!("{err:#}").contains("/nope/w.safetensors"), "{err:#}");
}

#[test]
fn descriptions_read_like_ultralytics() {
    use ember::postprocess::Detection;
    let names: Vec<String> = ["person", "bicycle", "car"].iter().map(|s| s.to_string()).collect();
    let d = |class| Detection { xyxy: [0.0, 0.0, 1.0, 1.0], score: 0.9, class };
    assert_eq!(predict::describe(&[d(0), d(2), d(0)], &names), "2 persons, 1 car");
    assert_eq!(predict::describe(&[], &names), "(no detections)");
}

#[test]
fn half_precision_predictions_agree_with_fp32() {
    for name in ["yolo26n", "yolov8n"] {
        let model = common::seeded_model(name, 80, 11, (-3.0, 0.0));
        let images = &val_images()[..2];
        let opts = PredictOptions {
            imgsz: IMGSZ,
            batch: 2,
            conf: 0.05,
            iou: 0.7,
            max_det: 10,
            agnostic: false,
            classes: None,
            end2end: true,
            half: false,
        };
        let full = predict::predict_images(&model, images, &opts, false, |_, _| {}).unwrap();
        let half =
            predict::predict_images(&model, images, &PredictOptions { half: true, ..opts.clone() }, false, |_, _| {})
                .unwrap();
        for (a, b) in full.iter().zip(&half) {
            let (a, b) = (a.as_ref().unwrap(), b.as_ref().unwrap());
            assert!(!a.detections.is_empty());
            // The best detection survives FP16 with nearly the same box and score.
            let top = &a.detections[0];
            let matched = b.detections.iter().any(|d| {
                d.class == top.class
                    && (d.score - top.score).abs() < 2e-2
                    && (0..4).all(|k| (d.xyxy[k] - top.xyxy[k]).abs() < 3.0)
            });
            assert!(matched, "{name}: {top:?} not among the FP16 detections {:?}", b.detections);
        }
    }
}

/// As Ultralytics 8.4.190 (`end2end=self.args.nms is False`): predict, like val and export, uses the one-to-many
/// branch with NMS unless asked for the NMS-free one with `--nms false` (or the older `--end2end true`).
#[test]
fn predict_defaults_to_nms_like_val_and_export() {
    let options = |args: &[&str]| PredictOptions::from_settings(&settings(args));
    assert!(!options(&[]).end2end, "the default is the one-to-many branch with NMS");
    assert!(!ValOptions::for_val(&settings(&[]), true).end2end, "val agrees");
    assert!(options(&["--nms", "false"]).end2end);
    assert!(!options(&["--nms", "true"]).end2end);
    assert!(options(&["--end2end", "true"]).end2end);
    let line = ["ember", "predict", "--nms", "false", "--end2end", "false"];
    let inv = cli::parse(line.map(String::from).to_vec()).unwrap();
    let e = Settings::resolve(&inv.overrides).unwrap_err().to_string();
    assert!(e.contains("disagree"), "{e}");
}
