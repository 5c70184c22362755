//! Parity with Ultralytics 8.4.190 on a committed fixture (see tools/reference/metrics_fixture.py):
//! real coco128 labels, synthetic detections; matching, AP, P/R, mAP, fitness, table text, confusion matrices,
//! NMS and the end-to-end top-k path.

use ember::metrics::{match_boxes, ConfusionMatrix, DetectionAccumulator, IOU_THRESHOLDS};
use ember::postprocess::{end2end_postprocess, non_max_suppression, BoxFormat, Detection, End2EndOptions, NmsOptions};
use serde_json::Value;

const TOL: f64 = 1e-6;

/// The committed fixture, or another one made by the same script when `EMBER_METRICS_FIXTURE` is set.
fn fixture() -> Value {
    let default = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/metrics/ultralytics_parity.json");
    let path = std::env::var("EMBER_METRICS_FIXTURE").unwrap_or_else(|_| default.to_string());
    serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("fixture JSON")
}

fn f32s(v: &Value) -> Vec<f32> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect()
}
fn f64s(v: &Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
}
fn usizes(v: &Value) -> Vec<usize> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as usize).collect()
}
fn boxes(v: &Value) -> Vec<[f32; 4]> {
    f32s(v).chunks(4).map(|c| [c[0], c[1], c[2], c[3]]).collect()
}

struct Image {
    gt_b: Vec<[f32; 4]>,
    gt_c: Vec<usize>,
    preds: Vec<Detection>,
}

fn images(f: &Value) -> Vec<Image> {
    f["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|im| {
            let pb = boxes(&im["pred_xyxy"]);
            let ps = f32s(&im["pred_conf"]);
            let pc = usizes(&im["pred_cls"]);
            Image {
                gt_b: boxes(&im["gt_xyxy"]),
                gt_c: usizes(&im["gt_cls"]),
                preds: (0..pb.len()).map(|i| Detection { xyxy: pb[i], score: ps[i], class: pc[i] }).collect(),
            }
        })
        .collect()
}

fn max_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
}

#[test]
fn thresholds_are_torch_linspace() {
    let want = [
        0.5,
        0.550000011920929,
        0.6000000238418579,
        0.6499999761581421,
        0.699999988079071,
        0.75,
        0.800000011920929,
        0.8500000238418579,
        0.8999999761581421,
        0.949999988079071,
    ];
    for (a, b) in IOU_THRESHOLDS.iter().zip(want) {
        assert_eq!(*a as f64, b);
    }
}

#[test]
fn matching_equals_ultralytics() {
    let f = fixture();
    let ims = images(&f);
    let want = f["ultralytics"]["tp"].as_array().unwrap();
    let mut n = 0;
    for (im, w) in ims.iter().zip(want) {
        let b: Vec<[f32; 4]> = im.preds.iter().map(|d| d.xyxy).collect();
        let c: Vec<usize> = im.preds.iter().map(|d| d.class).collect();
        let tp = match_boxes(&b, &c, &im.gt_b, &im.gt_c);
        let w = w.as_array().unwrap();
        assert_eq!(tp.len(), w.len());
        for (row, wr) in tp.iter().zip(w) {
            let wr: Vec<bool> = wr.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() == 1).collect();
            assert_eq!(row.to_vec(), wr);
            n += 1;
        }
    }
    assert!(n > 0);
}

#[test]
fn metrics_equal_ultralytics() {
    let f = fixture();
    let u = &f["ultralytics"];
    let names: Vec<String> = f["names"].as_array().unwrap().iter().map(|x| x.as_str().unwrap().to_string()).collect();
    let mut acc = DetectionAccumulator::new(names.len());
    for im in images(&f) {
        acc.add_image(&im.preds, &im.gt_b, &im.gt_c).unwrap();
    }
    let m = acc.finish();
    let scalars = [
        ("mp", m.precision),
        ("mr", m.recall),
        ("map50", m.map50),
        ("map75", m.map75),
        ("map", m.map50_95),
        ("fitness", m.fitness),
    ];
    for (k, v) in scalars {
        let w = u[k].as_f64().unwrap();
        eprintln!("{k}: ember {v:.12} ultralytics {w:.12} |diff| {:.3e}", (v - w).abs());
        assert!((v - w).abs() <= TOL, "{k}: {v} vs {w}");
    }
    let classes: Vec<usize> = m.per_class.iter().map(|r| r.class).collect();
    assert_eq!(classes, usizes(&u["ap_class_index"]));
    let p: Vec<f64> = m.per_class.iter().map(|r| r.precision).collect();
    let r: Vec<f64> = m.per_class.iter().map(|r| r.recall).collect();
    let f1: Vec<f64> = m.per_class.iter().map(|r| r.f1).collect();
    let ap: Vec<f64> = m.per_class.iter().flat_map(|r| r.ap).collect();
    let want_ap: Vec<f64> = u["all_ap"].as_array().unwrap().iter().flat_map(f64s).collect();
    for (k, got, want) in
        [("P", p, f64s(&u["p"])), ("R", r, f64s(&u["r"])), ("F1", f1, f64s(&u["f1"])), ("AP", ap, want_ap)]
    {
        let d = max_diff(&got, &want);
        eprintln!("per-class {k}: max |diff| {d:.3e} over {} values", got.len());
        assert!(d <= TOL, "per-class {k} differs by {d}");
    }
    assert_eq!(m.nt_per_class, usizes(&u["nt_per_class"]));
    assert_eq!(m.nt_per_image, usizes(&u["nt_per_image"]));
    let table = m.format_table(&names);
    assert_eq!(table, u["table"].as_str().unwrap(), "table text differs:\n{table}");
}

#[test]
fn confusion_matrix_equals_ultralytics() {
    let f = fixture();
    let ims = images(&f);
    let nc = f["names"].as_array().unwrap().len();
    for (conf, key) in [(0.25f32, "confusion_conf_0.25"), (0.001, "confusion_conf_0.001")] {
        let mut cm = ConfusionMatrix::new(nc, conf, 0.45);
        for im in &ims {
            cm.process_image(&im.preds, &im.gt_b, &im.gt_c);
        }
        let want: Vec<f64> = f["ultralytics"][key].as_array().unwrap().iter().flat_map(f64s).collect();
        assert_eq!(cm.matrix, want, "{key}");
    }
}

fn rows(dets: &[Detection]) -> Vec<Vec<f64>> {
    dets.iter()
        .map(|d| {
            let mut v: Vec<f64> = d.xyxy.iter().map(|&x| x as f64).collect();
            v.push(d.score as f64);
            v.push(d.class as f64);
            v
        })
        .collect()
}

#[test]
fn nms_and_end2end_equal_ultralytics() {
    let f = fixture();
    let n = &f["nms"];
    let nc = n["nc"].as_u64().unwrap() as usize;
    let anchors = n["anchors"].as_u64().unwrap() as usize;
    let preds = f32s(&n["preds"]);
    let e2e = f32s(&n["e2e_preds"]);
    for case in n["cases"].as_array().unwrap() {
        let conf = case["conf"].as_f64().unwrap() as f32;
        let max_det = case["max_det"].as_u64().unwrap() as usize;
        let agnostic = case["agnostic"].as_bool().unwrap();
        let got = if case["kind"] == "nms" {
            let opts = NmsOptions {
                conf_thres: conf,
                iou_thres: case["iou"].as_f64().unwrap(),
                multi_label: case["multi_label"].as_bool().unwrap(),
                agnostic,
                max_det,
                ..NmsOptions::default()
            };
            non_max_suppression(&preds, nc, anchors, BoxFormat::Xywh, &opts).unwrap()
        } else {
            let opts = End2EndOptions { conf_thres: conf, max_det, agnostic, classes: None };
            end2end_postprocess(&e2e, nc, anchors, BoxFormat::Xyxy, &opts).unwrap()
        };
        // f32 values: serde_json's default float parser may be one f64 ulp off, the f32 cast removes that
        let want: Vec<Vec<f64>> =
            case["result"].as_array().unwrap().iter().map(|r| f32s(r).into_iter().map(f64::from).collect()).collect();
        let got = rows(&got);
        let label: Vec<String> =
            case.as_object().unwrap().iter().filter(|(k, _)| *k != "result").map(|(k, v)| format!("{k}={v}")).collect();
        if let Some(i) = (0..got.len().min(want.len())).find(|&i| got[i] != want[i]) {
            panic!("{label:?}: first difference at row {i}: ember {:?} ultralytics {:?}", got[i], want[i]);
        }
        assert_eq!(got.len(), want.len(), "{label:?}: row count");
        eprintln!("{label:?}: {} detections identical", got.len());
    }
}
