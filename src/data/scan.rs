//! Scanning a split: find its images, check each image and label file, count what was found.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use rayon::prelude::*;

use super::image_io::{is_image_path, probe};
use super::labels::{label_path_for, parse_labels, BoxLabel};
use super::polygon::Polygon;
use super::Split;

/// A usable image with its boxes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sample {
    /// The image file.
    pub image: PathBuf,
    /// Width and height after EXIF orientation.
    pub size: (u32, u32),
    /// Its boxes, normalised xywh; empty for a background image (no label file, or an empty one).
    pub labels: Vec<BoxLabel>,
    /// The polygon of each label (normalised, unclipped) when its file held polygon lines; else empty.
    pub polygons: Vec<Polygon>,
}

/// An image that was skipped, and why.
#[derive(Debug, Clone)]
pub struct CorruptImage {
    /// The image file.
    pub image: PathBuf,
    /// The image or label problem, for the user (a label problem names its file and line).
    pub reason: String,
}

/// What a split holds, after checks.
#[derive(Debug, Clone)]
pub struct SplitScan {
    /// Which split this is.
    pub split: Split,
    /// The dataset's number of classes; label class ids were checked against it.
    pub nc: usize,
    /// The usable images, in the sorted order of [`collect_images`].
    pub samples: Vec<Sample>,
    /// The images left out, with why.
    pub corrupt: Vec<CorruptImage>,
    /// Boxes clipped to the image.
    pub clipped: usize,
    /// Duplicate label lines dropped.
    pub duplicates: usize,
}

impl SplitScan {
    /// All image files found, usable or not.
    pub fn images(&self) -> usize {
        self.samples.len() + self.corrupt.len()
    }
    /// Usable images with at least one box.
    pub fn labelled(&self) -> usize {
        self.samples.iter().filter(|s| !s.labels.is_empty()).count()
    }
    /// Usable images with no boxes (no label file, or an empty one).
    pub fn backgrounds(&self) -> usize {
        self.samples.iter().filter(|s| s.labels.is_empty()).count()
    }
    /// Boxes over all usable images.
    pub fn instances(&self) -> usize {
        self.samples.iter().map(|s| s.labels.len()).sum()
    }
    /// Boxes per class id, `nc` entries.
    pub fn instances_per_class(&self) -> Vec<usize> {
        let mut counts = vec![0; self.nc];
        for b in self.samples.iter().flat_map(|s| &s.labels) {
            counts[b.class] += 1;
        }
        counts
    }

    /// One line, e.g. `train: 128 images, 126 labelled, 2 backgrounds, 0 corrupt, 929 instances`.
    pub fn summary_line(&self) -> String {
        let mut line = format!(
            "{}: {} images, {} labelled, {} backgrounds, {} corrupt, {} instances",
            self.split,
            self.images(),
            self.labelled(),
            self.backgrounds(),
            self.corrupt.len(),
            self.instances()
        );
        if self.clipped > 0 {
            let _ = write!(line, ", {} boxes clipped to the image", self.clipped);
        }
        if self.duplicates > 0 {
            let _ = write!(line, ", {} duplicate labels dropped", self.duplicates);
        }
        line
    }
}

/// Every image file a split's sources name, in a stable (sorted, de-duplicated) order.
pub fn collect_images(sources: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut found = BTreeSet::new();
    for source in sources {
        if source.is_dir() {
            walk(source, &mut found).with_context(|| format!("cannot list {}", source.display()))?;
        } else if source.extension().is_some_and(|e| e == "txt") {
            let text = std::fs::read_to_string(source)
                .with_context(|| format!("cannot read the image list {}", source.display()))?;
            let parent = source.parent().unwrap_or(Path::new(""));
            for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
                let p = Path::new(line);
                found.insert(if p.is_absolute() {
                    p.to_path_buf()
                } else {
                    parent.join(line.trim_start_matches("./"))
                });
            }
        } else if source.is_file() && is_image_path(source) {
            found.insert(source.clone());
        } else if !source.exists() {
            bail!("{} does not exist", source.display());
        } else {
            bail!("{} is neither a folder, a .txt list of images, nor an image", source.display());
        }
    }
    Ok(found.into_iter().collect())
}

fn walk(dir: &Path, out: &mut BTreeSet<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            walk(&path, out)?;
        } else if is_image_path(&path) {
            out.insert(path);
        }
    }
    Ok(())
}

/// Checks every image and label of a split (in parallel) and counts the results.
pub fn scan_split(sources: &[PathBuf], nc: usize, split: Split) -> Result<SplitScan> {
    let images = collect_images(sources)?;
    let checked: Vec<_> = images.par_iter().map(|img| check_one(img, nc)).collect();
    let mut scan = SplitScan { split, nc, samples: vec![], corrupt: vec![], clipped: 0, duplicates: 0 };
    for (image, result) in images.into_iter().zip(checked) {
        match result {
            Ok((sample, clipped, duplicates)) => {
                scan.clipped += clipped;
                scan.duplicates += duplicates;
                scan.samples.push(sample);
            }
            Err(reason) => scan.corrupt.push(CorruptImage { image, reason }),
        }
    }
    Ok(scan)
}

fn check_one(image: &Path, nc: usize) -> Result<(Sample, usize, usize), String> {
    let size = probe(image).map_err(|e| format!("{e:#}"))?;
    let label_file = label_path_for(image);
    let parsed = match std::fs::read(&label_file) {
        Ok(bytes) => {
            let text = String::from_utf8(bytes)
                .map_err(|_| format!("{}: label file is not UTF-8 text", label_file.display()))?;
            parse_labels(&text, nc, &label_file).map_err(|e| e.to_string())?
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Default::default(),
        Err(e) => return Err(format!("{}: {e}", label_file.display())),
    };
    let sample = Sample { image: image.to_path_buf(), size, labels: parsed.boxes, polygons: parsed.polygons };
    Ok((sample, parsed.clipped, parsed.duplicates))
}

/// Ultralytics' `verify_labels` for detection: a split's polygons are used only when every box has one;
/// when box-only and polygon files are mixed, all polygons are dropped. Returns the (boxes, polygons)
/// counts when it dropped them.
pub fn drop_mixed_polygons(samples: &mut [Sample]) -> Option<(usize, usize)> {
    let boxes: usize = samples.iter().map(|s| s.labels.len()).sum();
    let polygons: usize = samples.iter().map(|s| s.polygons.len()).sum();
    if polygons == 0 || polygons == boxes {
        return None;
    }
    samples.iter_mut().for_each(|s| s.polygons = Vec::new());
    Some((boxes, polygons))
}
