//! The column matrix of a convolution (im2col) and its adjoint (col2im) as one CubeCL kernel each, where
//! their definitions in `kernels::columns` launch a padding copy, a slice per kernel tap and a stack (and,
//! for col2im, a slice, a sum and a slice-assign per tap): the FP16 convolutions of AMP training and
//! their backward. im2col copies, so its values are the definition's; col2im adds a pixel's taps in the
//! definition's order but in FP32, rounding once to the dtype where the definition rounds after each tap.

use burn::tensor::Shape;
use burn_cubecl::cubecl;
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::ops::numeric::empty_device_dtype;
use burn_cubecl::tensor::CubeTensor;
use burn_cubecl::CubeRuntime;
use cubecl::calculate_cube_count_elemwise;
use cubecl::prelude::*;

/// A convolution's geometry: input `[b, c, h, w]`, kernel, stride, padding, output size.
#[derive(Debug, Clone, Copy)]
pub struct Geometry {
    /// Input `[b, c, h, w]`.
    pub input: [usize; 4],
    /// `[kh, kw]`.
    pub kernel: [usize; 2],
    /// Both axes'.
    pub stride: usize,
    /// Both axes'.
    pub padding: usize,
    /// `[ho, wo]`.
    pub output: [usize; 2],
}

/// `columns[n, (ci, i, j), (oy, ox)] = x[n, ci, oy * stride + i - padding, ox * stride + j - padding]`, zero
/// outside the input.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn im2col_kernel<F: Float>(
    x: &Tensor<F>,
    columns: &mut Tensor<F>,
    channels: u32,
    height: u32,
    width: u32,
    kernel_h: u32,
    kernel_w: u32,
    stride: u32,
    padding: u32,
    out_h: u32,
    out_w: u32,
    #[define(F)] _dtype: StorageType,
) {
    let at = ABSOLUTE_POS;
    if at >= columns.len() {
        terminate!();
    }
    let (kh, kw, ho, wo) = (kernel_h as usize, kernel_w as usize, out_h as usize, out_w as usize);
    let ox = at % wo;
    let oy = (at / wo) % ho;
    let row = at / (wo * ho);
    let j = row % kw;
    let i = (row / kw) % kh;
    let ci = (row / (kw * kh)) % channels as usize;
    let n = row / (kw * kh * channels as usize);
    // Coordinates in the padded input (unsigned: no 64-bit or signed integers needed on the device).
    let (pad, h, w) = (padding as usize, height as usize, width as usize);
    let (ty, tx) = (oy * stride as usize + i, ox * stride as usize + j);
    let mut value = F::new(0.0);
    if ty >= pad && ty < h + pad && tx >= pad && tx < w + pad {
        value = x[((n * channels as usize + ci) * h + ty - pad) * w + tx - pad];
    }
    columns[at] = value;
}

/// `x[n, ci, y, x]` = the sum of the columns whose tap sees that pixel.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn col2im_kernel<F: Float>(
    columns: &Tensor<F>,
    x: &mut Tensor<F>,
    height: u32,
    width: u32,
    kernel_h: u32,
    kernel_w: u32,
    stride: u32,
    padding: u32,
    out_h: u32,
    out_w: u32,
    #[define(F)] _dtype: StorageType,
) {
    let at = ABSOLUTE_POS;
    if at >= x.len() {
        terminate!();
    }
    let (kh, kw, ho, wo) = (kernel_h as usize, kernel_w as usize, out_h as usize, out_w as usize);
    let s = stride as usize;
    let px = at % width as usize;
    let py = (at / width as usize) % height as usize;
    let plane_index = at / (width as usize * height as usize);
    // The padded coordinates; tap (i, j) sees this pixel from output (oy, ox) when
    // py + padding = oy * stride + i.
    let (y, xx) = (py + padding as usize, px + padding as usize);
    let mut sum = 0.0f32;
    for i in 0..kh {
        if y >= i && (y - i) % s == 0 && (y - i) / s < ho {
            let oy = (y - i) / s;
            for j in 0..kw {
                if xx >= j && (xx - j) % s == 0 && (xx - j) / s < wo {
                    let ox = (xx - j) / s;
                    let row = (plane_index * kh + i) * kw + j;
                    sum += f32::cast_from(columns[(row * ho + oy) * wo + ox]);
                }
            }
        }
    }
    x[at] = F::cast_from(sum);
}

fn scalars(g: &Geometry) -> [u32; 9] {
    let [_, c, h, w] = g.input;
    let ([kh, kw], [ho, wo]) = (g.kernel, g.output);
    [c, h, w, kh, kw, g.stride, g.padding, ho, wo].map(|v| v as u32)
}

/// Whether the kernels index these sizes (32-bit).
pub fn supported(g: &Geometry) -> bool {
    let [b, c, h, w] = g.input;
    let ([kh, kw], [ho, wo]) = (g.kernel, g.output);
    let columns = b.checked_mul(c * kh * kw).and_then(|v| v.checked_mul(ho * wo));
    columns.is_some_and(|n| n < u32::MAX as usize) && b * c * h * w < u32::MAX as usize && g.stride > 0
}

/// The columns `[b, c * kh * kw, ho * wo]` of `x` (in its dtype).
pub fn im2col<R: CubeRuntime>(x: CubeTensor<R>, g: &Geometry) -> CubeTensor<R> {
    let x = into_contiguous(x);
    let [b, c, _, _] = g.input;
    let ([kh, kw], [ho, wo]) = (g.kernel, g.output);
    let shape = Shape::new([b, c * kh * kw, ho * wo]);
    let columns = empty_device_dtype(x.client.clone(), x.device.clone(), shape, x.dtype);
    let n = b * c * kh * kw * ho * wo;
    let dim = CubeDim::new(&x.client, n);
    let count = calculate_cube_count_elemwise(&x.client, n, dim);
    let [c, h, w, kh, kw, s, p, ho, wo] = scalars(g);
    let (client, dtype) = (x.client.clone(), x.dtype.into());
    im2col_kernel::launch(
        &client,
        count,
        dim,
        x.into_tensor_arg(),
        columns.clone().into_tensor_arg(),
        c,
        h,
        w,
        kh,
        kw,
        s,
        p,
        ho,
        wo,
        dtype,
    );
    columns
}

/// The pixels `[b, c, h, w]` that the column gradients `[b, c * kh * kw, ho * wo]` sum to (in their dtype).
pub fn col2im<R: CubeRuntime>(columns: CubeTensor<R>, g: &Geometry) -> CubeTensor<R> {
    let columns = into_contiguous(columns);
    let x = empty_device_dtype(columns.client.clone(), columns.device.clone(), Shape::new(g.input), columns.dtype);
    let n = g.input.iter().product();
    let dim = CubeDim::new(&columns.client, n);
    let count = calculate_cube_count_elemwise(&columns.client, n, dim);
    let [_, h, w, kh, kw, s, p, ho, wo] = scalars(g);
    let (client, dtype) = (columns.client.clone(), columns.dtype.into());
    col2im_kernel::launch(
        &client,
        count,
        dim,
        columns.into_tensor_arg(),
        x.clone().into_tensor_arg(),
        h,
        w,
        kh,
        kw,
        s,
        p,
        ho,
        wo,
        dtype,
    );
    x
}
