//! ember: train, validate, export and run YOLO-style object detectors on burn.
//!
//! Data flows one way through the modules:
//! `data` (dataset YAML, labels, images, loader) -> `model` (layers built from model YAML, `nn` blocks)
//! -> `loss` (assigner and detection loss) -> `train` (optimizer, schedule, EMA, checkpoints);
//! `model` -> `postprocess` (decode, NMS) -> `metrics` (matching, AP).

pub mod backend;
pub mod cli;
pub mod commands;
pub mod config;
pub mod data;
pub mod device;
pub mod draw;
pub mod export;
pub mod kernels;
pub mod loss;
pub mod metrics;
pub mod model;
pub mod nn;
pub mod postprocess;
pub mod readback;
pub mod train;
pub mod validate;
