//! Convolution training on burn-flex with faster gradients.
//!
//! burn computes a convolution's weight gradient as another convolution whose "kernel" is the output
//! gradient (as large as the image) and, for grouped convolutions, one such convolution per group: on
//! flex that made the backward pass 4-14x the forward (BENCHMARKS.md). Here the weight gradient of a
//! dense convolution is one matrix product per image, `dY_b [co, L] x im2col(X_b)^T [L, ci*k*k]`,
//! summed over images split across threads, and a depthwise convolution's weight and input gradients
//! are direct loops over each channel's plane. A dense input gradient is `W^T x dY` per image followed by
//! col2im (burn: a transposed convolution), added to the input's other gradients on all threads.
//!
//! Dense forwards are im2col x `gemm` per image, written straight into NCHW (flex converts to NHWC and
//! back); a 1x1 convolution skips im2col (the image is its own). Below 40x40 output pixels the images run
//! in parallel, one `gemm` each. FP32 dense, pointwise and depthwise convolutions on flex come here (the
//! caller adds any bias; inference uses the dense forward only, flex's depthwise kernel being fast);
//! everything else takes burn's path. `EMBER_BURN_KERNELS=1` turns off this module and ember's other
//! flex kernels, to compare or to rule them out.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::tensor::backend::{Backend, BackendTypes};
use burn::tensor::ops::{ConvOptions, ModuleOps};
use burn::tensor::{Tensor, TensorPrimitive};
use burn_flex::FlexTensor;
use rayon::prelude::*;

use super::wide::widest;
use super::{add_into, on_flex, register_input_grad, retype, tensor, values, On};
use crate::backend::{Cpu, CpuAutodiff};

/// Shapes of one convolution (square kernel, equal stride and padding in both axes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvGeometry {
    /// Images in the batch.
    pub batch: usize,
    /// Input channels.
    pub c_in: usize,
    /// Input height (rows of each plane), before padding.
    pub h: usize,
    /// Input width (columns of each plane), before padding.
    pub w: usize,
    /// Output channels.
    pub c_out: usize,
    /// Kernel side: the kernel is `kernel x kernel`.
    pub kernel: usize,
    /// Stride, the same along both axes.
    pub stride: usize,
    /// Zero padding on each side, the same along both axes.
    pub padding: usize,
    /// Convolution groups: 1 (dense) or `c_in == c_out` (depthwise); [`try_conv2d`] declines any other.
    pub groups: usize,
}

impl ConvGeometry {
    /// Output height: `(h + 2 * padding - kernel) / stride + 1` (no dilation).
    pub fn out_h(&self) -> usize {
        (self.h + 2 * self.padding - self.kernel) / self.stride + 1
    }
    /// Output width: `(w + 2 * padding - kernel) / stride + 1` (no dilation).
    pub fn out_w(&self) -> usize {
        (self.w + 2 * self.padding - self.kernel) / self.stride + 1
    }
    /// A 1x1 convolution is a matrix product per image: its im2col is the image itself.
    fn is_pointwise(&self) -> bool {
        self.kernel == 1 && self.stride == 1 && self.padding == 0 && self.groups == 1
    }
    fn is_depthwise(&self) -> bool {
        self.groups > 1 && self.groups == self.c_in && self.groups == self.c_out
    }
    fn options(&self) -> ConvOptions<2> {
        ConvOptions::new([self.stride; 2], [self.padding; 2], [1, 1], self.groups)
    }
}

/// The convolution of `x` with `weight` when this module handles it (FP32; on `Autodiff<Flex>` dense,
/// pointwise or depthwise, on `Flex` dense or pointwise), else `None` and the caller runs burn's.
pub fn try_conv2d<B: Backend>(
    x: &Tensor<B, 4>,
    weight: &Tensor<B, 4>,
    stride: usize,
    padding: usize,
    groups: usize,
) -> Option<Tensor<B, 4>> {
    let inference = on_flex::<B>(&[x.dtype(), weight.dtype()])? == On::Inference;
    let [batch, c_in, h, w] = x.dims();
    let [c_out, c_per_group, kh, kw] = weight.dims();
    let geometry = ConvGeometry { batch, c_in, h, w, c_out, kernel: kh, stride, padding, groups };
    if kh != kw || !(groups == 1 || geometry.is_depthwise() && c_per_group == 1) {
        return None;
    }
    if inference {
        if geometry.is_depthwise() {
            return None; // flex's direct depthwise kernel is already the fast one
        }
        let x = retype::<_, Tensor<Cpu, 4>>(x.clone())?.into_primitive().tensor();
        let weight = retype::<_, Tensor<Cpu, 4>>(weight.clone())?.into_primitive().tensor();
        return retype(Tensor::<Cpu, 4>::from_primitive(TensorPrimitive::Float(dense_forward(&x, &weight, &geometry))));
    }
    let y = conv2d_autodiff(retype(x.clone())?, retype(weight.clone())?, geometry);
    retype(y)
}

#[derive(Debug)]
struct ConvBackward;

impl Backward<Cpu, 2> for ConvBackward {
    /// Input (with its autodiff node, to accumulate its gradient), weight, geometry.
    type State = (<CpuAutodiff as BackendTypes>::FloatTensorPrimitive, FlexTensor, ConvGeometry);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let [node_x, node_weight] = ops.parents;
        let grad = grads.consume::<Cpu>(&ops.node);
        let (x, weight, g) = ops.state;
        if let Some(node) = node_weight {
            grads.register::<Cpu>(node.id, weight_grad(&x.primitive, &grad, &g));
        }
        if node_x.is_some() {
            let dx = if g.is_depthwise() {
                depthwise_input_grad(&weight, &grad, &g)
            } else {
                dense_input_grad(&weight, &grad, &g)
            };
            register_input_grad(grads, &x, dx);
        }
    }
}

fn conv2d_autodiff(
    x: Tensor<CpuAutodiff, 4>,
    weight: Tensor<CpuAutodiff, 4>,
    g: ConvGeometry,
) -> Tensor<CpuAutodiff, 4> {
    let x = x.into_primitive().tensor();
    let weight = weight.into_primitive().tensor();
    let y =
        match ConvBackward.prepare::<NoCheckpointing>([x.node.clone(), weight.node.clone()]).compute_bound().stateful()
        {
            OpsKind::Tracked(prep) => {
                let y = forward(&x.primitive, &weight.primitive, &g);
                prep.finish((x, weight.primitive, g), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(forward(&x.primitive, &weight.primitive, &g)),
        };
    Tensor::from_primitive(TensorPrimitive::Float(y))
}

/// Depthwise: flex's own direct kernel; dense: im2col x gemm.
fn forward(x: &FlexTensor, weight: &FlexTensor, g: &ConvGeometry) -> FlexTensor {
    if g.is_depthwise() {
        Cpu::conv2d(x.clone(), weight.clone(), None, g.options())
    } else {
        dense_forward(x, weight, g)
    }
}

/// `dL/dW` for a dense or depthwise convolution.
pub fn weight_grad(x: &FlexTensor, dy: &FlexTensor, g: &ConvGeometry) -> FlexTensor {
    let (x, dy) = (values(x), values(dy));
    if g.is_depthwise() {
        tensor(depthwise_weight_grad(&x, &dy, g), [g.c_out, 1, g.kernel, g.kernel])
    } else {
        tensor(dense_weight_grad(&x, &dy, g), [g.c_out, g.c_in, g.kernel, g.kernel])
    }
}

/// One image's im2col as `[ci*k*k, L]`: row `(c, i, j)` holds the input pixel that tap sees at every
/// output position (zero in the padding), so stride-1 rows are shifted copies of input rows. Every
/// element is written, so the buffer can be reused.
fn im2col(cols: &mut [f32], image: &[f32], g: &ConvGeometry) {
    let k = g.kernel;
    let (ho, wo) = (g.out_h(), g.out_w());
    cols.par_chunks_mut(ho * wo).enumerate().for_each(|(tap, dst)| {
        let (c, i, j) = (tap / (k * k), tap / k % k, tap % k);
        let plane = &image[c * g.h * g.w..][..g.h * g.w];
        let (lo, hi) = valid_outputs(j, g.padding, g.stride, g.w, wo);
        for oy in 0..ho {
            let out = &mut dst[oy * wo..][..wo];
            let row = (oy * g.stride + i).checked_sub(g.padding).filter(|&iy| iy < g.h);
            let Some(iy) = row.filter(|_| lo < hi) else {
                out.fill(0.0);
                continue;
            };
            let row = &plane[iy * g.w..][..g.w];
            out[..lo].fill(0.0);
            out[hi..].fill(0.0);
            let first = lo * g.stride + j - g.padding;
            if g.stride == 1 {
                out[lo..hi].copy_from_slice(&row[first..first + (hi - lo)]);
            } else {
                for (o, v) in out[lo..hi].iter_mut().zip(row[first..].iter().step_by(g.stride)) {
                    *o = *v;
                }
            }
        }
    });
}

/// Whether to split a convolution's images across threads (each image's product on one thread) rather
/// than each image's product: below about 40x40 output pixels one image's matrices are too small for
/// `gemm` to keep both cores busy (measured: BENCHMARKS.md, session 3 step-time table).
fn images_in_parallel(g: &ConvGeometry) -> bool {
    g.batch > 1 && g.out_h() * g.out_w() <= 40 * 40
}

/// Forward of a dense convolution: per image, `Y_b [co, L] = W [co, ci*k*k] x im2col(X_b)`, written
/// straight into NCHW.
fn dense_forward(x: &FlexTensor, weight: &FlexTensor, g: &ConvGeometry) -> FlexTensor {
    let (x, weight) = (values(x), values(weight));
    let (ci, co) = (g.c_in, g.c_out);
    let (ho, wo) = (g.out_h(), g.out_w());
    let (l, cikk) = (ho * wo, ci * g.kernel * g.kernel);
    let mut y = vec![0f32; g.batch * co * l];
    let parallel = images_in_parallel(g);
    let image = |b: usize, out: &mut [f32]| {
        let image = &x[b * ci * g.h * g.w..][..ci * g.h * g.w];
        if g.is_pointwise() {
            return matmul_into(
                out,
                [co, l, ci],
                Operand::row_major(&weight, ci),
                Operand::row_major(image, l),
                false,
                !parallel,
            );
        }
        with_columns(cikk * l, |cols| {
            im2col(cols, image, g);
            matmul_into(
                out,
                [co, l, cikk],
                Operand::row_major(&weight, cikk),
                Operand::row_major(cols, l),
                false,
                !parallel,
            );
        })
    };
    if parallel {
        y.par_chunks_mut(co * l).enumerate().for_each(|(b, out)| image(b, out));
    } else {
        y.chunks_mut(co * l).enumerate().for_each(|(b, out)| image(b, out));
    }
    tensor(y, [g.batch, co, ho, wo])
}

/// `dW [co, ci*k*k] = sum over images of dY_b [co, L] x cols_b^T`, with `cols_b [ci*k*k, L]` the
/// image's im2col, accumulated in place (one partial sum per thread).
fn dense_weight_grad(x: &[f32], dy: &[f32], g: &ConvGeometry) -> Vec<f32> {
    let (k, ci, co) = (g.kernel, g.c_in, g.c_out);
    let (l, cikk) = (g.out_h() * g.out_w(), ci * k * k);
    // Always over images when there are several: `gemm` splits the output [co, ci*k*k], not the long
    // reduction over pixels, so one image's product of a high-resolution layer runs on one thread.
    // The sums are kept as dW^T ([ci*k*k, co], dW column-major): gemm then packs dY's rows, not the
    // (usually 2-9x larger) columns, for every image (10% of a training step before).
    let parallel = g.batch > 1;
    let images = |dw: &mut [f32], batch: &mut dyn Iterator<Item = usize>| {
        with_columns(if g.is_pointwise() { 0 } else { cikk * l }, |cols| {
            for (i, b) in batch.enumerate() {
                let (image, grad) = (&x[b * ci * g.h * g.w..][..ci * g.h * g.w], &dy[b * co * l..][..co * l]);
                let cols = if g.is_pointwise() {
                    image
                } else {
                    im2col(cols, image, g);
                    &*cols
                };
                matmul_strided(
                    dw,
                    [co, 1],
                    [co, cikk, l],
                    Operand::row_major(grad, l),
                    Operand::transposed(cols, l),
                    i > 0,
                    !parallel,
                );
            }
        })
    };
    let transpose = |dwt: Vec<f32>| (0..co * cikk).map(|e| dwt[(e % cikk) * co + e / cikk]).collect();
    if !parallel {
        let mut dw = vec![0f32; co * cikk];
        images(&mut dw, &mut (0..g.batch));
        return transpose(dw);
    }
    let threads = rayon::current_num_threads().clamp(1, g.batch);
    let partials: Vec<Vec<f32>> = (0..threads)
        .into_par_iter()
        .map(|t| {
            let mut dw = vec![0f32; co * cikk];
            images(&mut dw, &mut (t..g.batch).step_by(threads));
            dw
        })
        .collect();
    let mut partials = partials.into_iter();
    let mut dw = partials.next().expect("one partial sum per thread");
    for part in partials {
        add_into(&mut dw, &part);
    }
    transpose(dw)
}

/// `dX` of a dense convolution: per image, `cols [ci*k*k, L] = W^T x dY_b`, then each tap's row added
/// back into the input plane it was read from (col2im), one channel per task.
fn dense_input_grad(weight: &FlexTensor, dy: &FlexTensor, g: &ConvGeometry) -> Vec<f32> {
    let (weight, dy) = (values(weight), values(dy));
    let (k, ci, co) = (g.kernel, g.c_in, g.c_out);
    let (ho, wo) = (g.out_h(), g.out_w());
    let (l, cikk, plane) = (ho * wo, ci * k * k, g.h * g.w);
    let mut dx = vec![0f32; g.batch * ci * plane];
    let parallel = images_in_parallel(g);
    let image = |b: usize, dx: &mut [f32]| {
        let grad = &dy[b * co * l..][..co * l];
        if g.is_pointwise() {
            return matmul_into(
                dx,
                [ci, l, co],
                Operand::transposed(&weight, ci),
                Operand::row_major(grad, l),
                false,
                !parallel,
            );
        }
        with_columns(cikk * l, |cols| {
            matmul_into(
                cols,
                [cikk, l, co],
                Operand::transposed(&weight, cikk),
                Operand::row_major(grad, l),
                false,
                !parallel,
            );
            let cols = &*cols;
            dx.par_chunks_mut(plane)
                .enumerate()
                .for_each(|(c, out)| col2im_channel(out, &cols[c * k * k * l..][..k * k * l], g));
        })
    };
    if parallel {
        dx.par_chunks_mut(ci * plane).enumerate().for_each(|(b, dx)| image(b, dx));
    } else {
        dx.chunks_mut(ci * plane).enumerate().for_each(|(b, dx)| image(b, dx));
    }
    dx
}

widest! {
    /// Adds one input channel's `k*k` tap rows (`[k*k, L]`) back into its plane.
    fn col2im_channel(out: &mut [f32], taps: &[f32], g: &ConvGeometry) {
        let k = g.kernel;
        let (ho, wo) = (g.out_h(), g.out_w());
        let l = ho * wo;
        for i in 0..k {
            for j in 0..k {
                let tap = &taps[(i * k + j) * l..][..l];
                let (lo, hi) = valid_outputs(j, g.padding, g.stride, g.w, wo);
                if lo >= hi {
                    continue;
                }
                let first = lo * g.stride + j - g.padding;
                for oy in 0..ho {
                    let Some(iy) = (oy * g.stride + i).checked_sub(g.padding).filter(|&iy| iy < g.h) else { continue };
                    let (row, src) = (&mut out[iy * g.w..][..g.w], &tap[oy * wo..][..wo]);
                    if g.stride == 1 {
                        for (d, v) in row[first..first + (hi - lo)].iter_mut().zip(&src[lo..hi]) {
                            *d += v;
                        }
                    } else {
                        for (d, v) in row[first..].iter_mut().step_by(g.stride).zip(&src[lo..hi]) {
                            *d += v;
                        }
                    }
                }
            }
        }
    }
}

/// A matrix operand of [`matmul_into`]: its elements and the step between rows and between columns.
struct Operand<'a> {
    data: &'a [f32],
    row_stride: usize,
    col_stride: usize,
}

impl<'a> Operand<'a> {
    /// A row-major matrix with `cols` columns.
    fn row_major(data: &'a [f32], cols: usize) -> Self {
        Operand { data, row_stride: cols, col_stride: 1 }
    }
    /// The transpose of a row-major matrix with `cols` columns.
    fn transposed(data: &'a [f32], cols: usize) -> Self {
        Operand { data, row_stride: 1, col_stride: cols }
    }
    fn check(&self, rows: usize, cols: usize) {
        assert!(rows > 0 && cols > 0, "empty matrix operand");
        let last = (rows - 1) * self.row_stride + (cols - 1) * self.col_stride;
        assert!(last < self.data.len(), "matrix operand out of bounds");
    }
}

/// `dst [m, n] (row-major) = lhs [m, k] x rhs [k, n]`, or `+=` with `accumulate`, with the `gemm`
/// crate flex itself uses: on all threads when `all_threads`, else on this one.
fn matmul_into(
    dst: &mut [f32],
    [m, n, k]: [usize; 3],
    lhs: Operand,
    rhs: Operand,
    accumulate: bool,
    all_threads: bool,
) {
    matmul_strided(dst, [1, n], [m, n, k], lhs, rhs, accumulate, all_threads);
}

/// As [`matmul_into`] with `dst[i * row_stride + j * col_stride]` for `[col_stride, row_stride]`. gemm packs its
/// left operand unless that is column-major, and turns a row-major `dst` into the transposed product, so the
/// layout of `dst` picks which operand it packs.
fn matmul_strided(
    dst: &mut [f32],
    [dst_col_stride, dst_row_stride]: [usize; 2],
    [m, n, k]: [usize; 3],
    lhs: Operand,
    rhs: Operand,
    accumulate: bool,
    all_threads: bool,
) {
    assert!(dst.len() >= m * n, "matmul destination too small");
    lhs.check(m, k);
    rhs.check(k, n);
    // SAFETY: every element gemm touches is inside its slice (checked above); dst is borrowed mutably,
    // so it aliases neither operand.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            dst_col_stride as isize,
            dst_row_stride as isize,
            accumulate,
            lhs.data.as_ptr(),
            lhs.col_stride as isize,
            lhs.row_stride as isize,
            rhs.data.as_ptr(),
            rhs.col_stride as isize,
            rhs.row_stride as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            if all_threads { gemm::Parallelism::Rayon(0) } else { gemm::Parallelism::None },
        );
    }
}

/// Runs `f` on this thread's im2col buffer, grown to `len` floats: one buffer reused across images,
/// layers and steps instead of a fresh multi-megabyte allocation (and its page faults) per call.
fn with_columns<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    thread_local! {
        static COLUMNS: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    let mut buffer = COLUMNS.with(|c| std::mem::take(&mut *c.borrow_mut()));
    if buffer.len() < len {
        buffer.resize(len, 0.0);
    }
    let out = f(&mut buffer[..len]);
    COLUMNS.with(|c| *c.borrow_mut() = buffer);
    out
}

/// Output columns `[lo, hi)` whose tap `j` lands inside a row of `w` input pixels.
fn valid_outputs(j: usize, padding: usize, stride: usize, w: usize, wo: usize) -> (usize, usize) {
    // ox * stride + j - padding in [0, w)
    let lo = padding.saturating_sub(j).div_ceil(stride);
    let hi = if w + padding > j { ((w + padding - j - 1) / stride + 1).min(wo) } else { 0 };
    (lo.min(hi), hi)
}

/// Sum of products, in 8 independent lanes so that it vectorises.
#[inline]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ca.zip(cb) {
        for t in 0..8 {
            lanes[t] += x[t] * y[t];
        }
    }
    lanes.iter().sum::<f32>() + tail
}

fn depthwise_weight_grad(x: &[f32], dy: &[f32], g: &ConvGeometry) -> Vec<f32> {
    let (k, c) = (g.kernel, g.c_in);
    let (ho, wo) = (g.out_h(), g.out_w());
    let mut dw = vec![0f32; c * k * k];
    dw.par_chunks_mut(k * k).enumerate().for_each(|(ch, out)| {
        let mut strided = Vec::new();
        for b in 0..g.batch {
            let plane = &x[(b * c + ch) * g.h * g.w..][..g.h * g.w];
            let grad = &dy[(b * c + ch) * ho * wo..][..ho * wo];
            for i in 0..k {
                for j in 0..k {
                    let (lo, hi) = valid_outputs(j, g.padding, g.stride, g.w, wo);
                    if lo >= hi {
                        continue;
                    }
                    let first = lo * g.stride + j - g.padding;
                    let mut acc = 0f32;
                    for oy in 0..ho {
                        let Some(iy) = (oy * g.stride + i).checked_sub(g.padding).filter(|&iy| iy < g.h) else {
                            continue;
                        };
                        let (row, grad_row) = (&plane[iy * g.w..][..g.w], &grad[oy * wo..][..wo]);
                        acc += if g.stride == 1 {
                            dot(&grad_row[lo..hi], &row[first..first + (hi - lo)])
                        } else {
                            strided.clear();
                            strided.extend(row[first..].iter().step_by(g.stride).take(hi - lo));
                            dot(&grad_row[lo..hi], &strided)
                        };
                    }
                    out[i * k + j] += acc;
                }
            }
        }
    });
    dw
}

fn depthwise_input_grad(weight: &FlexTensor, dy: &FlexTensor, g: &ConvGeometry) -> Vec<f32> {
    let (weight, dy) = (values(weight), values(dy));
    let (k, c) = (g.kernel, g.c_in);
    let (ho, wo) = (g.out_h(), g.out_w());
    let mut dx = vec![0f32; g.batch * c * g.h * g.w];
    dx.par_chunks_mut(g.h * g.w).enumerate().for_each(|(plane_index, out)| {
        let ch = plane_index % c;
        let kernel = &weight[ch * k * k..][..k * k];
        let grad = &dy[plane_index * ho * wo..][..ho * wo];
        for oy in 0..ho {
            let grad_row = &grad[oy * wo..][..wo];
            for i in 0..k {
                let Some(iy) = (oy * g.stride + i).checked_sub(g.padding).filter(|&iy| iy < g.h) else { continue };
                let row = &mut out[iy * g.w..][..g.w];
                for j in 0..k {
                    let (lo, hi) = valid_outputs(j, g.padding, g.stride, g.w, wo);
                    if lo >= hi {
                        continue;
                    }
                    let (wv, first) = (kernel[i * k + j], lo * g.stride + j - g.padding);
                    if g.stride == 1 {
                        for (d, &gv) in row[first..first + (hi - lo)].iter_mut().zip(&grad_row[lo..hi]) {
                            *d += gv * wv;
                        }
                    } else {
                        for (d, &gv) in row[first..].iter_mut().step_by(g.stride).zip(&grad_row[lo..hi]) {
                            *d += gv * wv;
                        }
                    }
                }
            }
        }
    });
    dx
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::module::conv2d;
    use burn::tensor::Distribution;

    /// Gradients of x and weight for a weighted sum of the output, by burn's path and by ember's.
    fn compare(shape: [usize; 4], c_out: usize, k: usize, stride: usize, groups: usize) {
        let device = Default::default();
        let padding = k / 2;
        let x = Tensor::<Cpu, 4>::random(shape, Distribution::Normal(0.0, 1.0), &device);
        let w = Tensor::<Cpu, 4>::random([c_out, shape[1] / groups, k, k], Distribution::Normal(0.0, 0.3), &device);
        let run = |ours: bool| {
            let xa = Tensor::<CpuAutodiff, 4>::from_inner(x.clone()).require_grad();
            let wa = Tensor::<CpuAutodiff, 4>::from_inner(w.clone()).require_grad();
            let y = if ours {
                try_conv2d(&xa, &wa, stride, padding, groups).expect("handled here")
            } else {
                conv2d(xa.clone(), wa.clone(), None, ConvOptions::new([stride; 2], [padding; 2], [1, 1], groups))
            };
            let mix = Tensor::<CpuAutodiff, 4>::from_inner(y.clone().inner().sin());
            let grads = (y.clone() * mix).sum().backward();
            let v = |t: Tensor<Cpu, 4>| -> Vec<f32> { t.into_data().to_vec().unwrap() };
            (v(y.inner()), v(xa.grad(&grads).unwrap()), v(wa.grad(&grads).unwrap()))
        };
        let (ours, burns) = (run(true), run(false));
        let close = |a: &[f32], b: &[f32], what: &str| {
            assert_eq!(a.len(), b.len(), "{what}");
            let scale = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
            let diff = a.iter().zip(b).fold(0f32, |m, (p, q)| m.max((p - q).abs()));
            assert!(
                diff <= 1e-5 * scale,
                "{what} {shape:?} k{k} s{stride} g{groups}: max diff {diff:e} (scale {scale:e})"
            );
        };
        close(&ours.0, &burns.0, "output");
        close(&ours.1, &burns.1, "input gradient");
        close(&ours.2, &burns.2, "weight gradient");
    }

    #[test]
    fn valid_output_ranges() {
        // w = 5, padding 1, stride 1: tap 0 reaches input ox - 1, valid for ox >= 1.
        assert_eq!(valid_outputs(0, 1, 1, 5, 5), (1, 5));
        assert_eq!(valid_outputs(2, 1, 1, 5, 5), (0, 4));
        // stride 2, w = 6, padding 1, wo = 3: ix = 2 * ox + j - 1.
        assert_eq!(valid_outputs(0, 1, 2, 6, 3), (1, 3));
        assert_eq!(valid_outputs(2, 1, 2, 6, 3), (0, 3));
    }

    #[test]
    fn dense_gradients_equal_burns() {
        compare([2, 3, 17, 20], 5, 3, 1, 1);
        compare([3, 4, 16, 13], 6, 3, 2, 1);
        compare([1, 2, 9, 9], 3, 5, 1, 1);
        compare([2, 3, 10, 7], 4, 3, 2, 1); // even and odd widths at stride 2
        compare([1, 2, 9, 10], 2, 3, 2, 1);
        compare([3, 7, 6, 5], 9, 1, 1, 1); // pointwise: no im2col
        compare([1, 7, 6, 5], 9, 1, 1, 1);
    }

    #[test]
    fn depthwise_gradients_equal_burns() {
        compare([2, 6, 11, 14], 6, 3, 1, 6);
        compare([2, 4, 12, 9], 4, 3, 2, 4);
        compare([1, 3, 10, 10], 3, 5, 1, 3);
        compare([2, 5, 9, 10], 5, 3, 2, 5);
        compare([1, 16, 20, 21], 16, 3, 1, 16); // rows longer than the 8 lanes of `dot`
    }

    /// An input read by several consumers (two convolutions, a convolution of a channel view, an
    /// elementwise product) gets the sum of their gradients, in whatever order they arrive.
    #[test]
    fn shared_inputs_accumulate_gradients() {
        let device = Default::default();
        let x = Tensor::<Cpu, 4>::random([2, 4, 9, 9], Distribution::Normal(0.0, 1.0), &device);
        let w1 = Tensor::<Cpu, 4>::random([3, 4, 3, 3], Distribution::Normal(0.0, 0.3), &device);
        let w2 = Tensor::<Cpu, 4>::random([5, 2, 3, 3], Distribution::Normal(0.0, 0.3), &device);
        let run = |ours: bool| -> Vec<f32> {
            let xa = Tensor::<CpuAutodiff, 4>::from_inner(x.clone()).require_grad();
            let conv = |x: Tensor<CpuAutodiff, 4>, w: &Tensor<Cpu, 4>| {
                let w = Tensor::<CpuAutodiff, 4>::from_inner(w.clone());
                if ours {
                    try_conv2d(&x, &w, 1, 1, 1).expect("handled here")
                } else {
                    conv2d(x, w, None, ConvOptions::new([1, 1], [1, 1], [1, 1], 1))
                }
            };
            let half = xa.clone().chunk(2, 1).pop().unwrap();
            let a = conv(xa.clone(), &w1);
            let b = conv(half, &w2);
            let c = conv(a.clone(), &w1.clone().slice([0..3, 0..3]));
            let d = conv(xa.clone(), &w1.clone().flip([2]));
            let constant = |t: Tensor<Cpu, 4>| Tensor::<CpuAutodiff, 4>::from_inner(t);
            let loss = (a.clone() * constant(a.clone().inner().cos())).sum()
                + (b.clone() * constant(b.inner().sin())).sum()
                + (xa.clone() * constant(x.clone())).sum()
                + c.sum()
                + d.powi_scalar(2).sum();
            let grads = loss.backward();
            xa.grad(&grads).unwrap().into_data().to_vec().unwrap()
        };
        let (ours, burns) = (run(true), run(false));
        let diff = ours.iter().zip(&burns).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(diff < 1e-4, "accumulated input gradient differs by {diff:e}");
    }

    #[test]
    fn inference_forward_equals_flex() {
        let device = Default::default();
        for (shape, c_out, k, stride) in
            [([2, 3, 17, 20], 5, 3, 1), ([1, 4, 16, 13], 6, 3, 2), ([1, 2, 9, 9], 3, 5, 1), ([2, 5, 7, 4], 3, 1, 1)]
        {
            let x = Tensor::<Cpu, 4>::random(shape, Distribution::Normal(0.0, 1.0), &device);
            let w = Tensor::<Cpu, 4>::random([c_out, shape[1], k, k], Distribution::Normal(0.0, 0.3), &device);
            let ours: Vec<f32> = try_conv2d(&x, &w, stride, k / 2, 1).expect("dense").into_data().to_vec().unwrap();
            let flex: Vec<f32> =
                conv2d(x, w, None, ConvOptions::new([stride; 2], [k / 2; 2], [1, 1], 1)).into_data().to_vec().unwrap();
            let diff = ours.iter().zip(&flex).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
            assert!(diff < 1e-5, "{shape:?} k{k} s{stride}: {diff:e}");
        }
    }

    #[test]
    fn other_backends_and_grouped_convolutions_fall_back() {
        let device = Default::default();
        let x = Tensor::<Cpu, 4>::zeros([1, 4, 8, 8], &device);
        let w = Tensor::<Cpu, 4>::zeros([4, 1, 3, 3], &device);
        assert!(try_conv2d(&x, &w, 1, 1, 4).is_none(), "depthwise inference stays flex's");
        let xa = Tensor::<CpuAutodiff, 4>::zeros([1, 4, 8, 8], &device);
        let grouped = Tensor::<CpuAutodiff, 4>::zeros([4, 2, 3, 3], &device);
        assert!(try_conv2d(&xa, &grouped, 1, 1, 2).is_none(), "2 channels per group");
    }
}
