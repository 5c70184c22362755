//! Label validation on a corpus of broken files: each bad case is named, counted and skipped.

use crate::common;

use std::path::Path;

use common::{write, write_image};
use ember::data::labels::parse_labels;
use ember::data::scan::scan_split;
use ember::data::Split;

const NC: usize = 3;

fn reason_for<'a>(scan: &'a ember::data::SplitScan, stem: &str) -> &'a str {
    scan.corrupt
        .iter()
        .find(|c| c.image.file_stem().unwrap() == stem)
        .map(|c| c.reason.as_str())
        .unwrap_or_else(|| panic!("{stem} should be corrupt"))
}

#[test]
fn a_corpus_of_bad_files_is_counted_and_each_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images/train");
    let labels = dir.path().join("labels/train");
    let label_cases: &[(&str, &str)] = &[
        ("good", "0 0.5 0.5 0.2 0.2\n1 0.25 0.25 0.1 0.1\n"),
        ("empty", ""),
        ("text", "0 0.5 0.5 0.2 0.2\n0 0.5 abc 0.2 0.2\n"),
        ("arity", "0 0.5 0.5 0.2\n"),
        ("class_range", "0 0.5 0.5 0.2 0.2\n\n3 0.5 0.5 0.1 0.1\n"),
        ("class_negative", "-1 0.5 0.5 0.2 0.2\n"),
        ("class_fraction", "1.5 0.5 0.5 0.2 0.2\n"),
        ("clipped", "2 0.95 0.5 0.2 0.2\n"),
        ("pixels", "0 320 240 50 60\n"),
        ("zero_size", "0 0.5 0.5 0 0.1\n"),
        ("duplicates", "1 0.5 0.5 0.2 0.2\n1 0.5 0.5 0.2 0.2\n0 0.1 0.1 0.1 0.1\n"),
        ("polygon", "2 0.1 0.1 0.3 0.1 0.3 0.4 0.1 0.4\n"),
    ];
    for (stem, text) in label_cases {
        write_image(&images.join(format!("{stem}.png")), (64, 48), None, [0, 0, 0]);
        write(&labels.join(format!("{stem}.txt")), text);
    }
    // No label file at all: a background image.
    write_image(&images.join("unlabelled.jpg"), (64, 48), None, [0, 0, 0]);
    // Broken images.
    write(&images.join("garbage.jpg"), "this is not a JPEG");
    let mut jpeg = Vec::new();
    image::RgbImage::new(64, 48).write_to(&mut std::io::Cursor::new(&mut jpeg), image::ImageFormat::Jpeg).unwrap();
    std::fs::write(images.join("truncated.jpg"), &jpeg[..jpeg.len() / 2]).unwrap();
    write_image(&images.join("tiny.png"), (8, 8), None, [0, 0, 0]);

    let scan = scan_split(std::slice::from_ref(&images), NC, Split::Train).unwrap();

    assert_eq!(scan.images(), 16);
    assert_eq!(scan.corrupt.len(), 10, "{:#?}", scan.corrupt);
    assert_eq!(scan.backgrounds(), 2, "empty label file and missing label file");
    assert_eq!(scan.labelled(), 4, "good, clipped, duplicates, polygon");
    assert_eq!(scan.instances(), 2 + 1 + 2 + 1);
    assert_eq!(scan.clipped, 1);
    assert_eq!(scan.duplicates, 1);
    assert_eq!(scan.instances_per_class(), vec![2, 2, 2]);

    let r = reason_for(&scan, "text");
    assert!(r.contains("text.txt:2") && r.contains("'abc' is not a number"), "{r}");
    let r = reason_for(&scan, "arity");
    assert!(r.contains("arity.txt:1") && r.contains("expected 5 values") && r.contains("found 4"), "{r}");
    let r = reason_for(&scan, "class_range");
    assert!(
        r.contains("class_range.txt:3") && r.contains("class id 3 is out of range") && r.contains("3 classes"),
        "{r}"
    );
    let r = reason_for(&scan, "class_negative");
    assert!(r.contains("class_negative.txt:1") && r.contains("not a whole number >= 0"), "{r}");
    assert!(reason_for(&scan, "class_fraction").contains("'1.5'"));
    let r = reason_for(&scan, "pixels");
    assert!(r.contains("pixels.txt:1") && r.contains("not normalised"), "{r}");
    assert!(reason_for(&scan, "zero_size").contains("must be positive"));
    let r = reason_for(&scan, "garbage");
    assert!(r.contains("garbage.jpg"), "{r}");
    let r = reason_for(&scan, "truncated");
    assert!(r.contains("truncated.jpg") && r.contains("truncated"), "{r}");
    assert!(reason_for(&scan, "tiny").contains("smaller than 10 pixels"));

    let summary = scan.summary_line();
    assert!(summary.starts_with("train: 16 images, 4 labelled, 2 backgrounds, 10 corrupt, 6 instances"), "{summary}");
    assert!(summary.contains("1 boxes clipped") && summary.contains("1 duplicate labels dropped"), "{summary}");
}

#[test]
fn clipping_and_polygons_give_the_expected_boxes() {
    let f = Path::new("x.txt");
    let p = parse_labels("2 0.95 0.5 0.2 0.2\n", NC, f).unwrap();
    let [cx, cy, w, h] = p.boxes[0].xywh;
    assert!((cx - 0.925).abs() < 1e-6 && (w - 0.15).abs() < 1e-6 && (cy - 0.5).abs() < 1e-6 && (h - 0.2).abs() < 1e-6);
    let p = parse_labels("2 0.1 0.1 0.3 0.1 0.3 0.4 0.1 0.4\n", NC, f).unwrap();
    let [cx, cy, w, h] = p.boxes[0].xywh;
    assert!((cx - 0.2).abs() < 1e-6 && (cy - 0.25).abs() < 1e-6 && (w - 0.2).abs() < 1e-6 && (h - 0.3).abs() < 1e-6);
    assert_eq!(p.boxes[0].class, 2);
    // Blank lines and surrounding whitespace are fine.
    assert_eq!(parse_labels("\n  0 0.5 0.5 0.1 0.1  \n\n", NC, f).unwrap().boxes.len(), 1);
}

#[test]
fn coco128_counts_match_ultralytics() {
    let root = common::shared_datasets().join("coco128/images/train2017");
    let scan = scan_split(&[root], 80, Split::Train).unwrap();
    assert_eq!(
        (scan.images(), scan.labelled(), scan.backgrounds(), scan.corrupt.len(), scan.instances()),
        (128, 126, 2, 0, 929)
    );
    assert_eq!(scan.instances_per_class()[0], 254, "persons in coco128");
}
