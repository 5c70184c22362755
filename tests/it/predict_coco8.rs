//! `ember predict` on the coco8 photos: the same boxes as validation's post-processing, annotated images the size
//! of their sources, YOLO-format labels, every kind of `--source`, and unreadable images skipped.

use crate::common;

use std::path::PathBuf;

use ember::cli;
use ember::commands::predict::{self, collect_sources, PredictOptions};
use ember::config::Settings;
use ember::data::image_io::probe;
use ember::data::{BatchLoader, LoaderConfig, Sample};
use ember::validate::{validate, ValOptions};

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

#[test]
fn predict_finds_the_same_boxes_as_val() {
    let model = common::seeded_model("yolo26n", 80, 11, (-3.0, 0.0));
    let images = val_images();
    let samples: Vec<Sample> = images
        .iter()
        .map(|p| Sample { image: p.clone(), size: probe(p).unwrap(), labels: vec![], polygons: vec![] })
        .collect();
    let loader = BatchLoader::new(
        samples,
        LoaderConfig { imgsz: IMGSZ, batch: 4, workers: 2, shuffle: false, seed: 0, prefetch: 1 },
    )
    .unwrap();
    // A low threshold so that the untrained model yields many boxes.
    let conf = 0.05;
    let val = validate(
        &model,
        &loader,
        &ValOptions { conf, iou: 0.7, max_det: 300, agnostic: false, end2end: true, half: false },
        None,
    )
    .unwrap();
    let opts = PredictOptions {
        imgsz: IMGSZ,
        batch: 3,
        conf,
        iou: 0.7,
        max_det: 300,
        agnostic: false,
        classes: None,
        end2end: true,
        half: false,
    };
    let results = predict::predict_images(&model, &images, &opts, false, |_, _| {}).unwrap();
    assert_eq!(results.len(), 4);
    let mut total = 0;
    for (r, (path, dets)) in results.iter().zip(&val.detections) {
        let r = r.as_ref().unwrap();
        assert_eq!(&r.path, path);
        assert_eq!(r.detections.len(), dets.len(), "{}", path.display());
        for (a, b) in r.detections.iter().zip(dets) {
            assert_eq!(a.class, b.class);
            assert!((a.score - b.score).abs() <= 1e-5 * b.score.max(1e-3), "{} vs {}", a.score, b.score);
            for k in 0..4 {
                assert!((a.xyxy[k] - b.xyxy[k]).abs() < 1e-3, "{:?} vs {:?}", a.xyxy, b.xyxy);
            }
        }
        total += dets.len();
    }
    assert!(total > 0, "the seeded model should produce detections at conf {conf}");
    // The class filter keeps only the named classes.
    let keep = results.iter().flatten().flat_map(|r| r.detections.iter().map(|d| d.class)).next().unwrap();
    let filtered = predict::predict_images(
        &model,
        &images,
        &PredictOptions { classes: Some(vec![keep]), ..opts.clone() },
        false,
        |_, _| {},
    )
    .unwrap();
    let classes: Vec<usize> = filtered.iter().flatten().flat_map(|r| r.detections.iter().map(|d| d.class)).collect();
    assert!(!classes.is_empty() && classes.iter().all(|&c| c == keep));
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
