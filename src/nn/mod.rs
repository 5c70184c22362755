//! Building blocks of the YOLO detectors, one concept per file.
//!
//! Struct field names follow Ultralytics' module attribute names (`conv`, `bn`, `cv1`, `m`, ...) so the
//! module path of every tensor is its Ultralytics `state_dict` key (see `model::weights`).

pub mod anchors;
pub mod attention;
pub mod batchnorm;
pub mod bottleneck;
pub mod c2f;
pub mod c3k2;
pub mod concat;
pub mod conv;
pub mod conv_lowp;
pub mod cost;
pub mod detect;
pub mod float;
pub mod frozen_norm;
pub mod head_output;
pub mod onnx;
pub mod residual;
pub mod sppf;
pub mod upsample;

pub use attention::{Attention, AttentionConfig, C2psa, C2psaConfig, PsaBlock, PsaBlockConfig};
pub use batchnorm::{BatchNorm2d, BatchNorm2dConfig};
pub use bottleneck::{Bottleneck, BottleneckConfig};
pub use c2f::C2fConfig;
pub use c3k2::{C3k, C3k2, C3k2Config, C3kConfig};
pub use concat::{concat, concat_onnx};
pub use conv::{conv2d, Conv, Conv2d, Conv2dConfig, ConvConfig};
pub use cost::Cost;
pub use detect::{Detect, DetectConfig, HeadExport};
pub use head_output::{BoxFormat, DetectOutput, HeadOutput};
pub use onnx::{OnnxGraph, ToOnnx};
pub use sppf::{Sppf, SppfConfig};
pub use upsample::{upsample_nearest, upsample_nearest_onnx};

/// The device a module's tensors live on (its first tensor's; ember never splits a model across devices).
pub fn device_of<B: burn::tensor::backend::Backend, M: burn::module::Module<B>>(
    module: &M,
) -> anyhow::Result<B::Device> {
    module.devices().into_iter().next().ok_or_else(|| anyhow::anyhow!("the model has no tensors"))
}
