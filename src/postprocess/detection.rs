//! The post-processed detection type shared by NMS, the NMS-free path and the metrics.

/// One detected object in input-image pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Detection {
    /// Corner box `[x1, y1, x2, y2]` in pixels.
    pub xyxy: [f32; 4],
    /// Confidence (class score after sigmoid).
    pub score: f32,
    /// Class index.
    pub class: usize,
}

/// How the four box channels of a prediction tensor are laid out (the model's decode decides).
pub use crate::model::BoxFormat;
