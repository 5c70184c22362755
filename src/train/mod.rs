//! Training: the recipe around the model and the loss.

pub mod ema;
pub mod optimizer;
pub mod results;
pub mod run_dir;
pub mod schedule;
