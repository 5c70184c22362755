//! SafeTensors interchange: Ultralytics key names, round trip, class-count changes, clear errors.

use std::collections::BTreeSet;
use std::path::PathBuf;

use burn::module::Module;
use ember::backend::Cpu;
use ember::model::{weights::named_tensors, StateDict, Yolo};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/model").join(name)
}

fn keys(model: &Yolo<Cpu>) -> BTreeSet<String> {
    named_tensors::<Cpu, _>(model, false).into_iter().map(|t| t.key).collect()
}

#[test]
fn tensor_names_are_ultralytics_state_dict_keys() {
    let device = Default::default();
    for name in ["yolo26n", "yolov8n"] {
        let model = Yolo::<Cpu>::new(name, 80, &device).unwrap();
        let file = StateDict::read(&fixture(&format!("{name}.safetensors"))).unwrap();
        let theirs: BTreeSet<String> = file.tensors.keys().cloned().collect();
        let ours = keys(&model);
        let only_ours: Vec<_> = ours.difference(&theirs).collect();
        let only_theirs: Vec<_> = theirs.difference(&ours).collect();
        assert!(
            only_ours.is_empty() && only_theirs.is_empty(),
            "{name}: ours only {only_ours:?}, file only {only_theirs:?}"
        );
    }
    let model = Yolo::<Cpu>::new("yolo26n", 80, &device).unwrap();
    let k = keys(&model);
    for expected in [
        "model.0.conv.weight",
        "model.0.bn.running_mean",
        "model.23.cv2.0.0.conv.weight",
        "model.23.one2one_cv3.2.2.bias",
        "model.22.m.0.1.attn.qkv.conv.weight",
        "model.10.m.0.ffn.1.bn.bias",
    ] {
        assert!(k.contains(expected), "missing {expected}");
    }
}

#[test]
fn save_then_load_round_trips() {
    let device = Default::default();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.safetensors");
    let a = Yolo::<Cpu>::new("yolo26n", 3, &device).unwrap();
    a.save_safetensors(&path).unwrap();
    let mut b = Yolo::<Cpu>::new("yolo26n", 3, &device).unwrap();
    let report = b.load_safetensors(&path).unwrap();
    assert_eq!(report.loaded, named_tensors::<Cpu, _>(&a, false).len());
    assert!(report.unused.is_empty() && report.checkpoint_nc.is_none(), "{report}");
    let ta = named_tensors::<Cpu, _>(&a, true);
    let tb = named_tensors::<Cpu, _>(&b, true);
    for (x, y) in ta.iter().zip(&tb) {
        assert_eq!(x.key, y.key);
        assert_eq!(x.data, y.data, "{}", x.key);
    }
    // PyTorch's strict loading wants the BatchNorm counters too.
    let bytes = std::fs::read(&path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    assert!(st.names().iter().any(|n| *n == "model.0.bn.num_batches_tracked"));
}

#[test]
fn other_class_count_loads_all_but_the_class_outputs() {
    let device = Default::default();
    let mut model = Yolo::<Cpu>::new("yolo26n", 3, &device).unwrap();
    let before = named_tensors::<Cpu, _>(&model, true);
    let report = model.load_safetensors(fixture("yolo26n.safetensors")).unwrap();
    assert_eq!(report.checkpoint_nc, Some(80));
    // The class branch's hidden width is max(64, min(nc, 100)): 80 in the file, 64 here, so every tensor of
    // both class branches after the first depth-wise conv is skipped, and nothing else.
    assert!(report.skipped_class_head.iter().all(|(k, _, _)| k.contains(".cv3.") || k.contains(".one2one_cv3.")));
    assert!(report.skipped_class_head.iter().any(|(k, _, _)| k == "model.23.one2one_cv3.2.2.bias"));
    assert!(report.to_string().contains("80 classes"), "{report}");
    let file = StateDict::read(&fixture("yolo26n.safetensors")).unwrap();
    let after = named_tensors::<Cpu, _>(&model, true);
    for (x, y) in before.iter().zip(&after) {
        let skipped = report.skipped_class_head.iter().any(|(k, _, _)| *k == x.key);
        let now = y.data.as_ref().unwrap().to_vec::<f32>().unwrap();
        if skipped {
            assert_eq!(x.data, y.data, "{} keeps its initial value", x.key);
        } else {
            assert_eq!(now, file.tensors[&x.key].1, "{} comes from the file", x.key);
        }
    }
}

#[test]
fn wrong_architecture_is_a_clear_error() {
    let device = Default::default();
    let mut model = Yolo::<Cpu>::new("yolo26n", 80, &device).unwrap();
    let before = named_tensors::<Cpu, _>(&model, true);
    let err = model.load_safetensors(fixture("yolov8n.safetensors")).unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("model.2.cv2.conv.weight: file [32, 48, 1, 1], model [64, 48, 1, 1]"), "{msg}");
    assert!(msg.contains("missing from the file"), "{msg}");
    assert!(msg.contains("yolov8n.safetensors"), "the error names the file: {msg}");
    let after = named_tensors::<Cpu, _>(&model, true);
    assert!(before.iter().zip(&after).all(|(x, y)| x.data == y.data), "a failed load leaves the model unchanged");

    let err = model.load_safetensors("/nonexistent/w.safetensors").unwrap_err();
    assert!(format!("{err:#}").contains("/nonexistent/w.safetensors"));
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.safetensors");
    std::fs::write(&junk, b"not a safetensors file").unwrap();
    assert!(model.load_safetensors(&junk).is_err());
}

#[test]
fn num_params_agrees_with_burn() {
    let device = Default::default();
    let model = Yolo::<Cpu>::new("yolov8n", 80, &device).unwrap();
    // burn counts running statistics as parameters too; ember's summary does not.
    let running: usize = named_tensors::<Cpu, _>(&model, false)
        .iter()
        .filter(|t| t.key.contains("running_"))
        .map(|t| t.shape.iter().product::<usize>())
        .sum();
    assert_eq!(model.num_params(), model.summary(640).params + running);
}
