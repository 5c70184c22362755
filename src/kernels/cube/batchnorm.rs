//! Training-mode BatchNorm, then SiLU when asked, forward and backward, as CubeCL kernels for CUDA and
//! Vulkan: three launches each way where burn's tensor operations launch about forty (per-channel
//! reductions, a dozen elementwise passes, casts), which is most of a training step's kernel count.
//!
//! Each direction is a per-channel reduction in two stages (chunks of a channel summed by a cube each,
//! then one unit per channel adding its chunks in a fixed order, so the sums do not depend on scheduling)
//! and one elementwise pass; the forward's per-channel stage also updates the running statistics. Sums are
//! FP32 whatever the activation's dtype. The forward sums `x - k` and `(x - k)^2` with `k` the channel's
//! first value, so the variance is not the difference of two large sums. The values are those of the generic
//! definition in `kernels::autodiff::batchnorm`, against which tests/it/vulkan.rs tests them.

use burn::tensor::{DType, Shape};
use burn_cubecl::cubecl;
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::ops::numeric::empty_device_dtype;
use burn_cubecl::tensor::CubeTensor;
use burn_cubecl::CubeRuntime;
use cubecl::calculate_cube_count_elemwise;
use cubecl::prelude::*;

/// Units of a cube: the most every Vulkan device allows (wgpu's default limit).
const BLOCK: u32 = 256;
/// At most this many chunks a channel: enough cubes to fill a large GPU for the first layers' few channels.
const MAX_CHUNKS: usize = 64;
/// Elements a unit sums at least, so that small tensors take one chunk.
const PER_UNIT: usize = 16;

/// `1 / (1 + e^-z)`.
#[cube]
fn sigmoid(z: f32) -> f32 {
    1.0f32 / (1.0f32 + f32::exp(-z))
}

/// The derivative of the output with respect to the BatchNorm's affine output `z`, given the output's
/// gradient `dy`: SiLU's `s * (1 + z * (1 - s))`, or 1.
#[cube]
fn through_silu(dy: f32, z: f32, #[comptime] silu: bool) -> f32 {
    if silu {
        let s = sigmoid(z);
        dy * s * (1.0f32 + z * (1.0f32 - s))
    } else {
        dy
    }
}

/// One value's `x_hat = (x - mean) * inv_std` and the gradient `dz` at its affine output `x_hat * gamma + beta`.
#[cube]
fn normalised_and_gradient(
    x: f32,
    dy: f32,
    mean: f32,
    inv_std: f32,
    gamma: f32,
    beta: f32,
    #[comptime] silu: bool,
) -> (f32, f32) {
    let x_hat = (x - mean) * inv_std;
    (x_hat, through_silu(dy, x_hat * gamma + beta, silu))
}

/// Adds `a` and `b` over the cube's units in shared memory; unit 0 ends with the totals.
#[cube]
fn cube_sums(a: f32, b: f32) -> (f32, f32) {
    let mut sa = SharedMemory::<f32>::new(BLOCK as usize);
    let mut sb = SharedMemory::<f32>::new(BLOCK as usize);
    let unit = UNIT_POS as usize;
    sa[unit] = a;
    sb[unit] = b;
    sync_cube();
    let mut stride = CUBE_DIM as usize / 2;
    while stride > 0 {
        if unit < stride {
            sa[unit] = sa[unit] + sa[unit + stride];
            sb[unit] = sb[unit] + sb[unit + stride];
        }
        sync_cube();
        stride /= 2;
    }
    (sa[0], sb[0])
}

/// The chunk `CUBE_POS_X` of channel `CUBE_POS_Y`: `[first, end)` of its `count` values.
#[cube]
fn chunk_range(count: usize, chunk_len: usize) -> (usize, usize) {
    let first = CUBE_POS_X as usize * chunk_len;
    let mut end = first + chunk_len;
    if end > count {
        end = count;
    }
    (first, end)
}

/// The offset in NCHW of value `i` of channel `c`, counting the batch's planes one after another.
#[cube]
fn offset(i: usize, c: usize, channels: usize, plane: usize) -> usize {
    let (n, p) = (i / plane, i % plane);
    (n * channels + c) * plane + p
}

/// Per chunk of a channel: the sums of `x - k` and of its square, and `k`, the channel's first value.
#[cube(launch)]
fn statistics_partials<F: Float>(
    x: &Tensor<F>,
    partials: &mut Tensor<f32>,
    channels: u32,
    plane: u32,
    chunk_len: u32,
    #[define(F)] _dtype: StorageType,
) {
    let (c, channels, plane) = (CUBE_POS_Y as usize, channels as usize, plane as usize);
    let count = x.len() / channels;
    let (first, end) = chunk_range(count, chunk_len as usize);
    let shift = f32::cast_from(x[c * plane]);
    let mut s1 = 0.0f32;
    let mut s2 = 0.0f32;
    let mut i = first + UNIT_POS as usize;
    while i < end {
        let d = f32::cast_from(x[offset(i, c, channels, plane)]) - shift;
        s1 += d;
        s2 += d * d;
        i += BLOCK as usize;
    }
    let (s1, s2) = cube_sums(s1, s2);
    if UNIT_POS == 0 {
        let slot = (c * CUBE_COUNT_X as usize + CUBE_POS_X as usize) * 3;
        partials[slot] = s1;
        partials[slot + 1] = s2;
        partials[slot + 2] = shift;
    }
}

/// Per channel, from the chunks' shifted sums: the mean, `1 / sqrt(var + eps)` (biased variance), and the
/// running mean and variance updated with them (`(1 - momentum) * running + momentum * batch`, the batch
/// variance unbiased as PyTorch keeps it).
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn statistics_finish(
    partials: &Tensor<f32>,
    running_mean: &Tensor<f32>,
    running_var: &Tensor<f32>,
    mean: &mut Tensor<f32>,
    inv_std: &mut Tensor<f32>,
    new_running_mean: &mut Tensor<f32>,
    new_running_var: &mut Tensor<f32>,
    channels: u32,
    count: u32,
    chunks: u32,
    eps: f32,
    momentum: f32,
    unbiased: f32,
) {
    let c = ABSOLUTE_POS;
    if c >= channels as usize {
        terminate!();
    }
    let count = f32::cast_from(count);
    let mut s1 = 0.0f32;
    let mut s2 = 0.0f32;
    for k in 0..chunks as usize {
        let slot = (c * chunks as usize + k) * 3;
        s1 += partials[slot];
        s2 += partials[slot + 1];
    }
    let m = s1 / count;
    let mut v = s2 / count - m * m;
    if v < 0.0f32 {
        v = 0.0f32;
    }
    let batch_mean = partials[c * chunks as usize * 3 + 2] + m;
    mean[c] = batch_mean;
    inv_std[c] = 1.0f32 / f32::sqrt(v + eps);
    new_running_mean[c] = (1.0f32 - momentum) * running_mean[c] + momentum * batch_mean;
    new_running_var[c] = (1.0f32 - momentum) * running_var[c] + momentum * (v * unbiased);
}

/// `silu((x - mean) * inv_std * gamma + beta)` (or without SiLU), in `x`'s dtype.
#[cube(launch)]
fn normalise<F: Float>(
    x: &Tensor<F>,
    mean: &Tensor<f32>,
    inv_std: &Tensor<f32>,
    gamma: &Tensor<f32>,
    beta: &Tensor<f32>,
    y: &mut Tensor<F>,
    channels: u32,
    plane: u32,
    #[comptime] silu: bool,
    #[define(F)] _dtype: StorageType,
) {
    let i = ABSOLUTE_POS;
    if i >= x.len() {
        terminate!();
    }
    let c = (i / plane as usize) % channels as usize;
    let z = (f32::cast_from(x[i]) - mean[c]) * inv_std[c] * gamma[c] + beta[c];
    let out = if silu { z * sigmoid(z) } else { z };
    y[i] = F::cast_from(out);
}

/// Per chunk of a channel: the sums of `dz` and `dz * x_hat`, `dz` the gradient at the affine output.
#[cube(launch)]
fn gradient_partials<F: Float>(
    x: &Tensor<F>,
    dy: &Tensor<F>,
    mean: &Tensor<f32>,
    inv_std: &Tensor<f32>,
    gamma: &Tensor<f32>,
    beta: &Tensor<f32>,
    partials: &mut Tensor<f32>,
    channels: u32,
    plane: u32,
    chunk_len: u32,
    #[comptime] silu: bool,
    #[define(F)] _dtype: StorageType,
) {
    let (c, channels, plane) = (CUBE_POS_Y as usize, channels as usize, plane as usize);
    let count = x.len() / channels;
    let (first, end) = chunk_range(count, chunk_len as usize);
    let (m, s, g, b) = (mean[c], inv_std[c], gamma[c], beta[c]);
    let mut sum_dz = 0.0f32;
    let mut sum_dz_xhat = 0.0f32;
    let mut i = first + UNIT_POS as usize;
    while i < end {
        let at = offset(i, c, channels, plane);
        let (x_hat, dz) = normalised_and_gradient(f32::cast_from(x[at]), f32::cast_from(dy[at]), m, s, g, b, silu);
        sum_dz += dz;
        sum_dz_xhat += dz * x_hat;
        i += BLOCK as usize;
    }
    let (a, b2) = cube_sums(sum_dz, sum_dz_xhat);
    if UNIT_POS == 0 {
        let slot = (c * CUBE_COUNT_X as usize + CUBE_POS_X as usize) * 2;
        partials[slot] = a;
        partials[slot + 1] = b2;
    }
}

/// Per channel: beta's gradient (the sum of `dz`) and gamma's (the sum of `dz * x_hat`).
#[cube(launch)]
fn gradient_finish(
    partials: &Tensor<f32>,
    dgamma: &mut Tensor<f32>,
    dbeta: &mut Tensor<f32>,
    channels: u32,
    chunks: u32,
) {
    let c = ABSOLUTE_POS;
    if c >= channels as usize {
        terminate!();
    }
    let mut sum_dz = 0.0f32;
    let mut sum_dz_xhat = 0.0f32;
    for k in 0..chunks as usize {
        let slot = (c * chunks as usize + k) * 2;
        sum_dz += partials[slot];
        sum_dz_xhat += partials[slot + 1];
    }
    dbeta[c] = sum_dz;
    dgamma[c] = sum_dz_xhat;
}

/// `dx = gamma * inv_std * (dz - mean(dz) - x_hat * mean(dz * x_hat))`, in `x`'s dtype.
#[cube(launch)]
fn input_gradient<F: Float>(
    x: &Tensor<F>,
    dy: &Tensor<F>,
    mean: &Tensor<f32>,
    inv_std: &Tensor<f32>,
    gamma: &Tensor<f32>,
    beta: &Tensor<f32>,
    dgamma: &Tensor<f32>,
    dbeta: &Tensor<f32>,
    dx: &mut Tensor<F>,
    channels: u32,
    plane: u32,
    inv_count: f32,
    #[comptime] silu: bool,
    #[define(F)] _dtype: StorageType,
) {
    let i = ABSOLUTE_POS;
    if i >= x.len() {
        terminate!();
    }
    let c = (i / plane as usize) % channels as usize;
    let (x_hat, dz) = normalised_and_gradient(
        f32::cast_from(x[i]),
        f32::cast_from(dy[i]),
        mean[c],
        inv_std[c],
        gamma[c],
        beta[c],
        silu,
    );
    let centered = dz - dbeta[c] * inv_count - x_hat * (dgamma[c] * inv_count);
    dx[i] = F::cast_from(centered * gamma[c] * inv_std[c]);
}

/// The batch statistics of the forward and the running ones updated, FP32 `[c]` each.
pub struct Statistics<R: CubeRuntime> {
    /// The batch mean.
    pub mean: CubeTensor<R>,
    /// `1 / sqrt(var + eps)`, the batch variance biased.
    pub inv_std: CubeTensor<R>,
    /// The running mean after this batch.
    pub running_mean: CubeTensor<R>,
    /// The running variance after this batch.
    pub running_var: CubeTensor<R>,
}

/// A BatchNorm's running statistics before the batch, and the weight of the batch's.
pub struct Running<R: CubeRuntime> {
    /// Running mean.
    pub mean: CubeTensor<R>,
    /// Running (unbiased) variance.
    pub var: CubeTensor<R>,
    /// `running = (1 - momentum) * running + momentum * batch`.
    pub momentum: f64,
}

/// The shape of a contiguous NCHW activation for the kernels.
struct Layout {
    channels: usize,
    plane: usize,
    /// Values a channel holds, `n * h * w`.
    count: usize,
    chunks: usize,
    chunk_len: usize,
}

impl Layout {
    fn of<R: CubeRuntime>(x: &CubeTensor<R>) -> Layout {
        let dims = x.meta.shape().to_vec();
        let [n, channels, h, w] = [dims[0], dims[1], dims[2], dims[3]];
        let (plane, count) = (h * w, n * h * w);
        let chunks = count.div_ceil(BLOCK as usize * PER_UNIT).clamp(1, MAX_CHUNKS);
        Layout { channels, plane, count, chunks, chunk_len: count.div_ceil(chunks) }
    }

    /// One cube per chunk of each channel.
    fn per_chunk(&self) -> (CubeCount, CubeDim) {
        (CubeCount::Static(self.chunks as u32, self.channels as u32, 1), CubeDim::new_1d(BLOCK))
    }

    /// One unit per channel.
    fn per_channel<R: CubeRuntime>(&self, client: &ComputeClient<R>) -> (CubeCount, CubeDim) {
        let dim = CubeDim::new(client, self.channels);
        (calculate_cube_count_elemwise(client, self.channels, dim), dim)
    }

    /// One unit per value.
    fn per_value<R: CubeRuntime>(&self, client: &ComputeClient<R>) -> (CubeCount, CubeDim) {
        let values = self.count * self.channels;
        let dim = CubeDim::new(client, values);
        (calculate_cube_count_elemwise(client, values, dim), dim)
    }
}

fn empty_f32<R: CubeRuntime>(like: &CubeTensor<R>, len: usize) -> CubeTensor<R> {
    empty_device_dtype(like.client.clone(), like.device.clone(), Shape::new([len]), DType::F32)
}

fn empty_like<R: CubeRuntime>(x: &CubeTensor<R>) -> CubeTensor<R> {
    empty_device_dtype(x.client.clone(), x.device.clone(), x.meta.shape().clone(), x.dtype)
}

/// Whether the kernels take these operands: a 4-d FP32 or FP16 activation (32-bit indices, at most 65,535
/// channels: a cube count's second axis) and FP32 per-channel vectors.
pub fn supported<R: CubeRuntime>(x: &CubeTensor<R>, vectors: &[&CubeTensor<R>]) -> bool {
    let int32 = |n: usize| u32::try_from(n).is_ok();
    x.meta.shape().len() == 4
        && matches!(x.dtype, DType::F32 | DType::F16)
        && int32(x.meta.num_elements())
        && x.meta.shape()[1] <= u16::MAX as usize
        && x.meta.shape().iter().all(|&d| d > 0)
        && vectors.iter().all(|v| v.dtype == DType::F32 && v.meta.num_elements() == x.meta.shape()[1])
}

/// The training forward: the output (in `x`'s dtype) and the statistics. `x` is NCHW.
pub fn forward<R: CubeRuntime>(
    x: CubeTensor<R>,
    gamma: CubeTensor<R>,
    beta: CubeTensor<R>,
    running: Running<R>,
    eps: f64,
    silu: bool,
) -> (CubeTensor<R>, Statistics<R>) {
    let [x, gamma, beta, running_mean, running_var] = [x, gamma, beta, running.mean, running.var].map(into_contiguous);
    let layout = Layout::of(&x);
    let client = x.client.clone();
    let dtype: StorageType = x.dtype.into();
    let partials = empty_f32(&x, layout.channels * layout.chunks * 3);
    let (count, dim) = layout.per_chunk();
    statistics_partials::launch(
        &client,
        count,
        dim,
        x.clone().into_tensor_arg(),
        partials.clone().into_tensor_arg(),
        layout.channels as u32,
        layout.plane as u32,
        layout.chunk_len as u32,
        dtype,
    );
    let stats = Statistics {
        mean: empty_f32(&x, layout.channels),
        inv_std: empty_f32(&x, layout.channels),
        running_mean: empty_f32(&x, layout.channels),
        running_var: empty_f32(&x, layout.channels),
    };
    let (count, dim) = layout.per_channel(&client);
    statistics_finish::launch(
        &client,
        count,
        dim,
        partials.into_tensor_arg(),
        running_mean.into_tensor_arg(),
        running_var.into_tensor_arg(),
        stats.mean.clone().into_tensor_arg(),
        stats.inv_std.clone().into_tensor_arg(),
        stats.running_mean.clone().into_tensor_arg(),
        stats.running_var.clone().into_tensor_arg(),
        layout.channels as u32,
        layout.count as u32,
        layout.chunks as u32,
        eps as f32,
        running.momentum as f32,
        // The batch variance unbiased: n / (n - 1).
        (layout.count as f64 / (layout.count.max(2) - 1) as f64) as f32,
    );
    let y = empty_like(&x);
    let (count, dim) = layout.per_value(&client);
    normalise::launch(
        &client,
        count,
        dim,
        x.into_tensor_arg(),
        stats.mean.clone().into_tensor_arg(),
        stats.inv_std.clone().into_tensor_arg(),
        gamma.into_tensor_arg(),
        beta.into_tensor_arg(),
        y.clone().into_tensor_arg(),
        layout.channels as u32,
        layout.plane as u32,
        silu,
        dtype,
    );
    (y, stats)
}

/// The gradients of `x` (in its dtype), gamma and beta, given the output's gradient `dy` and the
/// forward's mean and inverse deviation.
#[allow(clippy::too_many_arguments)]
pub fn backward<R: CubeRuntime>(
    x: CubeTensor<R>,
    dy: CubeTensor<R>,
    mean: CubeTensor<R>,
    inv_std: CubeTensor<R>,
    gamma: CubeTensor<R>,
    beta: CubeTensor<R>,
    silu: bool,
) -> (CubeTensor<R>, CubeTensor<R>, CubeTensor<R>) {
    let [x, dy, mean, inv_std, gamma, beta] = [x, dy, mean, inv_std, gamma, beta].map(into_contiguous);
    let layout = Layout::of(&x);
    let client = x.client.clone();
    let dtype: StorageType = x.dtype.into();
    let partials = empty_f32(&x, layout.channels * layout.chunks * 2);
    let (count, dim) = layout.per_chunk();
    gradient_partials::launch(
        &client,
        count,
        dim,
        x.clone().into_tensor_arg(),
        dy.clone().into_tensor_arg(),
        mean.clone().into_tensor_arg(),
        inv_std.clone().into_tensor_arg(),
        gamma.clone().into_tensor_arg(),
        beta.clone().into_tensor_arg(),
        partials.clone().into_tensor_arg(),
        layout.channels as u32,
        layout.plane as u32,
        layout.chunk_len as u32,
        silu,
        dtype,
    );
    let (dgamma, dbeta) = (empty_f32(&x, layout.channels), empty_f32(&x, layout.channels));
    let (count, dim) = layout.per_channel(&client);
    gradient_finish::launch(
        &client,
        count,
        dim,
        partials.into_tensor_arg(),
        dgamma.clone().into_tensor_arg(),
        dbeta.clone().into_tensor_arg(),
        layout.channels as u32,
        layout.chunks as u32,
    );
    let dx = empty_like(&x);
    let (count, dim) = layout.per_value(&client);
    input_gradient::launch(
        &client,
        count,
        dim,
        x.into_tensor_arg(),
        dy.into_tensor_arg(),
        mean.into_tensor_arg(),
        inv_std.into_tensor_arg(),
        gamma.into_tensor_arg(),
        beta.into_tensor_arg(),
        dgamma.clone().into_tensor_arg(),
        dbeta.clone().into_tensor_arg(),
        dx.clone().into_tensor_arg(),
        layout.channels as u32,
        layout.plane as u32,
        (1.0 / layout.count as f64) as f32,
        silu,
        dtype,
    );
    (dx, dgamma, dbeta)
}
