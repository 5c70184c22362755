//! Training augmentation with Ultralytics' hyper-parameters and defaults. Per image:
//! mosaic of 4 (`mosaic`) -> random affine/perspective to the `imgsz` square (`degrees`, `translate`,
//! `scale`, `shear`, `perspective`) with clipping and the box-candidate filter -> MixUp (`mixup`) ->
//! CutMix (`cutmix`) -> HSV jitter (`hsv_h/s/v`) -> vertical and horizontal flips (`flipud`, `fliplr`).
//! Every step moves the boxes (and their polygons, for polygon labels: `instances.rs`) with the pixels. Randomness comes only from the loader's per-sample rng,
//! so a batch is the same whatever thread makes it.

pub mod color;
pub mod geometry;
pub mod instances;
pub mod mosaic;
pub mod pipeline;
pub mod preview;

use std::sync::Arc;

use anyhow::Result;
use image::RgbImage;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use self::geometry::{flip_horizontal, flip_vertical, random_matrix, warp_into, AffineParams, RowSource};
use self::instances::{clip_points, mosaic_labels, pixel_labels, warp_labels, Boxes};
use self::mosaic::MosaicTiles;
use super::cache::{resize_long_side, ImageStore};
use super::image_io::decode_rgb;
use super::loader::{Prepared, SampleTransform};
use super::polygon::Polygon;
use super::recent::RecentImages;
use super::worker::{PixelBuffers, WorkerState};
use super::{BoxLabel, Letterbox, Sample};
use crate::config::{CacheMode, Settings};

/// The augmentation hyper-parameters (names as in `configs/default.yaml`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AugmentParams {
    /// `hsv_h`, `hsv_s`, `hsv_v`.
    pub hsv: [f64; 3],
    /// Ranges of the random warp (`degrees`, `translate`, `scale`, `shear`, `perspective`).
    pub affine: AffineParams,
    /// Probability of a top-bottom flip (Ultralytics `flipud`, default 0.0).
    pub flipud: f64,
    /// Probability of a left-right flip (Ultralytics `fliplr`, default 0.5).
    pub fliplr: f64,
    /// Probability that a sample is a 4-image mosaic (Ultralytics `mosaic`, default 1.0; 0 after `close_mosaic`).
    pub mosaic: f64,
    /// Probability of blending in a second augmented sample, Beta(32, 32) ratio (Ultralytics `mixup`, default 0.0).
    pub mixup: f64,
    /// Probability of pasting a region of a second augmented sample where it covers none of this one's boxes
    /// (Ultralytics `cutmix`, default 0.0).
    pub cutmix: f64,
}

impl AugmentParams {
    /// The parameters as resolved in `s` (Ultralytics' defaults unless overridden).
    pub fn from_settings(s: &Settings) -> AugmentParams {
        AugmentParams {
            hsv: [s.hsv_h, s.hsv_s, s.hsv_v],
            affine: AffineParams {
                degrees: s.degrees,
                translate: s.translate,
                scale: s.scale,
                shear: s.shear,
                perspective: s.perspective,
            },
            flipud: s.flipud,
            fliplr: s.fliplr,
            mosaic: s.mosaic,
            mixup: s.mixup,
            cutmix: s.cutmix,
        }
    }

    /// Nothing random: the affine step then only centres the image on the canvas.
    pub fn none() -> AugmentParams {
        AugmentParams {
            hsv: [0.0; 3],
            affine: AffineParams { degrees: 0.0, translate: 0.0, scale: 0.0, shear: 0.0, perspective: 0.0 },
            flipud: 0.0,
            fliplr: 0.0,
            mosaic: 0.0,
            mixup: 0.0,
            cutmix: 0.0,
        }
    }

    /// Ultralytics' `close_mosaic`: mosaic, MixUp and CutMix off, the rest unchanged.
    pub fn without_mosaic(self) -> AugmentParams {
        AugmentParams { mosaic: 0.0, mixup: 0.0, cutmix: 0.0, ..self }
    }
}

/// An image with its boxes as (class, pixel xyxy), and for polygon labels each box's polygon in pixels.
#[derive(Debug, Clone)]
pub struct Labeled {
    /// The pixels; after [`TrainTransform::transform`] an `s x s` canvas.
    pub image: RgbImage,
    /// One `(class, [x1, y1, x2, y2])` per object, in pixels of `image`.
    pub boxes: Boxes,
    /// Empty, or one per box.
    pub polygons: Vec<Polygon>,
}

/// The training transform.
pub struct TrainTransform {
    /// The hyper-parameters each sample is augmented with.
    pub params: AugmentParams,
    store: Arc<ImageStore>,
}

impl TrainTransform {
    /// The transform with `params`, loading images through `store` (which also sets the cache mode and `imgsz`).
    pub fn new(params: AugmentParams, store: Arc<ImageStore>) -> TrainTransform {
        TrainTransform { params, store }
    }

    /// The same transform with other parameters, sharing the image store (and its cache).
    pub fn with_params(&self, params: AugmentParams) -> TrainTransform {
        TrainTransform { params, store: self.store.clone() }
    }

    /// Sample `i`'s image, long side resized to `imgsz`, as Ultralytics' `load_image` finds it: in the RAM
    /// cache, else among the worker's recent images, else loaded (decoded, or read from the disk cache) and
    /// then kept among the recent ones.
    fn image(&self, samples: &[Sample], i: usize, worker: &mut WorkerState) -> Result<Arc<RgbImage>> {
        if self.store.mode() == CacheMode::Ram {
            return self.store.load(i, &samples[i]);
        }
        if let Some(image) = worker.recent.get(i) {
            return Ok(image);
        }
        let image = if self.store.mode() == CacheMode::Off {
            let started = worker.clock();
            let decoded = decode_rgb(&samples[i].image)?;
            let started = worker.lap("decode", started);
            let resized = resize_long_side(decoded, self.store.imgsz());
            worker.lap("resize", started);
            Arc::new(resized)
        } else {
            self.store.load(i, &samples[i])?
        };
        worker.recent.insert(i, image.clone());
        Ok(image)
    }

    /// Mosaic's three partners for `samples[index]` (Ultralytics' `Mosaic.get_indexes`): drawn from the
    /// worker's recent images, or uniformly from the split when images are cached in RAM.
    fn partners(&self, samples: &[Sample], worker: &WorkerState, rng: &mut ChaCha8Rng) -> [usize; 3] {
        let recent = &worker.recent;
        if self.store.mode() == CacheMode::Ram || recent.is_empty() {
            [(); 3].map(|_| rng.gen_range(0..samples.len()))
        } else {
            [(); 3].map(|_| recent.index_at(rng.gen_range(0..recent.len())))
        }
    }

    /// Four images around a random centre on a `2s x 2s` gray canvas (Ultralytics' layout), as tiles; boxes
    /// clipped to the canvas, empty ones dropped.
    fn mosaic_tiles(
        &self,
        samples: &[Sample],
        index: usize,
        s: u32,
        rng: &mut ChaCha8Rng,
        worker: &mut WorkerState,
    ) -> Result<(MosaicTiles, Boxes, Vec<Polygon>)> {
        let main = self.image(samples, index, worker)?;
        let s = s as i64;
        let yc = rng.gen_range(s as f64 / 2.0..1.5 * s as f64) as i64;
        let xc = rng.gen_range(s as f64 / 2.0..1.5 * s as f64) as i64;
        let [a, b, c] = self.partners(samples, worker, rng);
        let partners = [a, b, c].map(|i| self.image(samples, i, worker));
        let started = worker.clock();
        let mut canvas = MosaicTiles::new((2 * s) as u32);
        let mut tiles = Vec::with_capacity(4);
        let images = [Ok(main)].into_iter().chain(partners);
        for (k, (i, image)) in [index, a, b, c].into_iter().zip(images).enumerate() {
            let image = image?;
            let (w, h) = (image.width() as i64, image.height() as i64);
            let (x1a, y1a, x2a, y2a, x1b, y1b) = match k {
                0 => {
                    let (x1a, y1a) = ((xc - w).max(0), (yc - h).max(0));
                    (x1a, y1a, xc, yc, w - (xc - x1a), h - (yc - y1a))
                }
                1 => {
                    let (y1a, x2a) = ((yc - h).max(0), (xc + w).min(2 * s));
                    (xc, y1a, x2a, yc, 0, h - (yc - y1a))
                }
                2 => {
                    let (x1a, y2a) = ((xc - w).max(0), (yc + h).min(2 * s));
                    (x1a, yc, xc, y2a, w - (xc - x1a), 0)
                }
                _ => (xc, yc, (xc + w).min(2 * s), (yc + h).min(2 * s), 0, 0),
            };
            let size = ((x2a - x1a).max(0) as usize, (y2a - y1a).max(0) as usize);
            let (boxes, polygons) = pixel_labels(&samples[i], image.width(), image.height());
            canvas.place(image, (x1b as usize, y1b as usize), (x1a as usize, y1a as usize), size);
            tiles.push((boxes, polygons, ((x1a - x1b) as f32, (y1a - y1b) as f32)));
        }
        let (boxes, polygons) = mosaic_labels(tiles, (2 * s) as f32);
        worker.lap("mosaic", started);
        Ok((canvas, boxes, polygons))
    }

    /// The raw mosaic of `samples[index]`, drawn: the canvas the affine step warps.
    pub fn mosaic4(
        &self,
        samples: &[Sample],
        index: usize,
        s: u32,
        rng: &mut ChaCha8Rng,
        worker: &mut WorkerState,
    ) -> Result<Labeled> {
        let (tiles, boxes, polygons) = self.mosaic_tiles(samples, index, s, rng, worker)?;
        Ok(Labeled { image: tiles.render(), boxes, polygons })
    }

    /// Mosaic (with probability `mosaic`) or the single image, then the random affine to `s x s`.
    fn pre_transform(
        &self,
        samples: &[Sample],
        index: usize,
        s: u32,
        rng: &mut ChaCha8Rng,
        worker: &mut WorkerState,
    ) -> Result<Labeled> {
        if self.params.mosaic > 0.0 && rng.gen::<f64>() < self.params.mosaic {
            let (tiles, boxes, polygons) = self.mosaic_tiles(samples, index, s, rng, worker)?;
            let started = worker.clock();
            let out = random_affine(&tiles, boxes, polygons, &self.params.affine, s, rng, &mut worker.buffers);
            worker.lap("affine", started);
            Ok(out)
        } else {
            let image = self.image(samples, index, worker)?;
            let (boxes, polygons) = pixel_labels(&samples[index], image.width(), image.height());
            let started = worker.clock();
            let out = random_affine(&*image, boxes, polygons, &self.params.affine, s, rng, &mut worker.buffers);
            worker.lap("affine", started);
            Ok(out)
        }
    }

    /// The whole pipeline for `samples[index]` on an `s x s` canvas. The image's buffer comes from
    /// `worker`; hand it back with [`PixelBuffers::recycle`] when done.
    pub fn transform(
        &self,
        samples: &[Sample],
        index: usize,
        s: u32,
        rng: &mut ChaCha8Rng,
        worker: &mut WorkerState,
    ) -> Result<Labeled> {
        let p = &self.params;
        let mut out = self.pre_transform(samples, index, s, rng, worker)?;
        if p.mixup > 0.0 && rng.gen::<f64>() < p.mixup {
            let j = rng.gen_range(0..samples.len());
            let other = self.pre_transform(samples, j, s, rng, worker)?;
            mixup(&mut out, other, sample_beta(32.0, rng) as f32);
        }
        if p.cutmix > 0.0 && rng.gen::<f64>() < p.cutmix {
            let j = rng.gen_range(0..samples.len());
            let other = self.pre_transform(samples, j, s, rng, worker)?;
            cutmix(&mut out, &other, rng);
            worker.buffers.recycle(other.image);
        }
        let started = worker.clock();
        color::random_hsv(&mut out.image, p.hsv, rng);
        let started = worker.lap("hsv", started);
        if p.flipud > 0.0 && rng.gen::<f64>() < p.flipud {
            flip_vertical(&mut out.image);
            instances::flip_vertical(&mut out.boxes, &mut out.polygons, out.image.height() as f32);
        }
        if p.fliplr > 0.0 && rng.gen::<f64>() < p.fliplr {
            flip_horizontal(&mut out.image);
            instances::flip_horizontal(&mut out.boxes, &mut out.polygons, out.image.width() as f32);
        }
        worker.lap("flips", started);
        Ok(out)
    }
}

impl SampleTransform for TrainTransform {
    fn apply(&self, sample: &Sample, imgsz: u32, rng: &mut ChaCha8Rng) -> Result<Prepared> {
        // Without the sample list there is nothing to mix with: a one-sample list (its cache slot 0 is
        // not used, as the store is keyed by list position).
        let single = TrainTransform::new(self.params, Arc::new(ImageStore::uncached(self.store.imgsz())));
        let mut worker = WorkerState::new(RecentImages::with_capacity(1));
        single.prepare(std::slice::from_ref(sample), 0, imgsz, (imgsz, imgsz), rng, &mut worker)
    }

    fn prepare(
        &self,
        samples: &[Sample],
        index: usize,
        imgsz: u32,
        canvas: (u32, u32),
        rng: &mut ChaCha8Rng,
        worker: &mut WorkerState,
    ) -> Result<Prepared> {
        if canvas != (imgsz, imgsz) {
            anyhow::bail!("training batches are square, not {}x{}", canvas.0, canvas.1);
        }
        let out = self.transform(samples, index, imgsz, rng, worker)?;
        let s = imgsz as f32;
        let labels = out
            .boxes
            .iter()
            .map(|&(class, b)| BoxLabel {
                class,
                xywh: [(b[0] + b[2]) / 2.0 / s, (b[1] + b[3]) / 2.0 / s, (b[2] - b[0]) / s, (b[3] - b[1]) / s],
            })
            .collect();
        let letterbox = Letterbox::new(samples[index].size, (imgsz, imgsz));
        Ok(Prepared { image: out.image, labels, letterbox })
    }
}

/// Validation with an image store (for `--cache`): the cached long-side-resized image, letterboxed.
/// The geometry refers to the original image, so predictions map back to it.
pub struct StoreLetterbox {
    store: Arc<ImageStore>,
}

impl StoreLetterbox {
    /// Letterboxes validation images read through `store` (its RAM or disk cache).
    pub fn new(store: Arc<ImageStore>) -> StoreLetterbox {
        StoreLetterbox { store }
    }
}

impl SampleTransform for StoreLetterbox {
    fn apply(&self, sample: &Sample, imgsz: u32, rng: &mut ChaCha8Rng) -> Result<Prepared> {
        super::loader::LetterboxOnly.apply(sample, imgsz, rng)
    }

    fn prepare(
        &self,
        samples: &[Sample],
        index: usize,
        imgsz: u32,
        canvas: (u32, u32),
        _rng: &mut ChaCha8Rng,
        _worker: &mut WorkerState,
    ) -> Result<Prepared> {
        let image = self.store.load(index, &samples[index])?;
        Ok(super::loader::letterbox_prepared(&samples[index], &image, imgsz, canvas))
    }
}

/// Warps `src` to an `s x s` canvas with a random matrix, moving, clipping and filtering its labels.
pub fn random_affine(
    src: &impl RowSource,
    boxes: Boxes,
    polygons: Vec<Polygon>,
    p: &AffineParams,
    s: u32,
    rng: &mut ChaCha8Rng,
    buffers: &mut PixelBuffers,
) -> Labeled {
    let (m, scale) = random_matrix(p, src.dimensions(), (s, s), rng);
    let mut image = buffers.image(s, s);
    warp_into(src, &m, &mut image, &mut buffers.warp);
    let (boxes, polygons) = warp_labels(boxes, polygons, &m, scale, s);
    Labeled { image, boxes, polygons }
}

/// MixUp: `out = r * out + (1 - r) * other`, labels of both kept.
pub fn mixup(out: &mut Labeled, other: Labeled, r: f32) {
    for (a, &b) in out.image.iter_mut().zip(other.image.iter()) {
        *a = (*a as f32 * r + b as f32 * (1.0 - r)) as u8;
    }
    out.boxes.extend(other.boxes);
    out.polygons.extend(other.polygons);
}

/// CutMix as Ultralytics does it: among 3 random rectangles, pick one that touches none of `out`'s
/// boxes and [`paste`] `other` there. Nothing happens when no rectangle is free.
pub fn cutmix(out: &mut Labeled, other: &Labeled, rng: &mut ChaCha8Rng) {
    let (w, h) = (out.image.width() as i64, out.image.height() as i64);
    let areas: Vec<[f32; 4]> = (0..3)
        .map(|_| {
            let lam: f64 = rng.gen(); // Beta(1, 1)
            let ratio = (1.0 - lam).sqrt();
            let (cut_w, cut_h) = ((w as f64 * ratio) as i64, (h as f64 * ratio) as i64);
            let (cx, cy) = (rng.gen_range(0..w), rng.gen_range(0..h));
            [
                (cx - cut_w / 2).clamp(0, w),
                (cy - cut_h / 2).clamp(0, h),
                (cx + cut_w / 2).clamp(0, w),
                (cy + cut_h / 2).clamp(0, h),
            ]
            .map(|v| v as f32)
        })
        .collect();
    let free: Vec<&[f32; 4]> = areas.iter().filter(|a| out.boxes.iter().all(|(_, b)| ioa(a, b) <= 0.0)).collect();
    if free.is_empty() {
        return;
    }
    let area = *free[rng.gen_range(0..free.len())];
    paste(out, other, area);
}

/// CutMix's paste into the xyxy `area`: `other`'s pixels there, and its boxes that are at least 10% inside it
/// (1% when `out` has polygons), clipped to it. Nothing happens when none qualifies.
pub fn paste(out: &mut Labeled, other: &Labeled, area: [f32; 4]) {
    let threshold = if out.polygons.is_empty() { 0.1 } else { 0.01 };
    let chosen: Vec<usize> = (0..other.boxes.len()).filter(|&i| ioa(&area, &other.boxes[i].1) >= threshold).collect();
    let pasted: Vec<(usize, [f32; 4])> = chosen
        .iter()
        .map(|&i| other.boxes[i])
        .map(|(c, b)| {
            (
                c,
                [
                    b[0].clamp(area[0], area[2]),
                    b[1].clamp(area[1], area[3]),
                    b[2].clamp(area[0], area[2]),
                    b[3].clamp(area[1], area[3]),
                ],
            )
        })
        .collect();
    if pasted.is_empty() {
        return;
    }
    let [x1, y1, x2, y2] = area.map(|v| v as usize);
    copy_rect(&other.image, (x1, y1), &mut out.image, (x1, y1), (x2 - x1, y2 - y1));
    out.boxes.extend(pasted);
    if !other.polygons.is_empty() {
        out.polygons.extend(chosen.iter().map(|&i| clip_points(other.polygons[i].clone(), area)));
    }
}

/// Intersection of `a` and `b` over the area of `b`.
fn ioa(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let iw = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let ih = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    iw * ih / ((b[2] - b[0]) * (b[3] - b[1]) + 1e-16)
}

/// Copies a `size` (w, h) rectangle from `src` at `from` to `dst` at `to`, row by row.
pub fn copy_rect(src: &RgbImage, from: (usize, usize), dst: &mut RgbImage, to: (usize, usize), size: (usize, usize)) {
    let (sw, dw) = (src.width() as usize * 3, dst.width() as usize * 3);
    let (w, h) = size;
    if w == 0 || h == 0 {
        return;
    }
    let sraw = src.as_raw();
    let draw: &mut [u8] = dst;
    for row in 0..h {
        let s0 = (from.1 + row) * sw + from.0 * 3;
        let d0 = (to.1 + row) * dw + to.0 * 3;
        draw[d0..d0 + w * 3].copy_from_slice(&sraw[s0..s0 + w * 3]);
    }
}

/// A Beta(a, a) draw, as the ratio of two Gamma(a) draws (Marsaglia and Tsang).
fn sample_beta(a: f64, rng: &mut ChaCha8Rng) -> f64 {
    let x = sample_gamma(a, rng);
    let y = sample_gamma(a, rng);
    x / (x + y)
}

fn sample_gamma(a: f64, rng: &mut ChaCha8Rng) -> f64 {
    let d = a - 1.0 / 3.0;
    let c = 1.0 / (9.0 * d).sqrt();
    loop {
        // Standard normal by Box-Muller.
        let (u1, u2): (f64, f64) = (rng.gen_range(f64::EPSILON..1.0), rng.gen());
        let x = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
        let v = (1.0 + c * x).powi(3);
        if v <= 0.0 {
            continue;
        }
        let u: f64 = rng.gen_range(f64::EPSILON..1.0);
        if u.ln() < 0.5 * x * x + d - d * v + d * v.ln() {
            return d * v;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn beta_32_is_centred_and_narrow() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let draws: Vec<f64> = (0..4000).map(|_| sample_beta(32.0, &mut rng)).collect();
        let mean = draws.iter().sum::<f64>() / draws.len() as f64;
        let var = draws.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / draws.len() as f64;
        assert!((mean - 0.5).abs() < 0.01, "mean {mean}");
        // Beta(a, a) variance: 1 / (4 (2a + 1)) = 0.003846.
        assert!((var - 1.0 / 260.0).abs() < 0.0006, "variance {var}");
    }

    #[test]
    fn hsv_round_trip_is_close() {
        for rgb in [[255u8, 0, 0], [10, 200, 30], [40, 40, 40], [0, 0, 255], [200, 120, 60]] {
            let back = color::hsv_to_rgb(color::rgb_to_hsv(rgb));
            for c in 0..3 {
                assert!((back[c] as i32 - rgb[c] as i32).abs() <= 4, "{rgb:?} -> {back:?}");
            }
        }
    }
}
