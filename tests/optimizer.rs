//! The optimizer against PyTorch's update formulas on a tiny module, worked by hand.

use burn::module::{Module, Param};
use burn::optim::GradientsParams;
use burn::tensor::Tensor;
use ember::backend::{Cpu, CpuAutodiff};
use ember::train::optimizer::{DetectorOptimizer, OptimizerKind, ParamGroup};

#[derive(Module, Debug)]
struct Tiny<B: burn::tensor::backend::Backend> {
    weight: Param<Tensor<B, 1>>,
    bias: Param<Tensor<B, 1>>,
}

fn tiny(w: f32, b: f32) -> Tiny<CpuAutodiff> {
    let device = Default::default();
    Tiny {
        weight: Param::from_tensor(Tensor::from_floats([w], &device).require_grad()),
        bias: Param::from_tensor(Tensor::from_floats([b], &device).require_grad()),
    }
}

/// loss = 2*w + 3*b, so dL/dw = 2 and dL/db = 3 at every step.
fn grads(m: &Tiny<CpuAutodiff>) -> GradientsParams {
    let loss = m.weight.val().mul_scalar(2.0) + m.bias.val().mul_scalar(3.0);
    GradientsParams::from_grads(loss.sum().backward(), m)
}

fn values(m: &Tiny<CpuAutodiff>) -> (f32, f32) {
    let v = |p: &Param<Tensor<CpuAutodiff, 1>>| p.val().into_scalar();
    (v(&m.weight), v(&m.bias))
}

#[test]
fn groups_from_names() {
    assert_eq!(ParamGroup::classify("bias", "Struct:Conv2d"), ParamGroup::Bias);
    assert_eq!(ParamGroup::classify("beta", "Struct:BatchNorm"), ParamGroup::Bias);
    assert_eq!(ParamGroup::classify("gamma", "Struct:BatchNorm"), ParamGroup::Norm);
    assert_eq!(ParamGroup::classify("weight", "Struct:BatchNorm2d"), ParamGroup::Norm);
    assert_eq!(ParamGroup::classify("weight", "Struct:Conv2d"), ParamGroup::Weight);
}

#[test]
fn sgd_nesterov_matches_pytorch() {
    // torch.optim.SGD(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.5 on the weight only)
    let mut opt = DetectorOptimizer::<Cpu>::new(OptimizerKind::Sgd, 0.1, 0.9, 0.5);
    let mut m = tiny(1.0, 1.0);
    let (mut w, mut b) = (1.0f64, 1.0f64);
    let (mut bw, mut bb) = (0.0f64, 0.0f64);
    for step in 0..3 {
        let g = grads(&m);
        m = opt.step::<CpuAutodiff, _>(m, g, 1.0);
        let gw = 2.0 + 0.5 * w;
        let gb = 3.0;
        (bw, bb) = if step == 0 { (gw, gb) } else { (0.9 * bw + gw, 0.9 * bb + gb) };
        w -= 0.1 * (gw + 0.9 * bw);
        b -= 0.1 * (gb + 0.9 * bb);
        let (ew, eb) = values(&m);
        assert!((ew as f64 - w).abs() < 1e-5 && (eb as f64 - b).abs() < 1e-5, "step {step}: {ew} {eb} vs {w} {b}");
    }
    assert!(m.weight.val().is_require_grad());
}

#[test]
fn adamw_matches_pytorch_and_grad_scale_applies() {
    // torch.optim.AdamW(lr=0.01, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1 on the weight only),
    // with the gradient given 4x too large and a grad_scale of 0.25 undoing it.
    let mut opt = DetectorOptimizer::<Cpu>::new(OptimizerKind::AdamW, 0.01, 0.9, 0.1);
    let mut m = tiny(1.0, -1.0);
    let (mut w, mut b) = (1.0f64, -1.0f64);
    let (mut mw, mut vw, mut mb, mut vb) = (0.0, 0.0, 0.0, 0.0);
    for t in 1..=3 {
        let loss = m.weight.val().mul_scalar(8.0) + m.bias.val().mul_scalar(12.0);
        let g = GradientsParams::from_grads(loss.sum().backward(), &m);
        m = opt.step::<CpuAutodiff, _>(m, g, 0.25);
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
    let mut opt = DetectorOptimizer::<Cpu>::new(OptimizerKind::AdamW, 0.01, 0.9, 0.0);
    let m = tiny(0.5, 0.5);
    let g = grads(&m);
    let _ = opt.step::<CpuAutodiff, _>(m, g, 1.0);
    let saved = opt.state();
    assert_eq!(saved.len(), 2);
    let mut restored = DetectorOptimizer::<Cpu>::new(OptimizerKind::AdamW, 0.01, 0.9, 0.0);
    restored.load_state(saved.clone(), &Default::default());
    assert_eq!(restored.state(), saved);
}
