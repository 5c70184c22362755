//! `confusion_matrix.png` and `confusion_matrix_normalized.png` as Ultralytics' `ConfusionMatrix.plot` draws them:
//! 12x9 inches at 250 dpi, "Blues" cells (rows predicted, columns true, the last one background), values in the
//! cells below 30 rows, names on both axes below 99, every k-th class from 100 classes on, and a colour bar.

use std::path::Path;

use anyhow::Result;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, VPos};

use super::{font, px, render, text, ticks, Area};
use crate::metrics::confusion::ConfusionMatrix;

const DPI: f64 = 250.0;
const SIZE: (u32, u32) = (3000, 2250);

/// Matplotlib's "Blues" colour map: evenly spaced stops, interpolated linearly.
const BLUES: [[f64; 3]; 9] = [
    [247.0, 251.0, 255.0],
    [222.0, 235.0, 247.0],
    [198.0, 219.0, 239.0],
    [158.0, 202.0, 225.0],
    [107.0, 174.0, 214.0],
    [66.0, 146.0, 198.0],
    [33.0, 113.0, 181.0],
    [8.0, 81.0, 156.0],
    [8.0, 48.0, 107.0],
];

fn blues(t: f64) -> RGBColor {
    let t = if t.is_finite() { t.clamp(0.0, 1.0) } else { 0.0 } * (BLUES.len() - 1) as f64;
    let k = (t.floor() as usize).min(BLUES.len() - 2);
    let f = t - k as f64;
    let c = |i: usize| (BLUES[k][i] + (BLUES[k + 1][i] - BLUES[k][i]) * f).round() as u8;
    RGBColor(c(0), c(1), c(2))
}

/// The plotted matrix: rows and columns kept (every k-th class from 100 classes on, then background), values
/// below 0.005 left blank (`None`), as Ultralytics does.
fn cells(cm: &ConfusionMatrix, normalize: bool) -> (Vec<usize>, Vec<Option<f64>>) {
    let n = cm.nc + 1;
    let data = if normalize { cm.normalized() } else { cm.matrix.clone() };
    let step = if cm.nc >= 100 { (cm.nc / 60).max(2) } else { 1 };
    let keep: Vec<usize> = (0..cm.nc).step_by(step).chain([cm.nc]).collect();
    let values = keep
        .iter()
        .flat_map(|&i| keep.iter().map(move |&j| i * n + j))
        .map(|k| Some(data[k]).filter(|&v| v >= 0.005))
        .collect();
    (keep, values)
}

/// `confusion_matrix.png` / `confusion_matrix_normalized.png` (columns normalised to sum 1).
pub fn plot_confusion_matrix(cm: &ConfusionMatrix, names: &[String], normalize: bool, path: &Path) -> Result<()> {
    let (keep, values) = cells(cm, normalize);
    let nc = keep.len();
    let labels: Vec<String> = keep
        .iter()
        .map(|&k| if k == cm.nc { "background".into() } else { names.get(k).cloned().unwrap_or_else(|| k.to_string()) })
        .collect();
    let vmax = values.iter().flatten().copied().fold(0.0, f64::max);
    let (w, h) = (SIZE.0 as f64, SIZE.1 as f64);
    // subplots_adjust(left=0, right=0.84, top=0.94, bottom=btm); the colour bar takes 0.046 + 0.05 of the width
    // and the square matrix sits at the right of what is left.
    let bottom = h * (1.0 - (0.25 - 0.001 * nc as f64).max(0.1));
    let top = h * 0.06;
    let side = (bottom - top).min(w * 0.84 * 0.904);
    let (x1, y0) = (w * 0.84 * 0.904, top + (bottom - top - side) / 2.0);
    let x0 = x1 - side;
    let cell = side / nc as f64;
    let tick_pt = (15.0 - 0.1 * nc as f64).max(6.0);
    let label_pt = (12.0 - 0.1 * nc as f64).max(6.0);
    let title = if normalize { "Confusion Matrix Normalized" } else { "Confusion Matrix" };
    render(path, SIZE, |root: &Area| {
        let threshold = 0.45 * if normalize { 1.0 } else { vmax };
        let value_font = font(10.0, DPI);
        for (k, v) in values.iter().enumerate() {
            let Some(v) = *v else { continue };
            let (i, j) = (k / nc, k % nc);
            let (cx0, cy0) = ((x0 + j as f64 * cell) as i32, (y0 + i as f64 * cell) as i32);
            let (cx1, cy1) = ((x0 + (j + 1) as f64 * cell) as i32, (y0 + (i + 1) as f64 * cell) as i32);
            root.draw(&Rectangle::new([(cx0, cy0), (cx1, cy1)], blues(v / vmax.max(1e-12)).filled()))?;
            if nc < 30 {
                let s = if normalize { format!("{v:.2}") } else { format!("{}", v as i64) };
                let colour = if v > threshold { WHITE } else { BLACK };
                text(
                    root,
                    &s,
                    ((cx0 + cx1) / 2, (cy0 + cy1) / 2),
                    &value_font.color(&colour),
                    HPos::Center,
                    VPos::Center,
                )?;
            }
        }
        let tick = px(3.5, DPI) as i32;
        let tick_style = BLACK.stroke_width(px(0.8, DPI).round() as u32);
        let (bx, by) = ((x0 as i32), (y0 + side) as i32);
        let mut widest = 0;
        if nc < 99 {
            let style = font(tick_pt, DPI);
            for (k, label) in labels.iter().enumerate() {
                let mid = ((k as f64 + 0.5) * cell) as i32;
                let (x, y) = (bx + mid, y0 as i32 + mid);
                root.draw(&PathElement::new([(x, by), (x, by + tick)], tick_style))?;
                root.draw(&PathElement::new([(bx - tick, y), (bx, y)], tick_style))?;
                let vertical = style.transform(FontTransform::Rotate270);
                text(root, label, (x, by + 2 * tick), &vertical, HPos::Right, VPos::Center)?;
                text(root, label, (bx - 2 * tick, y), &style, HPos::Right, VPos::Center)?;
                widest = widest.max(root.estimate_text_size(label, &style)?.0 as i32);
            }
        }
        let label_style = font(label_pt, DPI);
        let pad = 2 * tick + widest + px(10.0, DPI) as i32;
        text(root, "True", ((x0 + side / 2.0) as i32, by + pad), &label_style, HPos::Center, VPos::Top)?;
        let vertical = label_style.transform(FontTransform::Rotate270);
        text(root, "Predicted", (bx - pad, (y0 + side / 2.0) as i32), &vertical, HPos::Center, VPos::Bottom)?;
        let title_y = y0 as i32 - px(20.0, DPI) as i32;
        text(root, title, ((x0 + side / 2.0) as i32, title_y), &label_style, HPos::Center, VPos::Bottom)?;
        colour_bar(root, (w * 0.84 * 0.954, y0, side), vmax)
    })
}

/// The colour bar, `side` tall at `(x, y)`, from 0 at the bottom to `vmax`, with ticks on its right.
fn colour_bar(root: &Area, (x, y, side): (f64, f64, f64), vmax: f64) -> Result<()> {
    let width = (side / 20.0) as i32;
    let (x, y0, y1) = (x as i32, y as i32, (y + side) as i32);
    for row in y0..y1 {
        let t = (y1 - row) as f64 / side;
        root.draw(&PathElement::new([(x, row), (x + width, row)], blues(t)))?;
    }
    if vmax <= 0.0 {
        return Ok(());
    }
    let (values, decimals) = ticks(0.0, vmax, 9);
    let tick = px(3.5, DPI) as i32;
    let style = BLACK.stroke_width(px(0.8, DPI).round() as u32);
    for v in values {
        let row = y1 - (v / vmax * side) as i32;
        root.draw(&PathElement::new([(x + width, row), (x + width + tick, row)], style))?;
        text(
            root,
            &format!("{v:.decimals$}"),
            (x + width + 2 * tick, row),
            &font(11.0, DPI),
            HPos::Left,
            VPos::Center,
        )?;
    }
    Ok(())
}
