//! burn-flex convolution on the shapes that dominate the training profile (BENCHMARKS.md), forward and
//! forward+backward, the convolution alone (no BatchNorm or activation).
//!
//!     cargo bench --bench conv_shapes

use std::time::Instant;

use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Distribution, Tensor};
use ember::backend::{Cpu, CpuAutodiff};

fn time<F: FnMut()>(mut f: F) -> f64 {
    f();
    let t = Instant::now();
    for _ in 0..3 {
        f();
    }
    t.elapsed().as_secs_f64() / 3.0
}

fn main() {
    let device = Default::default();
    // (name, input [n, c, h, w], c_out, kernel, stride, groups)
    let cases = [
        ("stem 3->16 k3 s2", [8, 3, 320, 320], 16, 3, 2, 1),
        ("3x3 32->32 80x80", [8, 32, 80, 80], 32, 3, 1, 1),
        ("1x1 64->64 80x80", [8, 64, 80, 80], 64, 1, 1, 1),
        ("depthwise 3x3 64 40x40", [8, 64, 40, 40], 64, 3, 1, 64),
        ("3x3 64->64 40x40", [8, 64, 40, 40], 64, 3, 1, 1),
    ];
    println!("| conv | forward s | fwd+bwd s (burn) | fwd+bwd s (ember::nn::conv2d) |\n|---|---|---|---|");
    for (name, shape, c_out, k, stride, groups) in cases {
        let opts = || ConvOptions::new([stride, stride], [k / 2, k / 2], [1, 1], groups);
        let x = Tensor::<Cpu, 4>::random(shape, Distribution::Normal(0.0, 1.0), &device);
        let w = Tensor::<Cpu, 4>::random([c_out, shape[1] / groups, k, k], Distribution::Normal(0.0, 0.1), &device);
        let fwd = time(|| {
            let y = conv2d(x.clone(), w.clone(), None, opts());
            let _ = y.slice([0..1, 0..1, 0..1, 0..1]).into_data();
        });
        let xa = Tensor::<CpuAutodiff, 4>::from_inner(x.clone()).require_grad();
        let wa = Tensor::<CpuAutodiff, 4>::from_inner(w.clone()).require_grad();
        let both = time(|| {
            let _ = conv2d(xa.clone(), wa.clone(), None, opts()).sum().backward();
        });
        let ours = time(|| {
            let _ = ember::nn::conv2d(xa.clone(), wa.clone(), None, stride, k / 2, groups).sum().backward();
        });
        println!("| {name} {shape:?} | {fwd:.4} | {both:.4} | {ours:.4} |");
        if std::env::var("EMBER_BENCH_PARTS").is_ok() {
            use burn::tensor::ops::ModuleOps;
            let dy = conv2d(x.clone(), w.clone(), None, opts());
            let g = ember::kernels::flex::conv::ConvGeometry {
                batch: shape[0],
                c_in: shape[1],
                h: shape[2],
                w: shape[3],
                c_out,
                kernel: k,
                stride,
                padding: k / 2,
                groups,
            };
            let (xp, wp, dyp) = (
                x.clone().into_primitive().tensor(),
                w.clone().into_primitive().tensor(),
                dy.into_primitive().tensor(),
            );
            let wg = time(|| drop(ember::kernels::flex::conv::weight_grad(&xp, &dyp, &g)));
            let xg =
                time(|| drop(<Cpu as ModuleOps<Cpu>>::conv2d_x_backward(xp.clone(), wp.clone(), dyp.clone(), opts())));
            let wg_burn = time(|| {
                drop(<Cpu as ModuleOps<Cpu>>::conv2d_weight_backward(xp.clone(), wp.clone(), dyp.clone(), opts()))
            });
            println!("|   parts: weight grad ember {wg:.4}, burn {wg_burn:.4}; input grad (burn) {xg:.4} |");
        }
    }

    // What surrounds each convolution in a Conv block: per-channel scale and shift (BatchNorm with
    // running statistics), then SiLU, on the stem's output.
    let y = Tensor::<Cpu, 4>::random([8, 16, 160, 160], Distribution::Normal(0.0, 1.0), &device);
    let scale = Tensor::<Cpu, 1>::random([16], Distribution::Normal(1.0, 0.1), &device).reshape([1, 16, 1, 1]);
    let shift = Tensor::<Cpu, 1>::random([16], Distribution::Normal(0.0, 0.1), &device).reshape([1, 16, 1, 1]);
    let sync = |t: Tensor<Cpu, 4>| {
        let _ = t.slice([0..1, 0..1, 0..1, 0..1]).into_data();
    };
    println!("\n| elementwise on [8, 16, 160, 160] | forward s |\n|---|---|");
    println!("| x * scale[c] (broadcast) | {:.4} |", time(|| sync(y.clone().mul(scale.clone()))));
    println!("| x * scale[c] + shift[c] | {:.4} |", time(|| sync(y.clone().mul(scale.clone()).add(shift.clone()))));
    println!("| x * 2 (scalar) | {:.4} |", time(|| sync(y.clone().mul_scalar(2.0))));
    println!("| silu(x) | {:.4} |", time(|| sync(burn::tensor::activation::silu(y.clone()))));
    println!("| x + x (same shape) | {:.4} |", time(|| sync(y.clone().add(y.clone()))));
    // The same per-channel affine as a 1x1 depthwise convolution with bias.
    let w = scale.clone().reshape([16, 1, 1, 1]);
    let b = shift.clone().reshape([16]);
    let dw = || ConvOptions::new([1, 1], [0, 0], [1, 1], 16);
    println!(
        "| conv2d 1x1 depthwise + bias (= x * scale[c] + shift[c]) | {:.4} |",
        time(|| sync(conv2d(y.clone(), w.clone(), Some(b.clone()), dw())))
    );

    // Forward + backward of both forms on the autodiff backend (gradients for x, scale and shift).
    let ya = Tensor::<CpuAutodiff, 4>::from_inner(y.clone()).require_grad();
    let sa = Tensor::<CpuAutodiff, 4>::from_inner(scale.clone()).require_grad();
    let ha = Tensor::<CpuAutodiff, 4>::from_inner(shift.clone()).require_grad();
    let broadcast = time(|| {
        let _ = ya.clone().mul(sa.clone()).add(ha.clone()).sum().backward();
    });
    let wa = Tensor::<CpuAutodiff, 4>::from_inner(w.clone()).require_grad();
    let ba = Tensor::<CpuAutodiff, 1>::from_inner(b.clone()).require_grad();
    let as_conv = time(|| {
        let _ = conv2d(ya.clone(), wa.clone(), Some(ba.clone()), dw()).sum().backward();
    });
    println!("\n| per-channel affine, fwd+bwd on [8, 16, 160, 160] | s |\n|---|---|");
    println!("| broadcast mul + add | {broadcast:.4} |\n| 1x1 depthwise conv + bias | {as_conv:.4} |");

    // BatchNorm in training mode (batch statistics), forward + backward, next to a convolution of the same
    // size: alone, and with the SiLU after it (burn's SiLU, and ember's fused into the BatchNorm kernel).
    let bn = ember::nn::BatchNorm2dConfig::new(32).init::<CpuAutodiff>(&device);
    let xb = Tensor::<CpuAutodiff, 4>::random([8, 32, 80, 80], Distribution::Normal(0.0, 1.0), &device).require_grad();
    let bn_both = time(|| {
        let _ = bn.forward(xb.clone()).sum().backward();
    });
    let then_silu = time(|| {
        let _ = burn::tensor::activation::silu(bn.forward(xb.clone())).sum().backward();
    });
    let fused = time(|| {
        let _ = bn.forward_silu(xb.clone()).sum().backward();
    });
    println!("\n| training mode, fwd+bwd on [8, 32, 80, 80] | s |\n|---|---|");
    println!("| BatchNorm2d | {bn_both:.4} |\n| BatchNorm2d, then burn's SiLU | {then_silu:.4} |\n| BatchNorm2d + SiLU fused (forward_silu) | {fused:.4} |");

    // SiLU as burn writes it (x * sigmoid(x)).
    let burn_fwd = time(|| sync(burn::tensor::activation::silu(y.clone())));
    let burn_both = time(|| {
        let _ = burn::tensor::activation::silu(ya.clone()).sum().backward();
    });
    println!("\n| burn activation::silu on [8, 16, 160, 160] | forward {burn_fwd:.4} s | fwd+bwd {burn_both:.4} s |");
}
