//! Ultralytics' `SPPF`: repeated 5x5 max pooling of a reduced feature map, concatenated.
//! YOLO26 uses `n = 3` pools, no activation after `cv1`, and a residual connection.

use burn::config::Config;
use burn::module::Module;
use burn::tensor::module::max_pool2d;
use burn::tensor::{backend::Backend, Tensor};

use super::conv::{Conv, ConvConfig};
use super::onnx::{Attr, OnnxGraph, ToOnnx};
use super::Cost;

/// [`Sppf`] configuration: `SPPF(c1, c2, k, n, shortcut)`.
#[derive(Config, Debug)]
pub struct SppfConfig {
    /// Input channels (Ultralytics' `c1`).
    pub c_in: usize,
    /// Output channels (Ultralytics' `c2`).
    pub c_out: usize,
    /// Pooling kernel. Default: 5.
    #[config(default = 5)]
    pub kernel: usize,
    /// Number of chained poolings. Default: 3.
    #[config(default = 3)]
    pub n: usize,
    /// Residual when `c_in == c_out`. Default: false.
    #[config(default = false)]
    pub shortcut: bool,
    /// SiLU after `cv1`. Ultralytics drops it when the YAML row gives more than the kernel (YOLO26's
    /// `[c2, k, n, shortcut]`) and keeps it for the older `[c2, k]` rows. Default: true.
    #[config(default = true)]
    pub cv1_act: bool,
}

/// Ultralytics' `SPPF`: `cv1`, then `n` chained `kernel x kernel` stride-1 max pools, all `n + 1` maps
/// concatenated into `cv2`, plus `x` when `add`.
#[derive(Module, Debug)]
pub struct Sppf<B: Backend> {
    /// 1x1 conv `c_in -> c_in / 2`, SiLU unless `cv1_act` was false.
    pub cv1: Conv<B>,
    /// 1x1 conv `(n + 1) * (c_in / 2) -> c_out` over the concatenated maps.
    pub cv2: Conv<B>,
    /// Max-pool kernel side; padding `kernel / 2` and stride 1 keep the size.
    pub kernel: usize,
    /// Number of chained max pools.
    pub n: usize,
    /// Residual: `shortcut` was asked for and `c_in == c_out`.
    pub add: bool,
}

impl SppfConfig {
    /// A new [`Sppf`] on `device`, with freshly initialised weights.
    pub fn init<B: Backend>(&self, device: &B::Device) -> Sppf<B> {
        let hidden = self.c_in / 2;
        Sppf {
            cv1: ConvConfig::new(self.c_in, hidden).with_act(self.cv1_act).init(device),
            cv2: ConvConfig::new(hidden * (self.n + 1), self.c_out).init(device),
            kernel: self.kernel,
            n: self.n,
            add: self.shortcut && self.c_in == self.c_out,
        }
    }
}

impl<B: Backend> Sppf<B> {
    /// `x` `[b, c_in, h, w]` to `[b, c_out, h, w]`.
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let k = self.kernel;
        let mut ys = vec![self.cv1.forward(x.clone())];
        for _ in 0..self.n {
            let last = ys.last().expect("cv1 output").clone();
            ys.push(max_pool2d(last, [k, k], [1, 1], [k / 2, k / 2], [1, 1], false));
        }
        let y = self.cv2.forward(Tensor::cat(ys, 1));
        if self.add {
            y + x
        } else {
            y
        }
    }

    /// Adds both convolutions' cost at an `h x w` input to `c` (the max pools are not counted).
    pub fn cost(&self, h: usize, w: usize, c: &mut Cost) {
        c.conv(&self.cv1, h, w);
        c.conv(&self.cv2, h, w);
    }
}

impl<B: Backend> ToOnnx for Sppf<B> {
    fn to_onnx(&self, g: &mut dyn OnnxGraph, x: &str) -> String {
        let (k, p) = (self.kernel as i64, (self.kernel / 2) as i64);
        let mut ys = vec![self.cv1.to_onnx(g, x)];
        for _ in 0..self.n {
            let last = ys.last().expect("cv1 output").clone();
            let attrs = vec![
                Attr::Ints("kernel_shape", vec![k, k]),
                Attr::Ints("strides", vec![1, 1]),
                Attr::Ints("pads", vec![p, p, p, p]),
            ];
            ys.push(g.op("MaxPool", &[&last], attrs));
        }
        let refs: Vec<&str> = ys.iter().map(String::as_str).collect();
        let cat = g.concat(&refs, 1);
        let y = self.cv2.to_onnx(g, &cat);
        if self.add {
            g.add(&y, x)
        } else {
            y
        }
    }
}
