//! Datasets as Ultralytics users lay them out: a dataset YAML, `images/` and `labels/` folders,
//! one `class cx cy w h` line per box. Flow: `dataset_yaml` -> `scan` (with `labels`) -> `loader`
//! (with `image_io` and `letterbox`).

pub mod augment;
pub mod cache;
pub mod dataset_yaml;
pub mod download;
pub mod image_io;
pub mod jpeg;
pub mod labels;
pub mod letterbox;
pub mod loader;
pub mod polygon;
pub mod recent;
pub mod resize;
pub mod scan;
pub mod simd;
pub mod synthetic;
pub mod worker;

pub use dataset_yaml::{DatasetConfig, Split};
pub use labels::{BoxLabel, LabelIssue, ParsedLabels};
pub use letterbox::Letterbox;
pub use loader::{batch_tensor, Batch, BatchLoader, LoaderConfig, Shard, WaitClock};
pub use scan::{Sample, SplitScan};
