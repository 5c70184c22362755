//! Model summary: layer table, parameter counts (as trained and fused for inference) and GFLOPs.
//!
//! FLOPs are counted the way Ultralytics reports them (thop): multiply-accumulates of convolutions (bias not
//! counted), attention matrix products and the DFL projection, plus BatchNorm element operations, times two.
//! Pooling, upsampling and activations count nothing, as in thop.

use burn::tensor::backend::Backend;

use crate::nn::{Conv, Conv2d};

/// Running totals while walking a model at a given input size.
#[derive(Debug, Clone, Default)]
pub struct Cost {
    /// Convolution multiply-accumulates.
    pub conv_macs: u64,
    /// BatchNorm operations in thop's units (4 per element: normalise and affine).
    pub norm_ops: u64,
    /// Parameters after folding BatchNorm into the convolution (weight + one bias per output channel).
    pub fused_params: u64,
    /// The share of the above that belongs to the one-to-many branch of the head.
    pub o2m_conv_macs: u64,
    pub o2m_norm_ops: u64,
    pub o2m_fused_params: u64,
    in_o2m: bool,
}

impl Cost {
    /// A `Conv` block applied to an `h x w` input.
    pub fn conv<B: Backend>(&mut self, c: &Conv<B>, h: usize, w: usize) {
        let (ho, wo) = c.conv.out_size(h, w);
        let macs = c.conv.macs(ho, wo);
        let norm = 4 * (c.c_out() * ho * wo) as u64;
        let fused = c.conv.weight.dims().iter().product::<usize>() as u64 + c.c_out() as u64;
        self.add(macs, norm, fused);
    }

    /// A plain convolution (with its own bias) applied to an `h x w` input.
    pub fn conv2d<B: Backend>(&mut self, c: &Conv2d<B>, h: usize, w: usize) {
        let (ho, wo) = c.out_size(h, w);
        let fused =
            c.weight.dims().iter().product::<usize>() as u64 + c.bias.as_ref().map(|b| b.dims()[0] as u64).unwrap_or(0);
        self.add(c.macs(ho, wo), 0, fused);
    }

    /// Matrix-product multiply-accumulates (attention), counted like convolutions.
    pub fn matmul(&mut self, macs: u64) {
        self.add(macs, 0, 0);
    }

    /// The DFL projection: `bins` parameters applied to 4 sides of every anchor.
    pub fn dfl(&mut self, bins: usize, anchors: usize) {
        self.fused_params += bins as u64;
        self.conv_macs += (bins * 4 * anchors) as u64;
    }

    pub fn begin_one2many(&mut self) {
        self.in_o2m = true;
    }

    pub fn end_one2many(&mut self) {
        self.in_o2m = false;
    }

    fn add(&mut self, macs: u64, norm: u64, fused: u64) {
        self.conv_macs += macs;
        self.norm_ops += norm;
        self.fused_params += fused;
        if self.in_o2m {
            self.o2m_conv_macs += macs;
            self.o2m_norm_ops += norm;
            self.o2m_fused_params += fused;
        }
    }
}

/// One row of the layer table.
#[derive(Debug, Clone)]
pub struct LayerRow {
    pub index: usize,
    pub from: String,
    pub repeats: usize,
    pub params: usize,
    pub module: String,
    pub args: String,
}

/// What `ember info` prints.
#[derive(Debug, Clone)]
pub struct ModelSummary {
    pub name: String,
    pub nc: usize,
    pub imgsz: usize,
    pub layers: Vec<LayerRow>,
    /// All parameters (BatchNorm running statistics excluded, as PyTorch's `parameters()`).
    pub params: usize,
    /// Parameters that receive gradients (the frozen DFL projection excluded).
    pub gradients: usize,
    /// Parameters after BatchNorm folding, with the unused head branch dropped (one-to-many for end-to-end
    /// models).
    pub fused_params: usize,
    /// GFLOPs of one `imgsz x imgsz` image through the model as trained.
    pub gflops: f64,
    /// GFLOPs of the fused inference model.
    pub fused_gflops: f64,
    /// Number of tensors in the state dict (running statistics included).
    pub tensors: usize,
}

fn thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

impl std::fmt::Display for ModelSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "{:>3} {:>14} {:>3} {:>10}  {:<14} arguments", "", "from", "n", "params", "module")?;
        for r in &self.layers {
            writeln!(
                f,
                "{:>3} {:>14} {:>3} {:>10}  {:<14} {}",
                r.index,
                r.from,
                r.repeats,
                thousands(r.params),
                r.module,
                r.args
            )?;
        }
        writeln!(
            f,
            "{} summary: {} layers, {} parameters, {} gradients, {:.1} GFLOPs at {}x{} ({} classes)",
            self.name,
            self.layers.len(),
            thousands(self.params),
            thousands(self.gradients),
            self.gflops,
            self.imgsz,
            self.imgsz,
            self.nc
        )?;
        write!(
            f,
            "{} fused for inference: {} parameters, {:.1} GFLOPs",
            self.name,
            thousands(self.fused_params),
            self.fused_gflops
        )
    }
}
