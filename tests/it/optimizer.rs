//! The optimizer against PyTorch's update formulas on a tiny module, worked by hand.

use burn::module::{Module, Param};
use burn::optim::GradientsParams;
use burn::tensor::Tensor;
use ember::backend::{Cpu, CpuAutodiff};
use ember::config::OptimizerKind;
use ember::train::optimizer::{DetectorOptimizer, ParamGroup};

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
    let mut m = MatrixModel::<CpuAutodiff> {
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
    let mut opt = DetectorOptimizer::<Cpu>::new(OptimizerKind::MuSGD, lr, momentum, decay);
    for (step, expected) in fx["steps"].as_array().unwrap().iter().enumerate() {
        let loss = (m.weight.val().reshape([-1]) * coeff("weight")).sum()
            + (m.proj.val().reshape([-1]) * coeff("proj")).sum()
            + (m.bias.val() * coeff("bias")).sum();
        let g = GradientsParams::from_grads(loss.backward(), &m);
        m = opt.step::<CpuAutodiff, _>(m, g, 1.0);
        let got = [
            ("weight", m.weight.val().reshape([-1]).into_data().to_vec::<f32>().unwrap()),
            ("proj", m.proj.val().reshape([-1]).into_data().to_vec::<f32>().unwrap()),
            ("bias", m.bias.val().into_data().to_vec::<f32>().unwrap()),
        ];
        for (name, values) in got {
            let want = floats(&expected[name]);
            let diff = values.iter().zip(&want).fold(0f32, |d, (a, b)| d.max((a - b).abs()));
            assert!(diff < 1e-5, "step {step}, {name}: max diff {diff:e}");
        }
    }
    // Matrices keep a Muon and an SGD buffer, the bias one SGD buffer.
    let state = opt.state();
    assert_eq!(state.iter().filter(|(_, _, second)| second.is_some()).count(), 2);
}

#[derive(Module, Debug)]
struct Detect<B: burn::tensor::backend::Backend> {
    cv2: Tiny<B>,
    cv3: Tiny<B>,
}

#[test]
fn musgd_trains_the_head_classifier_three_times_faster() {
    let mut opt = DetectorOptimizer::<Cpu>::new(OptimizerKind::MuSGD, 0.01, 0.9, 0.0);
    let head = Detect { cv2: tiny(0.0, 0.0), cv3: tiny(0.0, 0.0) };
    let loss = head.cv2.bias.val() + head.cv3.bias.val();
    let g = GradientsParams::from_grads(loss.sum().backward(), &head);
    let head = opt.step::<CpuAutodiff, _>(head, g, 1.0);
    let (box_bias, cls_bias) = (values(&head.cv2).1, values(&head.cv3).1);
    // Nesterov SGD's first step is lr * (1 + momentum) * g.
    assert!((box_bias + 0.019).abs() < 1e-7, "{box_bias}");
    assert!((cls_bias + 3.0 * 0.019).abs() < 1e-7, "{cls_bias}");
}
