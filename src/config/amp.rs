//! The `--amp` setting: which float type does the heavy maths. `amp: true` (the default, and a bare `--amp`)
//! leaves the choice to the device ([`AmpRequest::Auto`]); `fp16`, `bf16` and `fp32` force one.

use std::fmt;
use std::str::FromStr;

use serde_yaml::Value;

/// A compute precision for training.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AmpMode {
    /// FP16 convolutions and matrix products, FP32 master weights, dynamic loss scaling.
    Fp16,
    /// BF16 compute, FP32 master weights; BF16's range needs no loss scaling.
    Bf16,
    /// Plain FP32.
    Fp32,
}

/// The `amp` setting: mixed precision where the device computes faster in it, or a forced precision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "serde_yaml::Value", into = "serde_yaml::Value")]
pub enum AmpRequest {
    /// `true` (the default, a bare `--amp`): FP16 on a GPU that computes in it, FP32 on the CPU.
    Auto,
    /// `fp16`, `bf16`, or `false` / `fp32`: this precision on any device.
    Forced(AmpMode),
}

impl FromStr for AmpRequest {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "" | "true" | "on" | "yes" | "1" => Ok(AmpRequest::Auto),
            "fp16" | "f16" | "half" => Ok(AmpRequest::Forced(AmpMode::Fp16)),
            "bf16" => Ok(AmpRequest::Forced(AmpMode::Bf16)),
            "false" | "off" | "no" | "0" | "fp32" | "f32" => Ok(AmpRequest::Forced(AmpMode::Fp32)),
            other => Err(format!("amp: '{other}' is not one of true, false, fp16, bf16, fp32")),
        }
    }
}

impl TryFrom<Value> for AmpRequest {
    type Error = String;
    fn try_from(v: Value) -> Result<Self, String> {
        match v {
            Value::Bool(true) | Value::Null => Ok(AmpRequest::Auto),
            Value::Bool(false) => Ok(AmpRequest::Forced(AmpMode::Fp32)),
            Value::String(s) => s.parse(),
            other => Err(format!("amp: expected true, false, fp16, bf16 or fp32, got {other:?}")),
        }
    }
}

/// Written back as read: `true` for the automatic choice, else the precision's name.
impl From<AmpRequest> for Value {
    fn from(a: AmpRequest) -> Value {
        match a {
            AmpRequest::Auto => Value::Bool(true),
            AmpRequest::Forced(mode) => Value::String(mode.to_string()),
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn true_is_automatic_and_names_force() {
        let parse = |yaml: &str| AmpRequest::try_from(serde_yaml::from_str::<Value>(yaml).unwrap());
        assert_eq!(parse("true"), Ok(AmpRequest::Auto));
        assert_eq!(parse("~"), Ok(AmpRequest::Auto));
        assert_eq!(parse("'true'"), Ok(AmpRequest::Auto));
        assert_eq!(parse("fp16"), Ok(AmpRequest::Forced(AmpMode::Fp16)));
        assert_eq!(parse("bf16"), Ok(AmpRequest::Forced(AmpMode::Bf16)));
        assert_eq!(parse("false"), Ok(AmpRequest::Forced(AmpMode::Fp32)));
        assert_eq!(parse("fp32"), Ok(AmpRequest::Forced(AmpMode::Fp32)));
        assert!(parse("fp8").unwrap_err().contains("fp8"));
        for a in [AmpRequest::Auto, AmpRequest::Forced(AmpMode::Fp16), AmpRequest::Forced(AmpMode::Fp32)] {
            assert_eq!(AmpRequest::try_from(Value::from(a)), Ok(a));
        }
    }
}
