//! Settings: the embedded `configs/default.yaml`, a `--cfg` file over it, then command-line values, resolved
//! once into typed [`Settings`].

mod amp;
mod batch;
mod device;
mod export_format;
pub mod foreign;
mod mode;
mod optimizer;
mod resume;
mod settings;
mod spec;
mod split;
mod suggest;

pub use amp::{AmpMode, AmpRequest};
pub use batch::{BatchSize, AUTO_FRACTION, DEFAULT_BATCH};
pub use device::{DeviceSpec, Devices};
pub use export_format::ExportFormat;
pub use mode::Mode;
pub use optimizer::{OptimizerChoice, OptimizerKind};
pub use resume::ResumeTarget;
pub use settings::{CacheMode, Overrides, Settings, LARGEST_STRIDE};
pub use spec::{key_specs, KeyKind, KeySpec, Section, DEFAULT_YAML};
pub use split::Split;
pub use suggest::closest;
