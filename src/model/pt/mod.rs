//! PyTorch `.pt` files read without Python: a pickle reader that executes nothing ([`pickle`]) and the walk
//! of an Ultralytics checkpoint's pickled model into Ultralytics-keyed tensors ([`checkpoint`]).

pub mod checkpoint;
pub mod pickle;

pub use checkpoint::{read_pt, read_pt_bytes, PtCheckpoint, PtInfo};
