//! `BoxPR_curve.png` and the metric-vs-confidence curves, as Ultralytics' `plot_pr_curve` / `plot_mc_curve` draw
//! them: a 9x6 inch figure at 250 dpi, a thin line per class (named in the legend when there are fewer than 21
//! classes, grey and unnamed otherwise), the mean in thick blue, the legend outside the axes on the right.

use std::path::Path;

use anyhow::Result;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, VPos};

use super::{axes, font, px, render, runs, text, ticks, Area, Handle, Legend, TAB10};
use crate::metrics::ap::smooth;
use crate::metrics::det_metrics::DetectionMetrics;
use crate::metrics::numeric::argmax;

const DPI: f64 = 250.0;
const SIZE: (u32, u32) = (2250, 1500);
/// Axes box in pixels (left, top, right, bottom), where matplotlib's tight layout puts it.
const AXES: (i32, i32, i32, i32) = (180, 96, 1473, 1344);
/// Ultralytics names each class in the legend below this many classes.
const MAX_NAMED: usize = 21;
const GREY: RGBColor = RGBColor(128, 128, 128);

struct Line<'a> {
    ys: &'a [f64],
    colour: RGBColor,
    /// Width in points.
    width: f64,
    label: Option<String>,
}

fn line_chart(path: &Path, title: &str, labels: (&str, &str), xs: &[f64], lines: &[Line]) -> Result<()> {
    render(path, SIZE, |root: &Area| {
        let (left, top, right, bottom) = AXES;
        let (w, h) = (SIZE.0 as i32, SIZE.1 as i32);
        let mut chart = ChartBuilder::on(root)
            .margin_left(left)
            .margin_top(top)
            .margin_right(w - right)
            .margin_bottom(h - bottom)
            .build_cartesian_2d(0f64..1f64, 0f64..1f64)?;
        for line in lines {
            let style = line.colour.stroke_width(px(line.width, DPI).round() as u32);
            for run in runs(xs, line.ys) {
                chart.draw_series(LineSeries::new(run, style))?;
            }
        }
        // After the lines, so the box is on top as matplotlib draws it.
        let unit = ticks(0.0, 1.0, 9);
        axes(root, &chart, (&unit, &unit), labels, DPI)?;
        text(
            root,
            title,
            ((left + right) / 2, top - px(6.0, DPI) as i32),
            &font(13.2, DPI),
            HPos::Center,
            VPos::Bottom,
        )?;
        let entries: Vec<_> = lines
            .iter()
            .filter_map(|l| {
                let width = px(l.width, DPI).round() as u32;
                l.label.clone().map(|s| (s, Handle::Line(l.colour, width)))
            })
            .collect();
        let pad = px(5.5, DPI) as i32;
        let x = right + ((right - left) as f64 * 0.04) as i32 + pad;
        Legend::new(root, entries, font(11.0, DPI))?.draw(root, (x, top + pad))
    })
}

/// Per-class lines: named and coloured from matplotlib's cycle below `MAX_NAMED` classes, grey otherwise.
fn class_lines<'a>(curves: &'a [Vec<f64>], label: impl Fn(usize) -> String) -> Vec<Line<'a>> {
    let named = curves.len() < MAX_NAMED;
    curves
        .iter()
        .enumerate()
        .map(|(i, ys)| Line {
            ys,
            colour: if named { TAB10[i % TAB10.len()] } else { GREY },
            width: 1.0,
            label: named.then(|| label(i)),
        })
        .collect()
}

fn class_name(names: &[String], c: usize) -> String {
    names.get(c).cloned().unwrap_or_else(|| c.to_string())
}

/// Mean over classes at each x (empty without classes).
fn mean(curves: &[Vec<f64>], len: usize) -> Vec<f64> {
    if curves.is_empty() {
        return Vec::new();
    }
    (0..len).map(|k| curves.iter().map(|r| r[k]).sum::<f64>() / curves.len() as f64).collect()
}

/// `BoxPR_curve.png`: precision envelope vs recall at IoU 0.5, per class and mean.
pub fn plot_pr_curve(m: &DetectionMetrics, names: &[String], path: &Path) -> Result<()> {
    let c = &m.curves;
    let mut lines = class_lines(&c.prec_values, |i| format!("{} {:.3}", class_name(names, c.classes[i]), c.ap[i][0]));
    let mean = mean(&c.prec_values, c.px.len());
    if !mean.is_empty() {
        let label = Some(format!("all classes {:.3} mAP@0.5", m.map50));
        lines.push(Line { ys: &mean, colour: BLUE, width: 3.0, label });
    }
    line_chart(path, "Precision-Recall Curve", ("Recall", "Precision"), &c.px, &lines)
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

/// Metric vs confidence per class and the smoothed mean, labelled with its maximum and where.
pub fn plot_confidence_curve(m: &DetectionMetrics, names: &[String], kind: ConfidenceCurve, path: &Path) -> Result<()> {
    let c = &m.curves;
    let (curves, ylabel) = match kind {
        ConfidenceCurve::F1 => (&c.f1_curve, "F1"),
        ConfidenceCurve::Precision => (&c.p_curve, "Precision"),
        ConfidenceCurve::Recall => (&c.r_curve, "Recall"),
    };
    let mut lines = class_lines(curves, |i| class_name(names, c.classes[i]));
    let y = smooth(&mean(curves, c.px.len()), 0.1);
    if !y.is_empty() {
        let i = argmax(&y);
        let label = Some(format!("all classes {:.2} at {:.3}", y[i], c.px[i]));
        lines.push(Line { ys: &y, colour: BLUE, width: 3.0, label });
    }
    line_chart(path, &format!("{ylabel}-Confidence Curve"), ("Confidence", ylabel), &c.px, &lines)
}
