//! The optimizer against PyTorch's update formulas on a tiny module, worked by hand.

use std::collections::HashSet;

use burn::module::{AutodiffModule, Module, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;
use ember::backend::{Cpu, CpuAutodiff};
use ember::config::OptimizerKind;
use ember::train::optimizer::{DetectorOptimizer, ParamGroup, ParamGroups};

use crate::common;

/// A `[1, 1]` weight (decayed, as a filter bank is) and a bias.
#[derive(Module, Debug)]
struct Tiny<B: Backend> {
    weight: Param<Tensor<B, 2>>,
    bias: Param<Tensor<B, 1>>,
}

fn tiny(w: f32, b: f32) -> Tiny<CpuAutodiff> {
    let device = Default::default();
    Tiny {
        weight: Param::from_tensor(Tensor::from_floats([[w]], &device).require_grad()),
        bias: Param::from_tensor(Tensor::from_floats([b], &device).require_grad()),
    }
}

/// loss = 2*w + 3*b, so dL/dw = 2 and dL/db = 3 at every step.
fn grads(m: &Tiny<CpuAutodiff>) -> GradientsParams {
    let loss = m.weight.val().reshape([1]).mul_scalar(2.0) + m.bias.val().mul_scalar(3.0);
    GradientsParams::from_grads(loss.sum().backward(), m)
}

fn values(m: &Tiny<CpuAutodiff>) -> (f32, f32) {
    (m.weight.val().into_scalar(), m.bias.val().into_scalar())
}

/// An optimizer over all of `m`'s parameters, none in the head's classification groups.
fn optimizer<M: AutodiffModule<CpuAutodiff>>(
    kind: OptimizerKind,
    hyper: (f64, f64, f64),
    m: M,
) -> (DetectorOptimizer<Cpu>, M) {
    let groups = ParamGroups::new(&m, &HashSet::new());
    DetectorOptimizer::new(kind, hyper, m, groups)
}

fn step<M: AutodiffModule<CpuAutodiff>>(opt: &mut DetectorOptimizer<Cpu>, m: M, g: GradientsParams, scale: f64) -> M {
    let flat = opt.flatten_gradients(&m, g);
    opt.step(m, flat, scale)
}

#[derive(Module, Debug)]
struct Norm<B: Backend> {
    weight: Param<Tensor<B, 1>>,
    bias: Param<Tensor<B, 1>>,
}

#[derive(Module, Debug)]
struct Block<B: Backend> {
    conv: Tiny<B>,
    bn: Norm<B>,
}

/// Groups come from the model's structure, once: a `bias` field is a bias, another one-dimensional tensor a
/// normalisation scale, the rest weights; and the same on yolo26n's real layers.
#[test]
fn groups_from_the_structure() {
    let device = Default::default();
    let norm = Norm::<CpuAutodiff> {
        weight: Param::from_tensor(Tensor::ones([4], &device).require_grad()),
        bias: Param::from_tensor(Tensor::zeros([4], &device).require_grad()),
    };
    let block = Block { conv: tiny(1.0, 0.0), bn: norm };
    let groups = ParamGroups::new(&block, &HashSet::new());
    assert_eq!(groups.groups, vec![ParamGroup::Weight, ParamGroup::Bias, ParamGroup::Norm, ParamGroup::Bias]);
    // yolo26n: every BatchNorm scale is a norm, every conv weight a weight, as Ultralytics' build_optimizer.
    let model = ember::model::Yolo::<CpuAutodiff>::new("yolo26n", 80, &device).unwrap();
    let groups = ParamGroups::new(&model, &model.head().class_branch_params());
    let count = |g| groups.groups.iter().filter(|&&x| x == g).count();
    let keys: Vec<String> =
        ember::model::weights::named_tensors::<Cpu, _>(&model.valid(), false).into_iter().map(|t| t.key).collect();
    let trainable: Vec<&String> = keys.iter().filter(|k| !k.contains("running_") && !k.contains(".dfl.")).collect();
    assert_eq!(groups.layout.slots.len(), trainable.len());
    for (key, group) in trainable.iter().zip(&groups.groups) {
        let want = if key.ends_with(".bias") {
            ParamGroup::Bias
        } else if key.contains(".bn.") {
            ParamGroup::Norm
        } else {
            ParamGroup::Weight
        };
        assert_eq!(*group, want, "{key}");
    }
    assert!(count(ParamGroup::Norm) > 50 && count(ParamGroup::Weight) > 50, "{:?}", groups.groups);
    assert!(groups.head_cls.iter().filter(|&&h| h).count() > 10);
}

#[test]
fn sgd_nesterov_matches_pytorch() {
    // torch.optim.SGD(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.5 on the weight only)
    let (mut opt, mut m) = optimizer(OptimizerKind::Sgd, (0.1, 0.9, 0.5), tiny(1.0, 1.0));
    let (mut w, mut b) = (1.0f64, 1.0f64);
    let (mut bw, mut bb) = (0.0f64, 0.0f64);
    for n in 0..3 {
        let g = grads(&m);
        m = step(&mut opt, m, g, 1.0);
        let gw = 2.0 + 0.5 * w;
        let gb = 3.0;
        (bw, bb) = if n == 0 { (gw, gb) } else { (0.9 * bw + gw, 0.9 * bb + gb) };
        w -= 0.1 * (gw + 0.9 * bw);
        b -= 0.1 * (gb + 0.9 * bb);
        let (ew, eb) = values(&m);
        assert!((ew as f64 - w).abs() < 1e-5 && (eb as f64 - b).abs() < 1e-5, "step {n}: {ew} {eb} vs {w} {b}");
    }
    assert!(m.weight.val().is_require_grad());
}

#[test]
fn adamw_matches_pytorch_and_grad_scale_applies() {
    // torch.optim.AdamW(lr=0.01, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1 on the weight only),
    // with the gradient given 4x too large and a grad_scale of 0.25 undoing it.
    let (mut opt, mut m) = optimizer(OptimizerKind::AdamW, (0.01, 0.9, 0.1), tiny(1.0, -1.0));
    let (mut w, mut b) = (1.0f64, -1.0f64);
    let (mut mw, mut vw, mut mb, mut vb) = (0.0, 0.0, 0.0, 0.0);
    for t in 1..=3 {
        let loss = m.weight.val().reshape([1]).mul_scalar(8.0) + m.bias.val().mul_scalar(12.0);
        let g = GradientsParams::from_grads(loss.sum().backward(), &m);
        m = step(&mut opt, m, g, 0.25);
        w *= 1.0 - 0.01 * 0.1;
        let upd = |m: &mut f64, v: &mut f64, g: f64| {
            *m = 0.9 * *m + 0.1 * g;
            *v = 0.999 * *v + 0.001 * g * g;
            (*m / (1.0 - 0.9f64.powi(t))) / ((*v / (1.0 - 0.999f64.powi(t))).sqrt() + 1e-8)
        };
        w -= 0.01 * upd(&mut mw, &mut vw, 2.0);
        b -= 0.01 * upd(&mut mb, &mut vb, 3.0);
        let (ew, eb) = values(&m);
        assert!((ew as f64 - w).abs() < 1e-5 && (eb as f64 - b).abs() < 1e-5, "step {t}: {ew} {eb} vs {w} {b}");
    }
}

#[test]
fn state_round_trips() {
    let (mut opt, m) = optimizer(OptimizerKind::AdamW, (0.01, 0.9, 0.0), tiny(0.5, 0.5));
    let g = grads(&m);
    let m = step(&mut opt, m, g, 1.0);
    let saved = opt.state();
    assert_eq!(saved.len(), 2);
    let (mut restored, _) = optimizer(OptimizerKind::AdamW, (0.01, 0.9, 0.0), m);
    restored.load_state(saved.clone());
    restored.steps = opt.steps;
    assert_eq!(restored.state(), saved);
}

#[derive(Module, Debug)]
struct MatrixModel<B: burn::tensor::backend::Backend> {
    weight: Param<Tensor<B, 4>>,
    proj: Param<Tensor<B, 2>>,
    bias: Param<Tensor<B, 1>>,
}

/// Ultralytics' MuSGD (tools/reference/musgd_fixture.py): three steps on a filter bank, a tall matrix
/// and a bias with constant gradients; every value within 1e-5 of Ultralytics' after each step.
#[test]
fn musgd_matches_ultralytics() {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/optim/musgd.json")).unwrap();
    let fx: serde_json::Value = serde_json::from_str(&text).unwrap();
    let floats = |v: &serde_json::Value| -> Vec<f32> {
        v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect()
    };
    let device = Default::default();
    let init = &fx["initial"];
    let m = MatrixModel::<CpuAutodiff> {
        weight: Param::from_tensor(
            Tensor::<CpuAutodiff, 1>::from_floats(floats(&init["weight"]).as_slice(), &device)
                .reshape([4, 2, 3, 3])
                .require_grad(),
        ),
        proj: Param::from_tensor(
            Tensor::<CpuAutodiff, 1>::from_floats(floats(&init["proj"]).as_slice(), &device)
                .reshape([6, 3])
                .require_grad(),
        ),
        bias: Param::from_tensor(Tensor::from_floats(floats(&init["bias"]).as_slice(), &device).require_grad()),
    };
    let coeff = |k: &str| Tensor::<CpuAutodiff, 1>::from_floats(floats(&fx["grad"][k]).as_slice(), &device);
    let (lr, momentum, decay) =
        (fx["lr"].as_f64().unwrap(), fx["momentum"].as_f64().unwrap(), fx["weight_decay"].as_f64().unwrap());
    let (mut opt, mut m) = optimizer(OptimizerKind::MuSGD, (lr, momentum, decay), m);
    for (step_index, expected) in fx["steps"].as_array().unwrap().iter().enumerate() {
        let loss = (m.weight.val().reshape([-1]) * coeff("weight")).sum()
            + (m.proj.val().reshape([-1]) * coeff("proj")).sum()
            + (m.bias.val() * coeff("bias")).sum();
        let g = GradientsParams::from_grads(loss.backward(), &m);
        m = step(&mut opt, m, g, 1.0);
        let got = [
            ("weight", m.weight.val().reshape([-1]).into_data().to_vec::<f32>().unwrap()),
            ("proj", m.proj.val().reshape([-1]).into_data().to_vec::<f32>().unwrap()),
            ("bias", m.bias.val().into_data().to_vec::<f32>().unwrap()),
        ];
        for (name, values) in got {
            let want = floats(&expected[name]);
            let diff = values.iter().zip(&want).fold(0f32, |d, (a, b)| d.max((a - b).abs()));
            assert!(diff < 1e-5, "step {step_index}, {name}: max diff {diff:e}");
        }
    }
    // Matrices keep a Muon and an SGD buffer, the bias one SGD buffer.
    let state = opt.state();
    assert_eq!(state.iter().filter(|(_, _, second)| second.is_some()).count(), 2);
}

#[derive(Module, Debug)]
struct Head<B: Backend> {
    cv2: Tiny<B>,
    cv3: Tiny<B>,
}

fn ids<B: Backend, M: Module<B>>(m: &M) -> HashSet<ParamId> {
    struct Ids(HashSet<ParamId>);
    impl<B: Backend> ModuleVisitor<B> for Ids {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<B, D>>) {
            self.0.insert(p.id);
        }
    }
    let mut ids = Ids(HashSet::new());
    m.visit(&mut ids);
    ids.0
}

#[test]
fn musgd_trains_the_head_classifier_three_times_faster() {
    let head = Head { cv2: tiny(0.0, 0.0), cv3: tiny(0.0, 0.0) };
    let groups = ParamGroups::new(&head, &ids(&head.cv3));
    let (mut opt, head) = DetectorOptimizer::new(OptimizerKind::MuSGD, (0.01, 0.9, 0.0), head, groups);
    let loss = head.cv2.bias.val() + head.cv3.bias.val();
    let g = GradientsParams::from_grads(loss.sum().backward(), &head);
    let head = step(&mut opt, head, g, 1.0);
    let (box_bias, cls_bias) = (values(&head.cv2).1, values(&head.cv3).1);
    // Nesterov SGD's first step is lr * (1 + momentum) * g.
    assert!((box_bias + 0.019).abs() < 1e-7, "{box_bias}");
    assert!((cls_bias + 3.0 * 0.019).abs() < 1e-7, "{cls_bias}");
}

/// One flat-buffer step equals the per-tensor definition (two steps of yolo26n with YOLO26's loss, clipped,
/// under a loss scale, warmup-like group settings, weight decay on weights), for each optimizer, on flex; the
/// EMA equals its definition after both updates.
#[test]
fn flat_steps_equal_the_per_tensor_definition() {
    for kind in [OptimizerKind::Sgd, OptimizerKind::AdamW, OptimizerKind::MuSGD] {
        let (weights, ema) = common::flat_step::flat_step_vs_reference::<CpuAutodiff>(&Default::default(), kind);
        println!("{kind:?}: weights within {weights:e}, EMA within {ema:e}");
        assert!(weights < 1e-6, "{kind:?}: weights differ by {weights:e}");
        assert!(ema < 1e-6, "{kind:?}: EMA differs by {ema:e}");
    }
}
