//! The `format` setting of `ember export`.

use std::fmt;

use serde_yaml::Value;

/// Ultralytics 8.4.190's export formats (`export_formats()`), which its `args.yaml` may name; ember writes
/// ONNX only among them, and refuses the others when asked to export.
const ULTRALYTICS_FORMATS: &[&str] = &[
    "torchscript",
    "onnx",
    "openvino",
    "engine",
    "coreml",
    "coreai",
    "saved_model",
    "pb",
    "edgetpu",
    "litert",
    "paddle",
    "mnn",
    "ncnn",
    "imx",
    "rknn",
    "executorch",
    "axelera",
    "deepx",
    "qnn",
    "hailo",
    "ascend",
    "xilinx",
];

/// What `ember export` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(into = "String")]
pub enum ExportFormat {
    /// An ONNX graph (the default), as Ultralytics' `format=onnx`.
    Onnx,
    /// Ultralytics-keyed SafeTensors.
    SafeTensors,
    /// burn's native format.
    Burnpack,
    /// Another of Ultralytics' formats (an Ultralytics `args.yaml` says `format: torchscript`): accepted in
    /// settings, refused by `ember export`.
    Ultralytics(&'static str),
}

impl std::str::FromStr for ExportFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<ExportFormat, String> {
        let lower = s.trim().to_ascii_lowercase();
        match lower.as_str() {
            "onnx" => Ok(ExportFormat::Onnx),
            "safetensors" => Ok(ExportFormat::SafeTensors),
            "burnpack" | "bpk" => Ok(ExportFormat::Burnpack),
            other => match ULTRALYTICS_FORMATS.iter().find(|f| **f == other) {
                Some(f) => Ok(ExportFormat::Ultralytics(f)),
                None => Err(format!("format: '{other}' is not one of onnx, safetensors, burnpack")),
            },
        }
    }
}

impl TryFrom<Value> for ExportFormat {
    type Error = String;
    fn try_from(v: Value) -> Result<ExportFormat, String> {
        match v {
            Value::Null => Ok(ExportFormat::Onnx),
            Value::String(s) => s.parse(),
            other => Err(format!("format: expected onnx, safetensors or burnpack, got {other:?}")),
        }
    }
}

impl<'de> serde::Deserialize<'de> for ExportFormat {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        ExportFormat::try_from(Value::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

impl From<ExportFormat> for String {
    fn from(f: ExportFormat) -> String {
        f.to_string()
    }
}

impl fmt::Display for ExportFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ExportFormat::Onnx => "onnx",
            ExportFormat::SafeTensors => "safetensors",
            ExportFormat::Burnpack => "burnpack",
            ExportFormat::Ultralytics(name) => name,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ember_formats_and_ultralytics_names() {
        assert_eq!("ONNX".parse(), Ok(ExportFormat::Onnx));
        assert_eq!("bpk".parse(), Ok(ExportFormat::Burnpack));
        assert_eq!("torchscript".parse(), Ok(ExportFormat::Ultralytics("torchscript")));
        assert!("tensorrt".parse::<ExportFormat>().unwrap_err().contains("'tensorrt'"));
        assert_eq!(ExportFormat::SafeTensors.to_string().parse(), Ok(ExportFormat::SafeTensors));
    }
}
