//! The dataset splits a dataset YAML names, and the `split` setting that picks one for `ember val`.

use std::fmt;

use serde_yaml::Value;

/// The splits a dataset YAML may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "Value", into = "String")]
pub enum Split {
    /// The `train` images.
    Train,
    /// The `val` images (also spelt `valid` or `validation`); the default split of `ember val`.
    Val,
    /// The `test` images.
    Test,
}

impl Split {
    /// The key of the split in a dataset YAML.
    pub fn key(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Val => "val",
            Split::Test => "test",
        }
    }
}

impl std::str::FromStr for Split {
    type Err = String;
    fn from_str(s: &str) -> Result<Split, String> {
        match s.trim() {
            "train" => Ok(Split::Train),
            "val" | "valid" | "validation" => Ok(Split::Val),
            "test" => Ok(Split::Test),
            other => Err(format!("split: '{other}' is not one of train, val, test")),
        }
    }
}

impl TryFrom<Value> for Split {
    type Error = String;
    fn try_from(v: Value) -> Result<Split, String> {
        match v {
            Value::Null => Ok(Split::Val),
            Value::String(s) => s.parse(),
            other => Err(format!("split: expected train, val or test, got {other:?}")),
        }
    }
}

impl From<Split> for String {
    fn from(s: Split) -> String {
        s.key().to_string()
    }
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}
