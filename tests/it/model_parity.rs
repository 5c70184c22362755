//! Forward parity with Ultralytics 8.4 on committed fixtures (made by tools/reference/model_fixtures.py):
//! the same weights (Ultralytics state_dict keys, f8/f16 storage) and input must give the same head outputs,
//! max|diff| / max|ref| <= 1e-4, in train mode (batch statistics) and eval mode (decoded predictions), and
//! so must the gradients of a fixed loss for a few tensors.

use std::collections::HashMap;
use std::path::PathBuf;

use burn::tensor::{backend::Backend, Tensor, TensorData};
use ember::backend::{Cpu, CpuAutodiff};
use ember::model::{BoxFormat, Yolo};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/model").join(name)
}

struct Io {
    input: (Vec<usize>, Vec<f32>),
    outputs: HashMap<String, (Vec<usize>, Vec<f32>)>,
}

fn read_io(model: &str) -> Io {
    let bytes = std::fs::read(fixture(&format!("{model}_io.safetensors"))).expect("fixture");
    let st = safetensors::SafeTensors::deserialize(&bytes).expect("safetensors");
    let mut outputs = HashMap::new();
    let mut input = None;
    for (k, v) in st.tensors() {
        match v.dtype() {
            safetensors::Dtype::U8 => {
                input = Some((v.shape().to_vec(), v.data().iter().map(|&b| b as f32 / 255.0).collect()))
            }
            safetensors::Dtype::F32 => {
                let vals = v.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
                outputs.insert(k, (v.shape().to_vec(), vals));
            }
            d => panic!("unexpected dtype {d:?} for {k}"),
        }
    }
    Io { input: input.expect("input_u8"), outputs }
}

fn input<B: Backend>(io: &Io, device: &B::Device) -> Tensor<B, 4> {
    Tensor::from_data(TensorData::new(io.input.1.clone(), io.input.0.clone()), device)
}

/// max|a - ref| / max|ref|, after checking shapes.
fn rel_diff<B: Backend>(name: &str, got: Tensor<B, 3>, reference: &(Vec<usize>, Vec<f32>)) -> f32 {
    assert_eq!(got.dims().to_vec(), reference.0, "{name}: shape");
    let got = got.into_data().convert::<f32>().to_vec::<f32>().unwrap();
    let max_ref = reference.1.iter().fold(0f32, |m, v| m.max(v.abs()));
    let max_diff = got.iter().zip(&reference.1).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    max_diff / max_ref
}

fn check(model: &str) {
    let io = read_io(model);
    let io = &io;
    let weights = fixture(&format!("{model}.safetensors"));
    let mut results = Vec::new();

    // Eval mode: inference backend, running statistics, decoded outputs.
    let device = Default::default();
    let mut net = Yolo::<Cpu>::new(model, 80, &device).unwrap();
    let report = net.load_safetensors(&weights).unwrap();
    assert!(report.skipped_class_head.is_empty() && report.checkpoint_nc.is_none(), "{report}");
    let out = net.forward(input::<Cpu>(io, &device));
    // Raw eval outputs are only in fixtures made with EMBER_FIXTURE_DEBUG=1.
    for (key, branch) in [("one2many", Some(&out.one2many)), ("one2one", out.one2one.as_ref())] {
        if let (Some(b), Some(r)) = (branch, io.outputs.get(&format!("eval.{key}.boxes"))) {
            results.push(("eval raw boxes", rel_diff("boxes", b.boxes.clone(), r)));
            let r = &io.outputs[&format!("eval.{key}.scores")];
            results.push(("eval raw scores", rel_diff("scores", b.scores.clone(), r)));
        }
    }
    results.push((
        "eval.one2many.decoded",
        rel_diff("o2m decoded", out.decode_one2many(), &io.outputs["eval.one2many.decoded"]),
    ));
    if let Some(reference) = io.outputs.get("eval.one2one.decoded") {
        let got = out.decode_one2one(BoxFormat::Xyxy).expect("one2one branch");
        results.push(("eval.one2one.decoded", rel_diff("o2o decoded", got, reference)));
    }

    // Train mode: autodiff backend, batch statistics, raw outputs.
    let mut net = Yolo::<CpuAutodiff>::new(model, 80, &device).unwrap();
    net.load_safetensors(&weights).unwrap();
    let out = net.forward(input::<CpuAutodiff>(io, &device));
    // The fixture's loss: sum over branches of mean(boxes^2) + mean(sigmoid(scores)).
    let branch_loss = |h: &ember::model::HeadOutput<CpuAutodiff>| {
        h.boxes.clone().square().mean() + burn::tensor::activation::sigmoid(h.scores.clone()).mean()
    };
    let mut loss = branch_loss(&out.one2many);
    if let Some(o2o) = &out.one2one {
        loss = loss + branch_loss(o2o);
    }
    let grads = ember::model::weights::named_grads(&net, &loss.backward());
    for (key, reference) in io.outputs.iter().filter(|(k, _)| k.starts_with("grad.")) {
        let got = grads.get(&key["grad.".len()..]).unwrap_or_else(|| panic!("{model}: no gradient for {key}"));
        let n = reference.1.len();
        let got = Tensor::<Cpu, 1>::from_data(TensorData::new(got.to_vec::<f32>().unwrap(), [n]), &device);
        let flat = (vec![1, 1, n], reference.1.clone());
        results.push((key.as_str(), rel_diff(key, got.reshape([1, 1, n]), &flat)));
    }
    results.push((
        "train.one2many.boxes",
        rel_diff("boxes", out.one2many.boxes.clone(), &io.outputs["train.one2many.boxes"]),
    ));
    results.push((
        "train.one2many.scores",
        rel_diff("scores", out.one2many.scores.clone(), &io.outputs["train.one2many.scores"]),
    ));
    if let Some(o2o) = &out.one2one {
        results.push(("train.one2one.boxes", rel_diff("boxes", o2o.boxes.clone(), &io.outputs["train.one2one.boxes"])));
        results.push((
            "train.one2one.scores",
            rel_diff("scores", o2o.scores.clone(), &io.outputs["train.one2one.scores"]),
        ));
    } else {
        assert!(!io.outputs.contains_key("train.one2one.boxes"), "{model}: missing one2one branch");
    }

    for (k, r) in &results {
        println!("{model} {k}: max rel diff {r:.3e}");
    }
    // Outputs: the bound. Gradients (an extra check) go through twice the roundings, attention's
    // softmax backward included (up to 8e-5 measured), so they get a little more room.
    let bound = |k: &str| if k.starts_with("grad.") { 3e-4 } else { 1e-4 };
    let bad: Vec<_> = results.iter().filter(|(k, r)| r.is_nan() || *r > bound(k)).collect();
    assert!(bad.is_empty(), "{model}: parity failed: {bad:?}");
}

#[test]
fn yolo26n_matches_ultralytics() {
    check("yolo26n");
}

#[test]
fn yolov8n_matches_ultralytics() {
    check("yolov8n");
}
