//! The `resume` setting: which interrupted run to continue.

use std::path::PathBuf;

use serde_yaml::Value;

/// The checkpoint a resumed run continues from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "Value", into = "Value")]
pub enum ResumeTarget {
    /// Not a resumed run (`false`, the default).
    No,
    /// `true`: the last checkpoint of the newest run under the project folder.
    Newest,
    /// A checkpoint path.
    Checkpoint(PathBuf),
}

impl TryFrom<Value> for ResumeTarget {
    type Error = String;
    fn try_from(v: Value) -> Result<ResumeTarget, String> {
        match v {
            Value::Null | Value::Bool(false) => Ok(ResumeTarget::No),
            Value::Bool(true) => Ok(ResumeTarget::Newest),
            Value::String(s) => Ok(match s.trim() {
                "" | "false" | "False" => ResumeTarget::No,
                "true" | "True" => ResumeTarget::Newest,
                path => ResumeTarget::Checkpoint(PathBuf::from(path)),
            }),
            other => Err(format!("resume: expected true, false or a checkpoint path, got {other:?}")),
        }
    }
}

impl From<ResumeTarget> for Value {
    fn from(r: ResumeTarget) -> Value {
        match r {
            ResumeTarget::No => Value::Bool(false),
            ResumeTarget::Newest => Value::Bool(true),
            ResumeTarget::Checkpoint(path) => Value::String(path.display().to_string()),
        }
    }
}
