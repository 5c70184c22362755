//! Model YAML (Ultralytics' format) parsing and name resolution.
//!
//! A model is named like `yolo26n`, `yolov8s.yaml` or given as a path to a YAML file. The three built-in
//! families are embedded in the binary, so names work from any directory.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use serde_yaml::Value;

/// Built-in model families: (family name, YAML text).
pub const BUILTIN: [(&str, &str); 3] = [
    ("yolo26", include_str!("../../configs/models/yolo26.yaml")),
    ("yolo11", include_str!("../../configs/models/yolo11.yaml")),
    ("yolov8", include_str!("../../configs/models/yolov8.yaml")),
];

/// Where a layer takes its input from: `-1` is the previous layer, other negatives count back.
#[derive(Debug, Clone, PartialEq)]
pub enum Inputs {
    /// A single input, e.g. `-1`.
    One(i64),
    /// Several inputs (for `Concat` and `Detect`), e.g. `[-1, 6]`.
    Many(Vec<i64>),
}

impl Inputs {
    /// The indices as written (relative negatives not yet resolved).
    pub fn indices(&self) -> Vec<i64> {
        match self {
            Inputs::One(i) => vec![*i],
            Inputs::Many(v) => v.clone(),
        }
    }
}

impl std::fmt::Display for Inputs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Inputs::One(i) => write!(f, "{i}"),
            Inputs::Many(v) => write!(f, "{v:?}"),
        }
    }
}

/// One `[from, repeats, module, args]` row.
#[derive(Debug, Clone)]
pub struct LayerSpec {
    /// Where the layer's inputs come from.
    pub from: Inputs,
    /// Repeats as written, before depth scaling.
    pub repeats: usize,
    /// Module name as written (`Conv`, `C3k2`, `nn.Upsample`, ...).
    pub module: String,
    /// Constructor arguments as written (channels before width scaling; bare words like `nc`, `None` are strings).
    pub args: Vec<Value>,
}

/// A parsed model YAML, scale chosen.
#[derive(Debug, Clone)]
pub struct ModelConfig {
    /// Display name, e.g. `yolo26n`.
    pub name: String,
    /// Scale letter when the file has `scales` (e.g. `n`).
    pub scale: Option<String>,
    /// Classes in the YAML (the dataset's count replaces it when building).
    pub nc: usize,
    /// Multiplier on repeats (the scale's first value, or `depth_multiple`; 1.0 when absent).
    pub depth: f64,
    /// Multiplier on channels (the scale's second value, or `width_multiple`; 1.0 when absent).
    pub width: f64,
    /// Cap on a layer's channels before width scaling (the scale's third value; `usize::MAX` without `scales`).
    pub max_channels: usize,
    /// The YAML's `end2end`: build the one-to-one (NMS-free) head branch too (false when absent).
    pub end2end: bool,
    /// DFL bins per box side (the YAML's `reg_max`, 16 when absent; YOLO26 sets 1).
    pub reg_max: usize,
    /// The `backbone` rows followed by the `head` rows.
    pub layers: Vec<LayerSpec>,
}

impl ModelConfig {
    /// Resolve `yolo26n`, `yolo26n.yaml`, `yolov8s`, or a path to a YAML file.
    pub fn resolve(model: &str) -> Result<Self> {
        let path = Path::new(model);
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or(model).to_string();
        let scale_hint = guess_scale(&stem);
        if path.is_file() {
            let text =
                std::fs::read_to_string(path).with_context(|| format!("reading model YAML {}", path.display()))?;
            return Self::parse(&text, &stem, scale_hint.as_deref())
                .with_context(|| format!("in model YAML {}", path.display()));
        }
        let family = family_of(&stem);
        match BUILTIN.iter().find(|(f, _)| Some(*f) == family.as_deref()) {
            Some((f, text)) => {
                Self::parse(text, &stem, scale_hint.as_deref()).with_context(|| format!("in built-in model {f}"))
            }
            None => {
                let known: Vec<String> = BUILTIN.iter().map(|(f, _)| format!("{f}{{n,s,m,l,x}}")).collect();
                bail!("unknown model '{model}': not a file, and not a built-in model ({})", known.join(", "))
            }
        }
    }

    /// Parse YAML text; `scale` picks a row of `scales` (first one when `None`).
    pub fn parse(text: &str, name: &str, scale: Option<&str>) -> Result<Self> {
        let doc: Value = serde_yaml::from_str(text).context("invalid YAML")?;
        let map = doc.as_mapping().ok_or_else(|| anyhow!("model YAML must be a mapping"))?;
        let get = |k: &str| map.get(Value::from(k));
        let nc = match get("nc") {
            Some(v) => v.as_u64().ok_or_else(|| anyhow!("'nc' must be a positive integer"))? as usize,
            None => 80,
        };
        let end2end = get("end2end").and_then(Value::as_bool).unwrap_or(false);
        let reg_max = match get("reg_max") {
            Some(v) => v.as_u64().ok_or_else(|| anyhow!("'reg_max' must be an integer"))? as usize,
            None => 16,
        };
        let (mut depth, mut width, mut max_channels) = (
            get("depth_multiple").and_then(Value::as_f64).unwrap_or(1.0),
            get("width_multiple").and_then(Value::as_f64).unwrap_or(1.0),
            usize::MAX,
        );
        let mut chosen = None;
        if let Some(scales) = get("scales") {
            let scales: BTreeMap<String, Vec<f64>> = serde_yaml::from_value(scales.clone())
                .context("'scales' must map names to [depth, width, max_channels]")?;
            let first = scales_keys(map); // in file order
            let key = match scale {
                Some(s) if scales.contains_key(s) => s.to_string(),
                Some(s) => bail!("scale '{s}' not in this model's scales ({})", first.join(", ")),
                None => first.first().cloned().ok_or_else(|| anyhow!("'scales' is empty"))?,
            };
            let row = &scales[&key];
            if row.len() != 3 {
                bail!("scale '{key}' must be [depth, width, max_channels]");
            }
            (depth, width, max_channels) = (row[0], row[1], row[2] as usize);
            chosen = Some(key);
        }
        let mut layers = Vec::new();
        for section in ["backbone", "head"] {
            let rows = get(section).and_then(Value::as_sequence).ok_or_else(|| anyhow!("missing '{section}' list"))?;
            for (i, row) in rows.iter().enumerate() {
                layers.push(parse_row(row).with_context(|| format!("{section} row {i}: {row:?}"))?);
            }
        }
        let display = match (&chosen, guess_scale(name)) {
            (Some(s), None) => format!("{name}{s}"),
            _ => name.to_string(),
        };
        Ok(ModelConfig { name: display, scale: chosen, nc, depth, width, max_channels, end2end, reg_max, layers })
    }
}

fn scales_keys(map: &serde_yaml::Mapping) -> Vec<String> {
    map.get(Value::from("scales"))
        .and_then(Value::as_mapping)
        .map(|m| m.keys().filter_map(|k| k.as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

fn parse_row(row: &Value) -> Result<LayerSpec> {
    let items = row.as_sequence().ok_or_else(|| anyhow!("a layer must be [from, repeats, module, args]"))?;
    if items.len() != 4 {
        bail!("a layer must have 4 fields [from, repeats, module, args], got {}", items.len());
    }
    let from = match &items[0] {
        Value::Number(n) => Inputs::One(n.as_i64().ok_or_else(|| anyhow!("bad 'from'"))?),
        Value::Sequence(s) => Inputs::Many(
            s.iter().map(|v| v.as_i64().ok_or_else(|| anyhow!("bad 'from' index {v:?}"))).collect::<Result<_>>()?,
        ),
        v => bail!("bad 'from' {v:?}"),
    };
    let repeats = items[1].as_u64().ok_or_else(|| anyhow!("repeats must be a positive integer"))? as usize;
    let module = items[2].as_str().ok_or_else(|| anyhow!("module must be a name"))?.to_string();
    let args = match &items[3] {
        Value::Sequence(s) => s.clone(),
        Value::Null => vec![],
        v => vec![v.clone()],
    };
    Ok(LayerSpec { from, repeats, module, args })
}

/// Scale letter in a name like `yolo26n` / `yolov8x-custom` (Ultralytics' rule: `yolo[v]<digits><scale>`).
pub fn guess_scale(stem: &str) -> Option<String> {
    let s = stem.to_ascii_lowercase();
    let rest = s.strip_prefix("yolo")?;
    let rest = rest.strip_prefix('v').unwrap_or(rest);
    let digits = rest.chars().take_while(|c| c.is_ascii_digit()).count();
    if digits == 0 {
        return None;
    }
    rest[digits..].chars().next().filter(|c| "nsmlx".contains(*c)).map(|c| c.to_string())
}

/// Family of a built-in name: `yolo26n` -> `yolo26`, `yolov8s.yaml` -> `yolov8`.
pub fn family_of(stem: &str) -> Option<String> {
    let s = stem.to_ascii_lowercase();
    let rest = s.strip_prefix("yolo")?;
    let (v, rest) = match rest.strip_prefix('v') {
        Some(r) => ("v", r),
        None => ("", rest),
    };
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    if digits.is_empty() {
        return None;
    }
    let tail = &rest[digits.len()..];
    let tail = tail.strip_prefix(|c: char| "nsmlx".contains(c)).unwrap_or(tail);
    if !tail.is_empty() {
        return None;
    }
    Some(format!("yolo{v}{digits}"))
}
