//! `--plots` PNGs and a run's `results.png`, drawn with plotters at Ultralytics' sizes, with its file names and
//! content. Text uses the font embedded for `draw` (DejaVu Sans), so no system font library is needed.
//! Sizes are given in matplotlib's points and converted at each figure's dpi, so the PNGs match Ultralytics'.

mod confusion;
mod curves;
mod panels;

use std::path::{Path, PathBuf};
use std::sync::Once;

use anyhow::{Context, Result};
use image::RgbImage;
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::confusion::ConfusionMatrix;
use super::det_metrics::DetectionMetrics;

pub use confusion::plot_confusion_matrix;
pub use curves::{plot_confidence_curve, plot_pr_curve, ConfidenceCurve};
pub use panels::{gaussian_filter1d, plot_panels};

type Area<'a> = DrawingArea<BitMapBackend<'a>, Shift>;
type Chart<'a, 'b> = ChartContext<'a, BitMapBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;
/// Tick values and the decimals their labels show.
type Ticks = (Vec<f64>, usize);

/// matplotlib's default colour cycle (tab10), which Ultralytics' per-class lines use.
const TAB10: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// matplotlib's frame grey for legends ("0.8").
const LEGEND_EDGE: RGBColor = RGBColor(204, 204, 204);

const FONT: &str = "sans-serif";

/// Pixels for `pt` points at `dpi`.
fn px(pt: f64, dpi: f64) -> f64 {
    pt * dpi / 72.0
}

/// A black font of `pt` points. plotters sizes ab_glyph fonts by ascent + descent, which for DejaVu Sans is
/// 1.164 em, while matplotlib's point size is the em.
fn font(pt: f64, dpi: f64) -> TextStyle<'static> {
    (FONT, px(pt, dpi) * 1.164).into_font().color(&BLACK)
}

/// `font` anchored at `h`/`v`. plotters puts ab_glyph text's baseline half a font size below the anchor's top,
/// which leaves text centred on a point about a fifth of its size too high; `text` corrects for that.
fn text(area: &Area, s: &str, (x, y): (i32, i32), style: &TextStyle, h: HPos, v: VPos) -> Result<()> {
    let size = style.font.get_size();
    let dy = match v {
        VPos::Top => 0.13 * size,
        VPos::Center => 0.2 * size,
        VPos::Bottom => 0.27 * size,
    };
    let (dx, dy) = match style.font.get_transform() {
        FontTransform::Rotate270 => (dy, 0.0),
        FontTransform::Rotate90 => (-dy, 0.0),
        _ => (0.0, dy),
    };
    area.draw_text(s, &style.pos(Pos::new(h, v)), (x + dx.round() as i32, y + dy.round() as i32))?;
    Ok(())
}

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let registered = plotters::style::register_font(FONT, FontStyle::Normal, crate::draw::FONT_BYTES);
        assert!(registered.is_ok(), "the embedded font parses");
    });
}

/// Draws a `w` x `h` white figure with `draw` and writes it to `path` as PNG.
fn render(path: &Path, (w, h): (u32, u32), draw: impl FnOnce(&Area) -> Result<()>) -> Result<()> {
    register_font();
    let mut buf = vec![255u8; w as usize * h as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        draw(&root).with_context(|| format!("drawing {}", path.display()))?;
        root.present()?;
    }
    let img = RgbImage::from_raw(w, h, buf).context("plot buffer size")?;
    img.save(path).with_context(|| format!("writing plot {}", path.display()))
}

/// Runs of consecutive finite points, so that a NaN breaks the line as in matplotlib.
fn runs(xs: &[f64], ys: &[f64]) -> Vec<Vec<(f64, f64)>> {
    let mut out = vec![Vec::new()];
    for (&x, &y) in xs.iter().zip(ys) {
        if x.is_finite() && y.is_finite() {
            out.last_mut().expect("not empty").push((x, y));
        } else if !out.last().expect("not empty").is_empty() {
            out.push(Vec::new());
        }
    }
    out
}

/// matplotlib's axes decoration around `chart`'s plotting area (on `root`, the whole figure): a box, outward ticks
/// with their values, and the axis labels (`""` for none) 4 points beyond the tick labels.
fn axes(root: &Area, chart: &Chart, (x, y): (&Ticks, &Ticks), labels: (&str, &str), dpi: f64) -> Result<()> {
    let (xr, yr) = (chart.x_range(), chart.y_range());
    let (x0, y0) = chart.backend_coord(&(xr.start, yr.end));
    let (x1, y1) = chart.backend_coord(&(xr.end, yr.start));
    let line = BLACK.stroke_width(px(0.8, dpi).round() as u32);
    root.draw(&Rectangle::new([(x0, y0), (x1, y1)], line))?;
    let tick = px(3.5, dpi) as i32;
    let style = font(11.0, dpi);
    let (values, decimals) = x;
    for &v in values {
        let cx = chart.backend_coord(&(v, yr.start)).0;
        root.draw(&PathElement::new([(cx, y1), (cx, y1 + tick)], line))?;
        text(root, &format!("{v:.decimals$}"), (cx, y1 + 2 * tick), &style, HPos::Center, VPos::Top)?;
    }
    let (values, decimals) = y;
    let mut widest = 0;
    for &v in values {
        let cy = chart.backend_coord(&(xr.start, v)).1;
        let label = format!("{v:.decimals$}");
        root.draw(&PathElement::new([(x0 - tick, cy), (x0, cy)], line))?;
        text(root, &label, (x0 - 2 * tick, cy), &style, HPos::Right, VPos::Center)?;
        widest = widest.max(root.estimate_text_size(&label, &style)?.0 as i32);
    }
    let pad = px(4.0, dpi) as i32;
    let label_y = y1 + 2 * tick + (style.font.get_size() / 1.164) as i32 + pad;
    text(root, labels.0, ((x0 + x1) / 2, label_y), &style, HPos::Center, VPos::Top)?;
    let vertical = style.transform(FontTransform::Rotate270);
    text(root, labels.1, (x0 - 2 * tick - widest - pad, (y0 + y1) / 2), &vertical, HPos::Center, VPos::Bottom)
}

/// How a legend entry's sample is drawn.
#[derive(Clone, Copy)]
enum Handle {
    /// A line `width` pixels wide.
    Line(RGBColor, u32),
    /// A dotted line `width` pixels wide.
    Dotted(RGBColor, u32),
    /// A line `width` pixels wide with a round marker of radius `r` in the middle.
    Marked(RGBColor, u32, u32),
}

/// matplotlib's ":" line style for a line `width` pixels wide: dashes 1 width long, 1.65 widths apart.
fn dots(width: u32) -> (u32, u32) {
    (width, (width as f64 * 1.65).round() as u32)
}

/// A framed legend, spaced as matplotlib's (in units of the font size: border 0.4, handle 2.0 long, 0.8 from its
/// label, rows 0.5 apart).
struct Legend<'a> {
    entries: Vec<(String, Handle)>,
    style: TextStyle<'a>,
    em: f64,
    /// Width and height in pixels.
    size: (i32, i32),
}

impl<'a> Legend<'a> {
    fn new(area: &Area, entries: Vec<(String, Handle)>, style: TextStyle<'a>) -> Result<Self> {
        let em = style.font.get_size() / 1.164;
        let mut text_w = 0;
        for (label, _) in &entries {
            text_w = text_w.max(area.estimate_text_size(label, &style)?.0 as i32);
        }
        let rows = entries.len() as f64;
        let w = (4.0 * em) as i32 + text_w;
        let h = (0.8 * em + rows * 1.2 * em + (rows - 1.0).max(0.0) * 0.5 * em) as i32;
        Ok(Legend { entries, style, em, size: (w, h) })
    }

    /// Draws the legend with its top-left corner at `(x, y)`; nothing without entries.
    fn draw(&self, area: &Area, (x, y): (i32, i32)) -> Result<()> {
        if self.entries.is_empty() {
            return Ok(());
        }
        let (em, (w, h)) = (self.em, self.size);
        area.draw(&Rectangle::new([(x, y), (x + w, y + h)], WHITE.mix(0.8).filled()))?;
        area.draw(&Rectangle::new([(x, y), (x + w, y + h)], LEGEND_EDGE.stroke_width((em / 12.0).round() as u32)))?;
        let (hx0, hx1) = (x + (0.4 * em) as i32, x + (2.4 * em) as i32);
        for (k, (label, handle)) in self.entries.iter().enumerate() {
            let cy = y + (0.4 * em + k as f64 * 1.7 * em + 0.6 * em) as i32;
            let ends = [(hx0, cy), (hx1, cy)];
            match *handle {
                Handle::Line(c, w) => area.draw(&PathElement::new(ends, c.stroke_width(w)))?,
                Handle::Dotted(c, w) => {
                    let (dash, gap) = dots(w);
                    area.draw(&DashedPathElement::new(ends, dash, gap, c.stroke_width(w)))?
                }
                Handle::Marked(c, w, r) => {
                    area.draw(&PathElement::new(ends, c.stroke_width(w)))?;
                    area.draw(&Circle::new(((hx0 + hx1) / 2, cy), r, c.filled()))?;
                }
            }
            text(area, label, (x + (3.2 * em) as i32, cy), &self.style, HPos::Left, VPos::Center)?;
        }
        Ok(())
    }
}

/// matplotlib's tick choice (`MaxNLocator` with steps 1, 2, 2.5, 5, 10): the multiples of the smallest such step
/// that splits `lo..hi` into at most `bins` intervals, inside `lo..hi`; and the decimals their labels need.
fn ticks(lo: f64, hi: f64, bins: usize) -> Ticks {
    if !(lo.is_finite() && hi.is_finite()) || hi <= lo {
        return (Vec::new(), 0);
    }
    let raw = (hi - lo) / bins.max(1) as f64;
    let e = raw.log10().floor();
    let base = 10f64.powf(e);
    let m = [1.0, 2.0, 2.5, 5.0, 10.0].into_iter().find(|&m| m * base >= raw * (1.0 - 1e-9)).unwrap_or(10.0);
    let step = m * base;
    let (m, e) = if m == 10.0 { (1.0, e + 1.0) } else { (m, e) };
    let decimals = (-e as i64 + i64::from(m == 2.5)).max(0) as usize;
    let first = (lo / step - 1e-9).ceil() as i64;
    let last = (hi / step + 1e-9).floor() as i64;
    let values = (first..=last).map(|k| k as f64 * step).map(|v| if v.abs() < step * 1e-9 { 0.0 } else { v }).collect();
    (values, decimals)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_like_matplotlib() {
        let labels = |lo, hi, bins| {
            let (values, decimals) = ticks(lo, hi, bins);
            values.iter().map(|v| format!("{v:.decimals$}")).collect::<Vec<_>>().join(" ")
        };
        assert_eq!(labels(-0.45, 31.45, 4), "0 10 20 30");
        assert_eq!(labels(0.0, 1.0, 5), "0.0 0.2 0.4 0.6 0.8 1.0");
        assert_eq!(labels(0.1, 1.9, 5), "0.5 1.0 1.5");
        assert_eq!(labels(0.0, 1.0, 4), "0.00 0.25 0.50 0.75 1.00");
        assert_eq!(labels(0.0, 0.9, 9), "0.0 0.1 0.2 0.3 0.4 0.5 0.6 0.7 0.8 0.9");
        assert_eq!(labels(0.0, 12.0, 8), "0 2 4 6 8 10 12");
        assert_eq!(labels(1.0, 1.0, 4), "");
    }
}
