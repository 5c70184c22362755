//! The `--amp` setting: which float type does the heavy maths.

use std::fmt;
use std::str::FromStr;

/// Requested compute precision for training.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "serde_yaml::Value", into = "String")]
pub enum AmpMode {
    /// FP16 convolutions and matrix products, FP32 master weights, dynamic loss scaling.
    Fp16,
    /// BF16 compute, FP32 master weights; BF16's range needs no loss scaling.
    Bf16,
    /// Plain FP32.
    Fp32,
}

impl FromStr for AmpMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "" | "true" | "on" | "yes" | "1" | "fp16" | "f16" | "half" => Ok(AmpMode::Fp16),
            "bf16" => Ok(AmpMode::Bf16),
            "false" | "off" | "no" | "0" | "fp32" | "f32" => Ok(AmpMode::Fp32),
            other => Err(format!("amp: '{other}' is not one of true, false, fp16, bf16, fp32")),
        }
    }
}

impl TryFrom<serde_yaml::Value> for AmpMode {
    type Error = String;
    fn try_from(v: serde_yaml::Value) -> Result<Self, String> {
        match v {
            serde_yaml::Value::Bool(true) => Ok(AmpMode::Fp16),
            serde_yaml::Value::Bool(false) => Ok(AmpMode::Fp32),
            serde_yaml::Value::String(s) => s.parse(),
            serde_yaml::Value::Null => Ok(AmpMode::Fp16),
            other => Err(format!("amp: expected true, false, fp16, bf16 or fp32, got {other:?}")),
        }
    }
}

impl From<AmpMode> for String {
    fn from(m: AmpMode) -> String {
        m.to_string()
    }
}

impl fmt::Display for AmpMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AmpMode::Fp16 => "fp16",
            AmpMode::Bf16 => "bf16",
            AmpMode::Fp32 => "fp32",
        })
    }
}
