#![warn(missing_docs)]
//! ember: train, validate, export and run YOLO-style object detectors on burn.
//!
//! The modules are declared in layer order: each may use the ones above it and none below it
//! (`tests/it/layering.rs` checks every `crate::` path). Data flows one way:
//! `data` -> `nn`/`model` -> `loss` -> `train`, and `model` -> `postprocess` -> `metrics`.

// Foundations: the backend types, host-read accounting, settings.
pub mod backend;
pub mod readback;
pub mod config;
// Collectives between the processes of a data-parallel run (MPI), and how such a run is launched.
pub mod dist;
// Kernels written for one backend (flex), reached through one dispatch.
pub mod kernels;
// Dataset YAML, labels, images, augmentation, the batch loader.
pub mod data;
// Building blocks, then detectors built from model YAMLs (weights, summaries).
pub mod nn;
pub mod model;
// Decoding and NMS; drawing detections (and the embedded font, which plots share); the loss (assigner,
// criterion); metrics (matching, AP, plots).
pub mod postprocess;
pub mod draw;
pub mod loss;
pub mod metrics;
// Validation of a model on a split.
pub mod validate;
// Run folders and checkpoints, shared by training and the commands that read its results.
pub mod runs;
// Training: optimizer, schedule, EMA, the trainer.
pub mod train;
// Export to ONNX.
pub mod export;
// Compute devices: the one place that picks a concrete backend.
pub mod device;
// The command line and the commands.
pub mod cli;
pub mod commands;
