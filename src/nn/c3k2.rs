//! Ultralytics' `C3k` and `C3k2` (YOLO11, YOLO26): a C2f whose inner blocks are bottlenecks, C3k blocks, or
//! (YOLO26's last head stage) a bottleneck followed by a position-sensitive attention block.

use burn::config::Config;
use burn::module::Module;
use burn::tensor::{backend::Backend, Tensor};

use super::attention::{PsaBlock, PsaBlockConfig};
use super::bottleneck::{Bottleneck, BottleneckConfig};
use super::conv::{Conv, ConvConfig};
use super::onnx::{OnnxGraph, ToOnnx};
use super::Cost;

/// [`C3k`] configuration: `C3k(c1, c2, n, shortcut, g, e, k)`, a C3 block with k x k bottlenecks.
#[derive(Config, Debug)]
pub struct C3kConfig {
    /// Input channels (Ultralytics' `c1`).
    pub c_in: usize,
    /// Output channels (Ultralytics' `c2`).
    pub c_out: usize,
    /// Default: 1.
    #[config(default = 1)]
    pub n: usize,
    /// Default: true.
    #[config(default = true)]
    pub shortcut: bool,
    /// Default: 1.
    #[config(default = 1)]
    pub groups: usize,
    /// Default: 0.5.
    #[config(default = 0.5)]
    pub expansion: f64,
    /// Bottleneck kernel. Default: 3.
    #[config(default = 3)]
    pub kernel: usize,
}

/// Ultralytics' `C3k`: `cv3(cat(m(cv1(x)), cv2(x)))`, `m` being `n` chained `kernel x kernel` bottlenecks.
#[derive(Module, Debug)]
pub struct C3k<B: Backend> {
    /// 1x1 conv `c_in -> hidden` feeding the bottlenecks; `hidden = int(c_out * expansion)`.
    pub cv1: Conv<B>,
    /// 1x1 conv `c_in -> hidden`, the branch that bypasses the bottlenecks.
    pub cv2: Conv<B>,
    /// 1x1 conv `2 * hidden -> c_out` over both branches, concatenated.
    pub cv3: Conv<B>,
    /// The bottlenecks, `hidden -> hidden` at full width (`e=1.0`).
    pub m: Vec<Bottleneck<B>>,
}

impl C3kConfig {
    /// A new [`C3k`] on `device`, with freshly initialised weights.
    pub fn init<B: Backend>(&self, device: &B::Device) -> C3k<B> {
        let c = (self.c_out as f64 * self.expansion) as usize;
        C3k {
            cv1: ConvConfig::new(self.c_in, c).init(device),
            cv2: ConvConfig::new(self.c_in, c).init(device),
            cv3: ConvConfig::new(2 * c, self.c_out).init(device),
            m: (0..self.n)
                .map(|_| {
                    BottleneckConfig::new(c, c)
                        .with_shortcut(self.shortcut)
                        .with_groups(self.groups)
                        .with_kernels((self.kernel, self.kernel))
                        .with_expansion(1.0)
                        .init(device)
                })
                .collect(),
        }
    }
}

impl<B: Backend> C3k<B> {
    /// `x` `[b, c_in, h, w]` to `[b, c_out, h, w]`.
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let mut a = self.cv1.forward(x.clone());
        for b in &self.m {
            a = b.forward(a);
        }
        let b = self.cv2.forward(x);
        self.cv3.forward(Tensor::cat(vec![a, b], 1))
    }

    /// Adds the cost at an `h x w` input to `c`.
    pub fn cost(&self, h: usize, w: usize, c: &mut Cost) {
        c.conv(&self.cv1, h, w);
        c.conv(&self.cv2, h, w);
        for b in &self.m {
            b.cost(h, w, c);
        }
        c.conv(&self.cv3, h, w);
    }
}

/// [`C3k2`] configuration: `C3k2(c1, c2, n, c3k, e, attn, g, shortcut)`.
#[derive(Config, Debug)]
pub struct C3k2Config {
    /// Input channels (Ultralytics' `c1`).
    pub c_in: usize,
    /// Output channels (Ultralytics' `c2`).
    pub c_out: usize,
    /// Default: 1.
    #[config(default = 1)]
    pub n: usize,
    /// Inner blocks are C3k instead of bottlenecks. Default: false.
    #[config(default = false)]
    pub c3k: bool,
    /// Default: 0.5.
    #[config(default = 0.5)]
    pub expansion: f64,
    /// Inner blocks are bottleneck + PSA block (takes precedence over `c3k`). Default: false.
    #[config(default = false)]
    pub attn: bool,
    /// Default: 1.
    #[config(default = 1)]
    pub groups: usize,
    /// Default: true.
    #[config(default = true)]
    pub shortcut: bool,
    /// Hidden width of plain bottleneck blocks as a share of theirs: 0.5 in C3k2, 1.0 in C2f. Default: 0.5.
    #[config(default = 0.5)]
    pub bottleneck_expansion: f64,
}

/// One inner block of a [`C3k2`]. The enum level does not appear in tensor names.
// Blocks are few and built once; boxing would only add indirection.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum C3k2Block<B: Backend> {
    /// A plain [`Bottleneck`] (neither `c3k` nor `attn`).
    Bottleneck(Bottleneck<B>),
    /// A [`C3k`] of two bottlenecks (`c3k`).
    C3k(C3k<B>),
    /// `nn.Sequential(Bottleneck, PSABlock)`: tensor names `m.i.0.*` and `m.i.1.*`.
    Attn((Bottleneck<B>, PsaBlock<B>)),
}

/// Ultralytics' `C3k2` (and `C2f`): `cv1`'s output split in two, the blocks chained on the last part, and
/// every part concatenated into `cv2`.
#[derive(Module, Debug)]
pub struct C3k2<B: Backend> {
    /// 1x1 conv `c_in -> 2 * hidden`.
    pub cv1: Conv<B>,
    /// 1x1 conv `(2 + n) * hidden -> c_out` over the two halves and every block's output.
    pub cv2: Conv<B>,
    /// The `n` inner blocks, `hidden -> hidden` each.
    pub m: Vec<C3k2Block<B>>,
    /// Channels of each part: `int(c_out * expansion)` (Ultralytics' `self.c`).
    pub hidden: usize,
}

impl C3k2Config {
    /// A new [`C3k2`] on `device`, with freshly initialised weights.
    pub fn init<B: Backend>(&self, device: &B::Device) -> C3k2<B> {
        let c = (self.c_out as f64 * self.expansion) as usize;
        let block = || {
            let bottleneck = || {
                BottleneckConfig::new(c, c)
                    .with_shortcut(self.shortcut)
                    .with_groups(self.groups)
                    .with_expansion(self.bottleneck_expansion)
                    .init(device)
            };
            if self.attn {
                let psa = PsaBlockConfig::new(c).with_num_heads((c / 64).max(1)).init(device);
                C3k2Block::Attn((bottleneck(), psa))
            } else if self.c3k {
                C3k2Block::C3k(
                    C3kConfig::new(c, c).with_n(2).with_shortcut(self.shortcut).with_groups(self.groups).init(device),
                )
            } else {
                C3k2Block::Bottleneck(bottleneck())
            }
        };
        C3k2 {
            cv1: ConvConfig::new(self.c_in, 2 * c).init(device),
            cv2: ConvConfig::new((2 + self.n) * c, self.c_out).init(device),
            m: (0..self.n).map(|_| block()).collect(),
            hidden: c,
        }
    }
}

impl<B: Backend> C3k2Block<B> {
    /// The block applied to `x` `[b, hidden, h, w]`; same shape out.
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        match self {
            C3k2Block::Bottleneck(b) => b.forward(x),
            C3k2Block::C3k(b) => b.forward(x),
            C3k2Block::Attn((b, psa)) => psa.forward(b.forward(x)),
        }
    }

    /// Adds the block's cost at an `h x w` input to `c`.
    pub fn cost(&self, h: usize, w: usize, c: &mut Cost) {
        match self {
            C3k2Block::Bottleneck(b) => b.cost(h, w, c),
            C3k2Block::C3k(b) => b.cost(h, w, c),
            C3k2Block::Attn((b, psa)) => {
                b.cost(h, w, c);
                psa.cost(h, w, c);
            }
        }
    }
}

/// Splits `cv1`'s output in two halves, feeds the last part through each block in turn and concatenates
/// everything.
fn split_chain<B: Backend>(
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

impl<B: Backend> C3k2<B> {
    /// `x` `[b, c_in, h, w]` to `[b, c_out, h, w]`.
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let y = self.cv1.forward(x);
        let cat = split_chain(y, self.hidden, self.m.len(), |i, t| self.m[i].forward(t));
        self.cv2.forward(cat)
    }

    /// Adds the cost at an `h x w` input to `c`.
    pub fn cost(&self, h: usize, w: usize, c: &mut Cost) {
        c.conv(&self.cv1, h, w);
        for b in &self.m {
            b.cost(h, w, c);
        }
        c.conv(&self.cv2, h, w);
    }
}

impl<B: Backend> ToOnnx for C3k<B> {
    fn to_onnx(&self, g: &mut dyn OnnxGraph, x: &str) -> String {
        let mut a = self.cv1.to_onnx(g, x);
        for b in &self.m {
            a = b.to_onnx(g, &a);
        }
        let b = self.cv2.to_onnx(g, x);
        let cat = g.concat(&[&a, &b], 1);
        self.cv3.to_onnx(g, &cat)
    }
}

impl<B: Backend> ToOnnx for C3k2Block<B> {
    fn to_onnx(&self, g: &mut dyn OnnxGraph, x: &str) -> String {
        match self {
            C3k2Block::Bottleneck(b) => b.to_onnx(g, x),
            C3k2Block::C3k(b) => b.to_onnx(g, x),
            C3k2Block::Attn((b, psa)) => {
                let y = b.to_onnx(g, x);
                psa.to_onnx(g, &y)
            }
        }
    }
}

/// As [`C3k2::forward`]: `cv1`'s output split in two, the blocks chained on the last part, all concatenated.
impl<B: Backend> ToOnnx for C3k2<B> {
    fn to_onnx(&self, g: &mut dyn OnnxGraph, x: &str) -> String {
        let y = self.cv1.to_onnx(g, x);
        let mut parts = g.split(&y, &[self.hidden, self.hidden], 1);
        for block in &self.m {
            let last = parts.last().expect("two halves").clone();
            parts.push(block.to_onnx(g, &last));
        }
        let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
        let cat = g.concat(&refs, 1);
        self.cv2.to_onnx(g, &cat)
    }
}
