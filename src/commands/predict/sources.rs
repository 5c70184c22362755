//! `--source`: the images to predict on.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};

use crate::data::image_io::is_image_path;

/// Expand `--source`: an image file, a folder (its images, sorted), a glob, or a `.txt` file with one path a line
/// (relative paths are taken from the list's folder). Unreadable images stay in the list and are reported later.
pub fn collect_sources(source: &str) -> Result<Vec<PathBuf>> {
    let path = Path::new(source);
    let mut out = Vec::new();
    if path.is_dir() {
        let entries = std::fs::read_dir(path).with_context(|| format!("cannot list {}", path.display()))?;
        for e in entries {
            let p = e?.path();
            if p.is_file() && is_image_path(&p) {
                out.push(p);
            }
        }
        out.sort();
        if out.is_empty() {
            bail!("{}: no images (jpg, jpeg, png, bmp, webp) in this folder", path.display());
        }
    } else if path.is_file() && path.extension().is_some_and(|e| e.eq_ignore_ascii_case("txt")) {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
            let p = Path::new(line);
            out.push(if p.is_absolute() || p.exists() { p.to_path_buf() } else { base.join(p) });
        }
        if out.is_empty() {
            bail!("{}: the list names no images", path.display());
        }
    } else if path.is_file() {
        out.push(path.to_path_buf());
    } else if source.contains(['*', '?', '[']) {
        for entry in glob::glob(source).with_context(|| format!("bad glob pattern '{source}'"))? {
            let p = entry.map_err(|e| anyhow!("{e}"))?;
            if p.is_file() && is_image_path(&p) {
                out.push(p);
            }
        }
        out.sort();
        if out.is_empty() {
            bail!("no images match '{source}'");
        }
    } else {
        bail!("source '{source}' does not exist (give an image, a folder, a glob or a .txt list)");
    }
    Ok(out)
}
