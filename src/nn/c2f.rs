//! Ultralytics' `C2f`: a CSP block that keeps every bottleneck output (YOLOv8).

use burn::config::Config;
use burn::module::Module;
use burn::tensor::{backend::Backend, Tensor};

use super::bottleneck::{Bottleneck, BottleneckConfig};
use super::conv::{Conv, ConvConfig};
use super::Cost;

/// [`C2f`] configuration: `C2f(c1, c2, n, shortcut, g, e)`.
#[derive(Config, Debug)]
pub struct C2fConfig {
    pub c_in: usize,
    pub c_out: usize,
    /// Number of bottlenecks. Default: 1.
    #[config(default = 1)]
    pub n: usize,
    /// Default: false.
    #[config(default = false)]
    pub shortcut: bool,
    /// Default: 1.
    #[config(default = 1)]
    pub groups: usize,
    /// Hidden channels = `int(c_out * expansion)`. Default: 0.5.
    #[config(default = 0.5)]
    pub expansion: f64,
}

#[derive(Module, Debug)]
pub struct C2f<B: Backend> {
    pub cv1: Conv<B>,
    pub cv2: Conv<B>,
    pub m: Vec<Bottleneck<B>>,
    pub hidden: usize,
}

impl C2fConfig {
    pub fn init<B: Backend>(&self, device: &B::Device) -> C2f<B> {
        let c = (self.c_out as f64 * self.expansion) as usize;
        C2f {
            cv1: ConvConfig::new(self.c_in, 2 * c).init(device),
            cv2: ConvConfig::new((2 + self.n) * c, self.c_out).init(device),
            m: (0..self.n)
                .map(|_| {
                    BottleneckConfig::new(c, c)
                        .with_shortcut(self.shortcut)
                        .with_groups(self.groups)
                        .with_expansion(1.0)
                        .init(device)
                })
                .collect(),
            hidden: c,
        }
    }
}

/// Splits `cv1`'s output in two halves, feeds the last part through each block in turn and concatenates
/// everything (shared by C2f and C3k2).
pub(crate) fn split_chain<B: Backend>(
    y: Tensor<B, 4>,
    c: usize,
    n: usize,
    block: impl Fn(usize, Tensor<B, 4>) -> Tensor<B, 4>,
) -> Tensor<B, 4> {
    let mut parts = y.split(c, 1);
    for i in 0..n {
        let last = parts.last().expect("two halves").clone();
        parts.push(block(i, last));
    }
    Tensor::cat(parts, 1)
}

impl<B: Backend> C2f<B> {
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let y = self.cv1.forward(x);
        let cat = split_chain(y, self.hidden, self.m.len(), |i, t| self.m[i].forward(t));
        self.cv2.forward(cat)
    }

    pub fn cost(&self, h: usize, w: usize, c: &mut Cost) {
        c.conv(&self.cv1, h, w);
        for b in &self.m {
            b.cost(h, w, c);
        }
        c.conv(&self.cv2, h, w);
    }
}
