//! Small multiples of per-epoch values, as Ultralytics' `plot_results` draws a run's `results.png`: two rows of
//! panels, `panels + 2` inches wide and 6 tall at 200 dpi, each with the values as a line with markers
//! ("results") and their Gaussian-smoothed trace as a dotted line ("smooth"), the legend in the second panel.

use std::path::Path;

use anyhow::{bail, Result};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, VPos};

use super::{axes, dots, font, px, render, runs, text, ticks, Area, Handle, Legend, Ticks, TAB10};

const DPI: f64 = 200.0;
/// Space around each panel's axes for the title, tick labels and their values, in pixels (left, top, right,
/// bottom), as matplotlib's tight layout leaves it.
const PAD: (i32, i32, i32, i32) = (90, 68, 20, 70);

/// `scipy.ndimage.gaussian_filter1d(y, sigma)` with its defaults: the kernel truncated at 4 sigma and the input
/// extended by reflection about its edges (d c b a | a b c d | d c b a), repeated as far as the kernel reaches.
/// A NaN spreads over the values within the kernel's reach, as in scipy. `sigma` must be positive.
pub fn gaussian_filter1d(y: &[f64], sigma: f64) -> Vec<f64> {
    let n = y.len() as i64;
    let radius = (4.0 * sigma + 0.5) as i64;
    let kernel: Vec<f64> = (-radius..=radius).map(|k| (-0.5 * (k as f64 / sigma).powi(2)).exp()).collect();
    let total: f64 = kernel.iter().sum();
    let at = |i: i64| {
        let m = i.rem_euclid(2 * n);
        y[(if m < n { m } else { 2 * n - 1 - m }) as usize]
    };
    (0..n).map(|i| kernel.iter().zip(i - radius..).map(|(w, k)| w * at(k)).sum::<f64>() / total).collect()
}

/// The view of `values`: their range widened by 5% each side (matplotlib's margins), a single value or none
/// widened as matplotlib's `nonsingular` does.
fn view(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) =
        values.filter(|v| v.is_finite()).fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)));
    let (lo, hi) = if lo > hi {
        (0.0, 1.0)
    } else if hi - lo <= 1e-12 * lo.abs().max(hi.abs()) {
        if hi == 0.0 {
            (-0.05, 0.05)
        } else {
            (lo - 0.05 * lo.abs(), hi + 0.05 * hi.abs())
        }
    } else {
        (lo, hi)
    };
    let margin = 0.05 * (hi - lo);
    (lo - margin, hi + margin)
}

/// One `(title, xs, ys)` panel per column, in two rows (the first `(n + 1) / 2` panels on top), into `path`.
pub fn plot_panels(panels: &[(String, Vec<f64>, Vec<f64>)], path: &Path) -> Result<()> {
    if panels.is_empty() {
        bail!("no columns to plot in {}", path.display());
    }
    let cols = panels.len().div_ceil(2);
    let size = (((panels.len() + 2) as f64 * DPI) as u32, (6.0 * DPI) as u32);
    let cell = (size.0 as i32 / cols as i32, size.1 as i32 / 2);
    let (left, top, right, bottom) = PAD;
    let axes_size = (cell.0 - left - right, cell.1 - top - bottom);
    let panels: Vec<Panel> = panels.iter().map(|(title, xs, ys)| Panel::new(title, xs, ys, axes_size)).collect();
    render(path, size, |root: &Area| {
        // As tight_layout does, widen the left margin for long tick labels.
        let style = font(11.0, DPI);
        let mut widest = 0;
        for (values, decimals) in panels.iter().map(|p| &p.ticks.1) {
            for v in values {
                widest = widest.max(root.estimate_text_size(&format!("{v:.decimals$}"), &style)?.0 as i32);
            }
        }
        let left = left.max(widest + 2 * px(3.5, DPI) as i32 + 10);
        for (k, panel) in panels.iter().enumerate() {
            let (cx, cy) = ((k % cols) as i32 * cell.0, (k / cols) as i32 * cell.1);
            panel.draw(root, (cx + left, cy + top, cx + cell.0 - right, cy + cell.1 - bottom), k == 1)?;
        }
        Ok(())
    })
}

/// A panel's values, their smoothed trace, and the view and ticks matplotlib would give them.
struct Panel<'a> {
    title: &'a str,
    xs: &'a [f64],
    ys: &'a [f64],
    smooth: Vec<f64>,
    view: ((f64, f64), (f64, f64)),
    ticks: (Ticks, Ticks),
}

impl<'a> Panel<'a> {
    /// For axes of `(width, height)` pixels.
    fn new(title: &'a str, xs: &'a [f64], ys: &'a [f64], (width, height): (i32, i32)) -> Self {
        let smooth = gaussian_filter1d(ys, 3.0);
        let x = view(xs.iter().copied());
        let y = view(ys.iter().chain(&smooth).copied());
        // matplotlib's tick count: the axis length over twice (y) or three times (x) the label size, at most 9.
        let bins = |len: i32, per: f64| ((len as f64 * 72.0 / DPI / (11.0 * per)) as usize).clamp(1, 9);
        let ticks = (ticks(x.0, x.1, bins(width, 3.0)), ticks(y.0, y.1, bins(height, 2.0)));
        Panel { title, xs, ys, smooth, view: (x, y), ticks }
    }

    /// Draws the panel with its axes box at `(left, top, right, bottom)` pixels of `root`.
    fn draw(&self, root: &Area, (left, top, right, bottom): (i32, i32, i32, i32), with_legend: bool) -> Result<()> {
        let (w, h) = root.dim_in_pixel();
        let ((x_lo, x_hi), (y_lo, y_hi)) = self.view;
        let mut chart = ChartBuilder::on(root)
            .margin_left(left)
            .margin_top(top)
            .margin_right(w as i32 - right)
            .margin_bottom(h as i32 - bottom)
            .build_cartesian_2d(x_lo..x_hi, y_lo..y_hi)?;
        let width = px(2.0, DPI).round() as u32;
        // Markers: matplotlib's "." is a circle half the marker size (8 points) across.
        let radius = px(2.0, DPI).round() as u32;
        let (results, dotted) = (TAB10[0], TAB10[1]);
        let (dash, gap) = dots(width);
        let (values, smoothed) = (runs(self.xs, self.ys), runs(self.xs, &self.smooth));
        for run in &values {
            chart.draw_series(LineSeries::new(run.iter().copied(), results.stroke_width(width)))?;
            chart.draw_series(run.iter().map(|&p| Circle::new(p, radius, results.filled())))?;
        }
        for run in &smoothed {
            chart.draw_series(DashedLineSeries::new(run.iter().copied(), dash, gap, dotted.stroke_width(width)))?;
        }
        axes(root, &chart, (&self.ticks.0, &self.ticks.1), ("", ""), DPI)?;
        let title_at = ((left + right) / 2, top - px(6.0, DPI) as i32);
        text(root, self.title, title_at, &font(12.0, DPI), HPos::Center, VPos::Bottom)?;
        if with_legend {
            let entries = vec![
                ("results".to_string(), Handle::Marked(results, width, radius)),
                ("smooth".to_string(), Handle::Dotted(dotted, width)),
            ];
            let legend = Legend::new(root, entries, font(11.0, DPI))?;
            let lines: Vec<Vec<(i32, i32)>> = values
                .iter()
                .chain(&smoothed)
                .map(|run| run.iter().map(|p| chart.backend_coord(p)).collect())
                .collect();
            legend.draw(root, best_place((left, top, right, bottom), legend.size, &lines))?;
        }
        Ok(())
    }
}

/// matplotlib's `loc="best"`: of its candidate places inside the axes box (upper right, upper left, lower left,
/// lower right, right, center left, lower center, upper center, center), the first that covers the fewest line
/// vertices plus line segments.
fn best_place(
    (left, top, right, bottom): (i32, i32, i32, i32),
    (w, h): (i32, i32),
    lines: &[Vec<(i32, i32)>],
) -> (i32, i32) {
    let pad = px(5.5, DPI) as i32;
    let (x_left, x_mid, x_right) = (left + pad, (left + right - w) / 2, right - pad - w);
    let (y_top, y_mid, y_bottom) = (top + pad, (top + bottom - h) / 2, bottom - pad - h);
    let places = [
        (x_right, y_top),
        (x_left, y_top),
        (x_left, y_bottom),
        (x_right, y_bottom),
        (x_right, y_mid),
        (x_left, y_mid),
        (x_mid, y_bottom),
        (x_mid, y_top),
        (x_mid, y_mid),
    ];
    let inside = |(x, y): (i32, i32), (px, py): (i32, i32)| (x..=x + w).contains(&px) && (y..=y + h).contains(&py);
    // A segment counts when any of 16 points along it is inside.
    let crosses = |at: (i32, i32), a: (i32, i32), b: (i32, i32)| {
        (0..=16).any(|k| {
            let t = k as f64 / 16.0;
            let p = (a.0 + ((b.0 - a.0) as f64 * t) as i32, a.1 + ((b.1 - a.1) as f64 * t) as i32);
            inside(at, p)
        })
    };
    let badness = |at: (i32, i32)| {
        let vertices = lines.iter().flatten().filter(|&&p| inside(at, p)).count();
        let segments = lines.iter().flat_map(|l| l.windows(2)).filter(|s| crosses(at, s[0], s[1])).count();
        vertices + segments
    };
    // min_by_key keeps the first of equals, as matplotlib does.
    places.into_iter().min_by_key(|&at| badness(at)).expect("places")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: &[f64], b: &[f64]) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-12)
    }

    /// Expected values printed by scipy 1.17.1's `scipy.ndimage.gaussian_filter1d(np.array(y, float), sigma=3)`
    /// (Ultralytics' own NumPy version gives the same to 2e-15). The 3-value input reaches past both edges
    /// several times.
    #[test]
    fn gaussian_filter1d_matches_scipy() {
        let y: Vec<f64> = (0..20).map(|i| ((i * i) % 7) as f64 - 0.5 * i as f64).collect();
        let scipy = [
            0.7049603165473506,
            0.6344175496774263,
            0.4794424242763724,
            0.2244353013370644,
            -0.13220128080144583,
            -0.5703794428548377,
            -1.0535199173308596,
            -1.5449040978229602,
            -2.0242334709598873,
            -2.493789343067866,
            -2.9695838609868384,
            -3.4640392480852804,
            -3.972009741405386,
            -4.468048699500049,
            -4.91688411884704,
            -5.288685209959592,
            -5.569581991476977,
            -5.762342933465136,
            -5.879301730920977,
            -5.933750504353084,
        ];
        assert!(close(&gaussian_filter1d(&y, 3.0), &scipy), "{:?}", gaussian_filter1d(&y, 3.0));
        let scipy = [2.3225586920339905, 2.3333290945137874, 2.344112213452222];
        assert!(close(&gaussian_filter1d(&[1.0, 2.0, 4.0], 3.0), &scipy));
        assert!(close(&gaussian_filter1d(&[2.5], 3.0), &[2.5]));
        assert!(gaussian_filter1d(&[], 3.0).is_empty());
    }

    #[test]
    fn nan_spreads_over_the_kernel() {
        let mut y = vec![1.0; 40];
        y[0] = f64::NAN;
        let s = gaussian_filter1d(&y, 3.0);
        assert!(s[..13].iter().all(|v| v.is_nan()));
        assert!(s[13..].iter().all(|v| (v - 1.0).abs() < 1e-12));
    }
}
