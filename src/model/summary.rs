//! Model summary: layer table, parameter counts (as trained and fused for inference) and GFLOPs.
//!
//! FLOPs are counted the way Ultralytics reports them (thop): multiply-accumulates of convolutions (bias not
//! counted), attention matrix products and the DFL projection, plus BatchNorm element operations, times two.
//! Pooling, upsampling and activations count nothing, as in thop.

/// One row of the layer table.
#[derive(Debug, Clone)]
pub struct LayerRow {
    /// Row index in the YAML, the `<i>` of the layer's `model.<i>.` tensor keys.
    pub index: usize,
    /// Input layers as written in the YAML (`-1`, `[-1, 6]`).
    pub from: String,
    /// Repeats after depth scaling.
    pub repeats: usize,
    /// Parameters of this layer (BatchNorm running statistics excluded).
    pub params: usize,
    /// Module name as in the YAML (`Conv`, `C3k2`, `nn.Upsample`, ...).
    pub module: String,
    /// Resolved constructor arguments (channels after width scaling), as displayed.
    pub args: String,
}

/// What `ember info` prints.
#[derive(Debug, Clone)]
pub struct ModelSummary {
    /// Display name with scale, e.g. `yolo26n`.
    pub name: String,
    /// Number of classes the model was built for.
    pub nc: usize,
    /// Side in pixels of the square input the GFLOPs are counted at.
    pub imgsz: usize,
    /// The layer table, one row per YAML row.
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
