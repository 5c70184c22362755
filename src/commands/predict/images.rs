//! Prediction over a list of images, in batches: decode, letterbox as 8.4.190's predictor ([`super::letterbox`]),
//! run the model, select the detections, map them back to the original images.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use burn::tensor::{backend::Backend, DType, Tensor, TensorData};
use image::RgbImage;
use rayon::prelude::*;

use super::letterbox::{same_shapes, PredictLetterbox};
use crate::config::{Mode, Settings};
use crate::data::image_io::decode_rgb;
use crate::model::Yolo;
use crate::postprocess::{select_detections, BoxFormat, Caller, Detection, SelectOptions};
use crate::readback::{read_f32, Purpose};

/// Inference settings.
#[derive(Debug, Clone)]
pub struct PredictOptions {
    /// Side of the letterbox square in pixels (Ultralytics imgsz); a same-shape batch pads less, to the stride.
    pub imgsz: u32,
    /// Images per batch; a batch of images of one shape gets the smallest rectangle, a mixed one the square.
    pub batch: usize,
    /// Score threshold, 0-1 (Ultralytics conf; 0.25 for predict unless given).
    pub conf: f32,
    /// NMS IoU threshold, 0-1 (Ultralytics iou, 0.7).
    pub iou: f64,
    /// Maximum detections per image (Ultralytics max_det, 300).
    pub max_det: usize,
    /// Class-agnostic NMS or top-k (Ultralytics agnostic_nms).
    pub agnostic: bool,
    /// Keep only these class ids (Ultralytics classes); `None`: all.
    pub classes: Option<Vec<usize>>,
    /// Use the one-to-one (NMS-free) head when the model has one.
    pub end2end: bool,
    /// FP16 computation.
    pub half: bool,
}

impl PredictOptions {
    /// `ember predict`'s options from the resolved settings (predict's own conf and batch defaults).
    pub fn from_settings(settings: &Settings) -> PredictOptions {
        PredictOptions {
            imgsz: settings.imgsz,
            batch: settings.batch_for(Mode::Predict),
            conf: settings.conf_for(Mode::Predict) as f32,
            iou: settings.iou,
            max_det: settings.max_det as usize,
            agnostic: settings.agnostic_nms,
            classes: settings.classes.clone(),
            // As Ultralytics 8.4.190 (`end2end=self.args.nms is False`): NMS unless nms=false / end2end=true.
            end2end: settings.nms_free(),
            half: settings.half,
        }
    }

    fn select(&self, end2end: bool) -> SelectOptions {
        SelectOptions {
            caller: Caller::Predict,
            end2end,
            conf: self.conf,
            iou: self.iou,
            max_det: self.max_det,
            agnostic: self.agnostic,
            classes: self.classes.clone(),
        }
    }
}

/// One image's outcome.
#[derive(Debug, Clone)]
pub struct ImageResult {
    /// The image file.
    pub path: PathBuf,
    /// Original width and height.
    pub size: (u32, u32),
    /// Width and height of the network input it was letterboxed to.
    pub input_size: (u32, u32),
    /// Boxes in original-image pixels.
    pub detections: Vec<Detection>,
    /// Inference time per image of its batch, milliseconds.
    pub inference_ms: f64,
    /// Decoding and letterboxing time per image of its batch, milliseconds.
    pub preprocess_ms: f64,
    /// Detection selection (NMS or top-k) time per image of its batch, milliseconds.
    pub postprocess_ms: f64,
    /// The decoded image (kept for drawing).
    pub image: Option<RgbImage>,
}

/// An image's result, or the image and why it was skipped.
pub type Outcome = std::result::Result<ImageResult, (PathBuf, String)>;

/// A batch ready for the model: each image decoded and letterboxed (or why not), and the readable ones' pixels.
struct Prepared {
    images: Vec<std::result::Result<(RgbImage, PredictLetterbox), String>>,
    /// `[n, 3, h, w]` in 0..1, RGB, for the `n` readable images.
    pixels: Vec<f32>,
    shape: [usize; 4],
    ms_per_image: f64,
}

/// Decodes and letterboxes `paths` with 8.4.190's batch rule: the smallest stride rectangle when every readable
/// image has the same shape, else the `imgsz` square.
fn prepare(paths: &[PathBuf], imgsz: u32, stride: u32) -> Prepared {
    let started = Instant::now();
    let decoded: Vec<std::result::Result<RgbImage, String>> =
        paths.par_iter().map(|p| decode_rgb(p).map_err(|e| format!("{e:#}"))).collect();
    let sizes: Vec<(u32, u32)> = decoded.iter().flatten().map(RgbImage::dimensions).collect();
    let minimal = same_shapes(&sizes);
    let images: Vec<_> = decoded
        .into_iter()
        .map(|d| {
            d.map(|img| {
                let lb = PredictLetterbox::new(img.dimensions(), imgsz, stride, minimal);
                (img, lb)
            })
        })
        .collect();
    let canvases: Vec<Vec<f32>> = images.par_iter().flatten().map(|(img, lb)| to_chw(&lb.apply(img))).collect();
    let (w, h) = images.iter().flatten().next().map(|(_, lb)| lb.canvas).unwrap_or((imgsz, imgsz));
    let shape = [canvases.len(), 3, h as usize, w as usize];
    Prepared { images, pixels: canvases.concat(), shape, ms_per_image: ms_per(started, paths.len()) }
}

/// Pixels `[3, h, w]` in 0..1 (divided by 255, as the predictor does).
fn to_chw(canvas: &RgbImage) -> Vec<f32> {
    let (w, h) = canvas.dimensions();
    let plane = (w * h) as usize;
    let mut out = vec![0f32; 3 * plane];
    for (i, p) in canvas.pixels().enumerate() {
        for c in 0..3 {
            out[c * plane + i] = p.0[c] as f32 / 255.0;
        }
    }
    out
}

fn ms_per(since: Instant, n: usize) -> f64 {
    since.elapsed().as_secs_f64() * 1000.0 / n.max(1) as f64
}

/// Runs `model` over `paths` in batches; `on_result` sees each image's outcome as it comes.
pub fn predict_images<B: Backend>(
    model: &Yolo<B>,
    paths: &[PathBuf],
    opts: &PredictOptions,
    keep_images: bool,
    mut on_result: impl FnMut(usize, &Outcome),
) -> Result<Vec<Outcome>> {
    let stride = model.strides().iter().fold(1.0f32, |m, &s| m.max(s)) as u32;
    let mut results = Vec::with_capacity(paths.len());
    for chunk in paths.chunks(opts.batch.max(1)) {
        let batch = prepare(chunk, opts.imgsz, stride);
        let (detections, inference_ms, postprocess_ms) = infer(model, &batch, opts)?;
        let mut detections = detections.into_iter();
        for (path, image) in chunk.iter().zip(batch.images) {
            let outcome = match image {
                Err(why) => Err((path.clone(), why)),
                Ok((img, lb)) => Ok(ImageResult {
                    path: path.clone(),
                    size: img.dimensions(),
                    input_size: lb.canvas,
                    detections: detections.next().expect("one per readable image"),
                    inference_ms,
                    preprocess_ms: batch.ms_per_image,
                    postprocess_ms,
                    image: keep_images.then_some(img),
                }),
            };
            on_result(results.len(), &outcome);
            results.push(outcome);
        }
    }
    Ok(results)
}

/// The detections of each readable image of `batch` in original-image pixels, and the inference and
/// post-processing milliseconds per image.
fn infer<B: Backend>(
    model: &Yolo<B>,
    batch: &Prepared,
    opts: &PredictOptions,
) -> Result<(Vec<Vec<Detection>>, f64, f64)> {
    let n = batch.shape[0];
    if n == 0 {
        return Ok((Vec::new(), 0.0, 0.0));
    }
    model.check_input(batch.shape)?;
    let started = Instant::now();
    let device = crate::nn::device_of(model)?;
    let mut x: Tensor<B, 4> = Tensor::from_data(TensorData::new(batch.pixels.clone(), batch.shape), &device);
    if opts.half {
        x = x.cast(DType::F16);
    }
    let end2end = opts.end2end && model.end2end();
    // Decoding widens FP16 outputs to FP32 itself (`DetectOutput::decode_for_postprocess`).
    let (preds, _) = model.forward(x).decode_for_postprocess(end2end);
    let [_, channels, anchors] = preds.dims();
    let values = read_f32(preds, Purpose::Other);
    let inference_ms = ms_per(started, n);
    let started = Instant::now();
    let format = if end2end { BoxFormat::Xyxy } else { BoxFormat::Xywh };
    let select = opts.select(end2end);
    let letterboxes = batch.images.iter().flatten().map(|(_, lb)| lb);
    let mut out = Vec::with_capacity(n);
    for (slice, lb) in values.chunks_exact(channels * anchors).zip(letterboxes) {
        let dets = select_detections(slice, model.nc(), anchors, format, &select)?;
        out.push(dets.into_iter().map(|d| Detection { xyxy: lb.inverse_xyxy(d.xyxy), ..d }).collect());
    }
    Ok((out, inference_ms, ms_per(started, n)))
}
