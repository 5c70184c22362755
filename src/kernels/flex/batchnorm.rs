//! BatchNorm, optionally followed by SiLU, as one multi-threaded pass each way on burn-flex.
//!
//! burn composes training-mode BatchNorm from a dozen whole-tensor ops (means, centring, squares,
//! broadcast products, each a new allocation) and autodiff runs as many again backward; the SiLU after
//! it adds two more passes. On a yolo26n training step at 320 that was about a quarter of the time, the
//! SiLU another seventh (BENCHMARKS.md). Here training reads the input twice forward (statistics, then
//! normalise and activate) and twice backward (per-channel sums, then the input gradient), recomputing
//! the activation instead of storing it; inference is one pass with the folded scale and shift.
//!
//! Statistics: each `h x w` plane's mean and squared deviations from it are summed in f32 lanes folded
//! into f64, and the planes merged with Chan's parallel-variance formula, so a channel whose mean is
//! large next to its spread keeps its variance. FP32 on flex only; every other backend and dtype takes
//! the composed path in `batchnorm.rs`.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::tensor::backend::{Backend, BackendTypes};
use burn::tensor::{Tensor, TensorPrimitive};
use burn_flex::FlexTensor;
use rayon::prelude::*;

use super::math::sigmoid;
use super::wide::widest;
use super::{on_flex, register_input_grad, retype, tensor, values, On};
use crate::backend::{Cpu, CpuAutodiff};

/// What a training-mode forward returns besides its output: the batch statistics for the running ones.
pub struct BatchStatistics {
    /// Per-channel batch mean `[c]`, over the batch and every pixel of each plane.
    pub mean: Vec<f32>,
    /// Biased (divided by the element count), as normalisation uses it.
    pub var: Vec<f32>,
}

/// Training-mode BatchNorm (batch statistics) of `x`, then SiLU when `silu`, when this module handles it
/// (FP32 on `Autodiff<Flex>`), else `None`.
pub fn try_train<B: Backend>(
    x: &Tensor<B, 4>,
    weight: &Tensor<B, 1>,
    bias: &Tensor<B, 1>,
    eps: f64,
    silu: bool,
) -> Option<(Tensor<B, 4>, BatchStatistics)> {
    if on_flex::<B>(&[x.dtype(), weight.dtype(), bias.dtype()])? != On::Training {
        return None;
    }
    let x: Tensor<CpuAutodiff, 4> = retype(x.clone())?;
    let (weight, bias): (Tensor<CpuAutodiff, 1>, Tensor<CpuAutodiff, 1>) =
        (retype(weight.clone())?, retype(bias.clone())?);
    let (y, stats) = train_autodiff(x, weight, bias, eps, silu);
    Some((retype(y)?, stats))
}

/// `x * scale[c] + shift[c]`, then SiLU when `silu`, when this module handles it (FP32 on `Flex`).
pub fn try_affine<B: Backend>(
    x: &Tensor<B, 4>,
    scale: &Tensor<B, 1>,
    shift: &Tensor<B, 1>,
    silu: bool,
) -> Option<Tensor<B, 4>> {
    if on_flex::<B>(&[x.dtype(), scale.dtype(), shift.dtype()])? != On::Inference {
        return None;
    }
    let x: Tensor<Cpu, 4> = retype(x.clone())?;
    let scale: Vec<f32> = retype::<_, Tensor<Cpu, 1>>(scale.clone())?.into_data().to_vec().ok()?;
    let shift: Vec<f32> = retype::<_, Tensor<Cpu, 1>>(shift.clone())?.into_data().to_vec().ok()?;
    let x = x.into_primitive().tensor();
    let per_channel: Vec<[f32; 3]> = scale.iter().zip(&shift).map(|(&a, &b)| [0.0, a, b]).collect();
    retype(Tensor::<Cpu, 4>::from_primitive(TensorPrimitive::Float(affine(&x, &per_channel, silu))))
}

/// Per-channel values the backward pass needs besides the input.
#[derive(Debug, Clone)]
struct Channels {
    mean: Vec<f32>,
    inv_std: Vec<f32>,
    gamma: Vec<f32>,
    beta: Vec<f32>,
    silu: bool,
}

#[derive(Debug)]
struct BatchNormBackward;

impl Backward<Cpu, 3> for BatchNormBackward {
    /// The input (with its autodiff node, to accumulate its gradient) and the per-channel values.
    type State = (<CpuAutodiff as BackendTypes>::FloatTensorPrimitive, Channels);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let [node_x, node_weight, node_bias] = ops.parents;
        let grad = grads.consume::<Cpu>(&ops.node);
        let (x, ch) = ops.state;
        let (dx, dgamma, dbeta) = backward(&x.primitive, &grad, &ch, node_x.is_some());
        let vector = |v: Vec<f32>| tensor(v, [ch.gamma.len()]);
        if let Some(node) = node_weight {
            grads.register::<Cpu>(node.id, vector(dgamma));
        }
        if let Some(node) = node_bias {
            grads.register::<Cpu>(node.id, vector(dbeta));
        }
        if let Some(dx) = dx {
            register_input_grad(grads, &x, dx);
        }
    }
}

fn train_autodiff(
    x: Tensor<CpuAutodiff, 4>,
    weight: Tensor<CpuAutodiff, 1>,
    bias: Tensor<CpuAutodiff, 1>,
    eps: f64,
    silu: bool,
) -> (Tensor<CpuAutodiff, 4>, BatchStatistics) {
    let (x, weight, bias) =
        (x.into_primitive().tensor(), weight.into_primitive().tensor(), bias.into_primitive().tensor());
    let gamma = values(&weight.primitive).into_owned();
    let beta = values(&bias.primitive).into_owned();
    let stats = statistics(&x.primitive, gamma.len());
    let inv_std = stats.var.iter().map(|&v| (1.0 / (v as f64 + eps).sqrt()) as f32).collect();
    let ch = Channels { mean: stats.mean.clone(), inv_std, gamma, beta, silu };
    let y = forward(&x.primitive, &ch);
    let y = match BatchNormBackward
        .prepare::<NoCheckpointing>([x.node.clone(), weight.node.clone(), bias.node.clone()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish((x, ch), y),
        OpsKind::UnTracked(prep) => prep.finish(y),
    };
    (Tensor::from_primitive(TensorPrimitive::Float(y)), stats)
}

/// Elements in one `h x w` plane of an NCHW tensor.
fn plane_len(x: &FlexTensor) -> usize {
    let dims = x.layout().shape().to_vec();
    dims[2] * dims[3]
}

/// Planes per parallel task, so that a task holds at least ~16k elements.
fn min_planes(plane: usize) -> usize {
    ((1 << 14) / plane.max(1)).max(1)
}

/// Per-channel mean and biased variance over batch and space.
fn statistics(x: &FlexTensor, c: usize) -> BatchStatistics {
    let plane = plane_len(x);
    let src = values(x);
    // Per plane: (mean, sum of squared deviations from it).
    let planes: Vec<(f64, f64)> = src.par_chunks(plane).with_min_len(min_planes(plane)).map(plane_moments).collect();
    let batch = planes.len() / c;
    let n = plane as f64;
    let (mut mean, mut var) = (vec![0f32; c], vec![0f32; c]);
    for ch in 0..c {
        // Chan et al.: equal-sized groups merge as mean of means plus the spread of the means.
        let means = (0..batch).map(|b| planes[b * c + ch]);
        let mu = means.clone().map(|(m, _)| m).sum::<f64>() / batch as f64;
        let m2 = means.map(|(m, s)| s + n * (m - mu) * (m - mu)).sum::<f64>();
        mean[ch] = mu as f32;
        var[ch] = (m2 / (n * batch as f64)) as f32;
    }
    BatchStatistics { mean, var }
}

widest! {
    /// A plane's mean and the sum of its squared deviations from it.
    fn plane_moments(p: &[f32]) -> (f64, f64) {
        let mean = lane_sum(p, |v| v) / p.len() as f64;
        let m = mean as f32;
        (mean, lane_sum(p, |v| (v - m) * (v - m)) - p.len() as f64 * (mean - m as f64).powi(2))
    }
}

/// `sum(f(v))` over a slice: eight f32 lanes per block of 1024 (so it vectorises), blocks added in f64.
#[inline(always)]
fn lane_sum(values: &[f32], f: impl Fn(f32) -> f32) -> f64 {
    let mut total = 0f64;
    for block in values.chunks(1024) {
        let mut lanes = [0f32; 8];
        let mut it = block.chunks_exact(8);
        for v in &mut it {
            for k in 0..8 {
                lanes[k] += f(v[k]);
            }
        }
        total +=
            lanes.iter().map(|&v| v as f64).sum::<f64>() + it.remainder().iter().map(|&v| f(v) as f64).sum::<f64>();
    }
    total
}

widest! {
    /// `dst = (src - centre) * a + b`, then SiLU when `silu`. Centring first keeps the digits of a channel
    /// whose mean is large next to its spread (`a * src + (b - centre * a)` cancels them away).
    fn activate(dst: &mut [f32], src: &[f32], centre: f32, a: f32, b: f32, silu: bool) {
        if silu {
            for (y, &v) in dst.iter_mut().zip(src) {
                let z = (v - centre) * a + b;
                *y = z * sigmoid(z);
            }
        } else {
            for (y, &v) in dst.iter_mut().zip(src) {
                *y = (v - centre) * a + b;
            }
        }
    }
}

/// Normalise with the batch statistics, scale and shift, activate.
fn forward(x: &FlexTensor, ch: &Channels) -> FlexTensor {
    let per_channel: Vec<[f32; 3]> =
        (0..ch.gamma.len()).map(|k| [ch.mean[k], ch.gamma[k] * ch.inv_std[k], ch.beta[k]]).collect();
    affine(x, &per_channel, ch.silu)
}

/// `(x - centre[c]) * a[c] + b[c]` for `[centre, a, b]` per channel, then SiLU when `silu`, one plane per
/// task.
fn affine(x: &FlexTensor, per_channel: &[[f32; 3]], silu: bool) -> FlexTensor {
    let plane = plane_len(x);
    let src = values(x);
    let mut out = vec![0f32; src.len()];
    out.par_chunks_mut(plane).zip(src.par_chunks(plane)).enumerate().with_min_len(min_planes(plane)).for_each(
        |(p, (dst, src))| {
            let [centre, a, b] = per_channel[p % per_channel.len()];
            activate(dst, src, centre, a, b, silu);
        },
    );
    tensor(out, x.layout().shape().clone())
}

/// Gradients of input (when wanted), weight and bias. With `z` the BatchNorm output, `dz` the gradient
/// reaching it (through SiLU's derivative `s * (1 + z * (1 - s))` when fused) and `x^ = (x - mean) / std`:
/// `dbeta = sum dz`, `dgamma = sum dz * x^`, `dx = gamma / std * (dz - dbeta / N - x^ * dgamma / N)`.
fn backward(x: &FlexTensor, grad: &FlexTensor, ch: &Channels, want_dx: bool) -> (Option<Vec<f32>>, Vec<f32>, Vec<f32>) {
    let plane = plane_len(x);
    let (src, g) = (values(x), values(grad));
    let c = ch.gamma.len();
    // With SiLU, `dz` is computed once here and kept in the input-gradient buffer for the second pass.
    let mut dz = if ch.silu || want_dx { vec![0f32; src.len()] } else { Vec::new() };
    let sums: Vec<(f64, f64)> = if ch.silu {
        dz.par_chunks_mut(plane)
            .zip(src.par_chunks(plane).zip(g.par_chunks(plane)))
            .enumerate()
            .with_min_len(min_planes(plane))
            .map(|(p, (dz, (x, g)))| {
                let k = p % c;
                silu_gradient(dz, x, g, [ch.mean[k], ch.inv_std[k], ch.gamma[k], ch.beta[k]]);
                plane_sums(dz, x, ch.mean[k], ch.inv_std[k])
            })
            .collect()
    } else {
        g.par_chunks(plane)
            .zip(src.par_chunks(plane))
            .enumerate()
            .with_min_len(min_planes(plane))
            .map(|(p, (g, x))| plane_sums(g, x, ch.mean[p % c], ch.inv_std[p % c]))
            .collect()
    };
    let batch = sums.len() / c;
    let (mut dgamma, mut dbeta) = (vec![0f32; c], vec![0f32; c]);
    for k in 0..c {
        let (db, dg) = (0..batch).map(|b| sums[b * c + k]).fold((0.0, 0.0), |(a, b), (x, y)| (a + x, b + y));
        dbeta[k] = db as f32;
        dgamma[k] = dg as f32;
    }
    if !want_dx {
        return (None, dgamma, dbeta);
    }
    let n = (batch * plane) as f32;
    let mut dx = dz;
    dx.par_chunks_mut(plane).zip(src.par_chunks(plane)).enumerate().with_min_len(min_planes(plane)).for_each(
        |(p, (dx, x))| {
            let k = p % c;
            let a = ch.gamma[k] * ch.inv_std[k];
            // dx = a * dz - a / N * dbeta - a / N * dgamma * inv_std * (x - mean)
            let (mean, slope, offset) = (ch.mean[k], a * dgamma[k] * ch.inv_std[k] / n, a * dbeta[k] / n);
            // With SiLU, `dx` already holds its `dz`; without, the upstream gradient is `dz`.
            let upstream = (!ch.silu).then(|| &g[p * plane..][..plane]);
            input_gradient(dx, x, upstream, [a, mean, slope, offset]);
        },
    );
    (Some(dx), dgamma, dbeta)
}

widest! {
    /// `dz = g * s * (1 + z * (1 - s))`, SiLU's derivative at the BatchNorm output `z` (recomputed from `x`
    /// with the channel's `[mean, inv_std, gamma, beta]`), `s = sigmoid(z)`.
    fn silu_gradient(dz: &mut [f32], x: &[f32], g: &[f32], channel: [f32; 4]) {
        let [mean, inv_std, gamma, beta] = channel;
        for ((d, &v), &g) in dz.iter_mut().zip(x).zip(g) {
            let z = (v - mean) * (inv_std * gamma) + beta;
            let s = sigmoid(z);
            *d = g * s * (1.0 + z * (1.0 - s));
        }
    }
}

widest! {
    /// `dx = a * dz - offset - slope * (x - mean)` for `[a, mean, slope, offset]`, `dz` the upstream
    /// gradient, or `dx`'s own values without one (SiLU's derivative already applied there).
    fn input_gradient(dx: &mut [f32], x: &[f32], upstream: Option<&[f32]>, coefficients: [f32; 4]) {
        let [a, mean, slope, offset] = coefficients;
        match upstream {
            None => {
                for (d, &v) in dx.iter_mut().zip(x) {
                    *d = a * *d - offset - slope * (v - mean);
                }
            }
            Some(upstream) => {
                for ((d, &v), &g) in dx.iter_mut().zip(x).zip(upstream) {
                    *d = a * g - offset - slope * (v - mean);
                }
            }
        }
    }
}

widest! {
    /// `(sum dz, sum dz * x^)` over one plane.
    fn plane_sums(dz: &[f32], x: &[f32], mean: f32, inv_std: f32) -> (f64, f64) {
        let (mut s, mut sx) = (0f64, 0f64);
        for (dz, x) in dz.chunks(1024).zip(x.chunks(1024)) {
            let (mut ls, mut lx) = ([0f32; 8], [0f32; 8]);
            let (mut a, mut b) = (dz.chunks_exact(8), x.chunks_exact(8));
            for (d, v) in (&mut a).zip(&mut b) {
                for k in 0..8 {
                    ls[k] += d[k];
                    lx[k] += d[k] * ((v[k] - mean) * inv_std);
                }
            }
            for (&d, &v) in a.remainder().iter().zip(b.remainder()) {
                s += d as f64;
                sx += (d * ((v - mean) * inv_std)) as f64;
            }
            s += ls.iter().map(|&v| v as f64).sum::<f64>();
            sx += lx.iter().map(|&v| v as f64).sum::<f64>();
        }
        (s, sx)
    }
}
