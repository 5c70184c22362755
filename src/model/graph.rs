//! ember's layer graph: a model YAML resolved into concrete blocks (channels, repeats, strides), and the
//! forward pass over it.

use anyhow::{anyhow, bail, Context, Result};
use burn::module::Module;
use burn::tensor::{backend::Backend, Tensor};
use serde_yaml::Value;

use super::yaml::{LayerSpec, ModelConfig};
use crate::nn::{
    concat, concat_onnx, upsample_nearest, upsample_nearest_onnx, C2fConfig, C2psa, C2psaConfig, C3k2, C3k2Config,
    Conv, ConvConfig, Detect, DetectConfig, DetectOutput, HeadExport, OnnxGraph, Sppf, SppfConfig, ToOnnx,
};

/// One built layer. The enum level does not appear in tensor names (`model.<i>.<field>...`).
#[derive(Module, Debug)]
pub enum Layer<B: Backend> {
    /// Conv + BatchNorm + SiLU (also YAML `DWConv`, built with depthwise groups).
    Conv(Conv<B>),
    /// C3k2, and C2f (built as a C3k2 with full-width bottlenecks).
    C3k2(C3k2<B>),
    /// Spatial pyramid pooling, fast (YAML `SPPF`).
    Sppf(Sppf<B>),
    /// C2 block with position-sensitive attention (YAML `C2PSA`).
    C2psa(C2psa<B>),
    /// Nearest upsampling by this factor.
    Upsample(usize),
    /// Concatenation along this dimension (the YAML's argument; the builder accepts channels, 1, only).
    Concat(usize),
    /// The detection head; always the last layer.
    Detect(Detect<B>),
}

/// What the graph needs to know about a layer besides its weights.
#[derive(Debug, Clone)]
pub struct LayerInfo {
    /// Absolute input indices (`-1` resolved); the network input is index `usize::MAX`.
    pub from: Vec<usize>,
    /// `from` as written in the YAML.
    pub from_text: String,
    /// Repeats after depth scaling.
    pub repeats: usize,
    /// Module name as in the YAML (`Conv`, `C3k2`, `nn.Upsample`, ...).
    pub module: String,
    /// Resolved constructor arguments, for display.
    pub args: String,
    /// Output channels after width scaling (0 for `Detect`, whose outputs are not a feature map).
    pub c_out: usize,
    /// Total downsampling of this layer's output relative to the input.
    pub stride: usize,
}

/// Static description of a built model.
#[derive(Debug, Clone)]
pub struct ModelSpec {
    /// Display name with scale, e.g. `yolo26n` (from [`ModelConfig::name`]).
    pub name: String,
    /// Number of classes the head was built for (the dataset's, not the YAML's).
    pub nc: usize,
    /// DFL bins per box side (Ultralytics `reg_max`): 16 for YOLOv8/YOLO11, 1 (direct ltrb regression) for YOLO26.
    pub reg_max: usize,
    /// Whether the head has the one-to-one (NMS-free) branch next to the one-to-many one (YOLO26).
    pub end2end: bool,
    /// Detection-level strides in input pixels, one per head input, e.g. `[8, 16, 32]`.
    pub strides: Vec<f32>,
    /// Per-layer description, indexed like [`super::Yolo::model`].
    pub layers: Vec<LayerInfo>,
    /// Layers whose outputs later layers read (besides the previous one).
    pub saved: Vec<bool>,
    /// The configuration it was built from (to rebuild it).
    pub config: ModelConfig,
}

/// Input marker in [`LayerInfo::from`].
pub const INPUT: usize = usize::MAX;

/// Ultralytics' `make_divisible`: the smallest multiple of `divisor` >= `x`.
pub fn make_divisible(x: f64, divisor: usize) -> usize {
    ((x / divisor as f64).ceil() as usize) * divisor
}

fn arg_usize(args: &[Value], i: usize, default: Option<usize>) -> Result<usize> {
    match args.get(i) {
        Some(Value::Number(n)) => {
            n.as_u64().map(|v| v as usize).ok_or_else(|| anyhow!("argument {i} must be a non-negative integer"))
        }
        None | Some(Value::Null) => default.ok_or_else(|| anyhow!("missing argument {i}")),
        Some(v) => bail!("argument {i} must be an integer, got {v:?}"),
    }
}

fn arg_bool(args: &[Value], i: usize, default: bool) -> Result<bool> {
    match args.get(i) {
        Some(Value::Bool(b)) => Ok(*b),
        Some(Value::String(s)) if s == "True" || s == "False" => Ok(s == "True"),
        None | Some(Value::Null) => Ok(default),
        Some(v) => bail!("argument {i} must be a boolean, got {v:?}"),
    }
}

fn arg_f64(args: &[Value], i: usize, default: f64) -> Result<f64> {
    match args.get(i) {
        Some(Value::Number(n)) => n.as_f64().ok_or_else(|| anyhow!("argument {i} must be a number")),
        None | Some(Value::Null) => Ok(default),
        Some(v) => bail!("argument {i} must be a number, got {v:?}"),
    }
}

fn is_none(v: Option<&Value>) -> bool {
    matches!(v, None | Some(Value::Null)) || matches!(v, Some(Value::String(s)) if s == "None")
}

/// Build the layers for `nc` classes. Returns the layers and their description.
pub fn build<B: Backend>(cfg: &ModelConfig, nc: usize, device: &B::Device) -> Result<(Vec<Layer<B>>, ModelSpec)> {
    if nc == 0 {
        bail!("the number of classes must be at least 1");
    }
    let mut layers = Vec::new();
    let mut infos: Vec<LayerInfo> = Vec::new();
    let mut strides = Vec::new();
    for (i, spec) in cfg.layers.iter().enumerate() {
        let (layer, info) = build_layer::<B>(cfg, nc, i, spec, &infos, device)
            .with_context(|| format!("layer {i} ({})", spec.module))?;
        if let Layer::Detect(d) = &layer {
            if i + 1 != cfg.layers.len() {
                bail!("layer {i}: Detect must be the last layer");
            }
            strides = d.strides.clone();
        }
        layers.push(layer);
        infos.push(info);
    }
    if !matches!(layers.last(), Some(Layer::Detect(_))) {
        bail!("the last layer must be Detect");
    }
    let mut saved = vec![false; infos.len()];
    for (i, info) in infos.iter().enumerate() {
        for &f in &info.from {
            if f != INPUT && f + 1 != i {
                saved[f] = true;
            }
        }
    }
    let spec = ModelSpec {
        name: cfg.name.clone(),
        nc,
        reg_max: cfg.reg_max,
        end2end: cfg.end2end,
        strides,
        layers: infos,
        saved,
        config: cfg.clone(),
    };
    Ok((layers, spec))
}

/// One YAML row being built: its resolved inputs and what they provide.
struct Row<'a> {
    cfg: &'a ModelConfig,
    module: &'a str,
    args: &'a [Value],
    /// Repeats after depth scaling.
    n: usize,
    from: Vec<usize>,
    /// Channels and stride of the first input.
    c1: usize,
    s1: usize,
    prev: &'a [LayerInfo],
}

/// A built layer with its output channels, its stride, and its arguments for display.
type Built<B> = (Layer<B>, usize, usize, String);

impl Row<'_> {
    fn channels(&self, f: usize) -> usize {
        if f == INPUT {
            3
        } else {
            self.prev[f].c_out
        }
    }

    fn stride(&self, f: usize) -> usize {
        if f == INPUT {
            1
        } else {
            self.prev[f].stride
        }
    }

    /// Output width of the "base" modules: scaled, capped, rounded to a multiple of 8.
    fn width(&self, c2: usize) -> usize {
        make_divisible(c2.min(self.cfg.max_channels) as f64 * self.cfg.width, 8)
    }

    fn one_input(&self) -> Result<()> {
        if self.from.len() != 1 {
            bail!("{} takes one input", self.module);
        }
        Ok(())
    }

    fn single(&self) -> Result<()> {
        if self.n != 1 {
            bail!("{} with repeats {} is not supported", self.module, self.n);
        }
        self.one_input()
    }
}

/// Absolute input indices of row `i` (`-1` resolved; the network input is [`INPUT`]).
fn resolve_from(spec: &LayerSpec, i: usize) -> Result<Vec<usize>> {
    spec.from
        .indices()
        .into_iter()
        .map(|f| {
            let abs = if f < 0 { i as i64 + f } else { f };
            if abs < 0 && i == 0 {
                Ok(INPUT)
            } else if abs < 0 || abs as usize >= i {
                Err(anyhow!("'from' index {f} does not name an earlier layer"))
            } else {
                Ok(abs as usize)
            }
        })
        .collect()
}

fn build_layer<B: Backend>(
    cfg: &ModelConfig,
    nc: usize,
    i: usize,
    spec: &LayerSpec,
    prev: &[LayerInfo],
    device: &B::Device,
) -> Result<(Layer<B>, LayerInfo)> {
    let from = resolve_from(spec, i)?;
    let n = if spec.repeats > 1 { ((spec.repeats as f64 * cfg.depth).round() as usize).max(1) } else { spec.repeats };
    let mut row = Row { cfg, module: &spec.module, args: &spec.args, n, from, c1: 0, s1: 0, prev };
    (row.c1, row.s1) = (row.channels(row.from[0]), row.stride(row.from[0]));
    let (layer, c2, stride, shown) = match spec.module.as_str() {
        "Conv" | "DWConv" => conv_layer(&row, device)?,
        "C2f" => c2f_layer(&row, device)?,
        "C3k2" => c3k2_layer(&row, device)?,
        "SPPF" => sppf_layer(&row, device)?,
        "C2PSA" => c2psa_layer(&row, device)?,
        "nn.Upsample" | "Upsample" => upsample_layer(&row)?,
        "Concat" => concat_layer(&row)?,
        "Detect" => detect_layer(&row, nc, device)?,
        other => bail!(
            "unsupported module '{other}' (ember builds Conv, DWConv, C2f, C3k2, SPPF, C2PSA, nn.Upsample, Concat, Detect)"
        ),
    };
    let info = LayerInfo {
        from: row.from,
        from_text: spec.from.to_string(),
        repeats: n,
        module: spec.module.clone(),
        args: shown,
        c_out: c2,
        stride,
    };
    Ok((layer, info))
}

fn conv_layer<B: Backend>(row: &Row, device: &B::Device) -> Result<Built<B>> {
    row.single()?;
    let (c1, args) = (row.c1, row.args);
    let c2 = row.width(arg_usize(args, 0, None)?);
    let k = arg_usize(args, 1, Some(1))?;
    let s = arg_usize(args, 2, Some(1))?;
    let config = if row.module == "DWConv" {
        ConvConfig::depthwise(c1, c2, k, s)
    } else {
        if args.len() > 3 && !is_none(args.get(3)) {
            bail!("explicit Conv padding is not supported");
        }
        let g = arg_usize(args, 4, Some(1))?;
        ConvConfig::new(c1, c2).with_kernel(k).with_stride(s).with_groups(g)
    };
    Ok((Layer::Conv(config.init(device)), c2, row.s1 * s, format!("[{c1}, {c2}, {k}, {s}]")))
}

fn c2f_layer<B: Backend>(row: &Row, device: &B::Device) -> Result<Built<B>> {
    row.one_input()?;
    let (c1, n, args) = (row.c1, row.n, row.args);
    let c2 = row.width(arg_usize(args, 0, None)?);
    let shortcut = arg_bool(args, 1, false)?;
    let g = arg_usize(args, 2, Some(1))?;
    let e = arg_f64(args, 3, 0.5)?;
    let m = C2fConfig::new(c1, c2).with_n(n).with_shortcut(shortcut).with_groups(g).with_expansion(e);
    Ok((Layer::C3k2(m.init(device)), c2, row.s1, format!("[{c1}, {c2}, {n}, {shortcut}]")))
}

fn c3k2_layer<B: Backend>(row: &Row, device: &B::Device) -> Result<Built<B>> {
    row.one_input()?;
    let (c1, n, args) = (row.c1, row.n, row.args);
    let c2 = row.width(arg_usize(args, 0, None)?);
    // Ultralytics forces C3k inner blocks for the larger scales.
    let c3k = arg_bool(args, 1, false)? || matches!(row.cfg.scale.as_deref(), Some("m" | "l" | "x"));
    let e = arg_f64(args, 2, 0.5)?;
    let attn = arg_bool(args, 3, false)?;
    let g = arg_usize(args, 4, Some(1))?;
    let shortcut = arg_bool(args, 5, true)?;
    let m = C3k2Config::new(c1, c2)
        .with_n(n)
        .with_c3k(c3k)
        .with_expansion(e)
        .with_attn(attn)
        .with_groups(g)
        .with_shortcut(shortcut);
    Ok((Layer::C3k2(m.init(device)), c2, row.s1, format!("[{c1}, {c2}, {n}, {c3k}, {e}, {attn}]")))
}

fn sppf_layer<B: Backend>(row: &Row, device: &B::Device) -> Result<Built<B>> {
    row.single()?;
    let (c1, args) = (row.c1, row.args);
    let c2 = row.width(arg_usize(args, 0, None)?);
    let k = arg_usize(args, 1, Some(5))?;
    let pools = arg_usize(args, 2, Some(3))?;
    let shortcut = arg_bool(args, 3, false)?;
    // Rows with only [c2, k] are the original SPPF, whose cv1 keeps its SiLU.
    let cv1_act = args.len() <= 2;
    let m = SppfConfig::new(c1, c2).with_kernel(k).with_n(pools).with_shortcut(shortcut).with_cv1_act(cv1_act);
    Ok((Layer::Sppf(m.init(device)), c2, row.s1, format!("[{c1}, {c2}, {k}, {pools}, {shortcut}]")))
}

fn c2psa_layer<B: Backend>(row: &Row, device: &B::Device) -> Result<Built<B>> {
    row.one_input()?;
    let (c1, n) = (row.c1, row.n);
    let c2 = row.width(arg_usize(row.args, 0, None)?);
    if c1 != c2 {
        bail!("C2PSA needs equal input and output channels, got {c1} and {c2}");
    }
    let e = arg_f64(row.args, 1, 0.5)?;
    let m = C2psaConfig::new(c1).with_n(n).with_expansion(e);
    Ok((Layer::C2psa(m.init(device)), c2, row.s1, format!("[{c1}, {c2}, {n}]")))
}

fn upsample_layer<B: Backend>(row: &Row) -> Result<Built<B>> {
    row.single()?;
    let (args, s1) = (row.args, row.s1);
    if !is_none(args.first()) {
        bail!("Upsample by output size is not supported, use [None, factor, \"nearest\"]");
    }
    let factor = arg_usize(args, 1, None)?;
    let mode = args.get(2).and_then(Value::as_str).unwrap_or("nearest");
    if mode != "nearest" {
        bail!("Upsample mode '{mode}' is not supported (only nearest)");
    }
    if factor == 0 || s1 % factor != 0 {
        bail!("Upsample factor {factor} does not divide the stride {s1}");
    }
    Ok((Layer::Upsample(factor), row.c1, s1 / factor, format!("[None, {factor}, 'nearest']")))
}

fn concat_layer<B: Backend>(row: &Row) -> Result<Built<B>> {
    if row.n != 1 {
        bail!("Concat with repeats is not supported");
    }
    if arg_usize(row.args, 0, Some(1))? != 1 {
        bail!("Concat only along dimension 1 (channels)");
    }
    if row.from.iter().any(|&f| row.stride(f) != row.s1) {
        bail!("Concat inputs have different strides");
    }
    let c2 = row.from.iter().map(|&f| row.channels(f)).sum();
    Ok((Layer::Concat(1), c2, row.s1, "[1]".to_string()))
}

fn detect_layer<B: Backend>(row: &Row, nc: usize, device: &B::Device) -> Result<Built<B>> {
    if row.n != 1 {
        bail!("Detect with repeats is not supported");
    }
    let cfg = row.cfg;
    let channels: Vec<usize> = row.from.iter().map(|&f| row.channels(f)).collect();
    let strides: Vec<f32> = row.from.iter().map(|&f| row.stride(f) as f32).collect();
    // YOLOv8-style heads are the files without C3k2 (Ultralytics' "legacy" flag).
    let legacy = !cfg.layers.iter().any(|l| l.module == "C3k2");
    let m = DetectConfig::new(nc, channels.clone())
        .with_strides(strides)
        .with_reg_max(cfg.reg_max)
        .with_end2end(cfg.end2end)
        .with_legacy(legacy);
    let shown = format!("[{nc}, {}, {}, {channels:?}]", cfg.reg_max, cfg.end2end);
    Ok((Layer::Detect(m.init(device)), 0, row.s1, shown))
}

impl<B: Backend> Layer<B> {
    /// Apply a non-Detect layer to its inputs.
    pub fn forward(&self, mut inputs: Vec<Tensor<B, 4>>) -> Tensor<B, 4> {
        match self {
            Layer::Conv(m) => m.forward(inputs.remove(0)),
            Layer::C3k2(m) => m.forward(inputs.remove(0)),
            Layer::Sppf(m) => m.forward(inputs.remove(0)),
            Layer::C2psa(m) => m.forward(inputs.remove(0)),
            Layer::Upsample(s) => upsample_nearest(inputs.remove(0), *s),
            Layer::Concat(dim) => concat(inputs, *dim),
            Layer::Detect(_) => unreachable!("Detect is applied by the model"),
        }
    }

    /// [`Layer::forward`] in an ONNX graph, on the values named `inputs`.
    pub fn to_onnx(&self, g: &mut dyn OnnxGraph, inputs: &[String]) -> String {
        let x = inputs[0].as_str();
        match self {
            Layer::Conv(m) => m.to_onnx(g, x),
            Layer::C3k2(m) => m.to_onnx(g, x),
            Layer::Sppf(m) => m.to_onnx(g, x),
            Layer::C2psa(m) => m.to_onnx(g, x),
            Layer::Upsample(s) => upsample_nearest_onnx(g, x, *s),
            Layer::Concat(dim) => concat_onnx(g, inputs, *dim),
            Layer::Detect(_) => unreachable!("Detect is written by the model"),
        }
    }
}

/// Run the graph: every layer in order, keeping the outputs later layers read.
pub fn forward<B: Backend>(layers: &[Layer<B>], spec: &ModelSpec, x: Tensor<B, 4>) -> DetectOutput<B> {
    let mut saved: Vec<Option<Tensor<B, 4>>> = vec![None; layers.len()];
    let mut last = x.clone();
    for (i, (layer, info)) in layers.iter().zip(&spec.layers).enumerate() {
        let inputs: Vec<Tensor<B, 4>> = info
            .from
            .iter()
            .map(|&f| {
                if f == INPUT {
                    x.clone()
                } else if f + 1 == i {
                    last.clone()
                } else {
                    saved[f].clone().expect("saved output")
                }
            })
            .collect();
        if let Layer::Detect(d) = layer {
            return d.forward(inputs);
        }
        last = layer.forward(inputs);
        if spec.saved[i] {
            saved[i] = Some(last.clone());
        }
    }
    unreachable!("the graph ends with Detect (checked when building)")
}

/// [`forward`] in an ONNX graph whose input is named `input`: every layer in order, then the head as `head` says.
/// Returns the name of the graph's output.
pub fn to_onnx<B: Backend>(
    layers: &[Layer<B>],
    spec: &ModelSpec,
    g: &mut dyn OnnxGraph,
    input: &str,
    head: &HeadExport,
) -> String {
    let mut outs: Vec<String> = Vec::with_capacity(layers.len());
    for (layer, info) in layers.iter().zip(&spec.layers) {
        let inputs: Vec<String> =
            info.from.iter().map(|&f| if f == INPUT { input.to_string() } else { outs[f].clone() }).collect();
        if let Layer::Detect(d) = layer {
            return d.to_onnx(g, &inputs, head);
        }
        outs.push(layer.to_onnx(g, &inputs));
    }
    unreachable!("the graph ends with Detect (checked when building)")
}
