//! What a block costs at a given input size, counted the way Ultralytics reports it (thop): multiply-accumulates
//! of convolutions (bias not counted), attention matrix products and the DFL projection, plus BatchNorm element
//! operations. Each block adds its own share; `model::summary` totals them.

use burn::tensor::backend::Backend;

use super::{Conv, Conv2d};

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
    /// BatchNorm operations of the one-to-many branch (part of `norm_ops`).
    pub o2m_norm_ops: u64,
    /// Fused parameters of the one-to-many branch (part of `fused_params`), which an end-to-end model's fused
    /// summary leaves out: that branch is unused at inference there.
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

    /// Counts what follows into the one-to-many shares (`o2m_*`) as well, until [`Cost::end_one2many`].
    pub fn begin_one2many(&mut self) {
        self.in_o2m = true;
    }

    /// Stops counting into the one-to-many shares.
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
