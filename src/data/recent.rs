//! Ultralytics' mosaic buffer (`BaseDataset.buffer`): the images a loader worker decoded last, kept in memory.
//! Mosaic takes its three partners from it when images are not cached in RAM, so a mosaic decodes about one
//! image instead of four, and an image still in it is not decoded again. At most `min(n, 8 * batch, 1000)`
//! entries (one fewer once full, as Python pops at `len >= max`), each an image resized to `imgsz` on its long
//! side: a worker holds at most that many times `imgsz * imgsz * 3` bytes.

use std::collections::VecDeque;
use std::sync::Arc;

use image::RgbImage;

/// One worker's recently loaded images, oldest first.
#[derive(Debug, Clone, Default)]
pub struct RecentImages {
    capacity: usize,
    entries: VecDeque<(usize, Arc<RgbImage>)>,
}

impl RecentImages {
    /// Ultralytics' `max_buffer_length` for a split of `samples` images loaded `batch` at a time.
    pub fn for_split(samples: usize, batch: usize) -> RecentImages {
        RecentImages::with_capacity(samples.min(8 * batch).min(1000))
    }

    /// An empty buffer of Ultralytics' `max_buffer_length` `capacity` (which holds one image fewer once full, and
    /// at least one); 0 keeps nothing.
    pub fn with_capacity(capacity: usize) -> RecentImages {
        RecentImages { capacity, entries: VecDeque::with_capacity(capacity) }
    }

    /// The image of sample `index`, when it is still held.
    pub fn get(&self, index: usize) -> Option<Arc<RgbImage>> {
        self.entries.iter().rev().find(|(i, _)| *i == index).map(|(_, img)| img.clone())
    }

    /// Keeps a freshly loaded image, dropping the oldest as `BaseDataset.load_image` does.
    pub fn insert(&mut self, index: usize, image: Arc<RgbImage>) {
        if self.capacity == 0 {
            return;
        }
        self.entries.push_back((index, image));
        if self.entries.len() > 1 && self.entries.len() >= self.capacity {
            self.entries.pop_front();
        }
    }

    /// Images held now.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no image is held (mosaic then draws its partners from the whole split).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The sample index of the `k`-th held image, oldest first.
    pub fn index_at(&self, k: usize) -> usize {
        self.entries[k].0
    }

    /// Bytes of pixels held.
    pub fn bytes(&self) -> usize {
        self.entries.iter().map(|(_, img)| img.as_raw().len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image() -> Arc<RgbImage> {
        Arc::new(RgbImage::new(2, 2))
    }

    #[test]
    fn keeps_one_fewer_than_its_capacity_once_full_as_python_does() {
        let mut recent = RecentImages::with_capacity(3);
        recent.insert(7, image());
        recent.insert(8, image());
        assert_eq!((recent.len(), recent.index_at(0)), (2, 7));
        recent.insert(9, image());
        assert_eq!(recent.len(), 2, "len 3 >= 3 pops the oldest");
        assert!(recent.get(7).is_none() && recent.get(8).is_some() && recent.get(9).is_some());
        assert_eq!(RecentImages::for_split(5000, 16).capacity, 128);
        assert_eq!(RecentImages::for_split(100, 16).capacity, 100);
        assert_eq!(RecentImages::for_split(5000, 256).capacity, 1000);
    }

    #[test]
    fn a_capacity_of_one_still_holds_the_last_image() {
        let mut recent = RecentImages::with_capacity(1);
        recent.insert(1, image());
        assert_eq!(recent.len(), 1, "Python's `1 < len(buffer)` keeps a lone image");
        recent.insert(2, image());
        assert_eq!((recent.len(), recent.index_at(0)), (1, 2));
        let mut none = RecentImages::with_capacity(0);
        none.insert(1, image());
        assert!(none.is_empty());
    }
}
