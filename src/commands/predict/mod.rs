//! `ember predict`: detect objects in images (a file, folder, glob or `.txt` list), print the detections per
//! image, save annotated copies under `runs/predict*/`, and optionally YOLO-format labels and JSON.

mod images;
mod letterbox;
mod sources;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use burn::tensor::backend::Backend;

use crate::config::{Mode, Settings};
use crate::device::{ComputeDevice, OnBackend};
use crate::draw::{annotate, DrawStyle};
use crate::model::load_model;
use crate::postprocess::{xyxy_to_xywh, Detection};
use crate::runs::folder::make_run_dir;

pub use images::{predict_images, ImageResult, Outcome, PredictOptions};
pub use letterbox::PredictLetterbox;
pub use sources::collect_sources;

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
    /// The run folder the annotated images, labels and JSON went to: `<project>/<name>` (default `runs/predict`,
    /// then `predict2`, ...).
    pub run_dir: PathBuf,
    /// Each readable image's result, in source order, without its decoded image.
    pub results: Vec<ImageResult>,
    /// Images that could not be read, with why.
    pub skipped: Vec<(PathBuf, String)>,
}

/// Predicts on every image of `source`, printing each image's detections and saving what the settings ask for
/// (annotated copies, `save_txt` labels, `save_json`); fails when no image could be read.
pub fn run(settings: &Settings) -> Result<PredictSummary> {
    let weights = settings.weights.as_deref().context("no weights given: pass --weights FILE.safetensors|FILE.pt")?;
    let source = settings.source.as_deref().context("no images given: pass --source IMAGE|FOLDER|GLOB|LIST.txt")?;
    let compute = ComputeDevice::resolve(settings.device.one()?)?;
    let paths = collect_sources(source)?;
    let names = super::dataset_names(settings)?;
    let weights = crate::model::locate::locate_weights(weights)?;
    let opts = PredictOptions::from_settings(settings);
    let run_dir = make_run_dir(&settings.project_dir(), settings.run_name(Mode::Predict), settings.exist_ok)?;
    if settings.save_txt {
        std::fs::create_dir_all(run_dir.join("labels"))
            .with_context(|| format!("cannot create {}", run_dir.join("labels").display()))?;
    }
    let total = paths.len();
    let work = PredictAndSave { weights: &weights, names, paths: &paths, opts: &opts, run_dir: &run_dir, settings };
    let (names, results) = compute.run(work)?;
    let (mut ok, mut skipped) = (Vec::new(), Vec::new());
    for r in results {
        match r {
            Ok(r) => ok.push(ImageResult { image: None, ..r }),
            Err(e) => skipped.push(e),
        }
    }
    if let Some(last) = ok.last() {
        let n = ok.len() as f64;
        let mean = |f: fn(&ImageResult) -> f64| ok.iter().map(f).sum::<f64>() / n;
        let (w, h) = last.input_size;
        println!(
            "Speed: {:.1}ms preprocess, {:.1}ms inference, {:.1}ms postprocess per image at shape ({}, 3, {h}, {w})",
            mean(|r| r.preprocess_ms),
            mean(|r| r.inference_ms),
            mean(|r| r.postprocess_ms),
            opts.batch.min(total),
        );
    }
    if settings.save_json {
        save_json(&ok, &names, &run_dir.join("predictions.json"))?;
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

/// The detections of every image as a JSON list (boxes as `[x, y, w, h]` in original pixels).
fn save_json(results: &[ImageResult], names: &[String], path: &Path) -> Result<()> {
    let json: Vec<serde_json::Value> = results
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
    std::fs::write(path, serde_json::to_string_pretty(&json)?)
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Loads the weights on the device, predicts, and prints and saves each image's result as it comes.
struct PredictAndSave<'a> {
    weights: &'a Path,
    /// The class names of `--data` and its YAML.
    names: Option<(Vec<String>, PathBuf)>,
    paths: &'a [PathBuf],
    opts: &'a PredictOptions,
    run_dir: &'a Path,
    settings: &'a Settings,
}

impl OnBackend for PredictAndSave<'_> {
    type Output = Result<(Vec<String>, Vec<Outcome>)>;
    fn run<B: Backend>(self, device: &B::Device) -> Self::Output {
        let Self { weights, names, paths, opts, run_dir, settings } = self;
        let mut loaded = load_model::<B>(weights, &settings.model, device)?;
        if let Some((names, yaml)) = names {
            loaded = loaded.with_names(names, weights, &yaml)?;
        }
        let style = DrawStyle {
            line_width: settings.line_width,
            show_labels: settings.show_labels,
            show_conf: settings.show_conf,
        };
        let total = paths.len();
        let names = loaded.names;
        let mut write_error: Option<anyhow::Error> = None;
        let results = predict_images(&loaded.model, paths, opts, settings.save, |i, r| match r {
            Ok(r) => {
                let (w, h) = r.input_size;
                let found = describe(&r.detections, &names);
                println!("image {}/{total} {}: {h}x{w} {found}, {:.1}ms", i + 1, r.path.display(), r.inference_ms);
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
