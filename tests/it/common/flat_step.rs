//! The flat-buffer optimizer step against the per-tensor reference ([`super::reference_optimizer`]) on a real
//! model and loss, on any backend: shared by the CPU (tests/it/optimizer.rs) and the Vulkan
//! (tests/it/vulkan.rs) tests.

use burn::module::{AutodiffModule, Module, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Distribution, Tensor};
use ember::config::OptimizerKind;
use ember::loss::criterion::Criterion;
use ember::loss::{ImageTargets, TargetBatch};
use ember::model::Yolo;
use ember::train::ema::ModelEma;
use ember::train::loss_scale::LossScaler;
use ember::train::optimizer::{DetectorOptimizer, GroupSettings, ParamGroups};
use ember::train::step::{optimizer_step, MAX_GRAD_NORM};

use super::reference_optimizer::ReferenceOptimizer;

/// Every float tensor of a module with its id, in module order.
fn floats<B: Backend, M: Module<B>>(m: &M) -> Vec<(ParamId, Vec<f32>)> {
    struct All(Vec<(ParamId, Vec<f32>)>);
    impl<B: Backend> ModuleVisitor<B> for All {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<B, D>>) {
            self.0.push((p.id, p.val().into_data().convert::<f32>().to_vec().unwrap()));
        }
    }
    let mut all = All(vec![]);
    m.visit(&mut all);
    all.0
}

/// Two copies of the same gradients (GradientsParams is consumed by a step).
fn twice<AB: AutodiffBackend, M: AutodiffModule<AB>>(model: &M, grads: GradientsParams) -> [GradientsParams; 2] {
    struct Copy<'a> {
        from: GradientsParams,
        to: [&'a mut GradientsParams; 2],
    }
    impl<AB: AutodiffBackend> ModuleVisitor<AB> for Copy<'_> {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<AB, D>>) {
            if let Some(g) = self.from.remove::<AB::InnerBackend, D>(p.id) {
                self.to[0].register::<AB::InnerBackend, D>(p.id, g.clone());
                self.to[1].register::<AB::InnerBackend, D>(p.id, g);
            }
        }
    }
    let (mut a, mut b) = (GradientsParams::new(), GradientsParams::new());
    model.visit(&mut Copy { from: grads, to: [&mut a, &mut b] });
    [a, b]
}

/// Two optimizer steps of `kind` on yolo26n (4 classes, a random batch of 2 at 64 px, YOLO26's loss with a few
/// boxes, multiplied by a loss scale of 1024 and large enough to be clipped), once through `optimizer_step` and
/// the flat optimizer, once through the per-tensor reference with the clip computed on the host. Group settings
/// as during warmup (biases at a higher lr than the rest), weight decay on the weights. Returns the largest
/// difference of any weight, relative to `max(1, |weight|)`, and of any EMA value.
pub fn flat_step_vs_reference<AB: AutodiffBackend>(device: &AB::Device, kind: OptimizerKind) -> (f32, f32) {
    AB::seed(device, 7);
    let model = Yolo::<AB>::new("yolo26n", 4, device).unwrap();
    let criterion = Criterion::new(4, model.reg_max(), model.end2end(), [7.5, 0.5, 1.5], 10);
    let targets = TargetBatch::new(
        vec![
            ImageTargets::new(vec![0, 3], vec![[0.4, 0.5, 0.3, 0.4], [0.7, 0.3, 0.2, 0.2]]),
            ImageTargets::new(vec![1], vec![[0.5, 0.5, 0.8, 0.6]]),
        ],
        [64, 64],
    );
    let settings = |lr: f64, wd: f64| GroupSettings { lr, head_cls_lr: 3.0 * lr, momentum: 0.9, weight_decay: wd };
    let groups = [settings(0.05, 0.0), settings(0.01, 5e-4), settings(0.01, 0.0)];

    let params = ParamGroups::new(&model, &model.head().class_branch_params());
    let (mut flat, mut stepped) = DetectorOptimizer::new(kind, (0.01, 0.9, 5e-4), model.clone(), params);
    flat.groups = groups;
    let mut reference = ReferenceOptimizer::<AB::InnerBackend>::new(kind, groups);
    let mut expected = model;
    let mut ema = ModelEma::new(stepped.valid().deep_clone().unwrap());
    let mut expected_ema: Vec<Vec<f64>> =
        floats(&ema.module()).into_iter().map(|(_, v)| v.into_iter().map(f64::from).collect()).collect();
    let mut scaler = LossScaler { scale: 1024.0, ..Default::default() };
    for step in 0..2 {
        // The gradients of the reference model, applied to both (their parameter ids are the same).
        let x = Tensor::<AB, 4>::random([2, 3, 64, 64], Distribution::Uniform(0.0, 1.0), device);
        let loss = criterion.compute(expected.forward(x), &targets, step);
        let total = loss.total.mul_scalar(scaler.scale * 50.0);
        let [for_flat, for_reference] = twice(&expected, GradientsParams::from_grads(total.backward(), &expected));
        let grads = flat.flatten_gradients(&stepped, for_flat);
        let report;
        (stepped, report) = optimizer_step(stepped, grads, &mut flat, &mut ema, Some(&mut scaler), None);
        assert!(report.applied, "step {step} was skipped");
        let norm = report.grad_norm.unwrap();
        assert!(norm > MAX_GRAD_NORM, "the test means to clip: norm {norm}");
        let clip = MAX_GRAD_NORM / (norm + 1e-6);
        expected = reference.step(expected, for_reference, clip / 1024.0);
        let d = ema.current_decay();
        for (e, (_, w)) in expected_ema.iter_mut().zip(floats(&stepped.valid())) {
            e.iter_mut().zip(w).for_each(|(e, w)| *e = d * *e + (1.0 - d) * w as f64);
        }
    }
    let (got, want) = (floats(&stepped.valid()), floats(&expected.valid()));
    let mut worst = 0f32;
    for ((id, a), (id2, b)) in got.iter().zip(&want) {
        assert_eq!(id, id2);
        for (x, y) in a.iter().zip(b) {
            worst = worst.max((x - y).abs() / y.abs().max(1.0));
        }
    }
    let mut ema_error = 0f32;
    for (e, (_, got)) in expected_ema.iter().zip(floats(&ema.module())) {
        for (want, got) in e.iter().zip(got) {
            ema_error = ema_error.max(((got as f64 - want).abs() / want.abs().max(1.0)) as f32);
        }
    }
    (worst, ema_error)
}
