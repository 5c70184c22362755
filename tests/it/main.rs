//! ember's integration tests, one binary (one link of burn and tract instead of one per file). Each module is
//! one area; shared helpers live in `common`. The real photos come from `$EMBER_DATASETS` (see `common`).

mod common;

mod amp;
mod augment_geometry;
mod dataset_yaml;
mod export_onnx;
mod image_decode;
mod labels;
mod layering;
mod letterbox;
mod loader;
mod loss_parity;
mod loss_units;
mod metrics_accumulator;
mod metrics_coco;
mod metrics_parity;
mod metrics_plots;
mod model_blocks;
mod model_params;
mod model_parity;
mod model_weights;
#[cfg(feature = "mpi")]
mod mpi;
mod optimizer;
mod pipeline_loader;
mod polygon;
mod postprocess_nms;
mod predict_coco8;
mod pt_checkpoint;
mod resize;
mod schedule;
mod train;
mod train_console;
mod val_parity;
mod vulkan;
