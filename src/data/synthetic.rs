//! Generated datasets: coloured shapes on textured noise with exactly known boxes. They let tests and
//! benchmarks prove that training learns, in about a minute of CPU, without any download.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use image::{Rgb, RgbImage};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Class names of the generated shapes, by class id.
pub const SHAPE_NAMES: [&str; 3] = ["square", "disc", "triangle"];

/// What to generate.
#[derive(Debug, Clone)]
pub struct SyntheticConfig {
    /// Images written to `images/train` (with their labels).
    pub train_images: usize,
    /// Images written to `images/val`.
    pub val_images: usize,
    /// Square image side in pixels.
    pub size: u32,
    /// Objects per image, inclusive range.
    pub objects: (usize, usize),
    /// Object side range in pixels.
    pub object_size: (u32, u32),
    /// Seeds the whole dataset: the same config writes the same files.
    pub seed: u64,
}

impl Default for SyntheticConfig {
    fn default() -> Self {
        SyntheticConfig { train_images: 96, val_images: 32, size: 96, objects: (1, 3), object_size: (16, 40), seed: 0 }
    }
}

/// Writes `images/{train,val}`, `labels/{train,val}` and `shapes.yaml` under `root`; returns the YAML.
pub fn generate(root: &Path, config: &SyntheticConfig) -> Result<PathBuf> {
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    for (split, count) in [("train", config.train_images), ("val", config.val_images)] {
        let (images, labels) = (root.join("images").join(split), root.join("labels").join(split));
        std::fs::create_dir_all(&images)
            .and_then(|_| std::fs::create_dir_all(&labels))
            .with_context(|| format!("cannot create {}", root.display()))?;
        for i in 0..count {
            let (img, boxes) = draw_image(config, &mut rng);
            img.save(images.join(format!("{i:05}.png")))?;
            let s = config.size as f32;
            let text: String = boxes
                .iter()
                .map(|(c, [x1, y1, x2, y2])| {
                    format!(
                        "{c} {:.6} {:.6} {:.6} {:.6}\n",
                        (x1 + x2) / 2.0 / s,
                        (y1 + y2) / 2.0 / s,
                        (x2 - x1) / s,
                        (y2 - y1) / s
                    )
                })
                .collect();
            std::fs::write(labels.join(format!("{i:05}.txt")), text)?;
        }
    }
    let yaml = root.join("shapes.yaml");
    let names: String = SHAPE_NAMES.iter().enumerate().map(|(i, n)| format!("  {i}: {n}\n")).collect();
    std::fs::write(&yaml, format!("path: .\ntrain: images/train\nval: images/val\nnames:\n{names}"))?;
    Ok(yaml)
}

/// One image and its boxes (class, pixel xyxy). Objects do not overlap, so every box encloses exactly
/// its object's pixels.
fn draw_image(config: &SyntheticConfig, rng: &mut ChaCha8Rng) -> (RgbImage, Vec<(usize, [f32; 4])>) {
    let size = config.size;
    let tint: [f32; 3] = [rng.gen_range(60.0..160.0), rng.gen_range(60.0..160.0), rng.gen_range(60.0..160.0)];
    let mut img = RgbImage::from_fn(size, size, |x, y| {
        let wave = ((x as f32 * 0.3).sin() + (y as f32 * 0.2).cos()) * 12.0;
        Rgb(tint.map(|t| (t + wave + rng.gen_range(-25.0..25.0)).clamp(0.0, 255.0) as u8))
    });
    let mut boxes: Vec<(usize, [f32; 4])> = Vec::new();
    let wanted = rng.gen_range(config.objects.0..=config.objects.1);
    for _ in 0..wanted * 20 {
        if boxes.len() == wanted {
            break;
        }
        let side = rng.gen_range(config.object_size.0..=config.object_size.1);
        let (x1, y1) = (rng.gen_range(0..size - side), rng.gen_range(0..size - side));
        let candidate = [x1 as f32, y1 as f32, (x1 + side) as f32, (y1 + side) as f32];
        let clear = boxes.iter().all(|(_, b)| {
            candidate[0] >= b[2] + 2.0
                || candidate[2] + 2.0 <= b[0]
                || candidate[1] >= b[3] + 2.0
                || candidate[3] + 2.0 <= b[1]
        });
        if !clear {
            continue;
        }
        let class = rng.gen_range(0..SHAPE_NAMES.len());
        let colour = match class {
            0 => [230, 40, 40],
            1 => [40, 220, 60],
            _ => [50, 70, 240],
        };
        let mut extent = [u32::MAX, u32::MAX, 0, 0];
        for y in y1..y1 + side {
            for x in x1..x1 + side {
                let (u, v) = ((x - x1) as f32 + 0.5, (y - y1) as f32 + 0.5);
                let r = side as f32 / 2.0;
                let inside = match class {
                    0 => true,
                    1 => (u - r).powi(2) + (v - r).powi(2) <= r * r,
                    _ => (u - r).abs() <= v / 2.0, // apex at the top, base at the bottom
                };
                if inside {
                    img.put_pixel(x, y, Rgb(colour));
                    extent = [extent[0].min(x), extent[1].min(y), extent[2].max(x + 1), extent[3].max(y + 1)];
                }
            }
        }
        boxes.push((class, extent.map(|v| v as f32)));
    }
    (img, boxes)
}
