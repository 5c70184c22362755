//! `ember predict`: detect objects in images (a file, folder, glob or `.txt` list), print the detections per
//! image, save annotated copies under `runs/predict*/`, and optionally YOLO-format labels and JSON.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use burn::tensor::{backend::Backend, DType, Tensor, TensorData};
use image::RgbImage;
use rayon::prelude::*;

use crate::config::Settings;
use crate::data::image_io::{decode_rgb, is_image_path};
use crate::data::Letterbox;
use crate::device::{ComputeDevice, OnBackend};
use crate::draw::{annotate, DrawStyle};
use crate::export::load_model;
use crate::model::Yolo;
use crate::postprocess::{select_detections, xyxy_to_xywh, BoxFormat, Caller, Detection, SelectOptions};
use crate::readback::{read_f32, Purpose};

/// Inference settings.
#[derive(Debug, Clone)]
pub struct PredictOptions {
    pub imgsz: u32,
    pub batch: usize,
    pub conf: f32,
    pub iou: f64,
    pub max_det: usize,
    pub agnostic: bool,
    pub classes: Option<Vec<usize>>,
    /// Use the one-to-one (NMS-free) head when the model has one.
    pub end2end: bool,
    /// FP16 computation.
    pub half: bool,
}

impl PredictOptions {
    pub fn from_settings(settings: &Settings) -> PredictOptions {
        PredictOptions {
            imgsz: settings.imgsz,
            batch: settings.batch.max(1) as usize,
            conf: settings.conf.unwrap_or(0.25) as f32,
            iou: settings.iou,
            max_det: settings.max_det as usize,
            agnostic: settings.agnostic_nms,
            classes: settings.classes.clone(),
            // As Ultralytics 8.4.190 (`end2end=self.args.nms is False`): NMS unless nms=false / end2end=true.
            end2end: settings.nms_free(),
            half: settings.half,
        }
    }
}

/// One image's outcome.
#[derive(Debug, Clone)]
pub struct ImageResult {
    pub path: PathBuf,
    /// Original width and height.
    pub size: (u32, u32),
    /// Boxes in original-image pixels.
    pub detections: Vec<Detection>,
    /// Inference time per image of its batch, milliseconds.
    pub inference_ms: f64,
    pub preprocess_ms: f64,
    pub postprocess_ms: f64,
    /// The decoded image (kept for drawing).
    pub image: Option<RgbImage>,
}

/// Expand `--source`: an image file, a folder (its images, sorted), a glob, or a `.txt` file with one path a line
/// (relative paths are taken from the list's folder). Unreadable images stay in the list and are reported later.
pub fn collect_sources(source: &str) -> Result<Vec<PathBuf>> {
    let path = Path::new(source);
    let mut out = Vec::new();
    if path.is_dir() {
        let entries = std::fs::read_dir(path).with_context(|| format!("cannot list {}", path.display()))?;
        for e in entries {
            let p = e?.path();
            if p.is_file() && is_image_path(&p) {
                out.push(p);
            }
        }
        out.sort();
        if out.is_empty() {
            bail!("{}: no images (jpg, jpeg, png, bmp, webp) in this folder", path.display());
        }
    } else if path.is_file() && path.extension().is_some_and(|e| e.eq_ignore_ascii_case("txt")) {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
            let p = Path::new(line);
            out.push(if p.is_absolute() || p.exists() { p.to_path_buf() } else { base.join(p) });
        }
        if out.is_empty() {
            bail!("{}: the list names no images", path.display());
        }
    } else if path.is_file() {
        out.push(path.to_path_buf());
    } else if source.contains(['*', '?', '[']) {
        for entry in glob::glob(source).with_context(|| format!("bad glob pattern '{source}'"))? {
            let p = entry.map_err(|e| anyhow!("{e}"))?;
            if p.is_file() && is_image_path(&p) {
                out.push(p);
            }
        }
        out.sort();
        if out.is_empty() {
            bail!("no images match '{source}'");
        }
    } else {
        bail!("source '{source}' does not exist (give an image, a folder, a glob or a .txt list)");
    }
    Ok(out)
}

/// Letterboxed `[3, imgsz, imgsz]` pixels in 0..1 (the same values `val` feeds the model).
fn to_chw(canvas: &RgbImage) -> Vec<f32> {
    let (w, h) = canvas.dimensions();
    let plane = (w * h) as usize;
    let mut out = vec![0f32; 3 * plane];
    for (i, p) in canvas.pixels().enumerate() {
        for c in 0..3 {
            out[c * plane + i] = p.0[c] as f32 * (1.0 / 255.0);
        }
    }
    out
}

/// Detections for one image from its `[4 + nc, anchors]` prediction slice (letterboxed pixels).
pub fn postprocess(
    values: &[f32],
    nc: usize,
    anchors: usize,
    end2end: bool,
    opts: &PredictOptions,
) -> Result<Vec<Detection>> {
    let select = SelectOptions {
        caller: Caller::Predict,
        end2end,
        conf: opts.conf,
        iou: opts.iou,
        max_det: opts.max_det,
        agnostic: opts.agnostic,
        classes: opts.classes.clone(),
    };
    let format = if end2end { BoxFormat::Xyxy } else { BoxFormat::Xywh };
    select_detections(values, nc, anchors, format, &select)
}

/// A decoded image, its letterbox and the letterboxed pixels in CHW order.
type Decoded = (RgbImage, Letterbox, Vec<f32>);

/// Run `model` over `paths` in batches. Each entry is the image's result or why it was skipped.
pub fn predict_images<B: Backend>(
    model: &Yolo<B>,
    paths: &[PathBuf],
    opts: &PredictOptions,
    keep_images: bool,
    mut on_result: impl FnMut(usize, &std::result::Result<ImageResult, (PathBuf, String)>),
) -> Result<Vec<std::result::Result<ImageResult, (PathBuf, String)>>> {
    if opts.imgsz == 0 || !opts.imgsz.is_multiple_of(32) {
        bail!("--imgsz must be a positive multiple of 32, got {}", opts.imgsz);
    }
    let device = crate::nn::device_of(model)?;
    let nc = model.nc();
    let use_e2e = opts.end2end && model.end2end();
    let side = opts.imgsz;
    let mut results = Vec::with_capacity(paths.len());
    for chunk in paths.chunks(opts.batch.max(1)) {
        let t0 = Instant::now();
        let decoded: Vec<std::result::Result<Decoded, String>> = chunk
            .par_iter()
            .map(|p| {
                let img = decode_rgb(p).map_err(|e| format!("{e:#}"))?;
                let lb = Letterbox::new(img.dimensions(), (side, side));
                let chw = to_chw(&lb.apply(&img));
                Ok((img, lb, chw))
            })
            .collect();
        let ok: Vec<usize> = (0..chunk.len()).filter(|&i| decoded[i].is_ok()).collect();
        let mut pixels = Vec::with_capacity(ok.len() * 3 * (side * side) as usize);
        for &i in &ok {
            pixels.extend_from_slice(&decoded[i].as_ref().expect("ok").2);
        }
        let pre_ms = t0.elapsed().as_secs_f64() * 1000.0 / chunk.len() as f64;
        let mut per_image: Vec<Option<Vec<Detection>>> = vec![None; chunk.len()];
        let (mut inf_ms, mut post_ms) = (0.0, 0.0);
        if !ok.is_empty() {
            let t1 = Instant::now();
            let shape = [ok.len(), 3, side as usize, side as usize];
            let mut x: Tensor<B, 4> = Tensor::from_data(TensorData::new(pixels, shape), &device);
            if opts.half {
                x = x.cast(DType::F16);
            }
            // Decoding widens FP16 outputs to FP32 itself (`HeadOutput::decode`).
            let (preds, _) = model.forward(x).decode_for_postprocess(use_e2e);
            let [_, channels, anchors] = preds.dims();
            let values = read_f32(preds, Purpose::Other);
            inf_ms = t1.elapsed().as_secs_f64() * 1000.0 / ok.len() as f64;
            let t2 = Instant::now();
            for (j, &i) in ok.iter().enumerate() {
                let slice = &values[j * channels * anchors..(j + 1) * channels * anchors];
                let lb = decoded[i].as_ref().expect("ok").1;
                let dets = postprocess(slice, nc, anchors, use_e2e, opts)?;
                per_image[i] =
                    Some(dets.into_iter().map(|d| Detection { xyxy: lb.inverse_xyxy(d.xyxy), ..d }).collect());
            }
            post_ms = t2.elapsed().as_secs_f64() * 1000.0 / ok.len() as f64;
        }
        for (i, (d, dets)) in decoded.into_iter().zip(per_image).enumerate() {
            let r = match d {
                Err(why) => Err((chunk[i].clone(), why)),
                Ok((img, _, _)) => Ok(ImageResult {
                    path: chunk[i].clone(),
                    size: img.dimensions(),
                    detections: dets.unwrap_or_default(),
                    inference_ms: inf_ms,
                    preprocess_ms: pre_ms,
                    postprocess_ms: post_ms,
                    image: keep_images.then_some(img),
                }),
            };
            on_result(results.len(), &r);
            results.push(r);
        }
    }
    Ok(results)
}

/// `2 persons, 1 dog` (Ultralytics' wording: counts per class in class order, plural with an `s`).
pub fn describe(detections: &[Detection], names: &[String]) -> String {
    if detections.is_empty() {
        return "(no detections)".to_string();
    }
    let mut counts = std::collections::BTreeMap::new();
    for d in detections {
        *counts.entry(d.class).or_insert(0usize) += 1;
    }
    counts
        .into_iter()
        .map(|(c, n)| {
            let name = names.get(c).cloned().unwrap_or_else(|| c.to_string());
            format!("{n} {name}{}", if n > 1 { "s" } else { "" })
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// YOLO-format label lines: `class cx cy w h [conf]`, normalised to the original image.
pub fn label_lines(r: &ImageResult, save_conf: bool) -> String {
    let (w, h) = (r.size.0 as f32, r.size.1 as f32);
    let mut s = String::new();
    for d in &r.detections {
        let [cx, cy, bw, bh] = xyxy_to_xywh(d.xyxy);
        s.push_str(&format!("{} {:.6} {:.6} {:.6} {:.6}", d.class, cx / w, cy / h, bw / w, bh / h));
        if save_conf {
            s.push_str(&format!(" {:.6}", d.score));
        }
        s.push('\n');
    }
    s
}

/// What `ember predict` did.
pub struct PredictSummary {
    pub run_dir: PathBuf,
    pub results: Vec<ImageResult>,
    pub skipped: Vec<(PathBuf, String)>,
}

pub fn run(settings: &Settings) -> Result<PredictSummary> {
    let weights = settings.weights.as_deref().context("no weights given: pass --weights FILE.safetensors|FILE.pt")?;
    let source = settings.source.as_deref().context("no images given: pass --source IMAGE|FOLDER|GLOB|LIST.txt")?;
    let compute = ComputeDevice::resolve(settings.device.as_deref())?;
    let paths = collect_sources(source)?;
    let names = super::export::class_names(settings)?;
    let weights = crate::model::locate::locate_weights(weights)?;
    let opts = PredictOptions::from_settings(settings);
    let project = settings.project.clone().map(PathBuf::from).unwrap_or_else(|| PathBuf::from("runs"));
    let name = settings.name.clone().unwrap_or_else(|| "predict".to_string());
    let run_dir = crate::runs::folder::make_run_dir(&project, &name, settings.exist_ok)?;
    if settings.save_txt {
        std::fs::create_dir_all(run_dir.join("labels"))
            .with_context(|| format!("cannot create {}", run_dir.join("labels").display()))?;
    }
    let total = paths.len();
    let (names, results) = compute.run(PredictAndSave {
        weights: &weights,
        names,
        paths: &paths,
        opts: &opts,
        run_dir: &run_dir,
        settings,
    })?;
    let mut ok = Vec::new();
    let mut skipped = Vec::new();
    for r in results {
        match r {
            Ok(mut r) => {
                r.image = None;
                ok.push(r);
            }
            Err(e) => skipped.push(e),
        }
    }
    if !ok.is_empty() {
        let n = ok.len() as f64;
        let mean = |f: fn(&ImageResult) -> f64| ok.iter().map(f).sum::<f64>() / n;
        println!(
            "Speed: {:.1}ms preprocess, {:.1}ms inference, {:.1}ms postprocess per image at shape ({}, 3, {}, {})",
            mean(|r| r.preprocess_ms),
            mean(|r| r.inference_ms),
            mean(|r| r.postprocess_ms),
            opts.batch.min(total),
            opts.imgsz,
            opts.imgsz
        );
    }
    if settings.save_json {
        let names = &names;
        let json: Vec<serde_json::Value> = ok
            .iter()
            .flat_map(|r| {
                let stem = r.path.file_stem().and_then(|s| s.to_str()).unwrap_or("").to_string();
                r.detections.iter().map(move |d| {
                    serde_json::json!({
                        "image_id": stem,
                        "file_name": r.path.display().to_string(),
                        "category_id": d.class,
                        "category_name": names.get(d.class),
                        "bbox": [d.xyxy[0], d.xyxy[1], d.xyxy[2] - d.xyxy[0], d.xyxy[3] - d.xyxy[1]],
                        "score": d.score,
                    })
                })
            })
            .collect();
        let p = run_dir.join("predictions.json");
        std::fs::write(&p, serde_json::to_string_pretty(&json)?)
            .with_context(|| format!("cannot write {}", p.display()))?;
    }
    if !skipped.is_empty() {
        println!("{} of {total} images could not be read and were skipped", skipped.len());
    }
    println!("Results saved to {}", run_dir.display());
    if ok.is_empty() {
        bail!("none of the {total} images could be read");
    }
    Ok(PredictSummary { run_dir, results: ok, skipped })
}

/// Loads the weights on the device, predicts, and prints and saves each image's result as it comes.
struct PredictAndSave<'a> {
    weights: &'a Path,
    names: Option<Vec<String>>,
    paths: &'a [PathBuf],
    opts: &'a PredictOptions,
    run_dir: &'a Path,
    settings: &'a Settings,
}

type PredictResults = Vec<std::result::Result<ImageResult, (PathBuf, String)>>;

impl OnBackend for PredictAndSave<'_> {
    type Output = Result<(Vec<String>, PredictResults)>;
    fn run<B: Backend>(self, device: &B::Device) -> Self::Output {
        let Self { weights, names, paths, opts, run_dir, settings } = self;
        let loaded = load_model::<B>(weights, &settings.model, names, device)?;
        let style = DrawStyle {
            line_width: settings.line_width,
            show_labels: settings.show_labels,
            show_conf: settings.show_conf,
        };
        let total = paths.len();
        let names = loaded.names.clone();
        let mut write_error: Option<anyhow::Error> = None;
        let results = predict_images(&loaded.model, paths, opts, settings.save, |i, r| match r {
            Ok(r) => {
                println!(
                    "image {}/{total} {}: {}x{} {}, {:.1}ms",
                    i + 1,
                    r.path.display(),
                    opts.imgsz,
                    opts.imgsz,
                    describe(&r.detections, &names),
                    r.inference_ms
                );
                if let Err(e) = save_outputs(r, run_dir, &names, &style, settings) {
                    write_error.get_or_insert(e);
                }
            }
            Err((_, why)) => println!("image {}/{total} skipped: {why}", i + 1),
        })?;
        match write_error {
            Some(e) => Err(e),
            None => Ok((names, results)),
        }
    }
}

fn save_outputs(
    r: &ImageResult,
    run_dir: &Path,
    names: &[String],
    style: &DrawStyle,
    settings: &Settings,
) -> Result<()> {
    let file_name = r.path.file_name().map(PathBuf::from).unwrap_or_else(|| PathBuf::from("image.jpg"));
    if let Some(img) = &r.image {
        let mut canvas = img.clone();
        annotate(&mut canvas, &r.detections, names, style);
        let out = run_dir.join(&file_name);
        canvas.save(&out).with_context(|| format!("cannot write {}", out.display()))?;
    }
    if settings.save_txt && !r.detections.is_empty() {
        // Like Ultralytics: no label file for an image without detections.
        let out = run_dir.join("labels").join(file_name.with_extension("txt"));
        std::fs::write(&out, label_lines(r, settings.save_conf))
            .with_context(|| format!("cannot write {}", out.display()))?;
    }
    Ok(())
}
