//! `--plots` PNGs with the `image` crate only (no plotting library, no system font): PR curve, F1/P/R-confidence
//! curves and the confusion matrix, with Ultralytics' file names and content (a thin line per class when there are
//! fewer than 21 classes, the mean in thick blue, legends with the same figures Ultralytics prints).
//! Text uses a built-in 5x7 bitmap font (upper-case only; lower-case letters are drawn as capitals).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use image::{Rgb, RgbImage};

use super::ap::smooth;
use super::confusion::ConfusionMatrix;
use super::det_metrics::DetectionMetrics;
use super::numeric::argmax;

const W: u32 = 1200;
const H: u32 = 800;
const WHITE: Rgb<u8> = Rgb([255, 255, 255]);
const BLACK: Rgb<u8> = Rgb([0, 0, 0]);
const GREY: Rgb<u8> = Rgb([200, 200, 200]);
const BLUE: Rgb<u8> = Rgb([31, 119, 180]);

/// Matplotlib's tab10 palette, cycled for per-class lines.
const PALETTE: [[u8; 3]; 10] = [
    [31, 119, 180],
    [255, 127, 14],
    [44, 160, 44],
    [214, 39, 40],
    [148, 103, 189],
    [140, 86, 75],
    [227, 119, 194],
    [127, 127, 127],
    [188, 189, 34],
    [23, 190, 207],
];

fn glyph(c: char) -> [u8; 7] {
    match c.to_ascii_uppercase() {
        'A' => [0x0E, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11],
        'B' => [0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E],
        'C' => [0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E],
        'D' => [0x1C, 0x12, 0x11, 0x11, 0x11, 0x12, 0x1C],
        'E' => [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F],
        'F' => [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10],
        'G' => [0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F],
        'H' => [0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11],
        'I' => [0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E],
        'J' => [0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C],
        'K' => [0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11],
        'L' => [0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F],
        'M' => [0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11],
        'N' => [0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11],
        'O' => [0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E],
        'P' => [0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10],
        'Q' => [0x0E, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0D],
        'R' => [0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11],
        'S' => [0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E],
        'T' => [0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04],
        'U' => [0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E],
        'V' => [0x11, 0x11, 0x11, 0x11, 0x11, 0x0A, 0x04],
        'W' => [0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0A],
        'X' => [0x11, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x11],
        'Y' => [0x11, 0x11, 0x11, 0x0A, 0x04, 0x04, 0x04],
        'Z' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1F],
        '0' => [0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E],
        '1' => [0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E],
        '2' => [0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F],
        '3' => [0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E],
        '4' => [0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02],
        '5' => [0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E],
        '6' => [0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E],
        '7' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08],
        '8' => [0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E],
        '9' => [0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C],
        '.' => [0, 0, 0, 0, 0, 0x0C, 0x0C],
        ',' => [0, 0, 0, 0, 0x0C, 0x04, 0x08],
        '-' => [0, 0, 0, 0x1F, 0, 0, 0],
        '+' => [0, 0x04, 0x04, 0x1F, 0x04, 0x04, 0],
        '=' => [0, 0, 0x1F, 0, 0x1F, 0, 0],
        '@' => [0x0E, 0x11, 0x01, 0x0D, 0x15, 0x15, 0x0E],
        ':' => [0, 0x0C, 0x0C, 0, 0x0C, 0x0C, 0],
        '(' => [0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02],
        ')' => [0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08],
        '_' => [0, 0, 0, 0, 0, 0, 0x1F],
        '/' => [0, 0x01, 0x02, 0x04, 0x08, 0x10, 0],
        '%' => [0x18, 0x19, 0x02, 0x04, 0x08, 0x13, 0x03],
        ' ' => [0; 7],
        _ => [0x1F, 0x11, 0x11, 0x11, 0x11, 0x11, 0x1F],
    }
}

struct Canvas {
    img: RgbImage,
}

impl Canvas {
    fn new(w: u32, h: u32) -> Self {
        Self { img: RgbImage::from_pixel(w, h, WHITE) }
    }

    fn put(&mut self, x: i64, y: i64, c: Rgb<u8>) {
        if x >= 0 && y >= 0 && (x as u32) < self.img.width() && (y as u32) < self.img.height() {
            self.img.put_pixel(x as u32, y as u32, c);
        }
    }

    fn rect(&mut self, x0: i64, y0: i64, x1: i64, y1: i64, c: Rgb<u8>) {
        for y in y0.min(y1)..=y0.max(y1) {
            for x in x0.min(x1)..=x0.max(x1) {
                self.put(x, y, c);
            }
        }
    }

    fn line(&mut self, x0: f64, y0: f64, x1: f64, y1: f64, width: i64, c: Rgb<u8>) {
        let steps = ((x1 - x0).abs().max((y1 - y0).abs()).ceil() as i64).max(1);
        let r = width / 2;
        for s in 0..=steps {
            let t = s as f64 / steps as f64;
            let x = (x0 + (x1 - x0) * t).round() as i64;
            let y = (y0 + (y1 - y0) * t).round() as i64;
            self.rect(x - r, y - r, x + (width - 1 - r), y + (width - 1 - r), c);
        }
    }

    /// Text with its top-left corner at (x, y); returns the width in pixels.
    fn text(&mut self, x: i64, y: i64, s: &str, scale: i64, c: Rgb<u8>) -> i64 {
        let mut cx = x;
        for ch in s.chars() {
            let g = glyph(ch);
            for (row, bits) in g.iter().enumerate() {
                for col in 0..5 {
                    if bits & (0x10 >> col) != 0 {
                        let px = cx + col * scale;
                        let py = y + row as i64 * scale;
                        self.rect(px, py, px + scale - 1, py + scale - 1, c);
                    }
                }
            }
            cx += 6 * scale;
        }
        cx - x
    }

    fn text_width(s: &str, scale: i64) -> i64 {
        s.chars().count() as i64 * 6 * scale
    }

    /// Vertical text (rotated 90 degrees counter-clockwise), centred on (x, y_center).
    fn text_vertical(&mut self, x: i64, y_center: i64, s: &str, scale: i64, c: Rgb<u8>) {
        let len = Self::text_width(s, scale);
        let mut cy = y_center + len / 2;
        for ch in s.chars() {
            let g = glyph(ch);
            for (row, bits) in g.iter().enumerate() {
                for col in 0..5 {
                    if bits & (0x10 >> col) != 0 {
                        let px = x + row as i64 * scale;
                        let py = cy - col * scale;
                        self.rect(px, py - scale + 1, px + scale - 1, py, c);
                    }
                }
            }
            cy -= 6 * scale;
        }
    }

    fn save(&self, path: &Path) -> Result<()> {
        self.img.save(path).with_context(|| format!("writing plot {}", path.display()))
    }
}

/// Plot area in pixels and the mapping of [0, 1] x [0, 1] into it.
struct Axes {
    x0: f64,
    y0: f64,
    x1: f64,
    y1: f64,
}

impl Axes {
    fn map(&self, x: f64, y: f64) -> (f64, f64) {
        let x = x.clamp(0.0, 1.0);
        let y = if y.is_finite() { y.clamp(0.0, 1.0) } else { 0.0 };
        (self.x0 + x * (self.x1 - self.x0), self.y1 - y * (self.y1 - self.y0))
    }

    fn draw(&self, cv: &mut Canvas, xlabel: &str, ylabel: &str, title: &str) {
        for k in 0..=5 {
            let v = k as f64 / 5.0;
            let (gx, gy) = self.map(v, v);
            cv.line(gx, self.y0, gx, self.y1, 1, GREY);
            cv.line(self.x0, gy, self.x1, gy, 1, GREY);
            let lbl = format!("{v:.1}");
            cv.text(gx as i64 - Canvas::text_width(&lbl, 2) / 2, self.y1 as i64 + 10, &lbl, 2, BLACK);
            cv.text(self.x0 as i64 - Canvas::text_width(&lbl, 2) - 10, gy as i64 - 7, &lbl, 2, BLACK);
        }
        cv.line(self.x0, self.y0, self.x0, self.y1, 2, BLACK);
        cv.line(self.x0, self.y1, self.x1, self.y1, 2, BLACK);
        cv.line(self.x1, self.y0, self.x1, self.y1, 1, BLACK);
        cv.line(self.x0, self.y0, self.x1, self.y0, 1, BLACK);
        let cx = ((self.x0 + self.x1) / 2.0) as i64;
        cv.text(cx - Canvas::text_width(xlabel, 3) / 2, self.y1 as i64 + 40, xlabel, 3, BLACK);
        cv.text_vertical(self.x0 as i64 - 95, ((self.y0 + self.y1) / 2.0) as i64, ylabel, 3, BLACK);
        cv.text(cx - Canvas::text_width(title, 3) / 2, 20, title, 3, BLACK);
    }

    fn curve(&self, cv: &mut Canvas, xs: &[f64], ys: &[f64], width: i64, c: Rgb<u8>) {
        for k in 1..xs.len().min(ys.len()) {
            let (ax, ay) = self.map(xs[k - 1], ys[k - 1]);
            let (bx, by) = self.map(xs[k], ys[k]);
            cv.line(ax, ay, bx, by, width, c);
        }
    }
}

fn layout() -> (Canvas, Axes) {
    (Canvas::new(W, H), Axes { x0: 130.0, y0: 70.0, x1: 820.0, y1: 700.0 })
}

fn legend(cv: &mut Canvas, entries: &[(String, Rgb<u8>, i64)]) {
    let x = 840i64;
    let mut y = 80i64;
    for (label, color, width) in entries {
        cv.rect(x, y + 5, x + 30, y + 5 + width.max(&2) - 1, *color);
        let shown: String = label.chars().take(28).collect();
        cv.text(x + 40, y, &shown, 2, BLACK);
        y += 22;
        if y > H as i64 - 30 {
            break;
        }
    }
}

fn class_color(i: usize) -> Rgb<u8> {
    Rgb(PALETTE[i % PALETTE.len()])
}

fn class_name(names: &[String], c: usize) -> String {
    names.get(c).cloned().unwrap_or_else(|| c.to_string())
}

/// `BoxPR_curve.png`: precision envelope vs recall at IoU 0.5, per class (< 21 classes) and mean.
pub fn plot_pr_curve(m: &DetectionMetrics, names: &[String], path: &Path) -> Result<()> {
    let (mut cv, ax) = layout();
    ax.draw(&mut cv, "Recall", "Precision", "Precision-Recall Curve");
    let c = &m.curves;
    let mut entries = Vec::new();
    if !c.classes.is_empty() && c.classes.len() < 21 {
        for (i, &cls) in c.classes.iter().enumerate() {
            ax.curve(&mut cv, &c.px, &c.prec_values[i], 1, class_color(i));
            entries.push((format!("{} {:.3}", class_name(names, cls), c.ap[i][0]), class_color(i), 2));
        }
    }
    if !c.prec_values.is_empty() {
        let n = c.prec_values.len() as f64;
        let mean: Vec<f64> = (0..c.px.len()).map(|k| c.prec_values.iter().map(|r| r[k]).sum::<f64>() / n).collect();
        ax.curve(&mut cv, &c.px, &mean, 4, BLUE);
        entries.push((format!("all classes {:.3} mAP@0.5", m.map50), BLUE, 4));
    }
    legend(&mut cv, &entries);
    cv.save(path)
}

/// Which metric-vs-confidence curve to draw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfidenceCurve {
    /// `BoxF1_curve.png`
    F1,
    /// `BoxP_curve.png`
    Precision,
    /// `BoxR_curve.png`
    Recall,
}

/// Metric vs confidence per class (< 21 classes) and the smoothed mean, labelled with its maximum and where.
pub fn plot_confidence_curve(m: &DetectionMetrics, names: &[String], kind: ConfidenceCurve, path: &Path) -> Result<()> {
    let (mut cv, ax) = layout();
    let c = &m.curves;
    let (curves, ylabel) = match kind {
        ConfidenceCurve::F1 => (&c.f1_curve, "F1"),
        ConfidenceCurve::Precision => (&c.p_curve, "Precision"),
        ConfidenceCurve::Recall => (&c.r_curve, "Recall"),
    };
    ax.draw(&mut cv, "Confidence", ylabel, &format!("{ylabel}-Confidence Curve"));
    let mut entries = Vec::new();
    if !curves.is_empty() && curves.len() < 21 {
        for (i, &cls) in c.classes.iter().enumerate() {
            ax.curve(&mut cv, &c.px, &curves[i], 1, class_color(i));
            entries.push((class_name(names, cls), class_color(i), 2));
        }
    }
    if !curves.is_empty() {
        let n = curves.len() as f64;
        let mean: Vec<f64> = (0..c.px.len()).map(|k| curves.iter().map(|r| r[k]).sum::<f64>() / n).collect();
        let y = smooth(&mean, 0.1);
        let i = argmax(&y);
        ax.curve(&mut cv, &c.px, &y, 4, BLUE);
        entries.push((format!("all classes {:.2} at {:.3}", y[i], c.px[i]), BLUE, 4));
    }
    legend(&mut cv, &entries);
    cv.save(path)
}

fn blues(v: f64) -> Rgb<u8> {
    // white -> dark blue, like matplotlib's "Blues"
    let t = v.clamp(0.0, 1.0);
    let lerp = |a: f64, b: f64| (a + (b - a) * t).round() as u8;
    Rgb([lerp(247.0, 8.0), lerp(251.0, 48.0), lerp(255.0, 107.0)])
}

/// `confusion_matrix.png` / `confusion_matrix_normalized.png` (rows: predicted, columns: true, last: background).
pub fn plot_confusion_matrix(cm: &ConfusionMatrix, names: &[String], normalize: bool, path: &Path) -> Result<()> {
    let n = cm.nc + 1;
    let data = if normalize { cm.normalized() } else { cm.matrix.clone() };
    let vmax = data.iter().cloned().fold(0.0f64, f64::max).max(1e-12);
    let mut cv = Canvas::new(1000, 1000);
    let (x0, y0, size) = (220i64, 90i64, 720i64);
    let cell = size as f64 / n as f64;
    let title = if normalize { "Confusion Matrix Normalized" } else { "Confusion Matrix" };
    cv.text(500 - Canvas::text_width(title, 3) / 2, 20, title, 3, BLACK);
    for i in 0..n {
        for j in 0..n {
            let v = data[i * n + j];
            if normalize && v < 0.005 {
                continue; // Ultralytics leaves near-zero cells blank
            }
            let (cx0, cy0) = (x0 + (j as f64 * cell) as i64, y0 + (i as f64 * cell) as i64);
            let (cx1, cy1) = (x0 + ((j + 1) as f64 * cell) as i64 - 1, y0 + ((i + 1) as f64 * cell) as i64 - 1);
            cv.rect(cx0, cy0, cx1, cy1, blues(v / vmax));
            if n <= 30 && v > 0.0 {
                let s = if normalize { format!("{v:.2}") } else { format!("{v:.0}") };
                let scale = if cell >= 60.0 { 2 } else { 1 };
                let tc = if v / vmax > 0.5 { WHITE } else { BLACK };
                let tw = Canvas::text_width(&s, scale);
                cv.text((cx0 + cx1) / 2 - tw / 2, (cy0 + cy1) / 2 - 3 * scale, &s, scale, tc);
            }
        }
    }
    cv.line(x0 as f64, y0 as f64, (x0 + size) as f64, y0 as f64, 1, BLACK);
    cv.line(x0 as f64, (y0 + size) as f64, (x0 + size) as f64, (y0 + size) as f64, 1, BLACK);
    cv.line(x0 as f64, y0 as f64, x0 as f64, (y0 + size) as f64, 1, BLACK);
    cv.line((x0 + size) as f64, y0 as f64, (x0 + size) as f64, (y0 + size) as f64, 1, BLACK);
    if n <= 30 {
        for k in 0..n {
            let label: String = if k == cm.nc { "background".to_string() } else { class_name(names, k) };
            let label: String = label.chars().take(16).collect();
            let mid = (k as f64 + 0.5) * cell;
            cv.text(x0 - Canvas::text_width(&label, 1) - 6, y0 + mid as i64 - 3, &label, 1, BLACK);
            cv.text_vertical(x0 + mid as i64 - 3, y0 + size + 8 + Canvas::text_width(&label, 1) / 2, &label, 1, BLACK);
        }
    }
    cv.text(x0 + size / 2 - Canvas::text_width("True", 3) / 2, 960, "True", 3, BLACK);
    cv.text_vertical(40, y0 + size / 2, "Predicted", 3, BLACK);
    cv.save(path)
}

/// Writes every plot Ultralytics' detection validator writes into `dir`; returns the paths.
pub fn save_plots(
    m: &DetectionMetrics,
    cm: Option<&ConfusionMatrix>,
    names: &[String],
    dir: &Path,
) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut out = Vec::new();
    let p = dir.join("BoxPR_curve.png");
    plot_pr_curve(m, names, &p)?;
    out.push(p);
    for (kind, file) in [
        (ConfidenceCurve::F1, "BoxF1_curve.png"),
        (ConfidenceCurve::Precision, "BoxP_curve.png"),
        (ConfidenceCurve::Recall, "BoxR_curve.png"),
    ] {
        let p = dir.join(file);
        plot_confidence_curve(m, names, kind, &p)?;
        out.push(p);
    }
    if let Some(cm) = cm {
        for (normalize, file) in [(true, "confusion_matrix_normalized.png"), (false, "confusion_matrix.png")] {
            let p = dir.join(file);
            plot_confusion_matrix(cm, names, normalize, &p)?;
            out.push(p);
        }
    }
    Ok(out)
}

/// Small multiples: one line plot per `(title, xs, ys)` panel, `cols` panels a row, each panel's y axis
/// spanning its own data range (written under the title). Used for a training run's `results.png`.
pub fn plot_panels(panels: &[(String, Vec<f64>, Vec<f64>)], cols: usize, path: &Path) -> Result<()> {
    const PW: i64 = 320;
    const PH: i64 = 280;
    let cols = cols.max(1);
    let rows = panels.len().div_ceil(cols).max(1);
    let mut cv = Canvas::new((PW * cols as i64) as u32, (PH * rows as i64) as u32);
    for (k, (title, xs, ys)) in panels.iter().enumerate() {
        let (ox, oy) = ((k % cols) as i64 * PW, (k / cols) as i64 * PH);
        let (x0, y0, x1, y1) = (ox + 30, oy + 60, ox + PW - 20, oy + PH - 30);
        cv.text(ox + (PW - Canvas::text_width(title, 2)) / 2, oy + 10, title, 2, BLACK);
        let finite: Vec<f64> = ys.iter().copied().filter(|v| v.is_finite()).collect();
        let (lo, hi) = finite.iter().fold((f64::MAX, f64::MIN), |(a, b), &v| (a.min(v), b.max(v)));
        let range = if finite.is_empty() { String::from("NO DATA") } else { format!("{lo:.4} - {hi:.4}") };
        cv.text(ox + (PW - Canvas::text_width(&range, 1)) / 2, oy + 34, &range, 1, BLACK);
        for (a, b, c, d) in [(x0, y0, x1, y0), (x0, y1, x1, y1), (x0, y0, x0, y1), (x1, y0, x1, y1)] {
            cv.line(a as f64, b as f64, c as f64, d as f64, 1, GREY);
        }
        let (xmin, xmax) = xs.iter().fold((f64::MAX, f64::MIN), |(a, b), &v| (a.min(v), b.max(v)));
        let sx = |x: f64| x0 as f64 + if xmax > xmin { (x - xmin) / (xmax - xmin) } else { 0.5 } * (x1 - x0) as f64;
        let sy = |y: f64| y1 as f64 - if hi > lo { (y - lo) / (hi - lo) } else { 0.5 } * (y1 - y0) as f64;
        let points: Vec<(f64, f64)> =
            xs.iter().zip(ys).filter(|(_, y)| y.is_finite()).map(|(&x, &y)| (sx(x), sy(y))).collect();
        for w in points.windows(2) {
            cv.line(w[0].0, w[0].1, w[1].0, w[1].1, 2, BLUE);
        }
        for &(x, y) in &points {
            cv.rect(x as i64 - 2, y as i64 - 2, x as i64 + 2, y as i64 + 2, BLUE);
        }
    }
    cv.save(path)
}
