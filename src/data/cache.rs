//! Decoded images, as Ultralytics' `load_image` makes them (long side resized to `imgsz`, aspect kept),
//! optionally kept between epochs: in memory (`--cache ram`) or as raw RGB files (`--cache disk`).

use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use anyhow::{Context, Result};
use image::RgbImage;

use super::image_io::decode_rgb;
use super::Sample;
use crate::config::CacheMode;

const DISK_MAGIC: &[u8; 4] = b"EMB1";

/// Decodes `path` and scales it so that its long side is `imgsz` (never larger than `imgsz`).
pub fn load_resized(path: &Path, imgsz: u32) -> Result<RgbImage> {
    let img = decode_rgb(path)?;
    Ok(resize_long_side(img, imgsz))
}

/// Ultralytics' sizes: `r = imgsz / max(w, h)`, each side `min(ceil(side * r), imgsz)`.
pub fn resize_long_side(img: RgbImage, imgsz: u32) -> RgbImage {
    let (w0, h0) = img.dimensions();
    let r = imgsz as f64 / w0.max(h0) as f64;
    if (r - 1.0).abs() < 1e-9 {
        return img;
    }
    let (w, h) = (((w0 as f64 * r).ceil() as u32).clamp(1, imgsz), ((h0 as f64 * r).ceil() as u32).clamp(1, imgsz));
    if (w, h) == (w0, h0) {
        return img;
    }
    crate::data::resize::resize_linear(&img, w, h)
}

/// Where the images of one split come from.
pub struct ImageStore {
    imgsz: u32,
    mode: CacheMode,
    ram: Vec<OnceLock<Arc<RgbImage>>>,
    disk_dir: PathBuf,
}

impl ImageStore {
    /// A store for `samples` at `imgsz`. `disk_dir` holds `--cache disk` files (created when needed).
    pub fn new(samples: usize, imgsz: u32, mode: CacheMode, disk_dir: Option<PathBuf>) -> ImageStore {
        let ram = if mode == CacheMode::Ram { (0..samples).map(|_| OnceLock::new()).collect() } else { Vec::new() };
        ImageStore { imgsz, mode, ram, disk_dir: disk_dir.unwrap_or_else(default_disk_dir) }
    }

    /// A store that caches nothing: every [`load`](Self::load) decodes and resizes the file again.
    pub fn uncached(imgsz: u32) -> ImageStore {
        ImageStore::new(0, imgsz, CacheMode::Off, None)
    }

    /// The long side, in pixels, that images are resized to.
    pub fn imgsz(&self) -> u32 {
        self.imgsz
    }

    /// Where images are kept between epochs (`--cache`: off, ram or disk).
    pub fn mode(&self) -> CacheMode {
        self.mode
    }

    /// The image of sample `index`, resized to `imgsz` on its long side.
    pub fn load(&self, index: usize, sample: &Sample) -> Result<Arc<RgbImage>> {
        match self.mode {
            CacheMode::Ram if index < self.ram.len() => {
                if let Some(img) = self.ram[index].get() {
                    return Ok(img.clone());
                }
                let img = Arc::new(load_resized(&sample.image, self.imgsz)?);
                Ok(self.ram[index].get_or_init(|| img).clone())
            }
            CacheMode::Disk => self.load_disk(&sample.image).map(Arc::new),
            _ => load_resized(&sample.image, self.imgsz).map(Arc::new),
        }
    }

    /// Bytes held in memory by the RAM cache.
    pub fn ram_bytes(&self) -> usize {
        self.ram.iter().filter_map(|c| c.get()).map(|i| i.as_raw().len()).sum()
    }

    fn disk_path(&self, image: &Path) -> PathBuf {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        image.hash(&mut h);
        self.imgsz.hash(&mut h);
        if let Ok(meta) = std::fs::metadata(image) {
            meta.len().hash(&mut h);
            if let Ok(t) = meta.modified() {
                t.hash(&mut h);
            }
        }
        let stem = image.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        self.disk_dir.join(format!("{stem}-{:016x}.rgb", h.finish()))
    }

    fn load_disk(&self, image: &Path) -> Result<RgbImage> {
        let file = self.disk_path(image);
        if let Ok(bytes) = std::fs::read(&file) {
            if let Some(img) = parse_raw(bytes) {
                return Ok(img);
            }
        }
        let img = load_resized(image, self.imgsz)?;
        std::fs::create_dir_all(&self.disk_dir)
            .with_context(|| format!("cannot create {}", self.disk_dir.display()))?;
        // Write beside, then rename: a reader never sees half a file.
        let tmp = file.with_extension(format!("tmp{}", std::process::id()));
        let mut f = std::fs::File::create(&tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
        f.write_all(DISK_MAGIC)?;
        f.write_all(&img.width().to_le_bytes())?;
        f.write_all(&img.height().to_le_bytes())?;
        f.write_all(img.as_raw())?;
        drop(f);
        std::fs::rename(&tmp, &file).with_context(|| format!("cannot write {}", file.display()))?;
        Ok(img)
    }
}

fn parse_raw(mut bytes: Vec<u8>) -> Option<RgbImage> {
    if bytes.len() < 12 || &bytes[..4] != DISK_MAGIC {
        return None;
    }
    let w = u32::from_le_bytes(bytes[4..8].try_into().ok()?);
    let h = u32::from_le_bytes(bytes[8..12].try_into().ok()?);
    if bytes.len() != 12 + w as usize * h as usize * 3 {
        return None;
    }
    bytes.drain(..12);
    RgbImage::from_raw(w, h, bytes)
}

/// `$EMBER_CACHE_DIR`, else `~/.cache/ember/images` (datasets may be read-only, so nothing is written beside them).
pub fn default_disk_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("EMBER_CACHE_DIR") {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
    home.join(".cache/ember/images")
}
