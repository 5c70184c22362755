//! Ultralytics' `SPPF`: repeated 5x5 max pooling of a reduced feature map, concatenated.
//! YOLO26 uses `n = 3` pools, no activation after `cv1`, and a residual connection.

use burn::config::Config;
use burn::module::Module;
use burn::tensor::module::max_pool2d;
use burn::tensor::{backend::Backend, Tensor};

use super::conv::{Conv, ConvConfig};
use super::Cost;

/// [`Sppf`] configuration: `SPPF(c1, c2, k, n, shortcut)`.
#[derive(Config, Debug)]
pub struct SppfConfig {
    pub c_in: usize,
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

#[derive(Module, Debug)]
pub struct Sppf<B: Backend> {
    pub cv1: Conv<B>,
    pub cv2: Conv<B>,
    pub kernel: usize,
    pub n: usize,
    pub add: bool,
}

impl SppfConfig {
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

    pub fn cost(&self, h: usize, w: usize, c: &mut Cost) {
        c.conv(&self.cv1, h, w);
        c.conv(&self.cv2, h, w);
    }
}
