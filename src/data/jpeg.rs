//! JPEG decoding with libjpeg-turbo's decoder (as mozjpeg ships it), so ember sees the same pixels as
//! Ultralytics, whose OpenCV decodes with libjpeg-turbo. JPEG leaves the inverse DCT and chroma
//! upsampling to the decoder: the `image` crate's decoder differs from libjpeg-turbo by up to 4 levels on
//! a fifth of the pixels, enough to move P on coco8 by 0.01. libjpeg-turbo's accurate integer IDCT and
//! fancy upsampling (its defaults) give bit-identical pixels.
//!
//! libjpeg reports fatal errors through a callback that must not return; it unwinds here (mozjpeg-sys'
//! `unwinding` ABI) and is caught at the boundary, so a bad file is an error, never an abort.

use std::mem;
use std::panic::{catch_unwind, AssertUnwindSafe};

use mozjpeg_sys::{
    boolean, jpeg_common_struct, jpeg_create_decompress, jpeg_decompress_struct, jpeg_destroy_decompress,
    jpeg_error_mgr, jpeg_finish_decompress, jpeg_mem_src, jpeg_read_header, jpeg_read_scanlines, jpeg_start_decompress,
    jpeg_std_error, J_COLOR_SPACE,
};

/// An 8-bit RGB image: width, height, row-major pixels.
pub struct RgbPixels {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// `width * height * 3` bytes: rows top to bottom, each pixel R, G, B.
    pub data: Vec<u8>,
}

/// Why libjpeg did not produce an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JpegError {
    /// libjpeg stopped with this message.
    Fatal(String),
    /// The data decoded only with warnings (e.g. a truncated file, whose missing part libjpeg fills
    /// with grey): callers treat this as damage rather than accept the grey.
    Damaged(String),
    /// A colour space libjpeg does not convert to RGB (CMYK, YCCK).
    Unsupported(String),
}

impl std::fmt::Display for JpegError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JpegError::Fatal(m) => write!(f, "corrupt JPEG: {m}"),
            JpegError::Damaged(m) => write!(f, "damaged JPEG: {m}"),
            JpegError::Unsupported(m) => write!(f, "unsupported JPEG: {m}"),
        }
    }
}

/// Decodes a whole JPEG file held in memory to RGB (grayscale is replicated, as OpenCV does).
pub fn decode_rgb(bytes: &[u8]) -> Result<RgbPixels, JpegError> {
    if bytes.len() < 4 {
        return Err(JpegError::Fatal("file too short".into()));
    }
    // SAFETY: `bytes` outlives the decode (libjpeg reads it through `jpeg_mem_src` only inside the call), and
    // libjpeg's fatal errors unwind to here (`unwind_on_error`) instead of calling `exit`; the unwind drops
    // the decompressor, so no state outlives a failure.
    match catch_unwind(AssertUnwindSafe(|| unsafe { decode_unchecked(bytes) })) {
        Ok(result) => result,
        Err(payload) => {
            Err(JpegError::Fatal(payload.downcast::<String>().map(|m| *m).unwrap_or_else(|_| "libjpeg failed".into())))
        }
    }
}

/// Frees libjpeg's state however the decode ends, including by unwinding out of libjpeg.
struct Decompressor {
    cinfo: jpeg_decompress_struct,
}

impl Drop for Decompressor {
    fn drop(&mut self) {
        // SAFETY: `cinfo` was initialised by `jpeg_create_decompress` before the `Decompressor` could be
        // dropped, and libjpeg allows destroying a decompressor in any state.
        unsafe { jpeg_destroy_decompress(&mut self.cinfo) };
    }
}

/// # Safety
/// libjpeg's `error_exit` must unwind (it is set to `unwind_on_error` here), so the caller must catch the
/// unwind; `bytes` must stay alive for the whole call.
unsafe fn decode_unchecked(bytes: &[u8]) -> Result<RgbPixels, JpegError> {
    let mut err: Box<jpeg_error_mgr> = Box::new(mem::zeroed());
    jpeg_std_error(&mut err);
    err.error_exit = Some(unwind_on_error);
    err.emit_message = Some(keep_quiet);
    let mut dec = Box::new(Decompressor { cinfo: mem::zeroed() });
    dec.cinfo.common.err = &mut *err;
    jpeg_create_decompress(&mut dec.cinfo);
    jpeg_mem_src(&mut dec.cinfo, bytes.as_ptr(), bytes.len() as _);
    jpeg_read_header(&mut dec.cinfo, true as boolean);
    match dec.cinfo.jpeg_color_space {
        J_COLOR_SPACE::JCS_CMYK | J_COLOR_SPACE::JCS_YCCK => {
            return Err(JpegError::Unsupported(format!("{:?} colour space", dec.cinfo.jpeg_color_space)));
        }
        _ => {}
    }
    dec.cinfo.out_color_space = J_COLOR_SPACE::JCS_RGB;
    jpeg_start_decompress(&mut dec.cinfo);
    let (width, height) = (dec.cinfo.output_width, dec.cinfo.output_height);
    let stride = width as usize * 3;
    // Left unset until libjpeg has written every row (it writes them all, or fails): zeroing 1 MB an image
    // first was 1% of the loader.
    let mut data: Vec<u8> = Vec::with_capacity(stride * height as usize);
    while dec.cinfo.output_scanline < height {
        // Up to 16 rows a call (what 4:2:0 upsampling makes at once). Rows `output_scanline..` of `height`
        // lie inside `data`'s capacity of `height` rows of `stride` bytes, so libjpeg's writes stay inside.
        let first = dec.cinfo.output_scanline as usize;
        let count = (height as usize - first).min(16);
        let mut rows = [std::ptr::null_mut::<u8>(); 16];
        for (k, row) in rows.iter_mut().take(count).enumerate() {
            *row = data.as_mut_ptr().add((first + k) * stride);
        }
        if jpeg_read_scanlines(&mut dec.cinfo, rows.as_mut_ptr(), count as u32) == 0 {
            return Err(JpegError::Damaged("no more scanlines".into()));
        }
    }
    // SAFETY: libjpeg wrote all `height` rows (`output_scanline == height`).
    data.set_len(stride * height as usize);
    jpeg_finish_decompress(&mut dec.cinfo);
    if err.num_warnings > 0 {
        return Err(JpegError::Damaged(message(&mut dec.cinfo.common)));
    }
    drop(dec); // before `err`, which it points to
    Ok(RgbPixels { width, height, data })
}

/// libjpeg's text for its last message.
///
/// # Safety
/// `cinfo.err` must point to a live `jpeg_error_mgr` (set up by `jpeg_std_error`).
unsafe fn message(cinfo: &mut jpeg_common_struct) -> String {
    let err = &*cinfo.err;
    let Some(format) = err.format_message else { return format!("libjpeg message {}", err.msg_code) };
    let mut buffer = [0u8; 80];
    // mozjpeg-sys declares the buffer immutable; libjpeg writes into it, at most 80 bytes (JMSG_LENGTH_MAX),
    // so the transmuted signature with a mutable 80-byte buffer is the C function's real one.
    let format: unsafe extern "C-unwind" fn(&mut jpeg_common_struct, &mut [u8; 80]) = mem::transmute(format);
    format(cinfo, &mut buffer);
    let end = buffer.iter().position(|&c| c == 0).unwrap_or(buffer.len());
    String::from_utf8_lossy(&buffer[..end]).into_owned()
}

extern "C-unwind" fn unwind_on_error(cinfo: &mut jpeg_common_struct) {
    // SAFETY: libjpeg calls this with the decompressor whose `err` manager `decode_unchecked` set up.
    let text = unsafe { message(cinfo) };
    // resume_unwind skips the panic hook: this is an error being returned, not a bug.
    std::panic::resume_unwind(Box::new(text));
}

/// Counts warnings (level -1) as libjpeg's own handler does, without printing them.
extern "C-unwind" fn keep_quiet(cinfo: &mut jpeg_common_struct, level: std::os::raw::c_int) {
    if level < 0 {
        // SAFETY: libjpeg calls this with the decompressor whose `err` manager `decode_unchecked` set up.
        unsafe { (*cinfo.err).num_warnings += 1 };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(img: &image::RgbImage) -> Vec<u8> {
        let mut out = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90).encode_image(img).unwrap();
        out
    }

    #[test]
    fn decodes_what_was_encoded() {
        let img = image::RgbImage::from_fn(37, 21, |x, y| image::Rgb([(x * 6) as u8, (y * 12) as u8, 128]));
        let px = decode_rgb(&encode(&img)).unwrap();
        assert_eq!((px.width, px.height, px.data.len()), (37, 21, 37 * 21 * 3));
        let max_err = px.data.iter().zip(img.as_raw()).map(|(a, b)| (*a as i32 - *b as i32).abs()).max().unwrap();
        assert!(max_err < 24, "{max_err}");
    }

    #[test]
    fn bad_data_is_an_error_not_a_crash() {
        assert!(matches!(decode_rgb(b"\xff\xd8\xff\xe0 this is not a jpeg"), Err(JpegError::Fatal(_))));
        assert!(matches!(decode_rgb(b"xy"), Err(JpegError::Fatal(_))));
        let img = image::RgbImage::from_fn(64, 64, |x, y| image::Rgb([x as u8 * 4, y as u8 * 4, 0]));
        let bytes = encode(&img);
        let truncated = &bytes[..bytes.len() / 2];
        assert!(matches!(decode_rgb(truncated), Err(JpegError::Damaged(_))), "truncated file accepted");
    }
}
