//! YOLO detectors built from model YAMLs: the layer graph, its outputs, weights interchange with
//! Ultralytics checkpoints (SafeTensors, and `.pt` read natively; gradients by the same keys with
//! [`weights::named_grads`]), loading for inference from any weights file ([`load_model`]), and summaries.
//!
//! ```no_run
//! use ember::backend::{Cpu, CpuAutodiff};
//! use ember::model::{BoxFormat, Yolo};
//! # fn main() -> anyhow::Result<()> {
//! let device = Default::default();
//! // Training: autodiff backend, BatchNorm on batch statistics; nc comes from the dataset.
//! let mut model = Yolo::<CpuAutodiff>::new("yolo26n", 3, &device)?;
//! let report = model.load_safetensors("yolo26n.safetensors")?; // Ultralytics keys; other nc: class branch kept
//! assert!(report.to_string().contains("tensors"));
//! # let images = burn::tensor::Tensor::<CpuAutodiff, 4>::zeros([1, 3, 640, 640], &device);
//! let out = model.forward(images); // raw one2many (+ one2one) outputs for the loss
//! // Evaluation: the inner-backend copy uses running statistics.
//! use burn::module::AutodiffModule;
//! let eval = model.valid();
//! # let images = burn::tensor::Tensor::<Cpu, 4>::zeros([1, 3, 640, 640], &device);
//! let raw = eval.forward(images);
//! let for_nms = raw.decode_one2many(); // [b, 4 + nc, anchors], xywh pixels + sigmoid scores
//! let for_topk = raw.decode_one2one(BoxFormat::Xyxy); // end-to-end models only
//! model.save_safetensors("last.safetensors")?;
//! # Ok(()) }
//! ```

pub mod graph;
pub mod load;
pub mod locate;
pub mod pt;
pub mod summary;
pub mod weights;
pub mod weights_file;
pub mod yaml;

use std::path::Path;

use anyhow::{Context, Result};
use burn::module::Module;
use burn::tensor::{backend::Backend, Tensor};

pub use crate::nn::anchors::{make_anchors, Anchors};
pub use crate::nn::head_output::{box_distances, BoxFormat, DetectOutput, HeadOutput};
pub use crate::nn::Cost;
pub use graph::{Layer, LayerInfo, ModelSpec};
pub use load::{load_model, LoadedModel};
pub use summary::{LayerRow, ModelSummary};
pub use weights::{LoadReport, StateDict};
pub use weights_file::WeightsFile;
pub use yaml::ModelConfig;

/// A YOLO detector. Tensor names (module paths) are Ultralytics' `state_dict` keys.
#[derive(Module, Debug)]
pub struct Yolo<B: Backend> {
    /// The layers, indexed like the YAML rows (`model.<i>...`).
    pub model: Vec<Layer<B>>,
    /// Static description (name, classes, strides, per-layer wiring); not a module, so not in the weights.
    #[module(skip)]
    pub spec: ModelSpec,
}

impl<B: Backend> Yolo<B> {
    /// Build `model` (`yolo26n`, `yolov8s.yaml`, a path to a YAML) for `nc` classes, freshly initialised.
    pub fn new(model: &str, nc: usize, device: &B::Device) -> Result<Self> {
        let cfg = ModelConfig::resolve(model)?;
        Self::from_config(&cfg, nc, device)
    }

    /// Build from an already resolved [`ModelConfig`] for `nc` classes (the YAML's own `nc` is ignored), freshly
    /// initialised.
    pub fn from_config(cfg: &ModelConfig, nc: usize, device: &B::Device) -> Result<Self> {
        let (model, spec) = graph::build(cfg, nc, device).with_context(|| format!("building {}", cfg.name))?;
        Ok(Yolo { model, spec })
    }

    /// Raw head outputs for a `[batch, 3, h, w]` image batch (h, w multiples of the largest stride).
    /// On autodiff backends BatchNorm runs in training mode; use `model.valid()` for evaluation.
    pub fn forward(&self, x: Tensor<B, 4>) -> DetectOutput<B> {
        graph::forward(&self.model, &self.spec, x)
    }

    /// [`Yolo::forward`] in evaluation mode, then the decoding `head` asks for, written into an ONNX graph whose
    /// input is named `input`; returns the output's name. An `end2end` head needs an end-to-end model.
    pub fn to_onnx(&self, g: &mut dyn crate::nn::OnnxGraph, input: &str, head: &crate::nn::HeadExport) -> String {
        graph::to_onnx(&self.model, &self.spec, g, input, head)
    }

    /// Check an input shape before [`Yolo::forward`]: `[batch, 3, h, w]` with `h` and `w` positive multiples of
    /// the largest stride (the letterboxed sizes the data pipeline produces). `forward` itself does not check.
    pub fn check_input(&self, dims: [usize; 4]) -> Result<()> {
        let s = self.spec.strides.iter().fold(1.0f32, |m, &v| m.max(v)) as usize;
        let [b, c, h, w] = dims;
        if b == 0 || c != 3 || h == 0 || w == 0 || !h.is_multiple_of(s) || !w.is_multiple_of(s) {
            anyhow::bail!(
                "{} takes [batch, 3, h, w] images with h and w positive multiples of {s}, got {dims:?}",
                self.spec.name
            );
        }
        Ok(())
    }

    /// Forward and decode the branch inference uses (one-to-one for end-to-end models, boxes xyxy, else
    /// one-to-many, boxes xywh), `[batch, 4 + nc, anchors]` in input pixels with sigmoid scores.
    pub fn predict(&self, x: Tensor<B, 4>) -> Tensor<B, 3> {
        let out = self.forward(x);
        match out.decode_one2one(BoxFormat::Xyxy) {
            Some(y) => y,
            None => out.decode_one2many(),
        }
    }

    /// The detection head (the last layer; the builder guarantees one).
    pub fn head(&self) -> &crate::nn::detect::Detect<B> {
        match self.model.last() {
            Some(Layer::Detect(d)) => d,
            _ => unreachable!("graph::build ends every model with a Detect layer"),
        }
    }

    /// Number of classes the head predicts.
    pub fn nc(&self) -> usize {
        self.spec.nc
    }
    /// DFL bins per box side (Ultralytics `reg_max`; 1 means direct ltrb regression, as in YOLO26).
    pub fn reg_max(&self) -> usize {
        self.spec.reg_max
    }
    /// Whether the model has the one-to-one (NMS-free) head branch, i.e. is an end-to-end model like YOLO26.
    pub fn end2end(&self) -> bool {
        self.spec.end2end
    }
    /// Detection-level strides in input pixels, one per head level (e.g. `[8, 16, 32]`).
    pub fn strides(&self) -> &[f32] {
        &self.spec.strides
    }
    /// Display name with scale, e.g. `yolo26n`.
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// Load an Ultralytics-keyed SafeTensors file (f32/f16/bf16 stored). Shape mismatches are errors naming
    /// the tensors, except the class outputs when the checkpoint has another class count: those keep their
    /// initial values and the report says so. On error the model is unchanged.
    pub fn load_safetensors(&mut self, path: impl AsRef<Path>) -> Result<LoadReport> {
        let path = path.as_ref();
        let sd = StateDict::read(path)?;
        self.load_state_dict(&sd).with_context(|| format!("loading {}", path.display()))
    }

    /// Load a weights file of either format (SafeTensors, or an Ultralytics / plain `state_dict` `.pt`),
    /// under the same rules as [`Yolo::load_safetensors`].
    pub fn load_weights(&mut self, path: impl AsRef<Path>) -> Result<LoadReport> {
        let path = path.as_ref();
        let file = WeightsFile::read(path)?;
        self.load_state_dict(&file.state_dict).with_context(|| format!("loading {}", path.display()))
    }

    /// Load tensors by Ultralytics key from an in-memory state dict, under the same rules as
    /// [`Yolo::load_safetensors`] (other class count: class outputs kept; on error the model is unchanged).
    pub fn load_state_dict(&mut self, sd: &StateDict) -> Result<LoadReport> {
        let (loaded, report) = weights::load_state_dict::<B, _>(self.clone(), sd)?;
        *self = loaded;
        Ok(report)
    }

    /// An independent copy. `clone()` shares BatchNorm running statistics between the copies (burn keeps
    /// them in shared cells), which is wrong for an EMA model or a frozen teacher; this rebuilds the model
    /// and copies every tensor in.
    pub fn deep_clone(&self) -> Result<Self> {
        let device = crate::nn::device_of(self)?;
        let mut fresh = Self::from_config(&self.spec.config, self.spec.nc, &device)?;
        fresh.load_state_dict(&StateDict::from_module::<B, _>(self)?)?;
        Ok(fresh)
    }

    /// Save every tensor (f32) under its Ultralytics key.
    pub fn save_safetensors(&self, path: impl AsRef<Path>) -> Result<()> {
        let mut meta = std::collections::HashMap::new();
        meta.insert("model".to_string(), self.spec.name.clone());
        meta.insert("nc".to_string(), self.spec.nc.to_string());
        weights::save_state_dict::<B, _>(self, path.as_ref(), Some(meta))
    }

    /// Cost of the model at `imgsz x imgsz`.
    pub fn cost(&self, imgsz: usize) -> Cost {
        let mut cost = Cost::default();
        let mut sizes: Vec<(usize, usize)> = Vec::new();
        let input = (imgsz, imgsz);
        for (layer, info) in self.model.iter().zip(&self.spec.layers) {
            let src = |f: usize| if f == graph::INPUT { input } else { sizes[f] };
            let (h, w) = src(info.from[0]);
            let out = match layer {
                Layer::Conv(m) => {
                    cost.conv(m, h, w);
                    m.conv.out_size(h, w)
                }
                Layer::C3k2(m) => {
                    m.cost(h, w, &mut cost);
                    (h, w)
                }
                Layer::Sppf(m) => {
                    m.cost(h, w, &mut cost);
                    (h, w)
                }
                Layer::C2psa(m) => {
                    m.cost(h, w, &mut cost);
                    (h, w)
                }
                Layer::Upsample(s) => (h * s, w * s),
                Layer::Concat(_) => (h, w),
                Layer::Detect(d) => {
                    let level_sizes: Vec<_> = info.from.iter().map(|&f| src(f)).collect();
                    d.cost(&level_sizes, &mut cost);
                    (0, 0)
                }
            };
            sizes.push(out);
        }
        cost
    }

    /// Layer table, parameter counts and GFLOPs at `imgsz`.
    pub fn summary(&self, imgsz: usize) -> ModelSummary {
        let tensors = weights::named_tensors::<B, _>(self, false);
        let mut per_layer = vec![0usize; self.model.len()];
        let (mut params, mut gradients) = (0, 0);
        for t in &tensors {
            if t.key.ends_with("running_mean") || t.key.ends_with("running_var") {
                continue;
            }
            let n: usize = t.shape.iter().product();
            params += n;
            if t.trainable {
                gradients += n;
            }
            if let Some(i) = t.key.split('.').nth(1).and_then(|s| s.parse::<usize>().ok()) {
                per_layer[i] += n;
            }
        }
        let layers = self
            .spec
            .layers
            .iter()
            .enumerate()
            .map(|(i, l)| LayerRow {
                index: i,
                from: l.from_text.clone(),
                repeats: l.repeats,
                params: per_layer[i],
                module: l.module.clone(),
                args: l.args.clone(),
            })
            .collect();
        let cost = self.cost(imgsz);
        let gflops = 2.0 * (cost.conv_macs + cost.norm_ops) as f64 / 1e9;
        let (fused_params, fused_macs) = if self.end2end() {
            (cost.fused_params - cost.o2m_fused_params, cost.conv_macs - cost.o2m_conv_macs)
        } else {
            (cost.fused_params, cost.conv_macs)
        };
        ModelSummary {
            name: self.spec.name.clone(),
            nc: self.spec.nc,
            imgsz,
            layers,
            params,
            gradients,
            fused_params: fused_params as usize,
            gflops,
            fused_gflops: 2.0 * fused_macs as f64 / 1e9,
            tensors: tensors.len(),
        }
    }
}
