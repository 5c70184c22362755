//! The loss fixtures written by Ultralytics 8.4.190 (tools/reference/loss_fixtures.py: head outputs, targets and
//! losses; tools/reference/assigner_fixture.py: the assignment of each case and branch), and the assigner checked
//! against them on any backend (tests/it/loss_parity.rs, tests/it/vulkan.rs).

use std::path::PathBuf;

use burn::tensor::{backend::Backend, Tensor, TensorData};
use ember::loss::assigner::Route;
use ember::loss::{DetectionLoss, DetectionLossConfig, ImageTargets, TargetBatch};
use ember::model::HeadOutput;
use safetensors::SafeTensors;
use serde_json::Value;

pub struct Fixture {
    pub meta: Value,
    bytes: Vec<u8>,
}

impl Fixture {
    pub fn load(name: &str) -> Self {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/loss");
        let meta: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join(format!("{name}.json"))).unwrap()).unwrap();
        let bytes = std::fs::read(dir.join(format!("{name}.safetensors"))).unwrap();
        Self { meta, bytes }
    }

    pub fn array(&self, key: &str) -> (Vec<f32>, Vec<usize>) {
        let st = SafeTensors::deserialize(&self.bytes).unwrap();
        let t = st.tensor(key).unwrap();
        assert_eq!(t.dtype(), safetensors::Dtype::F32, "{key} must be f32");
        let v = t.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        (v, t.shape().to_vec())
    }

    pub fn tensor3<B: Backend>(&self, key: &str, device: &B::Device) -> Tensor<B, 3> {
        let (v, s) = self.array(key);
        Tensor::from_data(TensorData::new(v, [s[0], s[1], s[2]]), device)
    }

    pub fn feature_sizes(&self) -> Vec<[usize; 2]> {
        self.meta["feature_sizes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| [f[0].as_u64().unwrap() as usize, f[1].as_u64().unwrap() as usize])
            .collect()
    }

    pub fn strides(&self) -> Vec<f32> {
        self.meta["strides"].as_array().unwrap().iter().map(|s| s.as_f64().unwrap() as f32).collect()
    }

    pub fn reg_max(&self) -> usize {
        self.meta["reg_max"].as_u64().unwrap() as usize
    }

    pub fn imgsz(&self) -> [usize; 2] {
        let a = self.meta["imgsz"].as_array().unwrap();
        [a[0].as_u64().unwrap() as usize, a[1].as_u64().unwrap() as usize]
    }

    /// Targets of one fixture case: "full", "background" (image `background_image` has no boxes) or "empty".
    pub fn targets(&self, case: &str) -> TargetBatch {
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

    pub fn expected(&self, case: &str) -> ([f32; 3], f32, Vec<String>) {
        let c = &self.meta["cases"][case];
        let items: Vec<f32> = c["items"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
        let total: f32 = c["total"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).sum();
        let names = c["names"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect();
        ([items[0], items[1], items[2]], total, names)
    }
}

/// A tensor of an Ultralytics assignment fixture as f32 (bools and integers converted).
fn assigned(bytes: &[u8], key: &str) -> Vec<f32> {
    let st = SafeTensors::deserialize(bytes).unwrap();
    let t = st.tensor(key).unwrap_or_else(|_| panic!("{key} missing"));
    match t.dtype() {
        safetensors::Dtype::F32 => {
            t.data().chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect()
        }
        safetensors::Dtype::I64 => {
            t.data().chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap()) as f32).collect()
        }
        safetensors::Dtype::U8 => t.data().iter().map(|&b| b as f32).collect(),
        other => panic!("{key}: unexpected {other:?}"),
    }
}

/// What differs between ember's assignment and Ultralytics' over every fixture, case and branch.
#[derive(Debug, Default)]
pub struct AssignmentDifference {
    /// Anchors whose foreground flag or assigned box index differs.
    pub mismatched_anchors: usize,
    /// Foreground anchors compared.
    pub foreground: usize,
    /// Largest target-score difference, relative to max(1, |score|).
    pub scores: f32,
    /// Largest assigned-box coordinate difference at foreground anchors, relative to max(1, |coordinate|).
    pub boxes: f32,
}

/// Assigns every labelled case and branch of the four loss fixtures on `route` and compares with what
/// Ultralytics' assigner gave on the same predictions.
pub fn assignment_vs_ultralytics<B: Backend>(device: &B::Device, route: Route) -> AssignmentDifference {
    let mut diff = AssignmentDifference::default();
    for name in ["yolov8n", "yolo26n", "synthetic_v8", "synthetic_e2e"] {
        let fx = Fixture::load(name);
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/loss");
        let reference = std::fs::read(dir.join(format!("{name}_assigned.safetensors"))).unwrap();
        let nc = fx.meta["nc"].as_u64().unwrap() as usize;
        let e2e = fx.meta["cases"]["full"].get("one2one").is_some();
        let branches: &[(&str, usize, Option<usize>)] =
            if e2e { &[("one2many", 10, None), ("one2one", 7, Some(1))] } else { &[("main", 10, None)] };
        for case in ["full", "background"].into_iter().filter(|c| fx.meta["cases"].get(*c).is_some()) {
            for &(branch, topk, topk2) in branches {
                let loss = DetectionLoss::new(DetectionLossConfig::new(nc, fx.reg_max()).with_topk(topk, topk2));
                let head = HeadOutput {
                    boxes: fx.tensor3::<B>(&format!("{branch}.boxes"), device),
                    scores: fx.tensor3::<B>(&format!("{branch}.scores"), device),
                };
                let got = loss.assignment_on(route, head, &fx.feature_sizes(), &fx.strides(), &fx.targets(case));
                let read = |t: Tensor<B, 3>| t.into_data().convert::<f32>().to_vec::<f32>().unwrap();
                let read_int = |t: Tensor<B, 3, burn::tensor::Int>| read(t.float());
                let (fg, gt_idx, scores) = (read(got.fg), read_int(got.gt_idx), read(got.scores));
                let boxes: Vec<Vec<f32>> = got.boxes.into_iter().map(read).collect();
                let want = |k: &str| assigned(&reference, &format!("{case}.{branch}.{k}"));
                let (want_fg, want_idx, want_scores, want_boxes) =
                    (want("fg"), want("gt_idx"), want("scores"), want("boxes"));
                let a = fg.len() / fx.meta["batch_size"].as_u64().unwrap() as usize;
                for i in 0..fg.len() {
                    // Ultralytics' fg also holds tied zero-metric anchors (no target, no weight): compared as
                    // background, as ember's assigner never takes them (src/loss/assigner/mod.rs).
                    let want_fg = want_fg[i] > 0.0 && want_scores[i] > 0.0;
                    let fg_here = fg[i] > 0.0;
                    if fg_here != want_fg || (want_fg && gt_idx[i] != want_idx[i]) {
                        diff.mismatched_anchors += 1;
                        println!(
                            "{name}/{case}/{branch} anchor {i}: fg {fg_here} vs {want_fg}, box {} vs {}",
                            gt_idx[i], want_idx[i]
                        );
                    }
                    diff.scores = diff.scores.max((scores[i] - want_scores[i]).abs() / want_scores[i].abs().max(1.0));
                    if want_fg {
                        diff.foreground += 1;
                        let (im, k) = (i / a, i % a);
                        for (c, coordinate) in boxes.iter().enumerate() {
                            let w = want_boxes[(im * a + k) * 4 + c];
                            diff.boxes = diff.boxes.max((coordinate[i] - w).abs() / w.abs().max(1.0));
                        }
                    }
                }
            }
        }
    }
    diff
}
