//! Parity of ember's detection loss with Ultralytics 8.4.190 on stored head outputs
//! (fixtures from `tools/reference/loss_fixtures.py`: coco8 train batch at 160, seeded yolov8n / yolo26n).

use crate::common;

use burn::tensor::Tensor;
use ember::backend::{Cpu, CpuAutodiff};
use ember::loss::{class_weights_from_counts, DetectionLoss, DetectionLossConfig, E2eLoss};

use common::loss_fixture::Fixture;

const REL_TOL: f32 = 1e-4;

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
    println!(
        "{model}/{case}: fg {} (ultralytics {})",
        out.num_fg.clone().into_scalar(),
        fx.meta["cases"][case]["main"]["fg"]
    );
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
        out.num_fg_one2many.clone().into_scalar(),
        c["one2many"]["fg"],
        out.num_fg_one2one.clone().into_scalar(),
        c["one2one"]["fg"]
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

/// The assigner, on the device route and on the host route, against Ultralytics' own assignment of every
/// labelled fixture case and branch: foreground anchors and their boxes exact, target scores and boxes within
/// 1e-5.
#[test]
fn assigner_matches_ultralytics_on_both_routes() {
    use ember::loss::assigner::Route;
    for route in [Route::Device, Route::Host] {
        let d = common::loss_fixture::assignment_vs_ultralytics::<Cpu>(&Default::default(), route);
        println!("{route:?}: {d:?}");
        assert_eq!(d.mismatched_anchors, 0, "{route:?}");
        assert!(d.foreground > 400, "{route:?}: {} foreground anchors compared", d.foreground);
        assert!(d.scores < 1e-5 && d.boxes < 1e-5, "{route:?}: {d:?}");
    }
}
