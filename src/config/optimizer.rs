//! The `optimizer` setting, parsed when settings are resolved so a bad value is refused before any data is read.

use std::fmt;

/// An optimizer ember implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum OptimizerKind {
    /// PyTorch's SGD with Nesterov momentum, as Ultralytics' `SGD`.
    Sgd,
    /// AdamW with decoupled weight decay, beta1 `momentum` and beta2 0.999, as Ultralytics' `AdamW`.
    AdamW,
    /// Nesterov SGD on every parameter, plus a Muon step on 2-D and 4-D weights.
    MuSGD,
}

impl OptimizerKind {
    /// Whether the group momentum is an SGD momentum (which warmup ramps) rather than Adam's beta1.
    pub fn has_sgd_momentum(self) -> bool {
        matches!(self, OptimizerKind::Sgd | OptimizerKind::MuSGD)
    }
}

/// The `optimizer` key: a fixed optimizer, or `auto` (picked from the dataset size once it is known, as
/// Ultralytics does).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "serde_yaml::Value", into = "String")]
pub enum OptimizerChoice {
    /// `auto`: the optimizer, lr0 and momentum are picked from the training length and class count, as
    /// Ultralytics does (warmup_bias_lr is then 0).
    Auto,
    /// A named optimizer (`SGD`, `AdamW`, `MuSGD`), run with the `lr0` and `momentum` settings.
    Fixed(OptimizerKind),
}

impl std::str::FromStr for OptimizerChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(OptimizerChoice::Auto),
            "sgd" => Ok(OptimizerChoice::Fixed(OptimizerKind::Sgd)),
            "adamw" => Ok(OptimizerChoice::Fixed(OptimizerKind::AdamW)),
            "musgd" => Ok(OptimizerChoice::Fixed(OptimizerKind::MuSGD)),
            other => Err(format!("optimizer: '{other}' is not one of auto, SGD, AdamW, MuSGD")),
        }
    }
}

impl TryFrom<serde_yaml::Value> for OptimizerChoice {
    type Error = String;
    fn try_from(v: serde_yaml::Value) -> Result<Self, String> {
        match v {
            serde_yaml::Value::String(s) => s.parse(),
            serde_yaml::Value::Null => Ok(OptimizerChoice::Auto),
            other => Err(format!("optimizer: expected auto, SGD, AdamW or MuSGD, got {other:?}")),
        }
    }
}

impl From<OptimizerChoice> for String {
    fn from(c: OptimizerChoice) -> String {
        c.to_string()
    }
}

impl fmt::Display for OptimizerChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OptimizerChoice::Auto => "auto",
            OptimizerChoice::Fixed(OptimizerKind::Sgd) => "SGD",
            OptimizerChoice::Fixed(OptimizerKind::AdamW) => "AdamW",
            OptimizerChoice::Fixed(OptimizerKind::MuSGD) => "MuSGD",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_as_ultralytics_writes_them_round_trip() {
        for name in ["auto", "SGD", "AdamW", "MuSGD"] {
            let c: OptimizerChoice = name.parse().unwrap();
            assert_eq!(c.to_string(), name);
        }
        assert_eq!("sgd".parse::<OptimizerChoice>(), Ok(OptimizerChoice::Fixed(OptimizerKind::Sgd)));
        let err = "Adam".parse::<OptimizerChoice>().unwrap_err();
        assert!(err.contains("'adam'") && err.contains("AdamW"), "{err}");
    }
}
