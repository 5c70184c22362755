//! What a run leaves on disk and the other commands read back: numbered run folders, files written
//! atomically, and ember's SafeTensors checkpoints.

pub mod checkpoint;
pub mod folder;

pub use checkpoint::{read_meta, CheckpointMeta};
pub use folder::{make_run_dir, write_atomic};
