//! The batch loader: deterministic order and content for a seed, whatever the number of workers.

use crate::common;

use ember::data::scan::scan_split;
use ember::data::{BatchLoader, LoaderConfig, Split};

fn coco8_samples() -> Vec<ember::data::Sample> {
    let root = common::shared_datasets().join("coco8/images");
    scan_split(&[root.join("train"), root.join("val")], 80, Split::Train).unwrap().samples
}

fn epoch_digest(workers: usize, seed: u64, shuffle: bool, epoch: usize) -> Vec<(Vec<String>, Vec<u8>, usize)> {
    let config = LoaderConfig { imgsz: 96, batch: 3, workers, shuffle, seed, prefetch: 2 };
    let loader = BatchLoader::new(coco8_samples(), config).unwrap();
    assert_eq!(loader.num_batches(), 3);
    loader
        .epoch(epoch)
        .map(|b| {
            assert!(b.failures.is_empty());
            assert_eq!(b.pixels.len(), b.len() * 3 * 96 * 96);
            let names = b.paths.iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
            let instances = b.instances();
            (names, b.pixels, instances)
        })
        .collect()
}

#[test]
fn same_seed_same_batches_whatever_the_workers() {
    let one = epoch_digest(1, 7, true, 0);
    let three = epoch_digest(3, 7, true, 0);
    assert_eq!(one, three);
    let sizes: Vec<_> = one.iter().map(|(n, _, _)| n.len()).collect();
    assert_eq!(sizes, vec![3, 3, 2]);
    assert_eq!(one.iter().map(|(_, _, i)| i).sum::<usize>(), 30, "coco8 has 30 boxes");
}

#[test]
fn order_changes_with_seed_and_epoch_but_not_without_shuffle() {
    let order = |seed, shuffle, epoch| -> Vec<String> {
        epoch_digest(2, seed, shuffle, epoch).into_iter().flat_map(|(n, _, _)| n).collect()
    };
    let a = order(1, true, 0);
    assert_ne!(a, order(2, true, 0));
    assert_ne!(a, order(1, true, 1));
    let plain = order(1, false, 0);
    let mut sorted = plain.clone();
    sorted.sort();
    assert_eq!(plain, sorted, "validation order is the scan order");
}

#[test]
fn stopping_early_does_not_hang() {
    let config = LoaderConfig { imgsz: 64, batch: 1, workers: 2, shuffle: true, seed: 0, prefetch: 1 };
    let loader = BatchLoader::new(coco8_samples(), config).unwrap();
    let first = loader.epoch(0).next().unwrap();
    assert_eq!(first.len(), 1);
}

#[test]
fn u8_batches_become_the_same_floats_on_the_device() {
    let batch = common::byte_ramp_batch();
    let x = ember::data::batch_tensor::<ember::backend::Cpu>(&batch, &Default::default());
    assert_eq!(x.dims(), batch.shape);
    let want: Vec<f32> = batch.pixels.iter().map(|&p| p as f32 * (1.0 / 255.0)).collect();
    assert_eq!(x.into_data().to_vec::<f32>().unwrap(), want, "the host's former f32 conversion, bit for bit");
}
