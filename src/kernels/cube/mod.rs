//! Kernels of ember's own for burn's CubeCL backends (CUDA and Vulkan alike: one source, compiled by cubecl
//! for each), reached from code generic over burn's backend through the `try_*` functions here, which
//! answer `None` on every other backend.

pub mod batchnorm;
pub mod columns;

use burn::tensor::backend::Backend;
use burn::tensor::ops::FloatTensor;
use burn::tensor::{Tensor, TensorPrimitive};
use burn_cubecl::tensor::CubeTensor;
use burn_cubecl::CubeRuntime;

use crate::kernels::retype;

/// `$on::<T, R>(args)` for each CubeCL runtime compiled in (Vulkan's, then CUDA's): the first `Some`.
macro_rules! on_cube_runtimes {
    ($on:ident::<$ty:ty>($($arg:expr),* $(,)?)) => {{
        let out = None;
        #[cfg(feature = "vulkan")]
        let out = out.or_else(|| $on::<$ty, ::cubecl::wgpu::WgpuRuntime>($($arg),*));
        #[cfg(feature = "cuda")]
        let out = out.or_else(|| $on::<$ty, ::cubecl::cuda::CudaRuntime>($($arg),*));
        out
    }};
}

/// Training BatchNorm's forward (then SiLU when `silu`) on `I`'s primitives, when `I` is a CubeCL backend:
/// the output, the batch mean and inverse deviation, and the running mean and variance (`running`, with the
/// momentum) updated, all FP32 `[c]`.
pub fn try_batch_norm_forward<I: Backend>(
    x: &FloatTensor<I>,
    [gamma, beta]: [&FloatTensor<I>; 2],
    running: (&FloatTensor<I>, &FloatTensor<I>, f64),
    eps: f64,
    silu: bool,
) -> Option<(FloatTensor<I>, [FloatTensor<I>; 4])> {
    fn on<I: Backend, R: CubeRuntime>(
        x: &FloatTensor<I>,
        vectors: [&FloatTensor<I>; 4],
        momentum: f64,
        eps: f64,
        silu: bool,
    ) -> Option<(FloatTensor<I>, [FloatTensor<I>; 4])> {
        let x: CubeTensor<R> = retype(x.clone())?;
        let [gamma, beta, mean, var] = vectors.map(|v| retype::<_, CubeTensor<R>>(v.clone()));
        let (gamma, beta, mean, var) = (gamma?, beta?, mean?, var?);
        if !batchnorm::supported(&x, &[&gamma, &beta, &mean, &var]) {
            return None;
        }
        let running = batchnorm::Running { mean, var, momentum };
        let (y, s) = batchnorm::forward(x, gamma, beta, running, eps, silu);
        Some((retype(y)?, [retype(s.mean)?, retype(s.inv_std)?, retype(s.running_mean)?, retype(s.running_var)?]))
    }
    let (mean, var, momentum) = running;
    on_cube_runtimes!(on::<I>(x, [gamma, beta, mean, var], momentum, eps, silu))
}

/// Training BatchNorm's (and SiLU's) backward on `I`'s primitives: the gradients of `x`, gamma and beta from the
/// output's gradient and the forward's mean and inverse deviation, when `I` is a CubeCL backend.
pub fn try_batch_norm_backward<I: Backend>(
    x: &FloatTensor<I>,
    dy: &FloatTensor<I>,
    [mean, inv_std, gamma, beta]: [&FloatTensor<I>; 4],
    silu: bool,
) -> Option<[FloatTensor<I>; 3]> {
    fn on<I: Backend, R: CubeRuntime>(
        x: &FloatTensor<I>,
        dy: &FloatTensor<I>,
        vectors: [&FloatTensor<I>; 4],
        silu: bool,
    ) -> Option<[FloatTensor<I>; 3]> {
        let (x, dy): (CubeTensor<R>, CubeTensor<R>) = (retype(x.clone())?, retype(dy.clone())?);
        let [mean, inv_std, gamma, beta] = vectors.map(|v| retype::<_, CubeTensor<R>>(v.clone()));
        let (mean, inv_std, gamma, beta) = (mean?, inv_std?, gamma?, beta?);
        if dy.dtype != x.dtype
            || dy.meta.shape() != x.meta.shape()
            || !batchnorm::supported(&x, &[&mean, &inv_std, &gamma, &beta])
        {
            return None;
        }
        let (dx, dgamma, dbeta) = batchnorm::backward(x, dy, mean, inv_std, gamma, beta, silu);
        Some([retype(dx)?, retype(dgamma)?, retype(dbeta)?])
    }
    on_cube_runtimes!(on::<I>(x, dy, [mean, inv_std, gamma, beta], silu))
}

/// The im2col columns `[b, c * kh * kw, ho * wo]` of `x` for a `kernel` convolution, when `B` is a CubeCL
/// backend (not its autodiff: the definition's tensor operations carry the gradient there).
pub fn try_im2col<B: Backend>(
    x: &Tensor<B, 4>,
    kernel: [usize; 2],
    stride: usize,
    padding: usize,
) -> Option<Tensor<B, 3>> {
    let [_, _, h, w] = x.dims();
    let output = crate::kernels::columns::out_size([h, w], kernel, stride, padding);
    let g = columns::Geometry { input: x.dims(), kernel, stride, padding, output };
    if !crate::kernels::own_kernels() || !columns::supported(&g) {
        return None;
    }
    let x = x.clone().into_primitive().tensor();
    let out = on_cube_runtimes!(map::<B>(&x, |t| columns::im2col(t, &g)));
    out.map(|t| Tensor::from_primitive(TensorPrimitive::Float(t)))
}

/// The pixels `[b, c, h, w]` (`size`) the column gradients `[b, c * kh * kw, ho * wo]` sum to, when `B` is a
/// CubeCL backend.
pub fn try_col2im<B: Backend>(
    columns: &Tensor<B, 3>,
    size: [usize; 4],
    kernel: [usize; 2],
    stride: usize,
    padding: usize,
) -> Option<Tensor<B, 4>> {
    let output = crate::kernels::columns::out_size([size[2], size[3]], kernel, stride, padding);
    let g = columns::Geometry { input: size, kernel, stride, padding, output };
    if !crate::kernels::own_kernels() || !columns::supported(&g) {
        return None;
    }
    let c = columns.clone().into_primitive().tensor();
    let out = on_cube_runtimes!(map::<B>(&c, |t| columns::col2im(t, &g)));
    out.map(|t| Tensor::from_primitive(TensorPrimitive::Float(t)))
}

/// `kernel` of `t`, when `B`'s primitive is runtime `R`'s tensor.
fn map<B: Backend, R: CubeRuntime>(
    t: &FloatTensor<B>,
    kernel: impl FnOnce(CubeTensor<R>) -> CubeTensor<R>,
) -> Option<FloatTensor<B>> {
    retype(kernel(retype(t.clone())?))
}
