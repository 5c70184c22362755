//! The GPU path on burn's Vulkan backend: the same cubecl kernels CUDA runs, here on whatever Vulkan
//! device the machine has (in CI, Mesa's software lavapipe). With `CI=true` a missing Vulkan device
//! fails these tests; elsewhere they print why and pass without running.
//!
//! lavapipe compiles every kernel through LLVM on first use and computes on the CPU, so the tests are
//! few and small and take turns on the device (one lock), sharing its compiled kernels in one process.
#![cfg(feature = "vulkan")]

use crate::common;

use std::sync::Mutex;

use burn::module::{AutodiffModule, Module, Param};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Distribution, FloatDType, Tensor};
use ember::backend::{Cpu, Vulkan, VulkanAutodiff};
use ember::config::{Overrides, Settings};
use ember::data::batch_tensor;
use ember::data::synthetic::{generate, SyntheticConfig};
use ember::data::Batch;
use ember::model::Yolo;

type Device = burn::backend::wgpu::WgpuDevice;

/// The Vulkan device, with the lock that gives one test at a time the device; `None` (skip) off CI.
fn vulkan() -> Option<(std::sync::MutexGuard<'static, ()>, Device)> {
    static TURN: Mutex<()> = Mutex::new(());
    let turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    match ember::device::vulkan::find(None) {
        Ok(adapter) => {
            println!(
                "Vulkan adapter: {} ({}, {}; FP16 {})",
                adapter.name, adapter.kind, adapter.driver, adapter.shader_f16
            );
            Some((turn, adapter.device()))
        }
        Err(e) if std::env::var("CI").is_ok_and(|v| v == "true") => panic!("CI=true and no Vulkan device: {e:#}"),
        Err(e) => {
            println!("skipped, no Vulkan device: {e:#}");
            None
        }
    }
}

/// max |a - b| / max |b|.
fn relative(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let max_ref = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-12);
    a.iter().zip(b).fold(0f32, |m, (x, y)| if x.is_finite() { m.max((x - y).abs()) } else { f32::INFINITY }) / max_ref
}

/// Each of `got` within `tolerance` (relative max error) of the same-named `want`, the errors printed.
fn assert_close(what: &str, names: &[&str], got: &[Vec<f32>], want: &[Vec<f32>], tolerance: f32) {
    for (name, (a, b)) in names.iter().zip(got.iter().zip(want)) {
        let e = relative(a, b);
        println!("{what} {name}: relative max error {e:.2e}");
        assert!(e <= tolerance, "{what} {name}: {e:e}");
    }
}

fn fixture_model<B: Backend>(device: &B::Device) -> Yolo<B> {
    let weights = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/model/yolo26n.safetensors");
    let mut model = Yolo::<B>::new("yolo26n", 80, device).unwrap();
    model.load_safetensors(&weights).unwrap();
    model
}

#[test]
fn fp32_forward_of_yolo26n_matches_flex() {
    let Some((_turn, device)) = vulkan() else { return };
    let batch = common::coco8_batch(96, 2);
    let on_flex = fixture_model::<Cpu>(&Default::default());
    let on_vulkan = fixture_model::<Vulkan>(&device);
    let want = common::values(on_flex.forward(batch_tensor::<Cpu>(&batch, &Default::default())).decode_one2many());
    let got = common::values(on_vulkan.forward(batch_tensor::<Vulkan>(&batch, &device)).decode_one2many());
    let rel = relative(&got, &want);
    println!("yolo26n eval forward, Vulkan FP32 against flex FP32: max |diff| / max |flex| = {rel:.2e}");
    assert!(rel <= 1e-4, "{rel:e}");
}

/// FP16 operands, FP32 sums: against FP32 on the same FP16-rounded operands, a convolution's error is its
/// output's rounding, forward and backward. cubecl's direct kernel, summing in FP16, was 7.1e-2 off on
/// this shape (outputs up to ~5), the rounding of the inputs alone 1.2e-3.
#[test]
fn fp16_convolutions_accumulate_in_fp32() {
    let Some((_turn, device)) = vulkan() else { return };
    type AB = VulkanAutodiff;
    AB::seed(&device, 3);
    for (c_in, c_out, kernel, stride, groups) in
        [(256, 32, 3, 1, 1), (256, 32, 1, 1, 1), (64, 64, 3, 2, 1), (64, 64, 3, 1, 64)]
    {
        let rounded = |t: Tensor<AB, 4>| t.cast(FloatDType::F16).cast(FloatDType::F32);
        let x = rounded(Tensor::<AB, 4>::random([2, c_in, 32, 32], Distribution::Uniform(0.0, 1.0), &device));
        let bound = 1.0 / ((c_in / groups * kernel * kernel) as f64).sqrt();
        let w = rounded(Tensor::<AB, 4>::random(
            [c_out, c_in / groups, kernel, kernel],
            Distribution::Uniform(-bound, bound),
            &device,
        ));
        let padding = kernel / 2;
        let run = |dtype: Option<FloatDType>| {
            let (x, w) = (x.clone().detach().require_grad(), w.clone().detach().require_grad());
            let (xc, wc) = match dtype {
                Some(d) => (x.clone().cast(d), w.clone().cast(d)),
                None => (x.clone(), w.clone()),
            };
            let y = ember::nn::conv::conv2d(xc, wc, None, stride, padding, groups).cast(FloatDType::F32);
            // A fixed, uneven upstream gradient, so the backward sums differ per element.
            let upstream = y.clone().detach().sin();
            let grads = (y.clone() * upstream).sum().backward();
            (
                common::values(y.inner()),
                common::values(x.grad(&grads).unwrap()),
                common::values(w.grad(&grads).unwrap()),
            )
        };
        let (y32, dx32, dw32) = run(None);
        let (y16, dx16, dw16) = run(Some(FloatDType::F16));
        let (ey, edx, edw) = (relative(&y16, &y32), relative(&dx16, &dx32), relative(&dw16, &dw32));
        let max_y = y32.iter().fold(0f32, |m, v| m.max(v.abs()));
        println!(
            "conv {c_in}->{c_out} k{kernel} s{stride} g{groups}: FP16 vs FP32 on FP16-rounded operands, relative max error \
             output {ey:.2e} (max |y| {max_y:.2}), input gradient {edx:.2e}, weight gradient {edw:.2e}"
        );
        // Half an FP16 ulp is 4.9e-4 relative; products of rounded sums and a few roundings of partial
        // results stay within a few of those. The direct FP16 kernel's 7.1e-2 fails this by 20x.
        assert!(ey <= 2e-3, "output {ey:e}");
        assert!(edx <= 4e-3, "input gradient {edx:e}");
        assert!(edw <= 4e-3, "weight gradient {edw:e}");
    }
}

/// The backward passes of ember's own that keep only their inputs (src/kernels/autodiff/) give, on Vulkan,
/// the outputs and gradients of autodiff through the generic definitions they stand for, FP32 and FP16.
#[test]
fn lean_backward_passes_on_vulkan_equal_the_definitions() {
    let Some((_turn, device)) = vulkan() else { return };
    type AB = VulkanAutodiff;
    AB::seed(&device, 5);
    let x = Tensor::<AB, 4>::random([2, 8, 12, 10], Distribution::Normal(0.3, 1.5), &device);
    let w = Tensor::<AB, 4>::random([6, 8, 3, 3], Distribution::Normal(0.0, 0.2), &device);
    let gamma = Tensor::<AB, 1>::random([6], Distribution::Normal(1.0, 0.3), &device);
    let beta = Tensor::<AB, 1>::random([6], Distribution::Normal(0.0, 0.3), &device);
    for (dtype, tolerance) in [(FloatDType::F32, 1e-4), (FloatDType::F16, 1e-2)] {
        for stride in [1, 2] {
            let run = |lean: bool| {
                let (x, w) = (x.clone().detach().require_grad(), w.clone().detach().require_grad());
                let (g, b) = (gamma.clone().detach().require_grad(), beta.clone().detach().require_grad());
                let (xc, wc) = (x.clone().cast(dtype), w.clone().cast(dtype));
                let y = if lean {
                    let y = ember::kernels::conv2d_im2col(&xc, &wc, stride, 1).expect("taken on Vulkan's autodiff");
                    let running = ember::kernels::BatchNormRunning {
                        mean: Tensor::zeros([6], &device),
                        var: Tensor::ones([6], &device),
                        momentum: 0.03,
                    };
                    ember::kernels::batch_norm_train_lean(&y, &g, &b, &running, 1e-3, true)
                        .expect("taken on Vulkan's autodiff")
                        .0
                } else {
                    let y = ember::nn::conv_lowp::conv2d_im2col(xc, wc, stride, 1);
                    let y = ember::nn::batchnorm::train_definition(y, g.clone(), b.clone(), 1e-3).0;
                    burn::tensor::activation::silu(y)
                };
                let y = y.cast(FloatDType::F32);
                let upstream = y.clone().detach().sin();
                let grads = (y.clone() * upstream).sum().backward();
                [
                    common::values(y.inner()),
                    common::values(x.grad(&grads).unwrap()),
                    common::values(w.grad(&grads).unwrap()),
                    common::values(g.grad(&grads).unwrap()),
                    common::values(b.grad(&grads).unwrap()),
                ]
            };
            let names = ["output", "input grad", "weight grad", "gamma grad", "beta grad"];
            assert_close(&format!("{dtype:?} stride {stride}"), &names, &run(true), &run(false), tolerance);
        }
    }
}

/// The CubeCL BatchNorm(+SiLU) kernels (src/kernels/cube/batchnorm.rs) give, on Vulkan, the output, updated
/// running statistics and gradients of autodiff through the generic definition: shapes whose channels take one chunk
/// and several (a last chunk shorter than the others, a plane that is no multiple of a cube), FP32 and FP16,
/// and a channel far from zero (mean 40, deviation 0.5), where a variance from unshifted sums would lose digits.
#[test]
fn batch_norm_kernels_on_vulkan_equal_the_definition() {
    let Some((_turn, device)) = vulkan() else { return };
    type AB = VulkanAutodiff;
    AB::seed(&device, 11);
    for (shape, centre, spread) in [
        ([2, 6, 12, 10], 0.3, 1.5),
        ([3, 4, 61, 47], -1.0, 2.0),
        ([2, 3, 9, 7], 40.0, 0.5),
        ([1, 2, 130, 131], 40.0, 0.5),
    ] {
        let x = Tensor::<AB, 4>::random(shape, Distribution::Normal(centre, spread), &device);
        let gamma = Tensor::<AB, 1>::random([shape[1]], Distribution::Normal(1.0, 0.3), &device);
        let beta = Tensor::<AB, 1>::random([shape[1]], Distribution::Normal(0.0, 0.3), &device);
        let running = ember::kernels::BatchNormRunning {
            mean: Tensor::random([shape[1]], Distribution::Normal(0.0, 1.0), &device),
            var: Tensor::random([shape[1]], Distribution::Uniform(0.5, 2.0), &device),
            momentum: 0.1,
        };
        // FP32: gamma's gradient sums 17,030 products whose signs cancel (up to 1.4e-4 of its largest value
        // measured, both sums FP32 in different orders); a wrong term would be O(1).
        for (dtype, tolerance) in [(FloatDType::F32, 5e-4), (FloatDType::F16, 1e-2)] {
            for silu in [false, true] {
                let run = |kernel: bool| {
                    let x = x.clone().detach().require_grad();
                    let (g, b) = (gamma.clone().detach().require_grad(), beta.clone().detach().require_grad());
                    let xc = x.clone().cast(dtype);
                    let (y, after) = if kernel {
                        ember::kernels::batch_norm_train_lean(&xc, &g, &b, &running, 1e-3, silu).expect("on Vulkan")
                    } else {
                        let (y, mean, var) = ember::nn::batchnorm::train_definition(xc, g.clone(), b.clone(), 1e-3);
                        let count = shape[0] * shape[2] * shape[3];
                        (
                            if silu { burn::tensor::activation::silu(y) } else { y },
                            running.clone().updated(mean, var, count),
                        )
                    };
                    let y = y.cast(FloatDType::F32);
                    let upstream = y.clone().detach().cos();
                    let grads = (y.clone() * upstream).sum().backward();
                    [
                        common::values(y.inner()),
                        common::values(after.mean.inner()),
                        common::values(after.var.inner()),
                        common::values(x.grad(&grads).unwrap()),
                        common::values(g.grad(&grads).unwrap()),
                        common::values(b.grad(&grads).unwrap()),
                    ]
                };
                let names = ["output", "running mean", "running variance", "input grad", "gamma grad", "beta grad"];
                let what = format!("{shape:?} N({centre}, {spread}) {dtype:?} silu {silu}");
                assert_close(&what, &names, &run(true), &run(false), tolerance);
            }
        }
    }
}

/// The CubeCL im2col and col2im kernels (src/kernels/cube/columns.rs) on Vulkan give the columns and summed
/// pixels of their definitions (kernels::columns, computed on flex): 3x3 convolutions with padding, strides 1
/// and 2, a 1x1 and an unpadded 2x2 of stride 2, on odd sizes; FP32 exactly (col2im adds in the same order),
/// FP16 with col2im rounding once where the definition rounds after each tap.
#[test]
fn column_kernels_on_vulkan_equal_the_definitions() {
    use ember::kernels::columns::{col2im, im2col, out_size};
    let Some((_turn, device)) = vulkan() else { return };
    let cpu = Default::default();
    for (kernel, stride, padding) in [([3, 3], 1, 1), ([3, 3], 2, 1), ([1, 1], 1, 0), ([2, 2], 2, 0)] {
        let size = [2, 5, 11, 9];
        let [ho, wo] = out_size([11, 9], kernel, stride, padding);
        let x = Tensor::<Cpu, 4>::random(size, Distribution::Normal(0.0, 1.0), &cpu);
        let cols =
            Tensor::<Cpu, 3>::random([2, 5 * kernel[0] * kernel[1], ho * wo], Distribution::Normal(0.0, 1.0), &cpu);
        for (dtype, tolerance) in [(FloatDType::F32, 0.0), (FloatDType::F16, 2e-3)] {
            let on_vulkan = |t: Tensor<Cpu, 4>| Tensor::<Vulkan, 4>::from_data(t.into_data(), &device).cast(dtype);
            let on_vulkan3 = |t: Tensor<Cpu, 3>| Tensor::<Vulkan, 3>::from_data(t.into_data(), &device).cast(dtype);
            let got = [
                common::values(im2col(on_vulkan(x.clone()), kernel, stride, padding)),
                common::values(col2im(on_vulkan3(cols.clone()), size, kernel, stride, padding)),
            ];
            let want = [
                common::values(im2col(x.clone().cast(dtype), kernel, stride, padding)),
                common::values(col2im(cols.clone().cast(dtype), size, kernel, stride, padding)),
            ];
            let what = format!("{kernel:?} stride {stride} padding {padding} {dtype:?}");
            assert_close(&what, &["im2col", "col2im"], &got, &want, tolerance);
        }
    }
}

/// The depthwise convolution with ember's weight gradient equals autodiff through burn's grouped convolution on
/// the Vulkan device, FP32 and FP16.
#[test]
fn depthwise_convolution_on_vulkan_equals_burns_grouped_one() {
    let Some((_turn, device)) = vulkan() else { return };
    type AB = VulkanAutodiff;
    AB::seed(&device, 9);
    let x = Tensor::<AB, 4>::random([2, 16, 11, 9], Distribution::Normal(0.3, 1.5), &device);
    let w = Tensor::<AB, 4>::random([16, 1, 3, 3], Distribution::Normal(0.0, 0.3), &device);
    for (dtype, tolerance) in [(FloatDType::F32, 1e-4), (FloatDType::F16, 1e-2)] {
        let run = |own: bool| {
            let (x, w) = (x.clone().detach().require_grad(), w.clone().detach().require_grad());
            let (xc, wc) = (x.clone().cast(dtype), w.clone().cast(dtype));
            let y = if own {
                ember::kernels::conv2d_depthwise(&xc, &wc, 1, 1).expect("taken on Vulkan's autodiff")
            } else {
                ember::nn::conv_lowp::conv2d_widened(xc, wc, 1, 1, 16)
            };
            let y = y.cast(FloatDType::F32);
            let upstream = y.clone().detach().sin();
            let grads = (y.clone() * upstream).sum().backward();
            [
                common::values(y.inner()),
                common::values(x.grad(&grads).unwrap()),
                common::values(w.grad(&grads).unwrap()),
            ]
        };
        let names = ["output", "input grad", "weight grad"];
        assert_close(&format!("depthwise {dtype:?}"), &names, &run(true), &run(false), tolerance);
    }
}

#[test]
fn fp16_forward_and_gradients_track_fp32() {
    let Some((_turn, device)) = vulkan() else { return };
    type AB = VulkanAutodiff;
    AB::seed(&device, 0);
    let model = Yolo::<AB>::new("yolo26n", 80, &device).unwrap();
    let batch = common::coco8_batch(96, 2);
    let x = batch_tensor::<AB>(&batch, &device);
    // As tests/amp.rs on flex: a few train-mode passes give BatchNorm realistic statistics.
    for _ in 0..3 {
        let _ = model.forward(x.clone());
    }
    let eval = model.valid();
    let x_eval = x.inner();
    let f32_out = common::values(eval.forward(x_eval.clone()).decode_one2many());
    let f16_out = common::values(eval.forward(x_eval.cast(FloatDType::F16)).decode_one2many());
    let rel = relative(&f16_out, &f32_out);
    println!("yolo26n eval forward on Vulkan, FP16 against FP32: {rel:.2e}");
    // As on flex (tests/amp.rs): ~11 significant bits compounded over ~100 layers; box coordinates dominate.
    assert!(rel < 5e-3, "{rel:e}");

    // Gradients: the same weights and batch on flex and on Vulkan, so Vulkan's FP16 arithmetic is held to
    // what FP16 itself costs on this model (flex computes FP16 with FP32 sums too).
    let on_vulkan = fp16_gradient_cosine::<VulkanAutodiff>(&device, &batch);
    let on_flex = fp16_gradient_cosine::<ember::backend::CpuAutodiff>(&Default::default(), &batch);
    println!(
        "lowest per-tensor cosine of unscaled FP16 against FP32 gradients: Vulkan {on_vulkan:.5}, flex {on_flex:.5}"
    );
    // Measured: Vulkan (lavapipe) 0.9795-0.9796, flex 0.9874. The tensors below 0.99 on Vulkan sit in the
    // deepest, lowest-resolution blocks (seen on a random-init model); why Vulkan trails flex there is
    // not yet known (a suspect: FP16 elementwise functions such as SiLU's exp on lavapipe).
    assert!(on_vulkan >= 0.97 && on_vulkan >= on_flex - 0.015, "Vulkan {on_vulkan} vs flex {on_flex}");
}

/// The lowest per-tensor cosine similarity between FP32 gradients and unscaled FP16 gradients of the
/// fixture yolo26n on `batch`, for a fixed surrogate of the head outputs: no assigner, so no discrete
/// choices flip between the two passes; a mean, so gradients are as small as a real loss's and the
/// scale keeps them in FP16's range.
fn fp16_gradient_cosine<AB: AutodiffBackend>(device: &AB::Device, batch: &Batch) -> f64 {
    let model = fixture_model::<AB>(device);
    let x = batch_tensor::<AB>(batch, device);
    let surrogate = |out: ember::model::DetectOutput<AB>| {
        let outs: Vec<Tensor<AB, 3>> =
            std::iter::once(out.one2many).chain(out.one2one).flat_map(|h| [h.boxes, h.scores]).collect();
        outs.into_iter()
            .map(|o| {
                let o = o.cast(FloatDType::F32);
                (o.clone() * o.detach().sin()).mean()
            })
            .reduce(|a, b| a + b)
            .unwrap()
    };
    let scale = 1024.0;
    let g32 = model_grads(&model, &surrogate(model.forward(x.clone())).backward());
    let g16 = model_grads(&model, &surrogate(model.forward(x.cast(FloatDType::F16))).mul_scalar(scale).backward());
    assert_eq!(g32.len(), g16.len());
    let norm = |v: &[f32], s: f64| v.iter().map(|x| (*x as f64 / s).powi(2)).sum::<f64>().sqrt();
    let largest = g32.iter().map(|a| norm(a, 1.0)).fold(0.0, f64::max);
    let (mut worst, mut compared) = (1.0f64, 0);
    for (a, b) in g32.iter().zip(&g16) {
        assert!(b.iter().all(|v| v.is_finite()), "non-finite FP16 gradient");
        let (na, nb) = (norm(a, 1.0), norm(b, scale));
        if na < 1e-4 * largest {
            continue; // no direction to compare (a bias in front of a BatchNorm)
        }
        compared += 1;
        let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * (*y as f64 / scale)).sum();
        worst = worst.min(dot / (na * nb));
    }
    assert!(compared > 100, "{compared} tensors compared");
    worst
}

/// Every parameter's gradient, flattened, in module order.
fn model_grads<AB: AutodiffBackend>(model: &Yolo<AB>, grads: &AB::Gradients) -> Vec<Vec<f32>> {
    struct Grads<'a, AB: AutodiffBackend>(&'a AB::Gradients, Vec<Vec<f32>>);
    impl<AB: AutodiffBackend> burn::module::ModuleVisitor<AB> for Grads<'_, AB> {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<AB, D>>) {
            if let Some(g) = p.val().grad(self.0) {
                self.1.push(common::values(g));
            }
        }
    }
    let mut v = Grads::<AB>(grads, vec![]);
    model.visit(&mut v);
    v.1
}

#[test]
fn an_overflow_on_the_device_skips_the_step_and_halves_the_scale() {
    let Some((_turn, device)) = vulkan() else { return };
    // An FP16 overflow as it happens: the scaled loss leaves FP16's range and the gradient is infinite.
    let overflowing = |weight: Tensor<VulkanAutodiff, 1>, bias: Tensor<VulkanAutodiff, 1>| {
        weight.cast(FloatDType::F16).mul_scalar(70000.0).cast(FloatDType::F32).sum() + bias.sum()
    };
    let read_along = Some(Tensor::<Vulkan, 1>::from_floats([7.0], &device));
    let report =
        common::overflow::overflow_changes_nothing_but_the_scale::<VulkanAutodiff>(&device, overflowing, read_along);
    assert_eq!(report.read_along, vec![7.0], "values read along with the gradient statistics");
}

/// The device assigner on the Vulkan device against Ultralytics' assignment of the loss fixtures.
#[test]
fn the_assigner_on_vulkan_matches_ultralytics() {
    let Some((_turn, device)) = vulkan() else { return };
    let d = common::loss_fixture::assignment_vs_ultralytics::<Vulkan>(&device, ember::loss::assigner::Route::Device);
    println!("Vulkan assigner: {d:?}");
    assert_eq!(d.mismatched_anchors, 0);
    assert!(d.foreground > 400, "{} foreground anchors compared", d.foreground);
    assert!(d.scores < 1e-5 && d.boxes < 1e-5, "{d:?}");
}

/// The flat-buffer optimizer on the Vulkan device equals the per-tensor definition, as on flex.
#[test]
fn flat_optimizer_steps_on_vulkan_equal_the_per_tensor_definition() {
    let Some((_turn, device)) = vulkan() else { return };
    for kind in
        [ember::config::OptimizerKind::Sgd, ember::config::OptimizerKind::AdamW, ember::config::OptimizerKind::MuSGD]
    {
        let (weights, ema) = common::flat_step::flat_step_vs_reference::<VulkanAutodiff>(&device, kind);
        println!("Vulkan {kind:?}: weights within {weights:e}, EMA within {ema:e}");
        assert!(weights < 1e-6, "{kind:?}: weights differ by {weights:e}");
        assert!(ema < 1e-6, "{kind:?}: EMA differs by {ema:e}");
    }
}

/// On a GPU `amp: true` (the default, a bare `--amp`, from any source) is FP16 when the device computes in FP16,
/// as is `fp16`; `false` / `fp32` is FP32.
#[test]
fn amp_from_every_setting_source_on_vulkan() {
    use common::amp_sources::{every_source, FP32};
    use ember::config::{AmpMode, DeviceSpec};
    use ember::device::ComputeDevice;
    let Some((_turn, _device)) = vulkan() else { return };
    let compute = ComputeDevice::resolve(DeviceSpec::Vulkan(None)).unwrap();
    let reduced = if compute.supports_f16() { AmpMode::Fp16 } else { AmpMode::Fp32 };
    let dir = tempfile::tempdir().unwrap();
    for (what, s, asked) in every_source(dir.path()) {
        let (precision, line) = ember::commands::train::precision_for(s.amp, &compute);
        let want = if asked == FP32 { AmpMode::Fp32 } else { reduced };
        assert_eq!(precision, want, "{what} on {compute}: {line}");
        if want == AmpMode::Fp16 {
            assert!(line.starts_with("AMP: fp16 compute"), "{what}: {line}");
        }
    }
}

fn settings(pairs: &[(&str, String)]) -> Settings {
    Settings::resolve(&Overrides { values: pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect() }).unwrap()
}

/// FP16 AMP training on the Vulkan device learns the synthetic shapes, reads the host once per batch (the
/// assigner runs on the device), and `val --half` on the device agrees with FP32 val.
#[test]
fn fp16_amp_training_on_vulkan_learns_and_half_val_agrees() {
    let Some((_turn, _device)) = vulkan() else { return };
    let dir = tempfile::tempdir().unwrap();
    // One shape per image and 80 steps: on lavapipe a yolo26n step at 64 px takes seconds, so the task is
    // sized to learn quickly (the same recipe on flex in FP32 reaches mAP50 0.59).
    let config =
        SyntheticConfig { train_images: 64, val_images: 16, size: 64, objects: (1, 1), object_size: (24, 40), seed: 0 };
    let yaml = generate(&dir.path().join("data"), &config).unwrap();
    let mut pairs = common::recipe(&yaml, &dir.path().join("runs"), "vulkan", 10);
    pairs.retain(|(k, _)| *k != "lr0");
    pairs.extend([
        ("lr0", "0.005".to_string()),
        ("device", "vulkan".into()),
        ("val", "false".into()),
        ("plots", "false".into()),
    ]);
    let started = std::time::Instant::now();
    let outcome = ember::commands::train::run(&settings(&pairs)).unwrap();
    let args: Settings =
        serde_yaml::from_str(&std::fs::read_to_string(outcome.run_dir.join("args.yaml")).unwrap()).unwrap();
    let metrics = outcome.final_metrics.expect("the final epoch is validated");
    let csv = outcome.run_dir.join("results.csv");
    // YOLO26's training loss terms (box, cls, and l1 in place of dfl).
    let losses = results_column(&csv, &["train/box_loss", "train/cls_loss", "train/l1_loss"]);
    println!("training loss by epoch: {losses:.3?}");
    println!("loss scale by epoch: {:?}", results_column(&csv, &["loss_scale"]));
    println!(
        "Vulkan FP16 AMP, 10 epochs of 64 images at 64 px in {:.0} s: mAP50 {:.3}, mAP50-95 {:.3}; most reads in a batch: {:?}",
        started.elapsed().as_secs_f64(),
        metrics.map50,
        metrics.map50_95,
        outcome.batch_reads
    );
    let fp16 = ember::config::AmpRequest::Forced(ember::config::AmpMode::Fp16);
    assert_eq!(args.amp, fp16, "amp=true on a Vulkan device with FP16 is FP16, recorded in args.yaml");
    // Measured on lavapipe: mAP50 0.724, 0.552, 0.292 (CI, machine under load), 0.995 (alone), 0.038 (CI) and
    // 0.034 in six runs (its reductions do not fix their summation order, and 80 steps from a loss scale of 2^16 leave
    // the outcome to the first steps' overflows); on flex the same recipe gives 0.64-0.995 in FP32 and 0.61-0.95
    // with AMP over four seeds, Vulkan FP32 0.917 once; a run that learns nothing stays near 0.002, so the bound is
    // 10x that.
    assert!(metrics.map50 >= 0.02, "mAP50 {:.3} on held-out shapes", metrics.map50);
    // The training loss is the steadier sign of learning: 7.22 -> 4.16 (0.58x) in a run whose mAP50 was 0.034.
    let (first, last) = (losses[0], *losses.last().unwrap());
    assert!(last <= 0.75 * first, "training loss {first:.3} -> {last:.3} over 10 epochs: {losses:.3?}");
    // One read a batch: the gradients' sum of squares with the loss values; none by the assigner.
    assert_eq!(outcome.batch_reads.other, 1, "{:?}", outcome.batch_reads);
    assert_eq!(outcome.batch_reads.assigner, 0, "{:?}", outcome.batch_reads);

    let val = |half: bool| {
        let pairs = [
            ("data", yaml.display().to_string()),
            ("weights", outcome.best.display().to_string()),
            ("imgsz", "64".into()),
            ("batch", "8".into()),
            ("device", "vulkan".into()),
            ("half", half.to_string()),
            ("plots", "false".into()),
            ("project", dir.path().join("val").display().to_string()),
        ];
        ember::commands::val::run(&settings(&pairs)).unwrap()
    };
    let (fp32, fp16) = (val(false), val(true));
    println!("val on Vulkan: FP32 mAP50-95 {:.4}, FP16 {:.4}", fp32.map50_95, fp16.map50_95);
    // Measured: mAP50-95 0.3920 against 0.3897, 0.2789 against 0.2811, 0.2883 against 0.2899. mAP50 moves in
    // steps: with 16 held-out shapes (8 triangles), one box that FP16 rounding carries across IoU 0.5 moves its
    // class's AP by up to 1/8, the mean over 3 classes by up to 1/24 (measured 0.572 against 0.592 on CI, the
    // triangles' AP50 0.205 against 0.268, their AP50-95 0.044 against 0.051). mAP50-95 averages ten thresholds,
    // so one crossing moves it a tenth as much.
    assert!((fp16.map50_95 - fp32.map50_95).abs() <= 0.02, "fp16 {} vs fp32 {}", fp16.map50_95, fp32.map50_95);
    assert!((fp16.map50 - fp32.map50).abs() <= 1.0 / 24.0 + 0.005, "fp16 {} vs fp32 {}", fp16.map50, fp32.map50);
}

/// Each epoch's sum of the `names` columns of a run's results.csv.
fn results_column(csv: &std::path::Path, names: &[&str]) -> Vec<f64> {
    let text = std::fs::read_to_string(csv).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').map(str::trim).collect();
    let columns: Vec<usize> = names
        .iter()
        .map(|name| header.iter().position(|h| h == name).unwrap_or_else(|| panic!("{name} in {header:?}")))
        .collect();
    lines
        .map(|line| {
            let cells: Vec<&str> = line.split(',').map(str::trim).collect();
            columns.iter().map(|&c| cells[c].parse::<f64>().unwrap()).sum()
        })
        .collect()
}

/// `ember train` for one epoch on the Vulkan device, on 8 generated images at 64 px, with `batch` and an optional
/// `EMBER_FAULT`, in `dir/runs/name`; its stdout and stderr, after asserting it succeeded.
fn train_on_vulkan(dir: &std::path::Path, name: &str, batch: &str, fault: Option<&str>) -> String {
    let config = SyntheticConfig { train_images: 8, val_images: 4, size: 64, ..Default::default() };
    let yaml = generate(&dir.join("data"), &config).unwrap();
    let mut args: Vec<String> = common::recipe(&yaml, &dir.join("runs"), name, 1)
        .into_iter()
        .filter(|(k, _)| *k != "batch")
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    args.extend([format!("batch={batch}"), "device=vulkan".into(), "plots=false".into()]);
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_ember"));
    command.arg("train").args(&args);
    if let Some(fault) = fault {
        command.env("EMBER_FAULT", fault);
    }
    let out = command.output().unwrap();
    let text = format!("{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{text}");
    text
}

/// Out of device memory in the first epoch on the Vulkan device (injected; lavapipe's memory is the host's) halves
/// the batch and the run finishes there, as on the CPU.
#[test]
fn out_of_memory_on_vulkan_halves_the_batch_and_finishes() {
    let Some((_turn, _device)) = vulkan() else { return };
    let dir = tempfile::tempdir().unwrap();
    let text = train_on_vulkan(dir.path(), "oom", "4", Some("oom@1:0"));
    assert!(
        text.contains("WARNING: VULKAN out of memory with batch=4. Reducing to batch=2 and retrying (1/3)."),
        "{text}"
    );
    assert!(text.contains("GPU_mem"), "the console shows the device's memory: {text}");
}

/// `batch=-1` on the Vulkan device fits the batch from trial batches' measured device memory (at most the 8
/// training images here) and trains with it.
#[test]
fn autobatch_on_vulkan_fits_the_batch_from_measured_memory() {
    let Some((_turn, _device)) = vulkan() else { return };
    let dir = tempfile::tempdir().unwrap();
    let text = train_on_vulkan(dir.path(), "auto", "-1", None);
    println!("{}", text.lines().filter(|l| l.starts_with("AutoBatch")).collect::<Vec<_>>().join("\n"));
    assert!(text.contains("AutoBatch: trial batches 1: "), "{text}");
    let chosen = text
        .lines()
        .find_map(|l| l.strip_prefix("AutoBatch: Using batch-size "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|b| b.parse::<u32>().ok())
        .unwrap_or_else(|| panic!("no batch chosen: {text}"));
    assert!((1..=8).contains(&chosen), "batch {chosen} for 8 images");
    let recorded: Settings =
        serde_yaml::from_str(&std::fs::read_to_string(dir.path().join("runs/auto/args.yaml")).unwrap()).unwrap();
    assert_eq!(recorded.batch, ember::config::BatchSize::Images(chosen), "args.yaml records the fitted batch");
}

/// A machine whose Vulkan loader finds no driver (here: pointed at none) gets a message saying what to
/// install, and `vulkan:N` past the adapter list names the list; neither is a panic.
#[test]
fn missing_vulkan_devices_get_clear_errors() {
    let ember = |args: &[&str], no_driver: bool| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_ember"));
        cmd.args(args);
        if no_driver {
            cmd.env("VK_DRIVER_FILES", "/nonexistent/icd.json").env("VK_ICD_FILENAMES", "/nonexistent/icd.json");
        }
        let out = cmd.output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (code, err) = ember(&["val", "--weights", "none.safetensors", "--device", "vulkan"], true);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("no Vulkan device found") && err.contains("mesa-vulkan-drivers"), "{err}");
    let (code, err) = ember(&["val", "--weights", "none.safetensors", "--device", "vulkan:99"], false);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("vulkan:99") && (err.contains("ember info --device vulkan") || err.contains("no Vulkan device")),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn u8_batches_are_scaled_on_the_device_as_on_the_host() {
    let Some((_turn, device)) = vulkan() else { return };
    let batch = common::byte_ramp_batch();
    let host: Vec<f32> = batch.pixels.iter().map(|&p| p as f32 * (1.0 / 255.0)).collect();
    let x = batch_tensor::<Vulkan>(&batch, &device);
    assert_eq!(x.dims(), batch.shape);
    let got = x.into_data().convert::<f32>().to_vec::<f32>().unwrap();
    assert!(relative(&got, &host) < 1e-6, "{}", relative(&got, &host));
    let half =
        ember::train::precision::to_compute(batch_tensor::<Vulkan>(&batch, &device), ember::config::AmpMode::Fp16);
    let half = half.cast(FloatDType::F32).into_data().to_vec::<f32>().unwrap();
    assert!(host.iter().zip(&half).all(|(a, b)| (a - b).abs() <= a.abs() / 1024.0 + 1e-7), "FP16 within its rounding");
}
