//! Settings: the embedded `configs/default.yaml`, a `--cfg` file over it, then command-line values.

mod amp;
pub mod foreign;
mod optimizer;
mod settings;
mod spec;
mod suggest;

pub use amp::AmpMode;
pub use optimizer::{OptimizerChoice, OptimizerKind};
pub use settings::{CacheMode, Overrides, Settings};
pub use spec::{key_specs, KeyKind, KeySpec, Section, DEFAULT_YAML};
pub use suggest::closest;
