//! Convolutions: the one code path every convolution in ember goes through ([`conv2d`]), the plain
//! `nn.Conv2d` equivalent ([`Conv2d`]) and Ultralytics' `Conv` block (conv, BatchNorm, SiLU).

use burn::config::Config;
use burn::module::{Initializer, Module, Param};
use burn::tensor::module;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{backend::Backend, DType, Tensor};

use super::batchnorm::{BatchNorm2d, BatchNorm2dConfig};
use super::onnx::{values, Attr, OnnxGraph, ToOnnx};

/// The single 2-D convolution of ember. Mixed precision hooks in here: burn never promotes mixed dtypes, so
/// the weight and bias are brought to the input's dtype (a no-op in f32).
pub fn conv2d<B: Backend>(
    x: Tensor<B, 4>,
    weight: Tensor<B, 4>,
    bias: Option<Tensor<B, 1>>,
    stride: usize,
    padding: usize,
    groups: usize,
) -> Tensor<B, 4> {
    let dtype = x.dtype();
    let weight = if weight.dtype() == dtype { weight } else { weight.cast(dtype) };
    let bias = bias.map(|b| if b.dtype() == dtype { b } else { b.cast(dtype) });
    probe::record(dtype, weight.dtype());
    let [co, ci, kh, kw] = weight.dims();
    // A kernel of ember's own for this backend (flex in FP32: src/kernels/flex/conv.rs), the bias added after.
    if let Some(y) = crate::kernels::conv2d(&x, &weight, stride, padding, groups) {
        return match bias {
            Some(bias) => add_channel_bias_column(y, bias),
            None => y,
        };
    }
    // Depthwise (the kernel checks the shapes): burn-cubecl's weight gradient runs a convolution per channel.
    let depthwise = if groups > 1 { crate::kernels::conv2d_depthwise(&x, &weight, stride, padding) } else { None };
    let pointwise = kh == 1 && kw == 1 && stride == 1 && padding == 0 && groups == 1;
    let reduced = dtype != DType::F32;
    let y = if let Some(y) = depthwise {
        y
    } else if pointwise {
        // A pointwise convolution as a matrix product: FP32 accumulation on cubecl backends in FP16, and
        // on flex a faster backward than burn's generic convolution backward (BENCHMARKS.md).
        let [b, _, h, w] = x.dims();
        weight.reshape([1, co, ci]).matmul(x.reshape([b, ci, h * w])).reshape([b, co, h, w])
    } else if reduced && groups == 1 {
        match crate::kernels::conv2d_im2col(&x, &weight, stride, padding) {
            Some(y) => y,
            None => super::conv_lowp::conv2d_im2col(x, weight, stride, padding),
        }
    } else if reduced {
        super::conv_lowp::conv2d_widened(x, weight, stride, padding, groups)
    } else {
        let options = ConvOptions::new([stride, stride], [padding, padding], [1, 1], groups);
        return module::conv2d(x, weight, bias, options);
    };
    match bias {
        Some(bias) => {
            let c = bias.dims()[0];
            y + bias.reshape([1, c, 1, 1])
        }
        None => y,
    }
}

/// `y + bias[c]`, added as a column over `[b * c, h * w]` rows: flex broadcasts a `[n, 1]` column faster than
/// a `[1, c, 1, 1]` tensor (the same trick as BatchNorm's).
fn add_channel_bias_column<B: Backend>(y: Tensor<B, 4>, bias: Tensor<B, 1>) -> Tensor<B, 4> {
    let [b, c, h, w] = y.dims();
    let column = bias.reshape([1, c]).repeat_dim(0, b).reshape([b * c, 1]);
    (y.reshape([b * c, h * w]) + column).reshape([b, c, h, w])
}

/// [`Conv2d`] configuration (PyTorch `nn.Conv2d` with square kernels, "same" padding by default).
#[derive(Config, Debug)]
pub struct Conv2dConfig {
    /// Input channels (`in_channels`).
    pub c_in: usize,
    /// Output channels (`out_channels`).
    pub c_out: usize,
    /// Kernel size. Default: 1.
    #[config(default = 1)]
    pub kernel: usize,
    /// Default: 1.
    #[config(default = 1)]
    pub stride: usize,
    /// Padding; `None` means `kernel / 2` (Ultralytics' `autopad`). Default: None.
    #[config(default = "None")]
    pub padding: Option<usize>,
    /// Default: 1.
    #[config(default = 1)]
    pub groups: usize,
    /// Default: true (as `nn.Conv2d`).
    #[config(default = true)]
    pub bias: bool,
}

/// A plain convolution with optional bias, tensors named like `nn.Conv2d` (`weight`, `bias`).
#[derive(Module, Debug)]
pub struct Conv2d<B: Backend> {
    /// Kernel `[c_out, c_in / groups, k, k]`.
    pub weight: Param<Tensor<B, 4>>,
    /// Per-output-channel bias `[c_out]`; `None` for a convolution without one (as before a BatchNorm).
    pub bias: Option<Param<Tensor<B, 1>>>,
    /// Stride along both axes.
    pub stride: usize,
    /// Zero padding on each side, along both axes.
    pub padding: usize,
    /// Convolution groups; `c_in` and `c_out` are multiples of it.
    pub groups: usize,
}

impl Conv2dConfig {
    /// A new [`Conv2d`] on `device`, weight and bias drawn from `U(-1/sqrt(fan_in), 1/sqrt(fan_in))` as
    /// PyTorch initialises them.
    pub fn init<B: Backend>(&self, device: &B::Device) -> Conv2d<B> {
        let fan_in = self.c_in / self.groups * self.kernel * self.kernel;
        // PyTorch's default (kaiming_uniform with a = sqrt(5)): U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for both.
        let bound = 1.0 / (fan_in as f64).sqrt();
        let init = Initializer::Uniform { min: -bound, max: bound };
        let shape = [self.c_out, self.c_in / self.groups, self.kernel, self.kernel];
        Conv2d {
            weight: init.init(shape, device),
            bias: self.bias.then(|| init.init([self.c_out], device)),
            stride: self.stride,
            padding: self.padding.unwrap_or(self.kernel / 2),
            groups: self.groups,
        }
    }
}

impl<B: Backend> Conv2d<B> {
    /// `x` `[b, c_in, h, w]` to `[b, c_out, h_out, w_out]` (see [`Conv2d::out_size`]), through [`conv2d`].
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        conv2d(x, self.weight.val(), self.bias.as_ref().map(|b| b.val()), self.stride, self.padding, self.groups)
    }

    /// The ONNX `Conv` of this convolution, with a per-channel `x * scale + shift` (a BatchNorm in evaluation)
    /// folded into its weight and bias.
    pub fn to_onnx_folded(&self, g: &mut dyn OnnxGraph, x: &str, fold: Option<(&[f32], &[f32])>) -> String {
        let dims = self.weight_dims();
        let mut w = values(self.weight.val());
        let mut bias = self.bias.as_ref().map(|b| values(b.val()));
        if let Some((scale, shift)) = fold {
            let per = w.len() / dims[0];
            for (o, chunk) in w.chunks_mut(per).enumerate() {
                chunk.iter_mut().for_each(|v| *v *= scale[o]);
            }
            let b = bias.get_or_insert_with(|| vec![0.0; dims[0]]);
            for o in 0..dims[0] {
                b[o] = b[o] * scale[o] + shift[o];
            }
        }
        let mut inputs = vec![x.to_string(), g.weight("w", &dims, &w)];
        if let Some(b) = bias {
            inputs.push(g.weight("b", &[dims[0]], &b));
        }
        let (p, s) = (self.padding as i64, self.stride as i64);
        let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        let attrs = vec![
            Attr::Ints("kernel_shape", vec![dims[2] as i64, dims[3] as i64]),
            Attr::Ints("strides", vec![s, s]),
            Attr::Ints("pads", vec![p, p, p, p]),
            Attr::Ints("dilations", vec![1, 1]),
            Attr::Int("group", self.groups as i64),
        ];
        g.op("Conv", &refs, attrs)
    }

    /// `[c_out, c_in / groups, k, k]`.
    pub fn weight_dims(&self) -> [usize; 4] {
        self.weight.dims()
    }
    /// Output channels.
    pub fn c_out(&self) -> usize {
        self.weight_dims()[0]
    }

    /// Multiply-accumulates for an output of `h_out * w_out` pixels (bias not counted, as thop does).
    pub fn macs(&self, h_out: usize, w_out: usize) -> u64 {
        let [co, ci, kh, kw] = self.weight_dims();
        (co * ci * kh * kw) as u64 * (h_out * w_out) as u64
    }

    /// Output spatial size for an input of `h x w`.
    pub fn out_size(&self, h: usize, w: usize) -> (usize, usize) {
        let k = self.weight_dims()[2];
        let f = |n: usize| (n + 2 * self.padding - k) / self.stride + 1;
        (f(h), f(w))
    }
}

/// [`Conv`] configuration: Ultralytics' `Conv(c1, c2, k, s, p, g, act)`.
#[derive(Config, Debug)]
pub struct ConvConfig {
    /// Input channels (Ultralytics' `c1`).
    pub c_in: usize,
    /// Output channels (Ultralytics' `c2`).
    pub c_out: usize,
    /// Default: 1.
    #[config(default = 1)]
    pub kernel: usize,
    /// Default: 1.
    #[config(default = 1)]
    pub stride: usize,
    /// Default: 1. A depth-wise `DWConv` is `groups = gcd(c_in, c_out)`, see [`ConvConfig::depthwise`].
    #[config(default = 1)]
    pub groups: usize,
    /// SiLU after the BatchNorm. Default: true.
    #[config(default = true)]
    pub act: bool,
}

impl ConvConfig {
    /// Ultralytics' `DWConv(c1, c2, k, s)`: a [`Conv`] with `gcd(c1, c2)` groups.
    pub fn depthwise(c_in: usize, c_out: usize, kernel: usize, stride: usize) -> Self {
        ConvConfig::new(c_in, c_out).with_kernel(kernel).with_stride(stride).with_groups(gcd(c_in, c_out))
    }

    /// A new [`Conv`] on `device`, with freshly initialised weights: a bias-free convolution with "same"
    /// padding (`kernel / 2`, Ultralytics' `autopad`) and a BatchNorm with Ultralytics' defaults.
    pub fn init<B: Backend>(&self, device: &B::Device) -> Conv<B> {
        Conv {
            conv: Conv2dConfig::new(self.c_in, self.c_out)
                .with_kernel(self.kernel)
                .with_stride(self.stride)
                .with_groups(self.groups)
                .with_bias(false)
                .init(device),
            bn: BatchNorm2dConfig::new(self.c_out).init(device),
            act: self.act,
        }
    }
}

/// Convolution without bias, BatchNorm (eps 1e-3, momentum 0.03), optional SiLU.
#[derive(Module, Debug)]
pub struct Conv<B: Backend> {
    /// The convolution, without bias (the BatchNorm's shift takes its place).
    pub conv: Conv2d<B>,
    /// BatchNorm over the convolution's output channels.
    pub bn: BatchNorm2d<B>,
    /// SiLU after the BatchNorm (Ultralytics' default activation); `false`: none.
    pub act: bool,
}

impl<B: Backend> Conv<B> {
    /// `x` `[b, c_in, h, w]` through the convolution, the BatchNorm and, when `act`, SiLU.
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let y = self.conv.forward(x);
        if self.act {
            self.bn.forward_silu(y)
        } else {
            self.bn.forward(y)
        }
    }

    /// Output channels.
    pub fn c_out(&self) -> usize {
        self.conv.c_out()
    }
}

impl<B: Backend> ToOnnx for Conv2d<B> {
    fn to_onnx(&self, g: &mut dyn OnnxGraph, x: &str) -> String {
        self.to_onnx_folded(g, x, None)
    }
}

/// The BatchNorm folded into the convolution.
impl<B: Backend> ToOnnx for Conv<B> {
    fn to_onnx(&self, g: &mut dyn OnnxGraph, x: &str) -> String {
        let (scale, shift) = self.bn.folded();
        let (scale, shift) = (values(scale), values(shift));
        let y = self.conv.to_onnx_folded(g, x, Some((&scale, &shift)));
        if self.act {
            g.silu(&y)
        } else {
            y
        }
    }
}

pub(crate) fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// Records the operand dtypes every convolution sees, to check what a mixed-precision setup computes in
/// ([`probe::conv_dtypes`]).
pub mod probe {
    use std::cell::RefCell;

    use burn::tensor::DType;

    thread_local! {
        static SEEN: RefCell<Option<Vec<(DType, DType)>>> = const { RefCell::new(None) };
    }

    pub(super) fn record(input: DType, weight: DType) {
        SEEN.with(|s| {
            if let Some(seen) = s.borrow_mut().as_mut() {
                seen.push((input, weight));
            }
        });
    }

    /// Runs `f` and returns the (input, weight) dtypes of every convolution it ran on this thread.
    pub fn conv_dtypes<R>(f: impl FnOnce() -> R) -> (R, Vec<(DType, DType)>) {
        SEEN.with(|s| *s.borrow_mut() = Some(Vec::new()));
        let out = f();
        let seen = SEEN.with(|s| s.borrow_mut().take()).unwrap_or_default();
        (out, seen)
    }
}
