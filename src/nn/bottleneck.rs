//! Ultralytics' `Bottleneck`: two convolutions with an optional residual.

use burn::config::Config;
use burn::module::Module;
use burn::tensor::{backend::Backend, Tensor};

use super::conv::{Conv, ConvConfig};
use super::onnx::{OnnxGraph, ToOnnx};
use super::Cost;

/// [`Bottleneck`] configuration: `Bottleneck(c1, c2, shortcut, g, k, e)`.
#[derive(Config, Debug)]
pub struct BottleneckConfig {
    /// Input channels (Ultralytics' `c1`).
    pub c_in: usize,
    /// Output channels (Ultralytics' `c2`).
    pub c_out: usize,
    /// Residual when `c_in == c_out`. Default: true.
    #[config(default = true)]
    pub shortcut: bool,
    /// Groups of the second convolution. Default: 1.
    #[config(default = 1)]
    pub groups: usize,
    /// Kernel sizes of the two convolutions. Default: (3, 3).
    #[config(default = "(3, 3)")]
    pub kernels: (usize, usize),
    /// Hidden channels = `int(c_out * expansion)`. Default: 0.5.
    #[config(default = 0.5)]
    pub expansion: f64,
}

/// Ultralytics' `Bottleneck`: `cv2(cv1(x))`, plus `x` when `add`.
#[derive(Module, Debug)]
pub struct Bottleneck<B: Backend> {
    /// First convolution, `c_in -> hidden`, kernel `kernels.0`.
    pub cv1: Conv<B>,
    /// Second convolution, `hidden -> c_out`, kernel `kernels.1`, `groups` groups.
    pub cv2: Conv<B>,
    /// Residual: `shortcut` was asked for and `c_in == c_out`.
    pub add: bool,
}

impl BottleneckConfig {
    /// A new [`Bottleneck`] on `device`, with freshly initialised weights.
    pub fn init<B: Backend>(&self, device: &B::Device) -> Bottleneck<B> {
        let hidden = (self.c_out as f64 * self.expansion) as usize;
        Bottleneck {
            cv1: ConvConfig::new(self.c_in, hidden).with_kernel(self.kernels.0).init(device),
            cv2: ConvConfig::new(hidden, self.c_out).with_kernel(self.kernels.1).with_groups(self.groups).init(device),
            add: self.shortcut && self.c_in == self.c_out,
        }
    }
}

impl<B: Backend> Bottleneck<B> {
    /// `x` `[b, c_in, h, w]` to `[b, c_out, h, w]` (both convolutions have stride 1).
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let y = self.cv2.forward(self.cv1.forward(x.clone()));
        if self.add {
            super::residual::residual(x, y)
        } else {
            y
        }
    }

    /// Adds both convolutions' cost at an `h x w` input to `c`.
    pub fn cost(&self, h: usize, w: usize, c: &mut Cost) {
        c.conv(&self.cv1, h, w);
        c.conv(&self.cv2, h, w);
    }
}

impl<B: Backend> ToOnnx for Bottleneck<B> {
    fn to_onnx(&self, g: &mut dyn OnnxGraph, x: &str) -> String {
        let y = self.cv1.to_onnx(g, x);
        let y = self.cv2.to_onnx(g, &y);
        if self.add {
            g.add(x, &y)
        } else {
            y
        }
    }
}
