//! `ember export`: the ONNX graph, run by tract (a pure-Rust ONNX runtime), must reproduce ember's own forward
//! on a real coco8 photo, for YOLO26n (both heads) and YOLOv8n; SafeTensors and burnpack exports must round-trip.
//! Models are freshly initialised with a fixed seed and BatchNorm statistics set to non-trivial values, so the
//! BatchNorm folding is exercised (trained weights are not needed to check the graph).

use crate::common;

use std::path::PathBuf;

use burn::tensor::{Tensor, TensorData};
use ember::backend::Cpu;
use ember::data::image_io::decode_rgb;
use ember::data::Letterbox;
use ember::export::proto::ModelProto;
use ember::export::{self, export_onnx, OnnxOptions};
use ember::model::{BoxFormat, StateDict, Yolo};
use ember::postprocess::{end2end_postprocess, End2EndOptions};
use prost::Message;
use tract_onnx::prelude::*;

const IMGSZ: usize = 160;

/// The first coco8 val photo, letterboxed to `IMGSZ`, as `[1, 3, IMGSZ, IMGSZ]` values in 0..1.
fn photo() -> (PathBuf, Vec<f32>) {
    let dir = common::shared_datasets().join("coco8/images/val");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    let path = files.into_iter().find(|p| p.extension().is_some_and(|e| e == "jpg")).expect("a coco8 val jpg");
    let img = decode_rgb(&path).unwrap();
    let lb = Letterbox::new(img.dimensions(), (IMGSZ as u32, IMGSZ as u32));
    let canvas = lb.apply(&img);
    let plane = IMGSZ * IMGSZ;
    let mut x = vec![0f32; 3 * plane];
    for (i, p) in canvas.pixels().enumerate() {
        for c in 0..3 {
            x[c * plane + i] = p.0[c] as f32 / 255.0;
        }
    }
    (path, x)
}

fn ember_input(x: &[f32]) -> Tensor<Cpu, 4> {
    Tensor::from_data(TensorData::new(x.to_vec(), [1, 3, IMGSZ, IMGSZ]), &Default::default())
}

/// Run an ONNX file with tract on a concrete `[1, 3, IMGSZ, IMGSZ]` input.
fn run_tract(bytes: &[u8], x: &[f32], half: bool) -> (Vec<usize>, Vec<f32>) {
    let model = tract_onnx::onnx().model_for_read(&mut &bytes[..]).expect("tract parses the graph");
    let dt = if half { f16::datum_type() } else { f32::datum_type() };
    let model = model.with_input_fact(0, InferenceFact::dt_shape(dt, tvec![1, 3, IMGSZ, IMGSZ])).unwrap();
    let runnable = model.into_optimized().expect("tract optimises the graph").into_runnable().unwrap();
    let input: tract_onnx::prelude::Tensor =
        tract_ndarray::Array4::from_shape_vec((1, 3, IMGSZ, IMGSZ), x.to_vec()).unwrap().into();
    let input = if half { input.cast_to::<f16>().unwrap().into_owned() } else { input };
    let out = runnable.run(tvec!(input.into())).expect("tract runs the graph");
    let out = out[0].cast_to::<f32>().unwrap();
    let view = out.to_plain_array_view::<f32>().unwrap();
    (view.shape().to_vec(), view.iter().copied().collect())
}

/// max |a - b| / max |b| over the rows `rows` of a `[C, A]` layout.
fn rel_diff(a: &[f32], b: &[f32], anchors: usize, rows: std::ops::Range<usize>) -> f32 {
    let (mut diff, mut scale) = (0f32, 0f32);
    for r in rows {
        for i in r * anchors..(r + 1) * anchors {
            diff = diff.max((a[i] - b[i]).abs());
            scale = scale.max(b[i].abs());
        }
    }
    diff / scale.max(1e-12)
}

fn metadata(bytes: &[u8]) -> std::collections::HashMap<String, String> {
    let proto = ModelProto::decode(bytes).unwrap();
    proto.metadata_props.into_iter().map(|p| (p.key.unwrap(), p.value.unwrap())).collect()
}

/// With `EMBER_EXPORT_DUMP=DIR`, write the graph, its input, ember's output and the weights (Ultralytics keys) for
/// `tools/reference/export_check.py` (onnxruntime and PyTorch figures outside the test suite).
fn dump(tag: &str, model: &Yolo<Cpu>, onnx: &[u8], x: &[f32], reference: &[f32]) {
    let Some(dir) = std::env::var_os("EMBER_EXPORT_DUMP").map(PathBuf::from) else {
        return;
    };
    std::fs::create_dir_all(&dir).unwrap();
    let raw = |v: &[f32]| v.iter().flat_map(|f| f.to_le_bytes()).collect::<Vec<u8>>();
    std::fs::write(dir.join(format!("{tag}.onnx")), onnx).unwrap();
    std::fs::write(dir.join(format!("{tag}.input.f32")), raw(x)).unwrap();
    std::fs::write(dir.join(format!("{tag}.ember.f32")), raw(reference)).unwrap();
    let loaded = ember::model::LoadedModel { model: model.clone(), names: names(model.nc()) };
    let meta = export::export_meta(&loaded, None, IMGSZ as u32);
    export::save_ultralytics_safetensors(model, &dir.join(format!("{tag}.safetensors")), &meta, false).unwrap();
}

fn names(nc: usize) -> Vec<String> {
    (0..nc).map(|i| format!("c{i}")).collect()
}

/// Default head: `[1, 4 + nc, anchors]` must match ember's decoded one-to-many output.
fn check_default_head(model_name: &str, nc: usize) {
    let model = common::seeded_model(model_name, nc, 7, (-2.0, 1.0));
    let (_, x) = photo();
    let reference = model.forward(ember_input(&x)).decode_one2many();
    let [_, channels, anchors] = reference.dims();
    let reference = reference.into_data().to_vec::<f32>().unwrap();
    let onnx = export_onnx(&model, &OnnxOptions::new(IMGSZ, names(nc))).unwrap();
    assert_eq!(onnx.output_shape, vec![Some(1), Some(4 + nc), Some(anchors)]);
    dump(model_name, &model, &onnx.bytes, &x, &reference);
    let (shape, got) = run_tract(&onnx.bytes, &x, false);
    assert_eq!(shape, vec![1, channels, anchors]);
    let boxes = rel_diff(&got, &reference, anchors, 0..4);
    let scores = rel_diff(&got, &reference, anchors, 4..channels);
    println!("{model_name}: tract vs ember, max rel diff boxes {boxes:.2e}, scores {scores:.2e}");
    assert!(boxes < 1e-4 && scores < 1e-4, "{model_name}: boxes {boxes}, scores {scores}");
    // The scores are not all alike (a graph that ignored the image would fail here).
    let s = &reference[4 * anchors..];
    let spread = s.iter().cloned().fold(f32::MIN, f32::max) - s.iter().cloned().fold(f32::MAX, f32::min);
    assert!(spread > 1e-6, "degenerate reference scores");
}

#[test]
fn yolo26n_default_head_matches_tract() {
    check_default_head("yolo26n", 80);
}

#[test]
fn yolov8n_matches_tract() {
    check_default_head("yolov8n", 80);
}

#[test]
fn yolo26n_end2end_head_matches_tract() {
    let nc = 80;
    let model = common::seeded_model("yolo26n", nc, 7, (-2.0, 1.0));
    let (_, x) = photo();
    let preds = model.forward(ember_input(&x)).decode_one2one(BoxFormat::Xyxy).unwrap();
    let [_, _, anchors] = preds.dims();
    let values = preds.into_data().to_vec::<f32>().unwrap();
    let max_det = 300;
    let opts = End2EndOptions { conf_thres: 0.0, max_det, agnostic: false, classes: None };
    let reference = end2end_postprocess(&values, nc, anchors, ember::postprocess::BoxFormat::Xyxy, &opts).unwrap();
    assert_eq!(reference.len(), max_det);
    let mut o = OnnxOptions::new(IMGSZ, names(nc));
    o.end2end = true;
    let onnx = export_onnx(&model, &o).unwrap();
    assert_eq!(onnx.output_shape, vec![Some(1), Some(max_det), Some(6)]);
    let rows: Vec<f32> =
        reference.iter().flat_map(|d| [d.xyxy[0], d.xyxy[1], d.xyxy[2], d.xyxy[3], d.score, d.class as f32]).collect();
    dump("yolo26n_end2end", &model, &onnx.bytes, &x, &rows);
    let (shape, got) = run_tract(&onnx.bytes, &x, false);
    assert_eq!(shape, vec![1, max_det, 6]);
    let scale_box = reference.iter().flat_map(|d| d.xyxy).fold(0f32, |m, v| m.max(v.abs()));
    let scale_score = reference.iter().fold(0f32, |m, d| m.max(d.score));
    let (mut box_diff, mut score_diff) = (0f32, 0f32);
    let rows: Vec<&[f32]> = got.chunks(6).collect();
    let cutoff = reference.last().unwrap().score;
    let tied = reference.iter().filter(|d| (d.score - cutoff).abs() <= 1e-4 * scale_score).count();
    assert!(tied < max_det / 2, "{tied} detections tie at the cut-off: the comparison would be vacuous");
    for (i, d) in reference.iter().enumerate() {
        // Rows are in descending score order in both; near-equal scores may swap places, so each reference
        // detection is looked up among the rows with the same class and (nearly) the same score.
        score_diff = score_diff.max((rows[i][4] - d.score).abs());
        let best = rows
            .iter()
            .filter(|r| r[5] as usize == d.class && (r[4] - d.score).abs() <= 1e-4 * scale_score)
            .map(|r| (0..4).map(|k| (r[k] - d.xyxy[k]).abs()).fold(0f32, f32::max))
            .fold(f32::INFINITY, f32::min);
        assert!(best.is_finite(), "detection {i} ({d:?}) not found in the ONNX output");
        // Exact ties at the top-k cut-off (the uniform letterbox padding gives equal scores to many anchors) may
        // keep different anchors; only the score is compared there.
        if (d.score - cutoff).abs() > 1e-4 * scale_score {
            box_diff = box_diff.max(best);
        }
    }
    let (box_rel, score_rel) = (box_diff / scale_box, score_diff / scale_score);
    println!("yolo26n end2end: tract vs ember, max rel diff boxes {box_rel:.2e}, scores {score_rel:.2e}");
    assert!(box_rel < 1e-4 && score_rel < 1e-4, "boxes {box_rel}, scores {score_rel}");
    let meta = metadata(&onnx.bytes);
    assert_eq!(meta["end2end"], "True");
}

#[test]
fn onnx_contract_metadata_and_names() {
    let model = common::seeded_model("yolo26n", 3, 7, (-2.0, 1.0));
    let onnx =
        export_onnx(&model, &OnnxOptions::new(IMGSZ, vec!["person".into(), "it's".into(), "dog".into()])).unwrap();
    let proto = ModelProto::decode(&onnx.bytes[..]).unwrap();
    let graph = proto.graph.as_ref().unwrap();
    assert_eq!(graph.input.len(), 1);
    assert_eq!(graph.input[0].name.as_deref(), Some("images"));
    assert_eq!(graph.output[0].name.as_deref(), Some("output0"));
    // BatchNorm is folded away and every Conv carries its bias.
    let ops: Vec<&str> = graph.node.iter().map(|n| n.op_type.as_deref().unwrap()).collect();
    assert!(!ops.contains(&"BatchNormalization"));
    assert!(graph.node.iter().filter(|n| n.op_type.as_deref() == Some("Conv")).all(|n| n.input.len() == 3));
    let meta = metadata(&onnx.bytes);
    assert_eq!(meta["names"], "{0: 'person', 1: \"it's\", 2: 'dog'}");
    assert_eq!(meta["stride"], "32");
    assert_eq!(meta["imgsz"], format!("[{IMGSZ}, {IMGSZ}]"));
    assert_eq!(meta["task"], "detect");
    assert_eq!(meta["batch"], "1");
    assert_eq!(meta["end2end"], "False");
    // Bad requests are errors, not panics.
    let mut o = OnnxOptions::new(IMGSZ, names(3));
    o.end2end = true;
    assert!(
        export_onnx(&common::seeded_model("yolov8n", 3, 7, (-2.0, 1.0)), &o).is_err(),
        "yolov8n has no one-to-one head"
    );
    assert!(export_onnx(&model, &OnnxOptions::new(100, names(3))).is_err(), "imgsz not a multiple of 32");
    let mut o = OnnxOptions::new(IMGSZ, names(3));
    o.opset = 9;
    assert!(export_onnx(&model, &o).is_err());
}

#[test]
fn dynamic_and_half_graphs_run_in_tract() {
    let nc = 80;
    let model = common::seeded_model("yolo26n", nc, 7, (-2.0, 1.0));
    let (_, x) = photo();
    let reference = model.forward(ember_input(&x)).decode_one2many();
    let [_, channels, anchors] = reference.dims();
    let reference = reference.into_data().to_vec::<f32>().unwrap();
    // Dynamic: symbolic batch and size, anchors computed in the graph.
    let mut o = OnnxOptions::new(640, names(nc));
    o.dynamic = true;
    let onnx = export_onnx(&model, &o).unwrap();
    assert_eq!(onnx.output_shape, vec![None, Some(4 + nc), None]);
    dump("yolo26n_dynamic", &model, &onnx.bytes, &x, &reference);
    let (shape, got) = run_tract(&onnx.bytes, &x, false);
    assert_eq!(shape, vec![1, channels, anchors]);
    let (b, s) = (rel_diff(&got, &reference, anchors, 0..4), rel_diff(&got, &reference, anchors, 4..channels));
    println!("yolo26n dynamic: tract vs ember, max rel diff boxes {b:.2e}, scores {s:.2e}");
    assert!(b < 1e-4 && s < 1e-4, "dynamic: boxes {b}, scores {s}");
    // Half: FP16 weights and arithmetic, so only a loose agreement is expected.
    let mut o = OnnxOptions::new(IMGSZ, names(nc));
    o.half = true;
    let onnx = export_onnx(&model, &o).unwrap();
    dump("yolo26n_half", &model, &onnx.bytes, &x, &reference);
    let (_, got) = run_tract(&onnx.bytes, &x, true);
    let (b, s) = (rel_diff(&got, &reference, anchors, 0..4), rel_diff(&got, &reference, anchors, 4..channels));
    println!("yolo26n half: tract vs ember FP32, max rel diff boxes {b:.2e}, scores {s:.2e}");
    assert!(b < 2e-2 && s < 5e-2, "half: boxes {b}, scores {s}");
}

#[test]
fn safetensors_and_burnpack_round_trip() {
    let nc = 3;
    let model = common::seeded_model("yolov8n", nc, 7, (-2.0, 1.0));
    let dir = tempfile::tempdir().unwrap();
    let weights = dir.path().join("w.safetensors");
    model.save_safetensors(&weights).unwrap();
    let device = Default::default();
    let loaded = ember::model::load_model::<Cpu>(&weights, "yolov8n", &device).unwrap();
    assert_eq!(loaded.names, vec!["class0", "class1", "class2"]);
    let meta = export::export_meta(&loaded, None, 160);
    let out = export::output_path(&weights, "safetensors");
    assert_eq!(out, dir.path().join("w-export.safetensors"));
    export::save_ultralytics_safetensors(&loaded.model, &out, &meta, false).unwrap();
    // Every tensor comes back bit-exact, under Ultralytics keys, with num_batches_tracked for strict loading.
    let a = StateDict::read(&weights).unwrap();
    let b = StateDict::read(&out).unwrap();
    assert_eq!(a.tensors.len(), b.tensors.len());
    for (k, v) in &a.tensors {
        assert_eq!(&b.tensors[k], v, "{k}");
    }
    assert!(b.int_keys.iter().any(|k| k == "model.0.bn.num_batches_tracked"));
    assert!(a.tensors.contains_key("model.22.dfl.conv.weight"));
    let back = ember::model::load_model::<Cpu>(&out, "yolo26n", &device).unwrap();
    assert_eq!(back.model.name(), "yolov8n", "the model name comes from the exported header");
    let (_, x) = photo();
    let y0 = model.forward(ember_input(&x)).decode_one2many().into_data().to_vec::<f32>().unwrap();
    let y1 = back.model.forward(ember_input(&x)).decode_one2many().into_data().to_vec::<f32>().unwrap();
    assert_eq!(y0, y1);
    // FP16 SafeTensors: half the size, values within f16 rounding.
    let half = dir.path().join("half.safetensors");
    export::save_ultralytics_safetensors(&loaded.model, &half, &meta, true).unwrap();
    let h = StateDict::read(&half).unwrap();
    for (k, (_, v)) in &a.tensors {
        for (p, q) in v.iter().zip(&h.tensors[k].1) {
            assert!((p - q).abs() <= 1e-3 * p.abs().max(1e-2), "{k}: {p} vs {q}");
        }
    }
    assert!(std::fs::metadata(&half).unwrap().len() * 10 < std::fs::metadata(&out).unwrap().len() * 6);
    // Burnpack.
    let bpk = dir.path().join("w.bpk");
    export::save_burnpack(&model, &bpk, &meta).unwrap();
    let m2 = export::load_burnpack::<Cpu>(&bpk, "yolov8n", nc, &device).unwrap();
    let y2 = m2.forward(ember_input(&x)).decode_one2many().into_data().to_vec::<f32>().unwrap();
    assert_eq!(y0, y2);
    assert!(export::load_burnpack::<Cpu>(&dir.path().join("missing.bpk"), "yolov8n", nc, &device).is_err());
    // A file that is not SafeTensors is a clear error.
    let junk = dir.path().join("junk.safetensors");
    std::fs::write(&junk, b"not a tensor file").unwrap();
    let err = ember::model::load_model::<Cpu>(&junk, "yolov8n", &device).err().expect("junk is refused");
    assert!(format!("{err:#}").contains("junk.safetensors"), "{err:#}");
}

#[test]
fn export_command_writes_each_format() {
    let dir = tempfile::tempdir().unwrap();
    let weights = dir.path().join("seeded.safetensors");
    common::seeded_model("yolo26n", 80, 7, (-2.0, 1.0)).save_safetensors(&weights).unwrap();
    let coco8 = common::shared_datasets().join("coco8.yaml");
    let run = |extra: &[&str]| {
        let mut args =
            vec!["ember", "export", "--weights", weights.to_str().unwrap(), "--model", "yolo26n", "--imgsz", "160"];
        args.extend_from_slice(extra);
        let inv = ember::cli::parse(args.iter().map(|s| s.to_string()).collect())
            .unwrap_or_else(|_| panic!("args {extra:?}"));
        // An unknown format is refused when the settings resolve, before any weights are read.
        let settings = ember::config::Settings::resolve(&inv.overrides)?;
        ember::commands::export::run(&settings)
    };
    let onnx = run(&["--format", "onnx", "--end2end", "--data", coco8.to_str().unwrap()]).unwrap();
    assert_eq!(onnx, dir.path().join("seeded.onnx"));
    let meta = metadata(&std::fs::read(&onnx).unwrap());
    assert!(meta["names"].starts_with("{0: 'person', 1: 'bicycle'"), "{}", meta["names"]);
    assert_eq!(meta["end2end"], "True");
    let st = run(&["--format", "safetensors"]).unwrap();
    assert_eq!(st, dir.path().join("seeded-export.safetensors"));
    assert!(StateDict::read(&st).unwrap().tensors.contains_key("model.23.one2one_cv3.2.2.weight"));
    let bpk = run(&["--format", "burnpack"]).unwrap();
    assert!(bpk.is_file());
    let err = run(&["--format", "tflite"]).expect_err("unknown format");
    assert!(format!("{err:#}").contains("tflite"));
    let missing = dir.path().join("nope.safetensors");
    let inv = ember::cli::parse(
        ["ember", "export", "--weights", missing.to_str().unwrap()].iter().map(|s| s.to_string()).collect(),
    )
    .ok()
    .unwrap();
    let err = ember::commands::export::run(&ember::config::Settings::resolve(&inv.overrides).unwrap()).err().unwrap();
    assert!(format!("{err:#}").contains("nope.safetensors"), "{err:#}");
}
