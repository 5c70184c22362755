//! Per-image accumulation and final detection metrics (Ultralytics 8.4 `DetMetrics` / `Metric`), plus the
//! validation table printed the way Ultralytics prints it.

use std::fmt::Write as _;

use anyhow::{bail, Result};

use super::ap::{ap_per_class_checked, ApPerClass};
use super::confusion::ConfusionMatrix;
use super::format::format_g;
use super::matching::match_boxes;
use super::numeric::{mean, pairwise_sum};
use super::NIOU;
use crate::postprocess::Detection;

/// Metrics of one class (one table row).
#[derive(Debug, Clone, PartialEq)]
pub struct ClassMetrics {
    /// Class id.
    pub class: usize,
    /// Number of images whose labels contain this class.
    pub images: usize,
    /// Number of labels of this class.
    pub instances: usize,
    /// Precision at the max-F1 confidence.
    pub precision: f64,
    /// Recall at the max-F1 confidence.
    pub recall: f64,
    /// F1 at the max-F1 confidence.
    pub f1: f64,
    /// AP at IoU 0.5.
    pub map50: f64,
    /// AP at IoU 0.75.
    pub map75: f64,
    /// AP averaged over IoU 0.50:0.05:0.95.
    pub map50_95: f64,
    /// AP at each of the 10 IoU thresholds.
    pub ap: [f64; NIOU],
}

/// Final detection metrics of a validation run.
#[derive(Debug, Clone)]
pub struct DetectionMetrics {
    /// Number of classes of the model/dataset.
    pub nc: usize,
    /// Number of images seen.
    pub images: usize,
    /// Total number of labels.
    pub instances: usize,
    /// Mean precision over classes with labels (`mp`).
    pub precision: f64,
    /// Mean recall over classes with labels (`mr`).
    pub recall: f64,
    /// mAP at IoU 0.5.
    pub map50: f64,
    /// mAP at IoU 0.75.
    pub map75: f64,
    /// mAP over IoU 0.50:0.05:0.95.
    pub map50_95: f64,
    /// Fitness used for best-checkpoint selection: in Ultralytics 8.4 `Metric.fitness` weights
    /// `[P, R, mAP50, mAP50-95] = [0, 0, 0, 1]`, i.e. mAP50-95.
    pub fitness: f64,
    /// One row per class present in the labels, ascending class id.
    pub per_class: Vec<ClassMetrics>,
    /// Labels per class id (length `nc`).
    pub nt_per_class: Vec<usize>,
    /// Images containing each class id (length `nc`).
    pub nt_per_image: Vec<usize>,
    /// Raw `ap_per_class` output: curves for plots.
    pub curves: ApPerClass,
}

impl DetectionMetrics {
    /// `[P, R, mAP50, mAP50-95]`, like Ultralytics' `mean_results()`.
    pub fn mean_results(&self) -> [f64; 4] {
        [self.precision, self.recall, self.map50, self.map50_95]
    }

    /// mAP50-95 per class id (length `nc`); classes without labels get the overall mAP (Ultralytics' `maps`).
    pub fn maps(&self) -> Vec<f64> {
        let mut m = vec![self.map50_95; self.nc];
        for row in &self.per_class {
            if row.class < self.nc {
                m[row.class] = row.map50_95;
            }
        }
        m
    }

    /// Ultralytics' `results_dict` keys and values.
    pub fn results_dict(&self) -> Vec<(&'static str, f64)> {
        vec![
            ("metrics/precision(B)", self.precision),
            ("metrics/recall(B)", self.recall),
            ("metrics/mAP50(B)", self.map50),
            ("metrics/mAP50-95(B)", self.map50_95),
            ("fitness", self.fitness),
        ]
    }

    /// Table header exactly as Ultralytics' detection validator prints it.
    pub fn header() -> String {
        format!(
            "{:>22}{:>11}{:>11}{:>11}{:>11}{:>11}{:>11}",
            "Class", "Images", "Instances", "Box(P", "R", "mAP50", "mAP50-95)"
        )
    }

    fn row(name: &str, images: usize, instances: usize, vals: [f64; 4]) -> String {
        let mut s = format!("{name:>22}{images:>11}{instances:>11}");
        for v in vals {
            let _ = write!(s, "{:>11}", format_g(v, 3));
        }
        s
    }

    /// The `all` row (`%22s%11i%11i%11.3g%11.3g%11.3g%11.3g`).
    pub fn all_row(&self) -> String {
        Self::row("all", self.images, self.instances, self.mean_results())
    }

    /// Header, `all` row, then (when `nc > 1`, like Ultralytics' verbose output) one row per class present in the
    /// labels. `names[c]` is the name of class `c`; a missing name prints the class id.
    pub fn format_table(&self, names: &[String]) -> String {
        let mut out = Self::header();
        out.push('\n');
        out.push_str(&self.all_row());
        if self.nc > 1 {
            for row in &self.per_class {
                let name = names.get(row.class).cloned().unwrap_or_else(|| row.class.to_string());
                out.push('\n');
                out.push_str(&Self::row(
                    &name,
                    row.images,
                    row.instances,
                    [row.precision, row.recall, row.map50, row.map50_95],
                ));
            }
        }
        out
    }
}

impl std::fmt::Display for DetectionMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.format_table(&[]))
    }
}

/// Collects per-image statistics during validation; [`finish`](Self::finish) computes the metrics.
#[derive(Debug, Clone)]
pub struct DetectionAccumulator {
    nc: usize,
    images: usize,
    tp: Vec<[bool; NIOU]>,
    conf: Vec<f32>,
    pred_cls: Vec<usize>,
    target_cls: Vec<usize>,
    target_img: Vec<usize>,
    confusion: Option<ConfusionMatrix>,
}

impl DetectionAccumulator {
    /// New accumulator for a model with `nc` classes.
    pub fn new(nc: usize) -> Self {
        Self {
            nc,
            images: 0,
            tp: Vec::new(),
            conf: Vec::new(),
            pred_cls: Vec::new(),
            target_cls: Vec::new(),
            target_img: Vec::new(),
            confusion: None,
        }
    }

    /// Also builds a confusion matrix (the 8.4 validator uses its `conf` and IoU 0.45).
    pub fn with_confusion_matrix(mut self, conf: f32, iou_thres: f32) -> Self {
        self.confusion = Some(ConfusionMatrix::new(self.nc, conf, iou_thres));
        self
    }

    /// Number of classes.
    pub fn nc(&self) -> usize {
        self.nc
    }

    /// Number of images added so far.
    pub fn images(&self) -> usize {
        self.images
    }

    /// Adds one image: its post-processed predictions (any order; ranked here by descending score, stable) and its
    /// labels as pixel corner boxes in the same coordinate frame as the predictions.
    pub fn add_image(&mut self, preds: &[Detection], gt_boxes_xyxy: &[[f32; 4]], gt_classes: &[usize]) -> Result<()> {
        if gt_boxes_xyxy.len() != gt_classes.len() {
            bail!("image {}: {} label boxes but {} label classes", self.images, gt_boxes_xyxy.len(), gt_classes.len());
        }
        if let Some(c) = gt_classes.iter().find(|&&c| c >= self.nc) {
            bail!("image {}: label class {c} is out of range for nc = {}", self.images, self.nc);
        }
        if let Some(d) = preds.iter().find(|d| d.class >= self.nc) {
            bail!("image {}: predicted class {} is out of range for nc = {}", self.images, d.class, self.nc);
        }
        let mut sorted: Vec<Detection> = preds.to_vec();
        sorted.sort_by(|a, b| b.score.total_cmp(&a.score));
        let boxes: Vec<[f32; 4]> = sorted.iter().map(|d| d.xyxy).collect();
        let classes: Vec<usize> = sorted.iter().map(|d| d.class).collect();
        let tp = match_boxes(&boxes, &classes, gt_boxes_xyxy, gt_classes);
        self.tp.extend(tp);
        self.conf.extend(sorted.iter().map(|d| d.score));
        self.pred_cls.extend(classes);
        self.target_cls.extend_from_slice(gt_classes);
        let mut uniq = gt_classes.to_vec();
        uniq.sort_unstable();
        uniq.dedup();
        self.target_img.extend(uniq);
        if let Some(cm) = &mut self.confusion {
            cm.process_image(&sorted, gt_boxes_xyxy, gt_classes);
        }
        self.images += 1;
        Ok(())
    }

    /// The confusion matrix, when enabled.
    pub fn confusion_matrix(&self) -> Option<&ConfusionMatrix> {
        self.confusion.as_ref()
    }

    /// Computes the metrics of everything added so far.
    pub fn finish(&self) -> DetectionMetrics {
        let res = ap_per_class_checked(&self.tp, &self.conf, &self.pred_cls, &self.target_cls);
        let mut nt_per_class = vec![0usize; self.nc];
        for &c in &self.target_cls {
            nt_per_class[c] += 1;
        }
        let mut nt_per_image = vec![0usize; self.nc];
        for &c in &self.target_img {
            nt_per_image[c] += 1;
        }
        let per_class: Vec<ClassMetrics> = res
            .classes
            .iter()
            .enumerate()
            .map(|(i, &c)| ClassMetrics {
                class: c,
                images: nt_per_image[c],
                instances: nt_per_class[c],
                precision: res.p[i],
                recall: res.r[i],
                f1: res.f1[i],
                map50: res.ap[i][0],
                map75: res.ap[i][5],
                map50_95: pairwise_sum(&res.ap[i]) / NIOU as f64,
                ap: res.ap[i],
            })
            .collect();
        let ap50: Vec<f64> = res.ap.iter().map(|a| a[0]).collect();
        let ap75: Vec<f64> = res.ap.iter().map(|a| a[5]).collect();
        let all_ap: Vec<f64> = res.ap.iter().flat_map(|a| a.iter().copied()).collect();
        let map50_95 = mean(&all_ap);
        let nan0 = |v: f64| if v.is_nan() { 0.0 } else { v };
        DetectionMetrics {
            nc: self.nc,
            images: self.images,
            instances: self.target_cls.len(),
            precision: mean(&res.p),
            recall: mean(&res.r),
            map50: mean(&ap50),
            map75: mean(&ap75),
            map50_95,
            fitness: nan0(map50_95),
            per_class,
            nt_per_class,
            nt_per_image,
            curves: res,
        }
    }
}
