//! Parity of ember's detection loss with Ultralytics 8.4.190 on stored head outputs
//! (fixtures from `tools/reference/loss_fixtures.py`: coco8 train batch at 160, seeded yolov8n / yolo26n).

use crate::common;

use std::path::PathBuf;

use burn::tensor::{backend::Backend, Tensor, TensorData};
use ember::backend::{Cpu, CpuAutodiff};
use ember::loss::{class_weights_from_counts, DetectionLoss, DetectionLossConfig, E2eLoss, ImageTargets, TargetBatch};
use safetensors::SafeTensors;
use serde_json::Value;

const REL_TOL: f32 = 1e-4;

struct Fixture {
    meta: Value,
    bytes: Vec<u8>,
}

impl Fixture {
    fn load(name: &str) -> Self {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/loss");
        let meta: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join(format!("{name}.json"))).unwrap()).unwrap();
        let bytes = std::fs::read(dir.join(format!("{name}.safetensors"))).unwrap();
        Self { meta, bytes }
    }

    fn array(&self, key: &str) -> (Vec<f32>, Vec<usize>) {
        let st = SafeTensors::deserialize(&self.bytes).unwrap();
        let t = st.tensor(key).unwrap();
        assert_eq!(t.dtype(), safetensors::Dtype::F32, "{key} must be f32");
        let v = t.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        (v, t.shape().to_vec())
    }

    fn tensor3<B: Backend>(&self, key: &str, device: &B::Device) -> Tensor<B, 3> {
        let (v, s) = self.array(key);
        Tensor::from_data(TensorData::new(v, [s[0], s[1], s[2]]), device)
    }

    fn feature_sizes(&self) -> Vec<[usize; 2]> {
        self.meta["feature_sizes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| [f[0].as_u64().unwrap() as usize, f[1].as_u64().unwrap() as usize])
            .collect()
    }

    fn strides(&self) -> Vec<f32> {
        self.meta["strides"].as_array().unwrap().iter().map(|s| s.as_f64().unwrap() as f32).collect()
    }

    fn reg_max(&self) -> usize {
        self.meta["reg_max"].as_u64().unwrap() as usize
    }

    fn imgsz(&self) -> [usize; 2] {
        let a = self.meta["imgsz"].as_array().unwrap();
        [a[0].as_u64().unwrap() as usize, a[1].as_u64().unwrap() as usize]
    }

    /// Targets of one fixture case: "full", "background" (image `background_image` has no boxes) or "empty".
    fn targets(&self, case: &str) -> TargetBatch {
        let bs = self.meta["batch_size"].as_u64().unwrap() as usize;
        let (bi, _) = self.array("batch_idx");
        let (cls, _) = self.array("cls");
        let (boxes, _) = self.array("bboxes");
        let bg = self.meta["background_image"].as_u64().unwrap() as usize;
        let mut images = vec![ImageTargets::background(); bs];
        if case != "empty" {
            for (i, (&b, &c)) in bi.iter().zip(&cls).enumerate() {
                let b = b as usize;
                if case == "background" && b == bg {
                    continue;
                }
                images[b].classes.push(c as usize);
                images[b].boxes.push([boxes[4 * i], boxes[4 * i + 1], boxes[4 * i + 2], boxes[4 * i + 3]]);
            }
        }
        TargetBatch::new(images, self.imgsz())
    }

    fn expected(&self, case: &str) -> ([f32; 3], f32, Vec<String>) {
        let c = &self.meta["cases"][case];
        let items: Vec<f32> = c["items"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
        let total: f32 = c["total"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).sum();
        let names = c["names"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect();
        ([items[0], items[1], items[2]], total, names)
    }
}

fn rel(a: f32, b: f32) -> f32 {
    if a == b {
        0.0
    } else {
        (a - b).abs() / b.abs().max(1e-6)
    }
}

fn check(model: &str, case: &str, got: [f32; 3], got_total: f32, names: [&str; 3], fx: &Fixture) {
    let (want, want_total, want_names) = fx.expected(case);
    assert_eq!(names.to_vec(), want_names, "{model}/{case}: loss names");
    for k in 0..3 {
        let r = rel(got[k], want[k]);
        println!("{model}/{case} {}: ember {:.7} ultralytics {:.7} rel {:.2e}", names[k], got[k], want[k], r);
        assert!(r <= REL_TOL || (want[k] == 0.0 && got[k].abs() < 1e-6), "{model}/{case} {} off: {r:e}", names[k]);
    }
    let r = rel(got_total, want_total);
    println!("{model}/{case} total: ember {got_total:.6} ultralytics {want_total:.6} rel {r:.2e}");
    assert!(r <= REL_TOL, "{model}/{case} total off: {r:e}");
}

fn nc(fx: &Fixture) -> usize {
    fx.meta["nc"].as_u64().unwrap() as usize
}

/// Loss settings of a fixture case: defaults, plus the stored class weights for the `*_cw` cases.
fn config(fx: &Fixture, case: &str) -> DetectionLossConfig {
    let cfg = DetectionLossConfig::new(nc(fx), fx.reg_max());
    if !case.ends_with("_cw") {
        return cfg;
    }
    let cw = &fx.meta["class_weights"];
    let f = |k: &str| -> Vec<f32> { cw[k].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect() };
    let (counts, weights) = (f("counts"), f("weights"));
    let ours = class_weights_from_counts(&counts, cw["cls_pw"].as_f64().unwrap() as f32).unwrap();
    for (a, b) in ours.iter().zip(&weights) {
        assert!((a - b).abs() < 1e-6, "class weights: {ours:?} vs {weights:?}");
    }
    cfg.with_class_weights(Some(weights))
}

fn v8_case(model: &str, case: &str) {
    let fx = Fixture::load(model);
    let device = Default::default();
    let boxes = fx.tensor3::<Cpu>("main.boxes", &device);
    let scores = fx.tensor3::<Cpu>("main.scores", &device);
    let loss = DetectionLoss::new(config(&fx, case));
    let preds = common::head_output(&[boxes, scores], &fx.feature_sizes(), &fx.strides(), fx.reg_max());
    let out = loss.forward(preds, &fx.targets(case));
    println!("{model}/{case}: fg {} (ultralytics {})", out.num_fg, fx.meta["cases"][case]["main"]["fg"]);
    let total = out.total.clone().into_data().to_vec::<f32>().unwrap()[0];
    check(model, case, out.components(), total, out.names, &fx);
}

fn e2e_case(model: &str, case: &str) {
    let fx = Fixture::load(model);
    let device = Default::default();
    let t = |k: &str| fx.tensor3::<Cpu>(k, &device);
    let epochs = fx.meta["epochs"].as_u64().unwrap() as usize;
    let epoch = fx.meta["epoch"].as_u64().unwrap() as usize;
    let loss = E2eLoss::new(config(&fx, case), epochs);
    let want_o2m = fx.meta["o2m"].as_f64().unwrap() as f32;
    assert!((loss.schedule.o2m(epoch) - want_o2m).abs() < 1e-6, "o2m schedule");
    let heads = [t("one2many.boxes"), t("one2many.scores"), t("one2one.boxes"), t("one2one.scores")];
    let out = loss.forward(
        common::head_output(&heads, &fx.feature_sizes(), &fx.strides(), fx.reg_max()),
        &fx.targets(case),
        epoch,
    );
    let c = &fx.meta["cases"][case];
    println!(
        "{model}/{case}: fg o2m {} (ultralytics {}), o2o {} (ultralytics {})",
        out.num_fg_one2many, c["one2many"]["fg"], out.num_fg_one2one, c["one2one"]["fg"]
    );
    let want_m: Vec<f32> = c["one2many"]["components"]
        .as_array()
        .map(|a| a.iter().map(|v| v.as_f64().unwrap() as f32).collect())
        .unwrap_or_default(); // not stored for the class-weight cases
    let got_m = out.one2many_components();
    for (k, &want) in want_m.iter().enumerate() {
        let r = rel(got_m[k], want);
        println!("{model}/{case} one2many {}: rel {r:.2e}", out.names[k]);
        assert!(r <= REL_TOL || (want == 0.0 && got_m[k].abs() < 1e-6));
    }
    let total = out.total.clone().into_data().to_vec::<f32>().unwrap()[0];
    check(model, case, out.components(), total, out.names, &fx);
}

#[test]
fn yolov8n_parity_full() {
    v8_case("yolov8n", "full");
}

#[test]
fn yolov8n_parity_background_image() {
    v8_case("yolov8n", "background");
}

#[test]
fn yolov8n_parity_all_background() {
    v8_case("yolov8n", "empty");
}

#[test]
fn yolo26n_parity_full() {
    e2e_case("yolo26n", "full");
}

#[test]
fn yolo26n_parity_background_image() {
    e2e_case("yolo26n", "background");
}

#[test]
fn yolo26n_parity_all_background() {
    e2e_case("yolo26n", "empty");
}

/// Random predictions, non-square input (96 x 160), crowded / nested / tiny boxes: STAL and conflicts between boxes.
#[test]
fn synthetic_dfl_parity() {
    v8_case("synthetic_v8", "full");
    v8_case("synthetic_v8", "empty");
}

#[test]
fn synthetic_e2e_parity() {
    e2e_case("synthetic_e2e", "full");
    e2e_case("synthetic_e2e", "empty");
}

/// Class weights (Ultralytics `cls_pw`), weights derived from counts where most classes have none.
#[test]
fn synthetic_class_weights_parity() {
    v8_case("synthetic_v8", "full_cw");
    e2e_case("synthetic_e2e", "full_cw");
}

/// Backward on `Autodiff<Flex>` gives finite gradients of the right shape on all prediction tensors.
#[test]
fn gradients_flow_to_predictions() {
    let device = Default::default();
    // yolov8n (DFL)
    let fx = Fixture::load("yolov8n");
    let boxes = fx.tensor3::<CpuAutodiff>("main.boxes", &device).require_grad();
    let scores = fx.tensor3::<CpuAutodiff>("main.scores", &device).require_grad();
    let loss = DetectionLoss::new(DetectionLossConfig::new(80, fx.reg_max()));
    let preds = common::head_output(&[boxes.clone(), scores.clone()], &fx.feature_sizes(), &fx.strides(), fx.reg_max());
    let out = loss.forward(preds, &fx.targets("background"));
    let grads = out.total.backward();
    for (name, t) in [("boxes", &boxes), ("scores", &scores)] {
        let g = t.grad(&grads).unwrap_or_else(|| panic!("no grad on {name}"));
        assert_eq!(g.dims(), t.dims());
        let v = g.into_data().to_vec::<f32>().unwrap();
        assert!(v.iter().all(|x| x.is_finite()), "{name} grad not finite");
        assert!(v.iter().any(|&x| x != 0.0), "{name} grad all zero");
    }

    // yolo26n (L1, two branches)
    let fx = Fixture::load("yolo26n");
    let t = |k: &str| fx.tensor3::<CpuAutodiff>(k, &device).require_grad();
    let ts = [t("one2many.boxes"), t("one2many.scores"), t("one2one.boxes"), t("one2one.scores")];
    let loss = E2eLoss::new(DetectionLossConfig::new(80, fx.reg_max()), 10);
    let out = loss.forward(
        common::head_output(&ts, &fx.feature_sizes(), &fx.strides(), fx.reg_max()),
        &fx.targets("full"),
        3,
    );
    let grads = out.total.backward();
    for (i, t) in ts.iter().enumerate() {
        let g = t.grad(&grads).unwrap_or_else(|| panic!("no grad on tensor {i}"));
        let v = g.into_data().to_vec::<f32>().unwrap();
        assert!(v.iter().all(|x| x.is_finite()), "tensor {i} grad not finite");
        assert!(v.iter().any(|&x| x != 0.0), "tensor {i} grad all zero");
    }
}

/// Compare ember's gradients of the summed loss with Ultralytics' (stored: norm, sum and the 48 largest entries).
fn grad_parity(model: &str, case: &str) {
    let fx = Fixture::load(model);
    let device = Default::default();
    let reference = &fx.meta[format!("grads_{case}").as_str()];
    let e2e = fx.meta.get("o2m").is_some();
    let keys: Vec<&str> = if e2e {
        vec!["one2many.boxes", "one2many.scores", "one2one.boxes", "one2one.scores"]
    } else {
        vec!["main.boxes", "main.scores"]
    };
    let ts: Vec<Tensor<CpuAutodiff, 3>> =
        keys.iter().map(|k| fx.tensor3::<CpuAutodiff>(k, &device).require_grad()).collect();
    let targets = fx.targets(case);
    let (fs, st) = (fx.feature_sizes(), fx.strides());
    let total = if e2e {
        let epochs = fx.meta["epochs"].as_u64().unwrap() as usize;
        let epoch = fx.meta["epoch"].as_u64().unwrap() as usize;
        let loss = E2eLoss::new(DetectionLossConfig::new(nc(&fx), fx.reg_max()), epochs);
        loss.forward(common::head_output(&ts, &fs, &st, fx.reg_max()), &targets, epoch).total
    } else {
        let loss = DetectionLoss::new(DetectionLossConfig::new(nc(&fx), fx.reg_max()));
        loss.forward(common::head_output(&ts, &fs, &st, fx.reg_max()), &targets).total
    };
    let grads = total.backward();
    for (key, t) in keys.iter().zip(&ts) {
        let g = t.grad(&grads).unwrap().into_data().to_vec::<f32>().unwrap();
        let r = &reference[*key];
        let norm = g.iter().map(|&x| (x as f64) * (x as f64)).sum::<f64>().sqrt() as f32;
        let sum = g.iter().map(|&x| x as f64).sum::<f64>() as f32;
        let want_norm = r["norm"].as_f64().unwrap() as f32;
        let want_sum = r["sum"].as_f64().unwrap() as f32;
        let rn = rel(norm, want_norm);
        let ds = (sum - want_sum).abs() / want_sum.abs().max(want_norm);
        let mut worst = 0f32;
        for (i, v) in r["index"].as_array().unwrap().iter().zip(r["value"].as_array().unwrap()) {
            let (i, v) = (i.as_u64().unwrap() as usize, v.as_f64().unwrap() as f32);
            worst = worst.max((g[i] - v).abs() / want_norm);
        }
        println!("{model}/{case} grad {key}: norm rel {rn:.2e}, sum {ds:.2e}, top-48 max |diff|/norm {worst:.2e}");
        assert!(rn <= 1e-4, "{model} {key} grad norm off: {rn:e}");
        assert!(ds <= 1e-4, "{model} {key} grad sum off: {ds:e}");
        assert!(worst <= 1e-5, "{model} {key} grad entries off: {worst:e}");
    }
}

#[test]
fn yolov8n_gradient_parity() {
    grad_parity("yolov8n", "background");
}

#[test]
fn yolo26n_gradient_parity() {
    grad_parity("yolo26n", "background");
}

#[test]
fn synthetic_gradient_parity() {
    grad_parity("synthetic_v8", "full");
    grad_parity("synthetic_e2e", "full");
}

/// The tensor entry point of the assigner agrees with Ultralytics' foreground count on the real batch.
#[test]
fn assigner_tensor_api_matches_fg_count() {
    use ember::loss::assigner::{AssignerConfig, TaskAlignedAssigner};
    use ember::loss::bbox_loss::decode_distances;
    use ember::loss::boxes::dist2bbox;
    use ember::loss::make_anchors;
    let fx = Fixture::load("yolov8n");
    let device = Default::default();
    let boxes = fx.tensor3::<Cpu>("main.boxes", &device);
    let scores = fx.tensor3::<Cpu>("main.scores", &device);
    let [b, c, na] = boxes.dims();
    let anchors = make_anchors(&fx.feature_sizes(), &fx.strides(), 0.5);
    let (pts, st) = anchors.to_tensors::<Cpu>(&device);
    let dist = decode_distances(boxes.permute([0, 2, 1]).reshape([b * na, c]), fx.reg_max());
    let pts = pts.unsqueeze_dim::<3>(0).repeat_dim(0, b).reshape([b * na, 2]);
    let st = st.unsqueeze_dim::<3>(0).repeat_dim(0, b).reshape([b * na, 1]);
    let px = (dist2bbox(dist, pts) * st).reshape([b, na, 4]);
    let anchor_px: Vec<[f32; 2]> =
        anchors.points.iter().zip(&anchors.strides).map(|(p, &s)| [p[0] * s, p[1] * s]).collect();
    let [h, w] = fx.imgsz();
    for case in ["full", "background", "empty"] {
        let gt = fx.targets(case).padded([h as f32, w as f32]);
        let assigner = TaskAlignedAssigner::new(AssignerConfig::new(10, None, 80, &fx.strides()));
        let a = assigner.assign_tensors(scores.clone(), px.clone(), &anchor_px, &gt);
        let want = fx.meta["cases"][case]["main"]["fg"].as_u64().unwrap() as usize;
        assert_eq!(a.num_fg(), want, "{case}");
    }
}
