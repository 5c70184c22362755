//! The `--plots` PNGs are written, decodable, and not blank (with `EMBER_PLOTS_OUT=dir` they are kept for a look).

use ember::metrics::{save_plots, DetectionAccumulator};
use ember::postprocess::Detection;

#[test]
fn plots_are_written() {
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
    let m = acc.finish();
    let names: Vec<String> = ["person", "bicycle", "car"].iter().map(|s| s.to_string()).collect();
    let keep = std::env::var_os("EMBER_PLOTS_OUT");
    let dir = match &keep {
        Some(d) => std::path::PathBuf::from(d),
        None => tempfile::tempdir().unwrap().keep(),
    };
    let files = save_plots(&m, acc.confusion_matrix(), &names, &dir).unwrap();
    assert_eq!(files.len(), 6);
    for f in &files {
        let img = image::open(f).unwrap().to_rgb8();
        let non_white = img.pixels().filter(|p| p.0 != [255, 255, 255]).count();
        assert!(non_white > 1000, "{} looks blank", f.display());
    }
    if keep.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
}
