//! Ultralytics `.pt` files read natively, on fixtures Ultralytics 8.4.190 wrote (tools/reference/pt_fixtures.py):
//! every tensor equals Ultralytics' own, the forward pass meets the parity bound, `val` / `export` / `train`
//! take `.pt` files, and bad files get errors naming them.

use crate::common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use burn::tensor::{Tensor, TensorData};
use ember::backend::Cpu;
use ember::config::{Overrides, Settings};
use ember::data::synthetic::{generate, SyntheticConfig};
use ember::model::pt::read_pt;
use ember::model::{BoxFormat, StateDict, WeightsFile, Yolo};

fn fixture(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(path)
}

fn settings(pairs: &[(&str, String)]) -> Settings {
    Settings::resolve(&Overrides { values: pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect() }).unwrap()
}

/// The largest |difference| over the tensors both hold, after checking they hold the same float tensors.
fn max_difference(got: &StateDict, reference: &StateDict) -> f32 {
    let mut keys: Vec<&String> = reference.tensors.keys().collect();
    keys.sort();
    let mut got_keys: Vec<&String> = got.tensors.keys().collect();
    got_keys.sort();
    assert_eq!(got_keys, keys, "the same float tensors");
    let mut worst = 0f32;
    for k in keys {
        let (shape, values) = &got.tensors[k];
        let (ref_shape, ref_values) = &reference.tensors[k];
        assert_eq!(shape, ref_shape, "{k}: shape");
        for (a, b) in values.iter().zip(ref_values) {
            worst = worst.max((a - b).abs());
        }
    }
    worst
}

#[test]
fn trainer_checkpoint_holds_the_parity_weights_exactly() {
    for arch in ["yolo26n", "yolov8n"] {
        let path = fixture(&format!("pt/{arch}_coco.pt"));
        let ckpt = read_pt(&path).unwrap();
        let reference = StateDict::read(&fixture(&format!("model/{arch}.safetensors"))).unwrap();
        let diff = max_difference(&ckpt.state_dict, &reference);
        println!("{arch}_coco.pt: {} tensors, max |diff| {diff:e}", ckpt.state_dict.tensors.len());
        assert_eq!(diff, 0.0, "{arch}");
        // A trainer checkpoint: `model: None`, the FP16 EMA module under `ema`.
        assert_eq!(ckpt.info.entry, "ema");
        assert_eq!(ckpt.info.class.as_deref(), Some("ultralytics.nn.tasks.DetectionModel"));
        assert_eq!(ckpt.info.names.len(), 80);
        assert_eq!(ckpt.info.names[79], "class79");
        assert_eq!(ckpt.info.stride, vec![8.0, 16.0, 32.0]);
        // BatchNorm counters are integer buffers, kept apart.
        assert!(ckpt.state_dict.int_keys.iter().any(|k| k == "model.0.bn.num_batches_tracked"));
        let file = WeightsFile::read(&path).unwrap();
        assert_eq!(file.architecture().unwrap().as_deref(), Some(arch));
    }
}

#[test]
fn plain_state_dict_with_float8_tensors_reads_exactly() {
    // torch pickles float8 through `_rebuild_tensor_v3` and an untyped storage.
    let ckpt = read_pt(&fixture("pt/yolo26n_state_dict.pt")).unwrap();
    let reference = StateDict::read(&fixture("model/yolo26n.safetensors")).unwrap();
    assert_eq!(max_difference(&ckpt.state_dict, &reference), 0.0);
    assert!(ckpt.info.class.is_none() && ckpt.info.yaml.is_none());
    let file = WeightsFile::read(&fixture("pt/yolo26n_state_dict.pt")).unwrap();
    assert_eq!(file.architecture().unwrap(), None, "a state_dict does not name its architecture");
}

#[test]
fn trained_one_class_checkpoint_matches_ultralytics_state_dict() {
    let ckpt = read_pt(&fixture("pt/yolo26n_nc1_last.pt")).unwrap();
    assert_eq!(ckpt.info.entry, "model", "stripped by the trainer: model holds the EMA, ema is None");
    assert_eq!(ckpt.info.names, vec!["item".to_string()]);
    let text = std::fs::read_to_string(fixture("pt/yolo26n_nc1_last.json")).unwrap();
    let reference: HashMap<String, serde_json::Value> = serde_json::from_str(&text).unwrap();
    let mut checked = 0;
    let mut worst_sum = 0f64;
    for (key, r) in &reference {
        if !r["dtype"].as_str().unwrap().contains("float") {
            assert!(ckpt.state_dict.int_keys.contains(key), "{key}: integer buffer");
            continue;
        }
        let (shape, values) = ckpt.state_dict.tensors.get(key).unwrap_or_else(|| panic!("{key} missing"));
        let ref_shape: Vec<usize> =
            r["shape"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
        assert_eq!(*shape, ref_shape, "{key}: shape");
        for (at, v) in r["at"].as_array().unwrap().iter().zip(r["values"].as_array().unwrap()) {
            let at = at.as_u64().unwrap() as usize;
            assert_eq!(values[at], v.as_f64().unwrap() as f32, "{key}[{at}]");
        }
        let sum: f64 = values.iter().map(|&v| v as f64).sum();
        let ref_sum = r["sum"].as_f64().unwrap();
        let abs: f64 = values.iter().map(|&v| v.abs() as f64).sum::<f64>().max(1e-12);
        worst_sum = worst_sum.max((sum - ref_sum).abs() / abs);
        checked += 1;
    }
    println!("yolo26n_nc1_last.pt: {checked} float tensors, worst relative sum difference {worst_sum:e}");
    assert_eq!(checked, ckpt.state_dict.tensors.len(), "no tensor beyond Ultralytics' state_dict");
    assert!(worst_sum < 1e-9, "sums differ: {worst_sum:e}");
    let file = WeightsFile::read(&fixture("pt/yolo26n_nc1_last.pt")).unwrap();
    assert_eq!(file.architecture().unwrap().as_deref(), Some("yolo26n"));
}

/// A tensor's shape and values.
type Shaped = (Vec<usize>, Vec<f32>);

/// Input and eval-mode outputs of the forward-parity fixture (tools/reference/model_fixtures.py).
fn parity_io(arch: &str) -> (Vec<usize>, Vec<f32>, HashMap<String, Shaped>) {
    let bytes = std::fs::read(fixture(&format!("model/{arch}_io.safetensors"))).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let (mut input, mut outputs) = (None, HashMap::new());
    for (k, v) in st.tensors() {
        match v.dtype() {
            safetensors::Dtype::U8 => {
                input = Some((v.shape().to_vec(), v.data().iter().map(|&b| b as f32 / 255.0).collect()))
            }
            _ => {
                let values = v.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
                outputs.insert(k, (v.shape().to_vec(), values));
            }
        }
    }
    let (shape, values) = input.unwrap();
    (shape, values, outputs)
}

fn rel_diff(got: Tensor<Cpu, 3>, reference: &(Vec<usize>, Vec<f32>)) -> f32 {
    assert_eq!(got.dims().to_vec(), reference.0);
    let got = got.into_data().to_vec::<f32>().unwrap();
    let max_ref = reference.1.iter().fold(0f32, |m, v| m.max(v.abs()));
    got.iter().zip(&reference.1).fold(0f32, |m, (a, b)| m.max((a - b).abs())) / max_ref
}

#[test]
fn forward_from_the_pt_meets_the_parity_bound() {
    let device = Default::default();
    for arch in ["yolo26n", "yolov8n"] {
        let mut net = Yolo::<Cpu>::new(arch, 80, &device).unwrap();
        let report = net.load_weights(fixture(&format!("pt/{arch}_coco.pt"))).unwrap();
        assert!(report.skipped_class_head.is_empty() && report.unused.is_empty(), "{arch}: {report}");
        let (shape, input, outputs) = parity_io(arch);
        let out = net.forward(Tensor::from_data(TensorData::new(input, shape), &device));
        let o2m = rel_diff(out.decode_one2many(), &outputs["eval.one2many.decoded"]);
        // yolov8n has no one2one branch, and its fixture no one2one output.
        let o2o = match outputs.get("eval.one2one.decoded") {
            Some(reference) => rel_diff(out.decode_one2one(BoxFormat::Xyxy).unwrap(), reference),
            None => {
                assert!(out.one2one.is_none(), "{arch}: a one2one branch the fixture lacks");
                0.0
            }
        };
        println!("forward from {arch}_coco.pt: max rel diff one2many {o2m:.3e}, one2one {o2o:.3e}");
        assert!(o2m <= 1e-4 && o2o <= 1e-4, "{arch}: one2many {o2m:e}, one2one {o2o:e}");
    }
}

#[test]
fn val_and_export_take_pt_files() {
    let coco8 = Path::new(env!("CARGO_MANIFEST_DIR")).join("datasets/coco8.yaml");
    let shared = common::shared_datasets().display().to_string();
    let val = |weights: &Path, model: &str| {
        let pairs = [
            ("data", coco8.display().to_string()),
            ("datasets_dir", shared.clone()),
            ("weights", weights.display().to_string()),
            ("model", model.to_string()),
            ("imgsz", "160".into()),
            ("plots", "false".into()),
        ];
        ember::commands::val::run(&settings(&pairs)).unwrap()
    };
    // The architecture comes from the checkpoint's YAML, whatever --model says; a plain state_dict needs --model.
    let from_pt = val(&fixture("pt/yolo26n_coco.pt"), "yolov8n");
    let from_safetensors = val(&fixture("model/yolo26n.safetensors"), "yolo26n");
    let from_state_dict = val(&fixture("pt/yolo26n_state_dict.pt"), "yolo26n");
    println!("coco8 mAP50-95: .pt {}, .safetensors {}", from_pt.map50_95, from_safetensors.map50_95);
    assert_eq!(from_pt.map50_95, from_safetensors.map50_95);
    assert_eq!(from_state_dict.map50_95, from_safetensors.map50_95);
    assert_eq!(from_pt.images, 4);

    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("best.pt");
    std::fs::copy(fixture("pt/yolo26n_coco.pt"), &copy).unwrap();
    let pairs = [("weights", copy.display().to_string()), ("format", "onnx".into()), ("imgsz", "160".into())];
    let onnx = ember::commands::export::run(&settings(&pairs)).unwrap();
    assert_eq!(onnx, dir.path().join("best.onnx"));
    assert!(std::fs::metadata(&onnx).unwrap().len() > 1_000_000);

    // `ember export --format safetensors` of the .pt: the SafeTensors conversion, tensor for tensor.
    let pairs = [("weights", copy.display().to_string()), ("format", "safetensors".into())];
    let converted = ember::commands::export::run(&settings(&pairs)).unwrap();
    let mut converted = StateDict::read(&converted).unwrap();
    converted.tensors.retain(|k, _| k.starts_with("model."));
    let reference = StateDict::read(&fixture("model/yolo26n.safetensors")).unwrap();
    assert_eq!(max_difference(&converted, &reference), 0.0);
}

#[test]
fn fine_tunes_from_a_pt_with_another_class_count() {
    let dir = tempfile::tempdir().unwrap();
    let config = SyntheticConfig { train_images: 8, val_images: 4, size: 64, ..Default::default() };
    let yaml = generate(&dir.path().join("data"), &config).unwrap();
    let mut pairs = common::recipe(&yaml, &dir.path().join("runs"), "tune", 1);
    pairs.retain(|(k, _)| *k != "model");
    pairs.push(("model", fixture("pt/yolo26n_nc1_last.pt").display().to_string()));
    let outcome = ember::commands::train::run(&settings(&pairs)).unwrap();
    assert_eq!(outcome.epochs_completed, 1);
    let meta = ember::runs::checkpoint::read_meta(&outcome.last).unwrap().unwrap();
    assert_eq!(meta.model, "yolo26n", "the architecture came from the checkpoint");
    assert_eq!(meta.nc, 3, "the dataset's classes, not the checkpoint's one");

    // A plain state_dict does not say which model it is: --model must name it.
    let mut pairs = common::recipe(&yaml, &dir.path().join("runs"), "sd", 1);
    pairs.retain(|(k, _)| *k != "model");
    pairs.push(("model", fixture("pt/yolo26n_state_dict.pt").display().to_string()));
    let err = format!("{:#}", ember::commands::train::run(&settings(&pairs)).unwrap_err());
    assert!(err.contains("yolo26n_state_dict.pt") && err.contains("--model"), "{err}");
}

#[test]
fn bad_pt_files_get_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let error = |path: &Path| match WeightsFile::read(path) {
        Ok(_) => panic!("{} was accepted", path.display()),
        Err(e) => {
            println!("{e:#}");
            format!("{e:#}")
        }
    };
    for (file, says) in [("segment.pt", "segment"), ("pose.pt", "pose"), ("classify.pt", "classify")] {
        let err = error(&fixture(&format!("pt/{file}")));
        assert!(err.contains(file) && err.contains(says) && err.contains("detection models only"), "{err}");
    }
    let err = error(&fixture("pt/not_a_checkpoint.pt"));
    assert!(err.contains("not_a_checkpoint.pt") && err.contains("without a model"), "{err}");

    let whole = std::fs::read(fixture("pt/yolo26n_coco.pt")).unwrap();
    for (name, bytes) in [
        ("half.pt", whole[..whole.len() / 2].to_vec()),
        ("tail_cut.pt", whole[..whole.len() - 100].to_vec()),
        ("empty.pt", Vec::new()),
        ("text.pt", b"not a checkpoint at all".to_vec()),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let err = error(&path);
        assert!(err.contains(name), "{err}");
    }
    // A well-formed zip whose first storage entry is shorter than the tensors viewing it.
    let short = dir.path().join("short_storage.pt");
    rewrite_zip(&fixture("pt/yolo26n_coco.pt"), &short, |name, data| {
        if name.ends_with("/data/0") {
            data.truncate(6);
        }
    });
    let err = error(&short);
    assert!(err.contains("short_storage.pt") && err.contains("storage"), "{err}");

    // Through a command: the error names the file, no panic.
    let pairs = [("weights", fixture("pt/segment.pt").display().to_string()), ("format", "onnx".into())];
    let err = format!("{:#}", ember::commands::export::run(&settings(&pairs)).unwrap_err());
    assert!(err.contains("segment.pt"), "{err}");
}

/// Copy the zip at `from` to `to`, entries stored uncompressed, letting `edit` change each entry's bytes.
fn rewrite_zip(from: &Path, to: &Path, edit: impl Fn(&str, &mut Vec<u8>)) {
    use std::io::{Read, Write};
    let mut input = zip::ZipArchive::new(std::fs::File::open(from).unwrap()).unwrap();
    let mut output = zip::ZipWriter::new(std::fs::File::create(to).unwrap());
    let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for i in 0..input.len() {
        let mut entry = input.by_index(i).unwrap();
        let name = entry.name().to_string();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        edit(&name, &mut data);
        output.start_file(name, options).unwrap();
        output.write_all(&data).unwrap();
    }
    output.finish().unwrap();
}

#[test]
fn named_weights_are_looked_up_and_missing_ones_say_where_to_put_them() {
    use ember::model::locate::{locate_weights_with, Lookup};
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(fixture("pt/classify.pt"), dir.path().join("mine.pt")).unwrap();
    // The environment as `$EMBER_WEIGHTS` and `$EMBER_OFFLINE` would set it (not set here: tests share a process).
    let lookup = Lookup { extra_dir: Some(dir.path().to_owned()), online: false };
    let locate_weights = |name: &str| locate_weights_with(name, &lookup);
    assert_eq!(locate_weights("mine.pt").unwrap(), dir.path().join("mine.pt"));
    let err = format!("{:#}", locate_weights("nowhere.pt").unwrap_err());
    assert!(err.contains("nowhere.pt") && err.contains("weights/") && err.contains("EMBER_WEIGHTS"), "{err}");
    let err = format!("{:#}", locate_weights("yolo26x.pt").unwrap_err());
    assert!(err.contains("releases") && err.contains("weights/"), "{err}");
}

#[test]
fn info_takes_the_architecture_from_a_pt() {
    let pairs = [("model", fixture("pt/yolo26n_nc1_last.pt").display().to_string()), ("imgsz", "640".into())];
    ember::commands::info::run(&settings(&pairs)).unwrap();
    let pairs = [("model", fixture("pt/yolo26n_state_dict.pt").display().to_string())];
    let err = format!("{:#}", ember::commands::info::run(&settings(&pairs)).unwrap_err());
    assert!(err.contains("plain state_dict") && err.contains("--model"), "{err}");
}
