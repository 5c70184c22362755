//! `ember val` on weights that Ultralytics trained, against Ultralytics' own validation of them
//! (fixture from tools/reference/val_fixture.py).

mod common;

use std::path::Path;

use ember::config::{Overrides, Settings};

#[test]
fn ember_val_reproduces_ultralytics_all_row() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/val");
    let reference: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures.join("yolo26n_coco8_160.json")).unwrap()).unwrap();
    let yaml = Path::new(env!("CARGO_MANIFEST_DIR")).join("datasets/coco8.yaml");
    // The model is overfit on the 4 training images (its val-split mAP is 0): score those.
    for split in ["train"] {
        let values = [
            ("data", yaml.display().to_string()),
            ("datasets_dir", common::shared_datasets().display().to_string()),
            ("weights", fixtures.join("yolo26n_coco8_160.safetensors").display().to_string()),
            ("model", "yolo26n".into()),
            ("imgsz", "160".into()),
            ("batch", "4".into()),
            ("split", split.into()),
            ("plots", "false".into()),
        ];
        let settings = Settings::resolve(&Overrides { values: values.iter().map(|(k, v)| (k.to_string(), v.clone())).collect() }).unwrap();
        let m = ember::commands::val::run(&settings).unwrap();
        let r = &reference["rows"][split];
        let ours = [m.precision, m.recall, m.map50, m.map50_95];
        let theirs = ["precision", "recall", "map50", "map50_95"].map(|k| r[k].as_f64().unwrap());
        println!("{split}: ember {ours:.6?} ultralytics {theirs:.6?}");
        assert!(theirs[2] > 0.1, "the reference model should have learned something");
        // Precision is read off the precision-confidence curve at the confidence that maximises mean F1:
        // with 13 objects, a score that differs in the 4th digit (ember's resize matches OpenCV's to a
        // grey level, not bit for bit) moves that point, so P gets a looser bound than the AP figures.
        for (k, (a, b), tol) in [("P", (ours[0], theirs[0]), 2e-2), ("R", (ours[1], theirs[1]), 1e-3), ("mAP50", (ours[2], theirs[2]), 1e-3), ("mAP50-95", (ours[3], theirs[3]), 1e-3)] {
            assert!((a - b).abs() <= tol, "{split} {k}: ember {a:.5} vs Ultralytics {b:.5}");
        }
    }
}
