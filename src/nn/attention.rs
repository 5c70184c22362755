//! Position-sensitive attention (YOLO11/YOLO26): `Attention`, `PSABlock` and the `C2PSA` stage.

use burn::config::Config;
use burn::module::Module;
use burn::tensor::activation::softmax;
use burn::tensor::DType;
use burn::tensor::{backend::Backend, Tensor};

use super::conv::{Conv, ConvConfig};
use super::float::to_f32;
use super::onnx::{Attr, OnnxGraph, ToOnnx};
use super::Cost;

/// [`Attention`] configuration: `Attention(dim, num_heads, attn_ratio)`.
#[derive(Config, Debug)]
pub struct AttentionConfig {
    /// Input and output channels, divided evenly among the heads.
    pub dim: usize,
    /// Default: 8.
    #[config(default = 8)]
    pub num_heads: usize,
    /// Key size relative to the head size. Default: 0.5.
    #[config(default = 0.5)]
    pub attn_ratio: f64,
}

/// Multi-head self-attention over all pixels, with a depth-wise 3x3 positional encoding of the values.
#[derive(Module, Debug)]
pub struct Attention<B: Backend> {
    /// 1x1 projection (no activation) to `dim + 2 * key_dim * num_heads` channels: per head, queries
    /// (`key_dim`), keys (`key_dim`) and values (`head_dim`), in that order.
    pub qkv: Conv<B>,
    /// 1x1 output projection (no activation), `dim -> dim`.
    pub proj: Conv<B>,
    /// Positional encoding: a depth-wise 3x3 convolution (no activation) of the values, added to the
    /// attention output.
    pub pe: Conv<B>,
    /// Number of attention heads.
    pub num_heads: usize,
    /// Query and key channels per head: `int(head_dim * attn_ratio)`.
    pub key_dim: usize,
    /// Value channels per head: `dim / num_heads`.
    pub head_dim: usize,
}

impl AttentionConfig {
    /// A new [`Attention`] on `device`, with freshly initialised weights.
    pub fn init<B: Backend>(&self, device: &B::Device) -> Attention<B> {
        let head_dim = self.dim / self.num_heads;
        let key_dim = (head_dim as f64 * self.attn_ratio) as usize;
        let qkv_ch = self.dim + 2 * key_dim * self.num_heads;
        Attention {
            qkv: ConvConfig::new(self.dim, qkv_ch).with_act(false).init(device),
            proj: ConvConfig::new(self.dim, self.dim).with_act(false).init(device),
            pe: ConvConfig::new(self.dim, self.dim).with_kernel(3).with_groups(self.dim).with_act(false).init(device),
            num_heads: self.num_heads,
            key_dim,
            head_dim,
        }
    }
}

impl<B: Backend> Attention<B> {
    /// Self-attention over all `h * w` positions of `x` `[b, dim, h, w]`, same shape out. The softmax runs in FP32
    /// whatever the input dtype.
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let [b, c, h, w] = x.dims();
        let n = h * w;
        let (nh, kd, hd) = (self.num_heads, self.key_dim, self.head_dim);
        let qkv = self.qkv.forward(x).reshape([b, nh, 2 * kd + hd, n]);
        let parts = qkv.split_with_sizes(vec![kd, kd, hd], 2);
        let [q, k, v]: [Tensor<B, 4>; 3] = parts.try_into().expect("three parts");
        let scale = (kd as f64).powf(-0.5);
        let logits = q.mul_scalar(scale).swap_dims(2, 3).matmul(k); // [b, nh, n, n]
                                                                    // Softmax sums exponentials: in FP16 it overflows and loses the small weights, so it runs in FP32.
        let dtype = logits.dtype();
        let attn = softmax(to_f32(logits), 3);
        let attn = if dtype == DType::F32 { attn } else { attn.cast(dtype) };
        let y = v.clone().matmul(attn.swap_dims(2, 3)).reshape([b, c, h, w]);
        let y = super::residual::residual(y, self.pe.forward(v.reshape([b, c, h, w])));
        self.proj.forward(y)
    }

    /// Adds the cost at an `h x w` input to `c`: the three convolutions and the two attention matrix products.
    pub fn cost(&self, h: usize, w: usize, c: &mut Cost) {
        c.conv(&self.qkv, h, w);
        let n = (h * w) as u64;
        // q^T k and v attn^T, both batched over heads.
        c.matmul(self.num_heads as u64 * n * n * (self.key_dim + self.head_dim) as u64);
        c.conv(&self.pe, h, w);
        c.conv(&self.proj, h, w);
    }
}

/// [`PsaBlock`] configuration: `PSABlock(c, attn_ratio, num_heads, shortcut)`.
#[derive(Config, Debug)]
pub struct PsaBlockConfig {
    /// Input and output channels (Ultralytics' `c`).
    pub channels: usize,
    /// Default: 0.5.
    #[config(default = 0.5)]
    pub attn_ratio: f64,
    /// Default: 4.
    #[config(default = 4)]
    pub num_heads: usize,
    /// Default: true.
    #[config(default = true)]
    pub shortcut: bool,
}

/// Attention then a two-layer 1x1 feed-forward, each with a residual.
#[derive(Module, Debug)]
pub struct PsaBlock<B: Backend> {
    /// Multi-head self-attention, the first sub-block.
    pub attn: Attention<B>,
    /// `nn.Sequential(Conv(c, 2c), Conv(2c, c, act=False))`.
    pub ffn: (Conv<B>, Conv<B>),
    /// Residuals around both the attention and the feed-forward (Ultralytics' `shortcut`).
    pub add: bool,
}

impl PsaBlockConfig {
    /// A new [`PsaBlock`] on `device`, with freshly initialised weights.
    pub fn init<B: Backend>(&self, device: &B::Device) -> PsaBlock<B> {
        let c = self.channels;
        PsaBlock {
            attn: AttentionConfig::new(c).with_num_heads(self.num_heads).with_attn_ratio(self.attn_ratio).init(device),
            ffn: (ConvConfig::new(c, 2 * c).init(device), ConvConfig::new(2 * c, c).with_act(false).init(device)),
            add: self.shortcut,
        }
    }
}

impl<B: Backend> PsaBlock<B> {
    /// `x` `[b, channels, h, w]` through the attention then the feed-forward, each with its residual when `add`;
    /// same shape out.
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let a = self.attn.forward(x.clone());
        let x = if self.add { super::residual::residual(x, a) } else { a };
        let f = self.ffn.1.forward(self.ffn.0.forward(x.clone()));
        if self.add {
            super::residual::residual(x, f)
        } else {
            f
        }
    }

    /// Adds the cost at an `h x w` input to `c`.
    pub fn cost(&self, h: usize, w: usize, c: &mut Cost) {
        self.attn.cost(h, w, c);
        c.conv(&self.ffn.0, h, w);
        c.conv(&self.ffn.1, h, w);
    }
}

/// [`C2psa`] configuration: `C2PSA(c1, c2, n, e)` (input and output channels must be equal).
#[derive(Config, Debug)]
pub struct C2psaConfig {
    /// Input and output channels (Ultralytics' `c1`, which must equal `c2`).
    pub channels: usize,
    /// Default: 1.
    #[config(default = 1)]
    pub n: usize,
    /// Default: 0.5.
    #[config(default = 0.5)]
    pub expansion: f64,
}

/// CSP stage whose second half goes through `n` PSA blocks.
#[derive(Module, Debug)]
pub struct C2psa<B: Backend> {
    /// 1x1 conv `channels -> 2 * hidden`, whose output is split into two halves.
    pub cv1: Conv<B>,
    /// 1x1 conv `2 * hidden -> channels` over the first half and the processed second half, concatenated.
    pub cv2: Conv<B>,
    /// The PSA blocks chained on the second half, `max(hidden / 64, 1)` heads each.
    pub m: Vec<PsaBlock<B>>,
    /// Channels of each half: `int(channels * expansion)` (Ultralytics' `self.c`).
    pub hidden: usize,
}

impl C2psaConfig {
    /// A new [`C2psa`] on `device`, with freshly initialised weights.
    pub fn init<B: Backend>(&self, device: &B::Device) -> C2psa<B> {
        let c = (self.channels as f64 * self.expansion) as usize;
        C2psa {
            cv1: ConvConfig::new(self.channels, 2 * c).init(device),
            cv2: ConvConfig::new(2 * c, self.channels).init(device),
            m: (0..self.n)
                .map(|_| PsaBlockConfig::new(c).with_attn_ratio(0.5).with_num_heads((c / 64).max(1)).init(device))
                .collect(),
            hidden: c,
        }
    }
}

impl<B: Backend> C2psa<B> {
    /// `x` `[b, channels, h, w]` to the same shape: `cv1`, split, the second half through `m`, concatenate,
    /// `cv2`.
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let mut parts = self.cv1.forward(x).split(self.hidden, 1);
        let mut b = parts.pop().expect("two halves");
        let a = parts.pop().expect("two halves");
        for block in &self.m {
            b = block.forward(b);
        }
        self.cv2.forward(Tensor::cat(vec![a, b], 1))
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

impl<B: Backend> ToOnnx for Attention<B> {
    fn to_onnx(&self, g: &mut dyn OnnxGraph, x: &str) -> String {
        let (nh, kd, hd) = (self.num_heads, self.key_dim, self.head_dim);
        let shape = g.op("Shape", &[x], vec![]);
        let qkv = self.qkv.to_onnx(g, x);
        let qkv = g.reshape(&qkv, &[0, nh as i64, (2 * kd + hd) as i64, -1]);
        let parts = g.split(&qkv, &[kd, kd, hd], 2);
        let (q, k, v) = (&parts[0], &parts[1], &parts[2]);
        let scale = g.scalar((kd as f64).powf(-0.5) as f32);
        let q = g.op("Mul", &[q, &scale], vec![]);
        let qt = g.transpose(&q, &[0, 1, 3, 2]);
        let logits = g.op("MatMul", &[&qt, k], vec![]);
        let attn = g.op("Softmax", &[&logits], vec![Attr::Int("axis", 3)]);
        let attn_t = g.transpose(&attn, &[0, 1, 3, 2]);
        let y = g.op("MatMul", &[v, &attn_t], vec![]);
        let y = g.op("Reshape", &[&y, &shape], vec![]);
        let v_img = g.op("Reshape", &[v, &shape], vec![]);
        let pe = self.pe.to_onnx(g, &v_img);
        let y = g.add(&y, &pe);
        self.proj.to_onnx(g, &y)
    }
}

impl<B: Backend> ToOnnx for PsaBlock<B> {
    fn to_onnx(&self, g: &mut dyn OnnxGraph, x: &str) -> String {
        let a = self.attn.to_onnx(g, x);
        let x = if self.add { g.add(x, &a) } else { a };
        let f = self.ffn.0.to_onnx(g, &x);
        let f = self.ffn.1.to_onnx(g, &f);
        if self.add {
            g.add(&x, &f)
        } else {
            f
        }
    }
}

impl<B: Backend> ToOnnx for C2psa<B> {
    fn to_onnx(&self, g: &mut dyn OnnxGraph, x: &str) -> String {
        let y = self.cv1.to_onnx(g, x);
        let parts = g.split(&y, &[self.hidden, self.hidden], 1);
        let mut b = parts[1].clone();
        for block in &self.m {
            b = block.to_onnx(g, &b);
        }
        let cat = g.concat(&[&parts[0], &b], 1);
        self.cv2.to_onnx(g, &cat)
    }
}
