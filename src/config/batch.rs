//! The `batch` setting: a number of images, or Ultralytics' AutoBatch (`-1`, or a fraction of device memory).

use std::fmt;

use serde_yaml::Value;

/// Images per batch, or a batch fitted to the device's memory at the start of training.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "Value", into = "Value")]
pub enum BatchSize {
    /// A fixed number of images (at least 1).
    Images(u32),
    /// AutoBatch: the batch whose training step is predicted to take this fraction of the device's memory
    /// (`batch=-1` is 0.6, Ultralytics' default; `0 < batch < 1` gives the fraction).
    Auto(f64),
}

/// The fraction `batch=-1` asks for (Ultralytics `autobatch`'s default).
pub const AUTO_FRACTION: f64 = 0.6;

/// The batch Ultralytics falls back to where AutoBatch cannot measure (the CPU, an unknown device size).
pub const DEFAULT_BATCH: u32 = 16;

impl BatchSize {
    /// The number of images, or [`DEFAULT_BATCH`] for AutoBatch (which only training resolves).
    pub fn images_or_default(self) -> usize {
        match self {
            BatchSize::Images(n) => n as usize,
            BatchSize::Auto(_) => DEFAULT_BATCH as usize,
        }
    }
}

impl TryFrom<Value> for BatchSize {
    type Error = String;
    fn try_from(v: Value) -> Result<BatchSize, String> {
        let refused = |v: &dyn fmt::Display| {
            format!("batch: {v} is not a number of images (1 or more), -1 (AutoBatch) or a fraction of device memory in (0, 1)")
        };
        match v {
            Value::Number(n) if n.as_i64() == Some(-1) => Ok(BatchSize::Auto(AUTO_FRACTION)),
            Value::Number(n) if n.as_u64().is_some_and(|n| (1..=u32::MAX as u64).contains(&n)) => {
                Ok(BatchSize::Images(n.as_u64().unwrap_or_default() as u32))
            }
            Value::Number(n) if n.as_f64().is_some_and(|f| f > 0.0 && f < 1.0) => {
                Ok(BatchSize::Auto(n.as_f64().unwrap_or(AUTO_FRACTION)))
            }
            Value::Number(n) => Err(refused(&n)),
            Value::String(s) => Err(refused(&s)),
            other => Err(refused(&format!("{other:?}"))),
        }
    }
}

impl From<BatchSize> for Value {
    /// As the setting is written: the number of images, `-1` for the default AutoBatch, else the fraction.
    fn from(b: BatchSize) -> Value {
        match b {
            BatchSize::Images(n) => Value::Number(n.into()),
            BatchSize::Auto(f) if f == AUTO_FRACTION => Value::Number((-1).into()),
            BatchSize::Auto(f) => Value::Number(f.into()),
        }
    }
}

impl fmt::Display for BatchSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match Value::from(*self) {
            Value::Number(n) => write!(f, "{n}"),
            _ => unreachable!("a batch is written as a number"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<BatchSize, String> {
        BatchSize::try_from(serde_yaml::from_str::<Value>(text).unwrap())
    }

    #[test]
    fn images_autobatch_and_fractions_as_ultralytics_reads_them() {
        assert_eq!(parse("16"), Ok(BatchSize::Images(16)));
        assert_eq!(parse("-1"), Ok(BatchSize::Auto(0.6)));
        assert_eq!(parse("0.7"), Ok(BatchSize::Auto(0.7)));
        for bad in ["0", "-2", "1.5", "abc", "[1]"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert!(parse("0").unwrap_err().contains("-1 (AutoBatch)"));
        for b in [BatchSize::Images(8), BatchSize::Auto(0.6), BatchSize::Auto(0.75)] {
            let written = serde_yaml::to_string(&b).unwrap();
            assert_eq!(serde_yaml::from_str::<BatchSize>(&written).unwrap(), b, "{written}");
        }
        assert_eq!(BatchSize::Auto(0.6).to_string(), "-1");
    }
}
