//! A gradient overflow under loss scaling, on any backend: shared by the CPU (tests/amp.rs) and the
//! Vulkan (tests/vulkan.rs) tests.

use burn::module::{AutodiffModule, Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{FloatDType, Tensor};
use ember::config::OptimizerKind;
use ember::train::ema::ModelEma;
use ember::train::loss_scale::{LossScaler, ScaleEvent};
use ember::train::optimizer::{DetectorOptimizer, ParamGroups};
use ember::train::step::{optimizer_step, StepReport};

#[derive(Module, Debug)]
struct Tiny<B: Backend> {
    weight: Param<Tensor<B, 1>>,
    bias: Param<Tensor<B, 1>>,
}

fn floats<B: Backend, M: Module<B>>(m: &M) -> Vec<Vec<f32>> {
    struct All(Vec<Vec<f32>>);
    impl<B: Backend> ModuleVisitor<B> for All {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<B, D>>) {
            self.0.push(p.val().cast(FloatDType::F32).into_data().convert::<f32>().to_vec().unwrap());
        }
    }
    let mut all = All(vec![]);
    m.visit(&mut all);
    all.0
}

/// One clean AdamW step under the loss scaler, so optimizer and EMA have state, then a step on the loss
/// `overflowing(weight, bias)`, whose gradient is not finite: it must change nothing but the loss scale,
/// which halves. Returns the second step's report (`read_along` is read with its gradient statistics).
pub fn overflow_changes_nothing_but_the_scale<AB: AutodiffBackend>(
    device: &AB::Device,
    overflowing: impl FnOnce(Tensor<AB, 1>, Tensor<AB, 1>) -> Tensor<AB, 1>,
    read_along: Option<Tensor<AB::InnerBackend, 1>>,
) -> StepReport {
    let model = Tiny::<AB> {
        weight: Param::from_tensor(Tensor::from_floats([1.0, 2.0], device).require_grad()),
        bias: Param::from_tensor(Tensor::from_floats([0.5], device).require_grad()),
    };
    let groups = ParamGroups::new(&model, &Default::default());
    let (mut opt, mut model) = DetectorOptimizer::new(OptimizerKind::AdamW, (0.01, 0.9, 0.01), model, groups);
    let mut ema = ModelEma::new(model.valid());
    let mut scaler = LossScaler::default();
    let loss = (model.weight.val().sum() + model.bias.val().sum()).mul_scalar(scaler.scale);
    let grads = opt.flatten_gradients(&model, GradientsParams::from_grads(loss.backward(), &model));
    let (m, report) = optimizer_step(model, grads, &mut opt, &mut ema, Some(&mut scaler), None);
    model = m;
    assert!(report.applied);
    let (weights, state, averaged, steps) = (floats(&model), opt.state(), floats(&ema.module()), opt.steps);

    let loss = overflowing(model.weight.val(), model.bias.val());
    let grads = opt.flatten_gradients(&model, GradientsParams::from_grads(loss.backward(), &model));
    let (model, report) = optimizer_step(model, grads, &mut opt, &mut ema, Some(&mut scaler), read_along);
    assert!(!report.applied);
    assert_eq!(report.scale_event, Some(ScaleEvent::Backoff));
    assert_eq!(scaler.scale, 32768.0);
    assert_eq!(floats(&model), weights, "weights moved on an overflowing step");
    assert_eq!(opt.state(), state, "optimizer moments moved on an overflowing step");
    assert_eq!(opt.steps, steps);
    assert_eq!(floats(&ema.module()), averaged, "EMA moved on an overflowing step");
    assert_eq!(ema.updates, 1);
    report
}
