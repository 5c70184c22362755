//! Training: the recipe around the model and the loss.

pub mod autobatch;
pub mod early_stop;
pub mod ema;
pub mod events;
pub mod fault;
pub mod flat;
pub mod freeze;
pub mod loss_scale;
pub mod multi_scale;
pub mod oom;
pub mod muon;
pub mod optimizer;
pub mod precision;
pub mod results;
pub mod schedule;
pub mod step;
pub mod trainer;
