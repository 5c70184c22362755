//! COCO JSON writers: structure checks, and (with `EMBER_COCO_OUT=dir`) export of the parity fixture as COCO files
//! for tools/reference/metrics_cocoeval.py (pycocotools).

use ember::metrics::{
    coco80_to_coco91, default_class_map, detections_to_coco, ground_truth_to_coco, parse_yolo_labels, write_json,
    GtImage, ImageId,
};
use ember::postprocess::Detection;
use serde_json::Value;

#[test]
fn image_ids_follow_ultralytics() {
    assert_eq!(ImageId::from_path("/a/b/000000000009.jpg"), ImageId::Num(9));
    assert_eq!(ImageId::from_path("img_01.png"), ImageId::Str("img_01".into()));
    assert_eq!(ImageId::Num(9).to_json(), serde_json::json!(9));
}

#[test]
fn class_maps() {
    assert_eq!(default_class_map(3), vec![1, 2, 3]);
    let m = coco80_to_coco91();
    assert_eq!(m.len(), 80);
    assert_eq!((m[0], m[11], m[79]), (1, 13, 90));
}

#[test]
fn detection_entries() {
    let d = Detection { xyxy: [10.12345, 20.0, 30.5, 60.25], score: 0.12345679, class: 1 };
    let v = detections_to_coco(&ImageId::Num(42), "42.jpg", &[d], &default_class_map(2)).unwrap();
    assert_eq!(v.len(), 1);
    let e = &v[0];
    assert_eq!(e["image_id"], 42);
    assert_eq!(e["category_id"], 2);
    assert_eq!(e["score"].as_f64().unwrap(), 0.12346);
    let b: Vec<f64> = e["bbox"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
    assert_eq!(b, vec![10.123, 20.0, 20.377, 40.25]);
    // a class outside the map is an error, not a panic
    assert!(detections_to_coco(&ImageId::Num(1), "1.jpg", &[d], &default_class_map(1)).is_err());
}

#[test]
fn yolo_labels_to_ground_truth() {
    let (b, c) = parse_yolo_labels("0 0.5 0.5 0.5 0.25\n\n2 0.25 0.75 0.1 0.1\n", 200, 100).unwrap();
    assert_eq!(c, vec![0, 2]);
    assert_eq!(b[0], [50.0, 37.5, 150.0, 62.5]);
    assert!(parse_yolo_labels("0 0.5 0.5 0.5\n", 10, 10).is_err());
    assert!(parse_yolo_labels("x 0.5 0.5 0.5 0.5\n", 10, 10).is_err());
    let im =
        GtImage { id: ImageId::Num(7), file_name: "7.jpg".into(), width: 200, height: 100, boxes_xyxy: b, classes: c };
    let names: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
    let gt = ground_truth_to_coco(&[im], &names, &default_class_map(3)).unwrap();
    assert_eq!(gt["images"][0]["width"], 200);
    assert_eq!(gt["annotations"].as_array().unwrap().len(), 2);
    let a = &gt["annotations"][0];
    assert_eq!((a["id"].as_u64(), a["iscrowd"].as_u64(), a["category_id"].as_u64()), (Some(1), Some(0), Some(1)));
    assert_eq!(a["area"].as_f64().unwrap(), 100.0 * 25.0);
    assert_eq!(gt["annotations"][1]["category_id"], 3);
    assert_eq!(gt["categories"][2]["name"], "c");
}

/// Writes the parity fixture as COCO ground truth + predictions (to `EMBER_COCO_OUT` when set, else a temp dir).
#[test]
fn export_fixture_as_coco() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/metrics/ultralytics_parity.json");
    let f: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let names: Vec<String> = f["names"].as_array().unwrap().iter().map(|x| x.as_str().unwrap().to_string()).collect();
    let class_map = default_class_map(names.len());
    let f32s = |v: &Value| -> Vec<f32> { v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect() };
    let us = |v: &Value| -> Vec<usize> { v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as usize).collect() };
    let mut gts = Vec::new();
    let mut preds = Vec::new();
    for im in f["images"].as_array().unwrap() {
        let file = im["file"].as_str().unwrap();
        let id = ImageId::from_path(file);
        let gb: Vec<[f32; 4]> = f32s(&im["gt_xyxy"]).chunks(4).map(|c| [c[0], c[1], c[2], c[3]]).collect();
        gts.push(GtImage {
            id: id.clone(),
            file_name: file.to_string(),
            width: im["width"].as_u64().unwrap() as u32,
            height: im["height"].as_u64().unwrap() as u32,
            boxes_xyxy: gb,
            classes: us(&im["gt_cls"]),
        });
        let pb = f32s(&im["pred_xyxy"]);
        let ps = f32s(&im["pred_conf"]);
        let pc = us(&im["pred_cls"]);
        let dets: Vec<Detection> = (0..ps.len())
            .map(|i| Detection {
                xyxy: [pb[4 * i], pb[4 * i + 1], pb[4 * i + 2], pb[4 * i + 3]],
                score: ps[i],
                class: pc[i],
            })
            .collect();
        preds.extend(detections_to_coco(&id, file, &dets, &class_map).unwrap());
    }
    let gt = ground_truth_to_coco(&gts, &names, &class_map).unwrap();
    let dir = match std::env::var_os("EMBER_COCO_OUT") {
        Some(d) => std::path::PathBuf::from(d),
        None => tempfile::tempdir().unwrap().keep(),
    };
    std::fs::create_dir_all(&dir).unwrap();
    write_json(dir.join("gt.json"), &gt).unwrap();
    write_json(dir.join("predictions.json"), &Value::Array(preds.clone())).unwrap();
    let back: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("gt.json")).unwrap()).unwrap();
    assert_eq!(back["images"].as_array().unwrap().len(), gts.len());
    let n_ann: usize = gts.iter().map(|g| g.classes.len()).sum();
    assert_eq!(back["annotations"].as_array().unwrap().len(), n_ann);
    assert!(preds.len() > 1000);
    if std::env::var_os("EMBER_COCO_OUT").is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
}
