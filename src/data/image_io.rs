//! Image decoding: JPEG, PNG, BMP and WebP, turned upright by their EXIF orientation.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use anyhow::{bail, Context, Result};
use image::{DynamicImage, ImageDecoder, ImageReader, RgbImage};

/// File extensions that are treated as images.
pub const IMAGE_EXTENSIONS: &[&str] = &["jpg", "jpeg", "png", "bmp", "webp"];

/// Whether `path` has one of [`IMAGE_EXTENSIONS`] (any case); the file itself is not read.
pub fn is_image_path(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// Size of an image as it will be seen after orientation, read from its header, with the cheap
/// checks that catch most broken files (unknown format, tiny image, JPEG cut short).
pub fn probe(path: &Path) -> Result<(u32, u32)> {
    let reader = ImageReader::open(path)
        .with_context(|| format!("cannot open {}", path.display()))?
        .with_guessed_format()
        .with_context(|| format!("cannot read {}", path.display()))?;
    let format = reader.format();
    let mut decoder = reader.into_decoder().with_context(|| format!("{}: not a readable image", path.display()))?;
    let (w, h) = decoder.dimensions();
    let orientation = decoder.orientation().unwrap_or(image::metadata::Orientation::NoTransforms);
    if w < 10 || h < 10 {
        bail!("{}: image is {w}x{h}, smaller than 10 pixels", path.display());
    }
    if format == Some(image::ImageFormat::Jpeg) && !jpeg_has_end_marker(path)? {
        bail!("{}: truncated JPEG (no end-of-image marker)", path.display());
    }
    use image::metadata::Orientation::*;
    Ok(match orientation {
        Rotate90 | Rotate270 | Rotate90FlipH | Rotate270FlipH => (h, w),
        _ => (w, h),
    })
}

fn jpeg_has_end_marker(path: &Path) -> Result<bool> {
    let mut f = std::fs::File::open(path)?;
    let len = f.metadata()?.len();
    if len < 4 {
        return Ok(false);
    }
    // Some encoders pad after the marker; look at the last few bytes.
    let tail_len = len.min(64);
    f.seek(SeekFrom::End(-(tail_len as i64)))?;
    let mut tail = vec![0u8; tail_len as usize];
    f.read_exact(&mut tail)?;
    Ok(tail.windows(2).any(|w| w == [0xFF, 0xD9]))
}

/// Decodes an image to 8-bit RGB, upright. Clean JPEGs go through libjpeg-turbo (the pixels OpenCV
/// gives Ultralytics); anything libjpeg rejects or warns about, and other formats, through `image`.
pub fn decode_rgb(path: &Path) -> Result<RgbImage> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    if bytes.starts_with(&[0xFF, 0xD8]) {
        if let Ok(px) = super::jpeg::decode_rgb(&bytes) {
            let orientation = image::codecs::jpeg::JpegDecoder::new(std::io::Cursor::new(&bytes))
                .ok()
                .and_then(|mut d| d.orientation().ok())
                .unwrap_or(image::metadata::Orientation::NoTransforms);
            let img = RgbImage::from_raw(px.width, px.height, px.data).context("libjpeg returned a short image")?;
            let mut img = DynamicImage::ImageRgb8(img);
            img.apply_orientation(orientation);
            return Ok(img.into_rgb8());
        }
    }
    decode_with_image_crate(&bytes, path)
}

fn decode_with_image_crate(bytes: &[u8], path: &Path) -> Result<RgbImage> {
    let reader = ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .with_context(|| format!("cannot read {}", path.display()))?;
    let mut decoder = reader.into_decoder().with_context(|| format!("{}: not a readable image", path.display()))?;
    let orientation = decoder.orientation().unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut img =
        DynamicImage::from_decoder(decoder).with_context(|| format!("{}: corrupt image data", path.display()))?;
    img.apply_orientation(orientation);
    Ok(img.into_rgb8())
}
