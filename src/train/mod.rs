//! Training: the recipe around the model and the loss.

pub mod checkpoint;
pub mod console;
pub mod criterion;
pub mod ema;
pub mod fault;
pub mod freeze;
pub mod loss_scale;
pub mod multi_scale;
pub mod muon;
pub mod optimizer;
pub mod results;
pub mod run_dir;
pub mod schedule;
pub mod step;
pub mod trainer;
