//! The `--plots` PNGs and `results.png`: written at Ultralytics' sizes, with text (tick values, labels, legends,
//! class names as written) and a smoothed trace, and no panic on degenerate input. With `EMBER_PLOTS_OUT=dir` the
//! images are kept there for a look.

use std::path::{Path, PathBuf};

use ember::metrics::plots::{plot_confusion_matrix, plot_pr_curve};
use ember::metrics::{save_plots, DetectionAccumulator, DetectionMetrics};
use ember::postprocess::Detection;
use ember::train::results::plot_results;
use image::RgbImage;

/// Where a test writes: `$EMBER_PLOTS_OUT/name`, kept, or a temporary folder that goes with the guard.
fn out_dir(name: &str) -> (PathBuf, Option<tempfile::TempDir>) {
    match std::env::var_os("EMBER_PLOTS_OUT") {
        Some(d) => {
            let dir = PathBuf::from(d).join(name);
            std::fs::create_dir_all(&dir).unwrap();
            (dir, None)
        }
        None => {
            let tmp = tempfile::tempdir().unwrap();
            (tmp.path().to_path_buf(), Some(tmp))
        }
    }
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// Three classes, 20 images: some matches, some misses, some confusions.
fn accumulator() -> DetectionAccumulator {
    let mut acc = DetectionAccumulator::new(3).with_confusion_matrix(0.001, 0.45);
    for i in 0..20 {
        let o = i as f32 * 30.0;
        let gt = [[o, o, o + 20.0, o + 20.0], [o + 5.0, o, o + 15.0, o + 30.0]];
        let preds = [
            Detection { xyxy: [o + 1.0, o, o + 20.0, o + 21.0], score: 0.3 + 0.03 * i as f32, class: 0 },
            Detection {
                xyxy: [o + 5.0, o + 2.0, o + 15.0, o + 30.0],
                score: 0.9 - 0.02 * i as f32,
                class: (i % 3) as usize,
            },
            Detection { xyxy: [o + 50.0, o, o + 60.0, o + 10.0], score: 0.2, class: 2 },
        ];
        acc.add_image(&preds, &gt, &[0, (i % 2) as usize]).unwrap();
    }
    acc
}

fn metrics() -> DetectionMetrics {
    accumulator().finish()
}

fn open(path: &Path) -> RgbImage {
    image::open(path).unwrap().to_rgb8()
}

/// Pixels in `x0..x1` x `y0..y1` that `f` accepts.
fn count(img: &RgbImage, (x0, y0, x1, y1): (u32, u32, u32, u32), f: impl Fn([u8; 3]) -> bool) -> usize {
    (y0..y1.min(img.height()))
        .flat_map(|y| (x0..x1.min(img.width())).map(move |x| (x, y)))
        .filter(|&(x, y)| f(img.get_pixel(x, y).0))
        .count()
}

fn dark(p: [u8; 3]) -> bool {
    p.iter().all(|&c| c < 100)
}

fn differs(a: &RgbImage, b: &RgbImage, (x0, y0, x1, y1): (u32, u32, u32, u32)) -> bool {
    (y0..y1).any(|y| (x0..x1).any(|x| a.get_pixel(x, y) != b.get_pixel(x, y)))
}

#[test]
fn validation_plots_have_text_at_ultralytics_sizes() {
    let acc = accumulator();
    let m = acc.finish();
    let (dir, _tmp) = out_dir("val");
    let files = save_plots(&m, acc.confusion_matrix(), &names(&["person", "bicycle", "car"]), &dir).unwrap();
    let file_names: Vec<_> = files.iter().map(|f| f.file_name().unwrap().to_str().unwrap().to_string()).collect();
    assert_eq!(
        file_names,
        [
            "BoxPR_curve.png",
            "BoxF1_curve.png",
            "BoxP_curve.png",
            "BoxR_curve.png",
            "confusion_matrix_normalized.png",
            "confusion_matrix.png"
        ]
    );
    for f in &files[..4] {
        let img = open(f);
        assert_eq!(img.dimensions(), (2250, 1500), "{}", f.display());
        // Title above the axes, tick values and the axis label left of and below them, the legend on the right.
        for (what, region) in [
            ("title", (180, 0, 1473, 90)),
            ("y tick values and label", (0, 96, 170, 1344)),
            ("x tick values", (180, 1360, 1473, 1420)),
            ("x label", (180, 1420, 1473, 1500)),
            ("legend", (1500, 96, 2250, 400)),
        ] {
            assert!(count(&img, region, dark) > 200, "{}: no {what}", f.display());
        }
        // The mean curve, in matplotlib's "blue".
        assert!(count(&img, (180, 96, 1473, 1344), |p| p == [0, 0, 255]) > 5000, "{}", f.display());
    }
    for f in &files[4..] {
        let img = open(f);
        assert_eq!(img.dimensions(), (3000, 2250), "{}", f.display());
        // Class names left of the matrix and below it, cells in shades of blue.
        assert!(count(&img, (0, 135, 700, 1700), dark) > 1000, "{}: no row names", f.display());
        assert!(count(&img, (700, 1700, 2280, 2250), dark) > 1000, "{}: no column names", f.display());
        assert!(count(&img, (700, 135, 2280, 1700), |p| p[2] > p[0] + 40) > 100_000, "{}: no cells", f.display());
    }
}

#[test]
fn class_names_are_drawn_as_written() {
    let m = metrics();
    let (dir, _tmp) = out_dir("case");
    let (lower, upper) = (dir.join("lower.png"), dir.join("upper.png"));
    plot_pr_curve(&m, &names(&["person", "bicycle", "car"]), &lower).unwrap();
    plot_pr_curve(&m, &names(&["PERSON", "BICYCLE", "CAR"]), &upper).unwrap();
    let (a, b) = (open(&lower), open(&upper));
    assert!(differs(&a, &b, (1500, 96, 2250, 400)), "legends are the same");
    assert!(!differs(&a, &b, (0, 0, 1480, 1500)), "the axes should not depend on the names");

    let acc = accumulator();
    let cm = acc.confusion_matrix().unwrap();
    let (lower, upper) = (dir.join("cm_lower.png"), dir.join("cm_upper.png"));
    plot_confusion_matrix(cm, &names(&["person", "bicycle", "car"]), false, &lower).unwrap();
    plot_confusion_matrix(cm, &names(&["PERSON", "BICYCLE", "CAR"]), false, &upper).unwrap();
    assert!(differs(&open(&lower), &open(&upper), (0, 135, 700, 1700)), "row names are the same");
}

#[test]
fn many_classes_are_grey_and_unnamed() {
    let nc = 120;
    let mut acc = DetectionAccumulator::new(nc).with_confusion_matrix(0.001, 0.45);
    // Class c: a match, then c % 3 false positives scored above it, so that its precision is 1, 1/2 or 1/3.
    for c in 0..nc {
        let o = c as f32 * 20.0;
        let mut preds = vec![Detection { xyxy: [o, o, o + 10.0, o + 10.0], score: 0.5, class: c }];
        for k in 0..c % 3 {
            let f = o + 1000.0 + 20.0 * k as f32;
            preds.push(Detection { xyxy: [f, f, f + 10.0, f + 10.0], score: 0.9, class: c });
        }
        acc.add_image(&preds, &[[o, o, o + 10.0, o + 10.0]], &[c]).unwrap();
    }
    let m = acc.finish();
    let class_names: Vec<String> = (0..nc).map(|c| format!("class{c}")).collect();
    let (dir, _tmp) = out_dir("many");
    let files = save_plots(&m, acc.confusion_matrix(), &class_names, &dir).unwrap();
    let pr = open(&files[0]);
    // One legend row, the mean; the per-class lines in grey.
    assert!(count(&pr, (1500, 96, 2250, 200), dark) > 200);
    assert_eq!(count(&pr, (1500, 200, 2250, 1500), dark), 0);
    assert!(count(&pr, (180, 96, 1473, 1344), |p| p == [128, 128, 128]) > 1000);
    // 120 classes: every second class and background, with names.
    let cm = open(&files[5]);
    assert_eq!(cm.dimensions(), (3000, 2250));
    assert!(count(&cm, (0, 135, 700, 1900), dark) > 1000);
}

const HEADER: &str = "epoch,time,train/box_loss,train/cls_loss,train/l1_loss,metrics/precision(B),metrics/recall(B),\
metrics/mAP50(B),metrics/mAP50-95(B),val/box_loss,val/cls_loss,val/l1_loss,lr/pg0,lr/pg1,lr/pg2,loss_scale";

fn results_png(name: &str, rows: &[String]) -> RgbImage {
    let (dir, _tmp) = out_dir(name);
    let csv = dir.join("results.csv");
    std::fs::write(&csv, format!("{HEADER}\n{}\n", rows.join("\n"))).unwrap();
    let png = dir.join("results.png");
    plot_results(&csv, &png).unwrap();
    open(&png)
}

#[test]
fn results_png_has_values_and_a_smooth_trace() {
    let rows: Vec<String> = (1..=30)
        .map(|e| {
            let loss = 2.0 * (-(e as f64) / 10.0).exp() + 0.1 * ((e * 7) % 5) as f64 / 5.0;
            let metric = 1.0 - (-(e as f64) / 8.0).exp();
            let l = format!("{loss:.5}");
            let m = format!("{metric:.5}");
            format!("{e},{},{l},{l},{l},{m},{m},{m},{m},{l},{l},{l},0.01,0.01,0.01,65536", e * 10)
        })
        .collect();
    let img = results_png("results", &rows);
    // Ten panels (loss_scale is not one): (10 + 2) x 6 inches at 200 dpi.
    assert_eq!(img.dimensions(), (2400, 1200));
    let (cw, ch) = (480, 600);
    for k in 0..10 {
        let (x, y) = ((k % 5) * cw, (k / 5) * ch);
        let title = (x + 90, y, x + cw - 20, y + 60);
        // Clear of the tick marks, which are drawn without text too.
        let y_ticks = (x, y + 68, x + 75, y + ch - 70);
        let x_ticks = (x + 90, y + ch - 55, x + cw - 20, y + ch);
        for (what, region) in [("title", title), ("y tick values", y_ticks), ("x tick values", x_ticks)] {
            assert!(count(&img, region, dark) > 100, "panel {k}: no {what}");
        }
        let axes = (x + 90, y + 68, x + cw - 20, y + ch - 70);
        assert!(count(&img, axes, |p| p == [31, 119, 180]) > 1000, "panel {k}: no results line");
        assert!(count(&img, axes, |p| p == [255, 127, 14]) > 300, "panel {k}: no smooth trace");
    }
    // The legend ("results", "smooth") in the second panel only.
    let legend = |x: u32| (x + 200, 80, x + 440, 200);
    assert!(count(&img, legend(cw), dark) > 300);
    assert_eq!(count(&img, legend(2 * cw), dark), 0);
}

#[test]
fn degenerate_inputs_do_not_panic() {
    let one = results_png("one_row", &["1,10,1.5,2.5,1.1,0.1,0.2,0.05,0.01,1.6,2.6,1.2,0.01,0.01,0.01,1".into()]);
    assert_eq!(one.dimensions(), (2400, 1200));
    let holes = results_png(
        "holes",
        &[
            "1,10,1.5,,1.1,0.1,0.2,0.05,0.01,1.6,2.6,1.2,0.01,0.01,0.01,1".into(),
            "2,20,NaN,2.4,1.0,0.2,nan,0.06,0.02,1.5,,1.1,0.01,0.01,0.01,1".into(),
            "3,30,1.3,2.3,".into(),
        ],
    );
    assert_eq!(holes.dimensions(), (2400, 1200));
    assert_eq!(results_png("no_rows", &[]).dimensions(), (2400, 1200));

    // No detections and no labels: nothing to draw but the axes and the background cell.
    let mut acc = DetectionAccumulator::new(0).with_confusion_matrix(0.001, 0.45);
    acc.add_image(&[], &[], &[]).unwrap();
    let m = acc.finish();
    let (dir, _tmp) = out_dir("empty");
    assert_eq!(save_plots(&m, acc.confusion_matrix(), &[], &dir).unwrap().len(), 6);
}
