//! What the detection head returns (raw branch outputs), and their decoding into boxes.

use burn::tensor::activation::{sigmoid, softmax};
use burn::tensor::{backend::Backend, Int, Tensor};

use super::anchors::make_anchors;
use super::float::to_f32;
use super::onnx::{Attr, OnnxGraph};

/// Raw, undecoded outputs of one detection branch.
#[derive(Debug, Clone)]
pub struct HeadOutput<B: Backend> {
    /// Box regression, [batch, 4*reg_max, anchors] (reg_max == 1: ltrb distances in stride units).
    pub boxes: Tensor<B, 3>,
    /// Class logits before sigmoid, [batch, nc, anchors].
    pub scores: Tensor<B, 3>,
}

/// Everything [`Detect::forward`](super::Detect::forward) returns: the raw outputs of both branches and what
/// decoding them needs.
#[derive(Debug, Clone)]
pub struct DetectOutput<B: Backend> {
    /// The one-to-many branch, present in every model (the predictions NMS filters).
    pub one2many: HeadOutput<B>,
    /// Present for end-to-end (NMS-free) models such as YOLO26.
    pub one2one: Option<HeadOutput<B>>,
    /// Feature-map size (h, w) of each level, in stride order.
    pub feature_sizes: Vec<[usize; 2]>,
    /// Stride (input pixels per grid cell) of each level, in stride order.
    pub strides: Vec<f32>,
    /// DFL bins per box side (1: direct ltrb regression), as in [`HeadOutput::boxes`].
    pub reg_max: usize,
}

/// Box layout of a decoded output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BoxFormat {
    /// Centre x, centre y, width, height (Ultralytics' one-to-many eval output).
    Xywh,
    /// Corners (Ultralytics' end-to-end eval output, before top-k).
    Xyxy,
}

/// Expected ltrb distances (stride units) `[batch, 4, anchors]` from raw box outputs: the DFL expectation
/// over `reg_max` bins, or the raw values when `reg_max == 1`.
pub fn box_distances<B: Backend>(boxes: Tensor<B, 3>, reg_max: usize) -> Tensor<B, 3> {
    if reg_max <= 1 {
        return boxes;
    }
    let [b, _, a] = boxes.dims();
    let device = boxes.device();
    let probs = softmax(boxes.reshape([b, 4, reg_max, a]), 2);
    let bins =
        Tensor::<B, 1, Int>::arange(0..reg_max as i64, &device).float().cast(probs.dtype()).reshape([1, 1, reg_max, 1]);
    probs.mul(bins).sum_dim(2).reshape([b, 4, a])
}

impl<B: Backend> HeadOutput<B> {
    /// Decoded predictions `[batch, 4 + nc, anchors]`: boxes in input pixels, then sigmoid class scores.
    pub fn decode(
        &self,
        feature_sizes: &[[usize; 2]],
        strides: &[f32],
        reg_max: usize,
        format: BoxFormat,
    ) -> Tensor<B, 3> {
        let device = self.boxes.device();
        let dtype = self.boxes.dtype();
        let (anchors, stride) = make_anchors(feature_sizes, strides, 0.5).to_tensors::<B>(&device);
        let anchors = anchors.cast(dtype).transpose().unsqueeze::<3>(); // [1, 2, A]
        let stride = stride.cast(dtype).transpose().unsqueeze::<3>(); // [1, 1, A]
        let dist = box_distances(self.boxes.clone(), reg_max);
        let lt = dist.clone().narrow(1, 0, 2);
        let rb = dist.narrow(1, 2, 2);
        let x1y1 = anchors.clone() - lt;
        let x2y2 = anchors + rb;
        let boxes = match format {
            BoxFormat::Xywh => Tensor::cat(vec![(x1y1.clone() + x2y2.clone()).div_scalar(2.0), x2y2 - x1y1], 1),
            BoxFormat::Xyxy => Tensor::cat(vec![x1y1, x2y2], 1),
        };
        Tensor::cat(vec![boxes.mul(stride), sigmoid(self.scores.clone())], 1)
    }
}

impl<B: Backend> DetectOutput<B> {
    /// Decode the one-to-many branch (what NMS consumes), boxes as xywh.
    pub fn decode_one2many(&self) -> Tensor<B, 3> {
        self.one2many.decode(&self.feature_sizes, &self.strides, self.reg_max, BoxFormat::Xywh)
    }

    /// The decoded predictions post-processing consumes and their box layout: the one-to-one branch
    /// (corners, for the NMS-free top-k) when `end2end` is asked for and the model has one, else the
    /// one-to-many branch (centre form, for NMS). Only the chosen branch is decoded.
    ///
    /// Decoding runs in FP32 whatever the network computed in: box coordinates reach the image size, where
    /// FP16 resolves only half a pixel, and the DFL softmax sums exponentials.
    pub fn decode_for_postprocess(&self, end2end: bool) -> (Tensor<B, 3>, BoxFormat) {
        let (branch, format) = match (&self.one2one, end2end) {
            (Some(o2o), true) => (o2o, BoxFormat::Xyxy),
            _ => (&self.one2many, BoxFormat::Xywh),
        };
        let fp32 = HeadOutput { boxes: to_f32(branch.boxes.clone()), scores: to_f32(branch.scores.clone()) };
        (fp32.decode(&self.feature_sizes, &self.strides, self.reg_max, format), format)
    }

    /// Decode the one-to-one branch if the model has one.
    pub fn decode_one2one(&self, format: BoxFormat) -> Option<Tensor<B, 3>> {
        self.one2one.as_ref().map(|h| h.decode(&self.feature_sizes, &self.strides, self.reg_max, format))
    }
}

/// [`HeadOutput::decode`] in an ONNX graph: `[b, 4 + nc, A]` from a branch's raw `boxes` and `scores`, with the
/// anchor points and strides of `anchors_onnx`.
pub fn decode_onnx(
    g: &mut dyn OnnxGraph,
    (boxes, scores): (&str, &str),
    reg_max: usize,
    (anchors, strides): (&str, &str),
    format: BoxFormat,
) -> String {
    let dist = if reg_max > 1 {
        let p = g.reshape(boxes, &[0, 4, reg_max as i64, -1]);
        let p = g.op("Softmax", &[&p], vec![Attr::Int("axis", 2)]);
        let bins: Vec<f32> = (0..reg_max).map(|i| i as f32).collect();
        let bins = g.weight("bins", &[1, 1, reg_max, 1], &bins);
        let p = g.op("Mul", &[&p, &bins], vec![]);
        let axes = g.ints("axes", &[2]);
        g.op("ReduceSum", &[&p, &axes], vec![Attr::Int("keepdims", 0)])
    } else {
        boxes.to_string()
    };
    let parts = g.split(&dist, &[2, 2], 1);
    let x1y1 = g.op("Sub", &[anchors, &parts[0]], vec![]);
    let x2y2 = g.op("Add", &[anchors, &parts[1]], vec![]);
    let b = match format {
        BoxFormat::Xyxy => g.concat(&[&x1y1, &x2y2], 1),
        BoxFormat::Xywh => {
            let sum = g.add(&x1y1, &x2y2);
            let two = g.scalar(2.0);
            let c = g.op("Div", &[&sum, &two], vec![]);
            let wh = g.op("Sub", &[&x2y2, &x1y1], vec![]);
            g.concat(&[&c, &wh], 1)
        }
    };
    let b = g.op("Mul", &[&b, strides], vec![]);
    let s = g.op("Sigmoid", &[scores], vec![]);
    g.concat(&[&b, &s], 1)
}
