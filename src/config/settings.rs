//! The typed settings of one run, resolved once from defaults, a `--cfg` file and command-line values (flags
//! and `key=value` words alike): every value is parsed into its type here, the defaults that depend on the
//! command are decided here, and which keys were given explicitly is recorded, whatever their source.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Deserializer, Serialize};
use serde_yaml::{Mapping, Value};

use super::foreign::{check_foreign, is_foreign};
use super::{
    closest, key_specs, AmpRequest, BatchSize, Devices, ExportFormat, KeyKind, Mode, OptimizerChoice, ResumeTarget,
    Split, DEFAULT_YAML,
};

/// The largest stride of every model ember builds: image sizes are multiples of it, and rectangular batches
/// (validation) are rounded up to it, as Ultralytics' `max(int(model.stride.max()), 32)`.
pub const LARGEST_STRIDE: u32 = 32;

/// Where decoded training images are kept between epochs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Value", into = "String")]
pub enum CacheMode {
    /// Decoded each time a sample is read (`cache: false`, the default).
    Off,
    /// Kept in memory (`cache: ram` or `true`).
    Ram,
    /// Kept as raw RGB files under `$EMBER_CACHE_DIR`, else `~/.cache/ember/images` (`cache: disk`).
    Disk,
}

impl TryFrom<Value> for CacheMode {
    type Error = String;
    fn try_from(v: Value) -> Result<Self, String> {
        match v {
            Value::Null | Value::Bool(false) => Ok(CacheMode::Off),
            Value::Bool(true) => Ok(CacheMode::Ram),
            Value::String(s) => match s.to_ascii_lowercase().as_str() {
                "false" | "off" | "" => Ok(CacheMode::Off),
                "true" | "ram" => Ok(CacheMode::Ram),
                "disk" => Ok(CacheMode::Disk),
                other => Err(format!("cache: '{other}' is not one of false, ram, disk")),
            },
            other => Err(format!("cache: expected false, ram or disk, got {other:?}")),
        }
    }
}

impl From<CacheMode> for String {
    fn from(c: CacheMode) -> String {
        match c {
            CacheMode::Off => "false",
            CacheMode::Ram => "ram",
            CacheMode::Disk => "disk",
        }
        .into()
    }
}

/// Every setting of a run. Field names are the keys of `configs/default.yaml`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// The architecture: a name such as `yolo26n` or `yolov8s`, a model YAML, or an Ultralytics `.pt` checkpoint
    /// (train builds its architecture and, unless `weights` is given, starts from its weights).
    pub model: String,
    /// Weights to train from, evaluate or export: an ember checkpoint or Ultralytics SafeTensors; `None` trains
    /// from scratch (unless `model` is a checkpoint).
    pub weights: Option<String>,
    /// The dataset YAML (e.g. `coco8.yaml`); `None` where a command needs no dataset.
    pub data: Option<String>,
    /// Where datasets live and are downloaded to; `None`: `$EMBER_DATASETS`, else the dataset YAML's folder.
    pub datasets_dir: Option<String>,
    /// Input size in pixels: the side of the square training image, the long side elsewhere; a multiple of
    /// [`LARGEST_STRIDE`] (Ultralytics `imgsz`).
    pub imgsz: u32,
    /// Images per batch, all processes of a data-parallel run together (each takes `batch / world`); predict
    /// takes 1 unless given ([`Settings::batch_for`]). `-1` or a fraction in (0, 1): AutoBatch, resolved when
    /// training starts.
    pub batch: BatchSize,
    /// The compute devices (`cpu`, `0`, `cuda:0`, `vulkan:N`, or a list for data-parallel training); empty is
    /// the CPU.
    pub device: Devices,
    /// Image-decoding threads (at most the CPU count).
    pub workers: u32,
    /// The folder that holds the run folders; `None`: `runs` ([`Settings::project_dir`]).
    pub project: Option<String>,
    /// The run folder's name; `None`: the command's name ([`Settings::run_name`]). A taken name gets 2, 3, ...
    /// appended unless `exist_ok`.
    pub name: Option<String>,
    /// Reuse an existing run folder of that name instead of making `name2`, `name3`, ...
    pub exist_ok: bool,
    /// Random seed of the initial weights, the data order and the augmentation: the same seed gives the same
    /// run.
    pub seed: u64,
    /// Print details such as data-loading waits.
    pub verbose: bool,
    /// FP16 inference for val, predict and export (train sets it for its per-epoch validation when it computes
    /// in FP16 on a GPU, as Ultralytics does).
    pub half: bool,
    /// A YAML file of settings laid over the defaults (ember's, or an Ultralytics `args.yaml`); command-line
    /// values override it in turn.
    pub cfg: Option<String>,

    /// Epochs to train (re-estimated after each epoch when `time` is given).
    pub epochs: u32,
    /// Hours to train for: the epoch count is re-estimated after every epoch from the mean epoch time (the lr
    /// curve follows), as Ultralytics does; `None` trains `epochs`.
    pub time: Option<f64>,
    /// Stop early after this many epochs without a better fitness; 0 never stops early.
    pub patience: u32,
    /// Write the checkpoints `weights/last.safetensors` (every epoch) and `weights/best.safetensors`.
    pub save: bool,
    /// Also keep a copy of the checkpoint as `weights/epochN.safetensors` every N epochs; off when < 1.
    pub save_period: i64,
    /// Where decoded training (and validation) images are kept between epochs.
    pub cache: CacheMode,
    /// Load `weights` into a new training run; false trains from scratch even when `weights` is given.
    pub pretrained: bool,
    /// The optimizer, or `auto`: picked with its lr0 and momentum from the dataset size, as Ultralytics does.
    pub optimizer: OptimizerChoice,
    /// Train every class as one class.
    pub single_cls: bool,
    /// Rectangular training batches: accepted for Ultralytics recipes but not implemented (training stays
    /// square and says so); validation is always rectangular.
    pub rect: bool,
    /// Cosine learning-rate decay from lr0 to `lr0 * lrf` instead of linear (Ultralytics cos_lr).
    pub cos_lr: bool,
    /// Turn mosaic off for the last N epochs (Ultralytics close_mosaic).
    pub close_mosaic: u32,
    /// Layers whose parameters stay fixed: the first N (`freeze: N`) or those listed (`[0, 3, "23.cv2"]`),
    /// as `model.<item>.` name prefixes.
    #[serde(default, deserialize_with = "opt_freeze_list")]
    pub freeze: Option<Vec<String>>,
    /// Multi-scale training: each batch is resized to a stride multiple drawn within
    /// `imgsz * (1 +- multi_scale)`; 0 is off, and it must be below 1.
    #[serde(default)]
    pub multi_scale: f64,
    /// Continue an interrupted run: the newest run's last checkpoint, or the checkpoint named.
    pub resume: ResumeTarget,
    /// Training precision: mixed precision where the device computes faster in it, or a forced precision.
    pub amp: AmpRequest,
    /// Fraction of the training images used, in (0, 1]: the first `round(n * fraction)` (at least one).
    pub fraction: f64,
    /// Validate after every epoch; false validates after the final epoch only.
    pub val: bool,
    /// Write the first few training batches of the first epoch as JPEGs with their boxes drawn.
    pub save_batches: bool,

    /// The dataset split `ember val` evaluates.
    pub split: Split,
    /// Write COCO-format JSON results (val: predictions and ground truth; predict: predictions).
    pub save_json: bool,
    /// Confidence threshold, 0-1; `None`: 0.001 to validate (during training too), 0.25 to predict
    /// ([`Settings::conf_for`]).
    pub conf: Option<f64>,
    /// IoU threshold of NMS, in [0, 1]: a box overlapping a better one by more is suppressed.
    pub iou: f64,
    /// The most detections kept per image.
    pub max_det: u32,
    /// Save plots: train's `results.png`, val's curves and confusion matrix.
    pub plots: bool,
    /// Ultralytics 8.4.190's choice of head: unset or true, the one-to-many branch with NMS; false, the
    /// NMS-free one-to-one branch. (On export, true would embed NMS in the graph, which ember refuses.)
    #[serde(default)]
    pub nms: Option<bool>,
    /// ember's older name for `nms=false`: true uses the NMS-free one-to-one branch.
    pub end2end: Option<bool>,
    /// Class-agnostic NMS: boxes of different classes suppress each other too.
    pub agnostic_nms: bool,
    /// Images to predict on: a file, folder, glob or `.txt` list of paths.
    pub source: Option<String>,
    /// Predict keeps only detections of these class ids (`0` or `[0, 2, 3]`); `None` keeps every class.
    #[serde(deserialize_with = "opt_class_list")]
    pub classes: Option<Vec<usize>>,
    /// Save predictions as YOLO-format `.txt` label files, one per image with detections.
    pub save_txt: bool,
    /// Append each detection's confidence to its `.txt` line (with `save_txt`).
    pub save_conf: bool,
    /// Draw class names on predicted images.
    pub show_labels: bool,
    /// Draw confidences on predicted images.
    pub show_conf: bool,
    /// Box line width in pixels on predicted images; `None` scales it to the image size.
    pub line_width: Option<u32>,

    /// What `ember export` writes (ONNX by default).
    pub format: ExportFormat,
    /// ONNX with a symbolic batch and image size instead of fixed ones.
    pub dynamic: bool,
    /// The ONNX opset version; `None` is 17 ([`Settings::onnx_opset`]).
    pub opset: Option<u32>,

    /// Initial learning rate (Ultralytics lr0; SGD 1e-2, AdamW 1e-3); `optimizer: auto` picks its own.
    pub lr0: f64,
    /// Final learning rate as a fraction of lr0 (Ultralytics lrf).
    pub lrf: f64,
    /// SGD momentum, or AdamW's beta1 (Ultralytics momentum).
    pub momentum: f64,
    /// Weight decay at the nominal batch size, scaled by `batch * accumulate / nbs` (Ultralytics weight_decay).
    pub weight_decay: f64,
    /// Warmup length in epochs, fractions allowed, at most `epochs - 1` (Ultralytics warmup_epochs): the lr
    /// ramps up from 0 (biases: down from warmup_bias_lr) and SGD momentum from warmup_momentum.
    pub warmup_epochs: f64,
    /// SGD momentum at the start of warmup, ramped to `momentum` (Ultralytics warmup_momentum).
    pub warmup_momentum: f64,
    /// Bias learning rate at the start of warmup, ramped to the scheduled lr (Ultralytics warmup_bias_lr;
    /// 0 when `optimizer: auto` picks).
    pub warmup_bias_lr: f64,
    /// Gain of the box-regression (CIoU) loss (Ultralytics `box`).
    #[serde(rename = "box")]
    pub box_gain: f64,
    /// Gain of the classification loss (Ultralytics `cls`).
    #[serde(rename = "cls")]
    pub cls_gain: f64,
    /// Gain of the distribution focal loss (Ultralytics `dfl`).
    #[serde(rename = "dfl")]
    pub dfl_gain: f64,
    /// Nominal batch size (Ultralytics nbs): gradients of `round(nbs / batch)` batches are summed per
    /// optimizer step, and weight decay is scaled to it.
    pub nbs: u32,

    /// Hue jitter: a random shift within `[-hsv_h, hsv_h]` of the hue circle (Ultralytics hsv_h).
    pub hsv_h: f64,
    /// Saturation jitter: saturation scaled by `1 + [-hsv_s, hsv_s]` (Ultralytics hsv_s).
    pub hsv_s: f64,
    /// Value (brightness) jitter: value scaled by `1 + [-hsv_v, hsv_v]` (Ultralytics hsv_v).
    pub hsv_v: f64,
    /// Random rotation range, +/- degrees (Ultralytics degrees).
    pub degrees: f64,
    /// Random translation range, +/- fraction of the image size (Ultralytics translate).
    pub translate: f64,
    /// Random scale gain: the scale is drawn from `[1 - scale, 1 + scale]` (Ultralytics scale).
    pub scale: f64,
    /// Random shear range, +/- degrees (Ultralytics shear).
    pub shear: f64,
    /// Random perspective range, +/- fraction, 0-0.001 (Ultralytics perspective).
    pub perspective: f64,
    /// Probability of a top-bottom flip (Ultralytics flipud).
    pub flipud: f64,
    /// Probability of a left-right flip (Ultralytics fliplr).
    pub fliplr: f64,
    /// Probability that a sample is a 4-image mosaic (Ultralytics mosaic; off for the last `close_mosaic` epochs).
    pub mosaic: f64,
    /// Probability of blending in a second augmented sample (Ultralytics mixup).
    pub mixup: f64,
    /// Probability of pasting a region of a second sample, with its boxes (Ultralytics cutmix).
    pub cutmix: f64,

    /// The keys given explicitly (in a `--cfg` file, an Ultralytics `args.yaml` given as one, a flag or a
    /// `key=value` word), as opposed to left at their default.
    #[serde(skip)]
    pub given: BTreeSet<String>,
    /// Ultralytics keys that were given but do not apply to ember, in the order given (the command layer says so).
    #[serde(skip)]
    pub ignored: Vec<String>,
}

/// Values given on the command line, as `(key, raw text)`, in the order given.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `(key, raw text)` pairs; a later pair of the same key wins.
    pub values: Vec<(String, String)>,
}

impl Overrides {
    /// The value last given for `key`, as raw text.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

impl Settings {
    /// The defaults of `configs/default.yaml`.
    pub fn defaults() -> Settings {
        Self::resolve(&Overrides::default()).expect("the embedded default.yaml is valid")
    }

    /// Defaults, then the `cfg` file (if `cfg` is among the overrides), then the command-line values.
    pub fn resolve(overrides: &Overrides) -> Result<Settings> {
        let mut layers =
            Layers { map: serde_yaml::from_str(DEFAULT_YAML).context("embedded default.yaml")?, ..Default::default() };
        if let Some(cfg) = overrides.get("cfg").filter(|c| !c.is_empty()) {
            layers.add_cfg_file(Path::new(cfg))?;
        }
        for (key, raw) in &overrides.values {
            layers.add(key, parse_scalar(raw), None)?;
        }
        let mut settings: Settings =
            serde_yaml::from_value(Value::Mapping(layers.map)).context("settings do not fit their types")?;
        settings.validate()?;
        settings.given = layers.given;
        layers.ignored.dedup();
        settings.ignored = layers.ignored;
        Ok(settings)
    }

    /// Whether `key` was given explicitly rather than left at its default.
    pub fn is_given(&self, key: &str) -> bool {
        self.given.contains(key)
    }

    fn validate(&self) -> Result<()> {
        if self.imgsz < LARGEST_STRIDE || !self.imgsz.is_multiple_of(LARGEST_STRIDE) {
            bail!("imgsz must be a positive multiple of {LARGEST_STRIDE} (the largest stride), got {}", self.imgsz);
        }
        if !(0.0..=1.0).contains(&self.fraction) || self.fraction == 0.0 {
            bail!("fraction must be in (0, 1], got {}", self.fraction);
        }
        if !(0.0..=1.0).contains(&self.iou) {
            bail!("iou must be in [0, 1], got {}", self.iou);
        }
        match (self.nms, self.end2end) {
            (Some(false), Some(false)) | (Some(true), Some(true)) => bail!(
                "nms={} and end2end={} disagree: end2end=true is ember's older name for nms=false; give one of them",
                self.nms.unwrap_or_default(),
                self.end2end.unwrap_or_default()
            ),
            _ => {}
        }
        if !(0.0..1.0).contains(&self.multi_scale) {
            bail!("multi_scale must be in [0, 1) (a fraction of imgsz), got {}", self.multi_scale);
        }
        Ok(())
    }

    /// Whether val, predict and export use the NMS-free one-to-one branch (of a model that has one): only when
    /// asked with `nms=false` (or its alias `end2end=true`). Ultralytics 8.4.190 defaults to NMS in all three.
    pub fn nms_free(&self) -> bool {
        self.nms == Some(false) || self.end2end == Some(true)
    }

    /// The confidence threshold of `mode`: `conf` when given, else 8.4.190's command default (0.25 to predict,
    /// 0.001 to validate, during training too).
    pub fn conf_for(&self, mode: Mode) -> f64 {
        self.conf.unwrap_or(if mode == Mode::Predict { 0.25 } else { 0.001 })
    }

    /// Images per batch of `mode`: `batch`, except that predict takes one image at a time unless a batch is given
    /// (8.4.190's predict default), which lets every image keep its own rectangle. AutoBatch is for training:
    /// elsewhere it is the default batch.
    pub fn batch_for(&self, mode: Mode) -> usize {
        if mode == Mode::Predict && !self.is_given("batch") {
            1
        } else {
            self.batch.images_or_default()
        }
    }

    /// The ONNX opset `export` writes (default 17).
    pub fn onnx_opset(&self) -> u32 {
        self.opset.unwrap_or(17)
    }

    /// The folder that holds the run folders (`project`, default `runs`).
    pub fn project_dir(&self) -> PathBuf {
        PathBuf::from(self.project.as_deref().unwrap_or("runs"))
    }

    /// The run folder's name for `mode` (`name`, default the command's name: `train`, `val`, `predict`).
    pub fn run_name(&self, mode: Mode) -> &str {
        self.name.as_deref().unwrap_or(mode.name())
    }

    /// The settings as YAML, for a run's `args.yaml`.
    pub fn to_yaml(&self) -> String {
        serde_yaml::to_string(self).expect("settings serialise")
    }
}

/// The settings map as each source is laid over the defaults.
#[derive(Default)]
struct Layers {
    map: Mapping,
    /// Ultralytics keys that do not apply to ember, in the order given.
    ignored: Vec<String>,
    given: BTreeSet<String>,
}

impl Layers {
    /// A `--cfg` file (ember's or Ultralytics' `args.yaml`, or any file of these keys); errors name file and line.
    fn add_cfg_file(&mut self, path: &Path) -> Result<()> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the settings file {}", path.display()))?;
        let file: Value =
            serde_yaml::from_str(&text).with_context(|| format!("{} is not valid YAML", path.display()))?;
        let file = match file {
            Value::Mapping(m) => m,
            Value::Null => Mapping::new(),
            _ => bail!("{}: expected a mapping of `key: value` lines", path.display()),
        };
        for (k, v) in file {
            let key = k.as_str().map(str::to_owned).unwrap_or_else(|| format!("{k:?}"));
            let line = line_of_key(&text, &key);
            let at = format!("{}{}", path.display(), line.map(|l| format!(":{l}")).unwrap_or_default());
            self.add(&key, v, Some(&at))?;
        }
        Ok(())
    }

    /// One value over the ones before it; `at` names where it was written, for errors.
    fn add(&mut self, key: &str, value: Value, at: Option<&str>) -> Result<()> {
        let located = |e: anyhow::Error| match at {
            Some(at) => e.context(at.to_string()),
            None => e,
        };
        if is_foreign(key) {
            check_foreign(key, &value).map_err(located)?;
            self.ignored.push(key.to_string());
            return Ok(());
        }
        check_key(key).map_err(located)?;
        let value = check_value(key, value).map_err(located)?;
        self.map.insert(Value::String(key.to_string()), value);
        self.given.insert(key.to_string());
        Ok(())
    }
}

/// Text given on the command line becomes a YAML scalar: `5` an int, `0.01` a float, `true` a bool,
/// `[0,2]` a list; anything else stays a string.
fn parse_scalar(raw: &str) -> Value {
    if raw.is_empty() || raw == "None" || raw == "null" {
        return Value::Null;
    }
    match serde_yaml::from_str::<Value>(raw) {
        Ok(v @ (Value::Bool(_) | Value::Number(_) | Value::Sequence(_))) => v,
        _ => match raw {
            "True" => Value::Bool(true),
            "False" => Value::Bool(false),
            _ => Value::String(raw.to_string()),
        },
    }
}

fn check_key(key: &str) -> Result<()> {
    let names = key_specs().iter().map(|s| s.name);
    if key_specs().iter().any(|s| s.name == key) {
        return Ok(());
    }
    match closest(key, names) {
        Some(best) => bail!("unknown setting '{key}'; did you mean '{best}'?"),
        None => bail!("unknown setting '{key}' (see `ember <command> --help` for the list)"),
    }
}

/// Checks a value against the key's declared type, so the error names the key and the bad value.
fn check_value(key: &str, v: Value) -> Result<Value> {
    let spec = key_specs().iter().find(|s| s.name == key).expect("checked key");
    let ok = match (&spec.kind, &v) {
        (_, Value::Null) => true,
        (KeyKind::Bool, Value::Bool(_)) => true,
        (KeyKind::Int, Value::Number(n)) => n.is_i64() || n.is_u64(),
        (KeyKind::Float, Value::Number(_)) => true,
        (KeyKind::Str, _) => true,
        _ => false,
    };
    if !ok {
        let want = match spec.kind {
            KeyKind::Bool => "true or false",
            KeyKind::Int => "an integer",
            KeyKind::Float => "a number",
            KeyKind::Str => "text",
        };
        let shown = serde_yaml::to_string(&v).unwrap_or_default();
        bail!("{key}: expected {want}, got '{}'", shown.trim());
    }
    // A null for a key with a non-null default would fail to deserialise: keep the default instead.
    if v.is_null() && !spec.default.is_empty() {
        return Ok(serde_yaml::from_str(spec.default).unwrap_or(Value::Null));
    }
    Ok(v)
}

fn line_of_key(text: &str, key: &str) -> Option<usize> {
    text.lines().position(|l| l.trim_start().starts_with(&format!("{key}:"))).map(|i| i + 1)
}

fn opt_freeze_list<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    let bad =
        |v: &Value| serde::de::Error::custom(format!("freeze: expected a layer count or a list of layers, got {v:?}"));
    match Value::deserialize(d)? {
        Value::Null => Ok(None),
        Value::Number(n) => {
            let count = n.as_u64().ok_or_else(|| bad(&Value::Number(n.clone())))?;
            Ok((count > 0).then(|| (0..count).map(|i| i.to_string()).collect()))
        }
        Value::Sequence(seq) => seq
            .iter()
            .map(|v| match v {
                Value::Number(n) if n.is_u64() => Ok(n.to_string()),
                Value::String(s) if !s.is_empty() => Ok(s.clone()),
                other => Err(bad(other)),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(|layers| (!layers.is_empty()).then_some(layers)),
        other => Err(bad(&other)),
    }
}

fn opt_class_list<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<usize>>, D::Error> {
    let bad = |v: &Value| serde::de::Error::custom(format!("classes: expected a class id or a list of ids, got {v:?}"));
    match Value::deserialize(d)? {
        Value::Null => Ok(None),
        Value::Number(n) => n.as_u64().map(|c| Some(vec![c as usize])).ok_or_else(|| bad(&Value::Number(n))),
        Value::String(s) => s
            .trim_matches(|c| c == '[' || c == ']')
            .split(',')
            .map(|p| p.trim().parse::<usize>().map_err(|_| bad(&Value::String(s.clone()))))
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Value::Sequence(seq) => seq
            .iter()
            .map(|v| v.as_u64().map(|c| c as usize).ok_or_else(|| bad(v)))
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        other => Err(bad(&other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AmpMode;

    fn over(pairs: &[(&str, &str)]) -> Overrides {
        Overrides { values: pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect() }
    }

    #[test]
    fn defaults_match_ultralytics() {
        let s = Settings::defaults();
        assert_eq!(
            (s.epochs, s.batch, s.imgsz, s.patience, s.close_mosaic, s.nbs),
            (100, BatchSize::Images(16), 640, 100, 10, 64)
        );
        assert_eq!((s.lr0, s.lrf, s.momentum, s.weight_decay), (0.01, 0.01, 0.937, 0.0005));
        assert_eq!((s.box_gain, s.cls_gain, s.dfl_gain), (7.5, 0.5, 1.5));
        assert_eq!((s.mosaic, s.fliplr, s.translate, s.scale), (1.0, 0.5, 0.1, 0.5));
        assert_eq!(s.amp, AmpRequest::Auto);
        assert_eq!(s.optimizer, OptimizerChoice::Auto);
        assert_eq!(s.resume, ResumeTarget::No);
        assert_eq!((s.split, s.format, s.device.clone()), (Split::Val, ExportFormat::Onnx, Devices::default()));
        assert!(s.given.is_empty());
    }

    #[test]
    fn command_line_values_are_typed() {
        let s = Settings::resolve(&over(&[
            ("epochs", "5"),
            ("lr0", "0.02"),
            ("amp", "bf16"),
            ("device", "0"),
            ("classes", "[0,2]"),
        ]))
        .unwrap();
        assert_eq!(s.epochs, 5);
        assert_eq!(s.lr0, 0.02);
        assert_eq!(s.amp, AmpRequest::Forced(AmpMode::Bf16));
        assert_eq!(s.device, Devices(vec![crate::config::DeviceSpec::Cuda(0)]));
        assert_eq!(s.classes, Some(vec![0, 2]));
        let s = Settings::resolve(&over(&[("amp", "false"), ("resume", "true"), ("cache", "disk")])).unwrap();
        assert_eq!(s.amp, AmpRequest::Forced(AmpMode::Fp32));
        assert_eq!(s.resume, ResumeTarget::Newest);
        assert_eq!(s.cache, CacheMode::Disk);
        let s =
            Settings::resolve(&over(&[("resume", "runs/train/weights/last.safetensors"), ("split", "test")])).unwrap();
        assert_eq!(s.resume, ResumeTarget::Checkpoint("runs/train/weights/last.safetensors".into()));
        assert_eq!((s.split, s.format), (Split::Test, ExportFormat::Onnx));
        let s = Settings::resolve(&over(&[("format", "SafeTensors"), ("device", "0,1")])).unwrap();
        assert_eq!(s.format, ExportFormat::SafeTensors);
        assert_eq!(s.device.0.len(), 2);
    }

    #[test]
    fn command_defaults_follow_ultralytics_commands() {
        let s = Settings::defaults();
        assert_eq!((s.conf_for(Mode::Predict), s.conf_for(Mode::Val), s.conf_for(Mode::Train)), (0.25, 0.001, 0.001));
        assert_eq!((s.batch_for(Mode::Predict), s.batch_for(Mode::Val)), (1, 16));
        assert_eq!(s.onnx_opset(), 17);
        assert_eq!((s.project_dir(), s.run_name(Mode::Val)), (PathBuf::from("runs"), "val"));
        let s = Settings::resolve(&over(&[("conf", "0.4"), ("batch", "16"), ("opset", "13")])).unwrap();
        assert_eq!((s.conf_for(Mode::Predict), s.conf_for(Mode::Val)), (0.4, 0.4));
        assert_eq!(s.batch_for(Mode::Predict), 16, "a batch given explicitly, even the default, is kept");
        assert_eq!(s.onnx_opset(), 13);
    }

    #[test]
    fn explicit_keys_are_known_from_every_source() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("cfg.yaml");
        std::fs::write(&cfg, "batch: 16\nconf: null\ntask: detect\n").unwrap();
        let s = Settings::resolve(&over(&[("cfg", cfg.to_str().unwrap()), ("epochs", "100")])).unwrap();
        for key in ["cfg", "batch", "conf", "epochs"] {
            assert!(s.is_given(key), "{key}");
        }
        assert!(!s.is_given("lr0") && !s.is_given("task"));
    }

    #[test]
    fn bad_values_name_the_key() {
        let e = Settings::resolve(&over(&[("epochs", "many")])).unwrap_err().to_string();
        assert!(e.contains("epochs") && e.contains("integer"), "{e}");
        let e = Settings::resolve(&over(&[("epcohs", "3")])).unwrap_err().to_string();
        assert!(e.contains("did you mean 'epochs'"), "{e}");
        let e = Settings::resolve(&over(&[("imgsz", "100")])).unwrap_err().to_string();
        assert!(e.contains("multiple of 32"), "{e}");
        let e = format!("{:#}", Settings::resolve(&over(&[("amp", "fp8")])).unwrap_err());
        assert!(e.contains("fp8"), "{e}");
        let e = format!("{:#}", Settings::resolve(&over(&[("split", "holdout")])).unwrap_err());
        assert!(e.contains("split") && e.contains("holdout"), "{e}");
        let e = format!("{:#}", Settings::resolve(&over(&[("device", "mps")])).unwrap_err());
        assert!(e.contains("mps") && e.contains("vulkan:N"), "{e}");
        let e = format!("{:#}", Settings::resolve(&over(&[("format", "tensorrt")])).unwrap_err());
        assert!(e.contains("tensorrt"), "{e}");
        // Refused when settings resolve, before any dataset is read.
        let e = format!("{:#}", Settings::resolve(&over(&[("optimizer", "Adam")])).unwrap_err());
        assert!(e.contains("optimizer") && e.contains("'adam'") && e.contains("AdamW"), "{e}");
    }

    #[test]
    fn cfg_file_overrides_defaults_and_flags_override_the_file() {
        let dir = std::env::temp_dir().join(format!("ember-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cfg = dir.join("my.yaml");
        std::fs::write(&cfg, "epochs: 7\nlr0: 0.05\n").unwrap();
        let s = Settings::resolve(&over(&[("cfg", cfg.to_str().unwrap()), ("lr0", "0.03")])).unwrap();
        assert_eq!((s.epochs, s.lr0), (7, 0.03));
        std::fs::write(&cfg, "epochs: 7\nwieght_decay: 0.1\n").unwrap();
        let e = format!("{:#}", Settings::resolve(&over(&[("cfg", cfg.to_str().unwrap())])).unwrap_err());
        assert!(e.contains("my.yaml:2") && e.contains("weight_decay"), "{e}");
    }

    #[test]
    fn nms_defaults_to_the_one_to_many_branch_and_end2end_is_its_alias() {
        assert!(!Settings::defaults().nms_free(), "8.4.190: nms=None means NMS in val, predict and export");
        assert!(Settings::resolve(&over(&[("nms", "false")])).unwrap().nms_free());
        assert!(!Settings::resolve(&over(&[("nms", "true")])).unwrap().nms_free());
        assert!(Settings::resolve(&over(&[("end2end", "true")])).unwrap().nms_free());
        assert!(!Settings::resolve(&over(&[("end2end", "false")])).unwrap().nms_free());
        assert!(Settings::resolve(&over(&[("nms", "false"), ("end2end", "true")])).unwrap().nms_free());
        for (nms, end2end) in [("false", "false"), ("true", "true")] {
            let e = Settings::resolve(&over(&[("nms", nms), ("end2end", end2end)])).unwrap_err().to_string();
            assert!(e.contains("disagree") && e.contains("nms=false"), "{e}");
        }
    }

    #[test]
    fn ultralytics_only_keys_are_accepted_or_refused_by_name() {
        let s = Settings::resolve(&over(&[("task", "detect"), ("compile", "true"), ("pose", "12.0")])).unwrap();
        assert_eq!(s.epochs, 100);
        let e = Settings::resolve(&over(&[("task", "segment")])).unwrap_err().to_string();
        assert!(e.contains("task=segment"), "{e}");
        // A `.pt` model (an Ultralytics args.yaml names one) is read natively.
        assert_eq!(Settings::resolve(&over(&[("model", "yolo26n.pt")])).unwrap().model, "yolo26n.pt");
        assert_eq!(Settings::resolve(&over(&[("multi_scale", "0.5")])).unwrap().multi_scale, 0.5);
        let e = Settings::resolve(&over(&[("multi_scale", "1.5")])).unwrap_err().to_string();
        assert!(e.contains("multi_scale") && e.contains("[0, 1)"), "{e}");
    }

    #[test]
    fn freeze_takes_a_count_or_a_list() {
        assert_eq!(Settings::defaults().freeze, None);
        let s = Settings::resolve(&over(&[("freeze", "3")])).unwrap();
        assert_eq!(s.freeze, Some(vec!["0".into(), "1".into(), "2".into()]));
        let s = Settings::resolve(&over(&[("freeze", "[0, 22.cv2]")])).unwrap();
        assert_eq!(s.freeze, Some(vec!["0".into(), "22.cv2".into()]));
        assert_eq!(Settings::resolve(&over(&[("freeze", "0")])).unwrap().freeze, None);
        let yaml = Settings::resolve(&over(&[("freeze", "2")])).unwrap().to_yaml();
        let back: Settings = serde_yaml::from_str(&yaml).unwrap();
        assert_eq!(back.freeze, Some(vec!["0".into(), "1".into()]));
    }

    #[test]
    fn args_yaml_round_trips() {
        let s = Settings::resolve(&over(&[("epochs", "3"), ("amp", "bf16"), ("device", "vulkan:1")])).unwrap();
        let back: Settings = serde_yaml::from_str(&s.to_yaml()).unwrap();
        assert_eq!(back.epochs, 3);
        assert_eq!(back.amp, AmpRequest::Forced(AmpMode::Bf16));
        assert_eq!(back.device, s.device);
        let back: Settings = serde_yaml::from_str(&Settings::defaults().to_yaml()).unwrap();
        assert_eq!((back.amp, back.resume), (AmpRequest::Auto, ResumeTarget::No));
    }
}
