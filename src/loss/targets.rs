//! Ground truth of one training batch, and its padded form for the assigner.

use burn::tensor::{backend::Backend, Bool, Int, Tensor, TensorData};

use crate::postprocess::xywh_to_xyxy;

/// The labelled boxes of one image: class ids and boxes as normalised `(cx, cy, w, h)` in `0..1`
/// of the network input (after letterboxing/augmentation).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImageTargets {
    /// Class id of each box, `0..nc`.
    pub classes: Vec<usize>,
    /// Each box as normalised `(cx, cy, w, h)`, in the order of `classes`.
    pub boxes: Vec<[f32; 4]>,
}

impl ImageTargets {
    /// The boxes of one image; panics unless there is one class per box.
    pub fn new(classes: Vec<usize>, boxes: Vec<[f32; 4]>) -> Self {
        assert_eq!(classes.len(), boxes.len(), "one class per box");
        Self { classes, boxes }
    }

    /// An image without objects (background).
    pub fn background() -> Self {
        Self::default()
    }

    /// Number of labelled boxes.
    pub fn len(&self) -> usize {
        self.classes.len()
    }

    /// Whether the image has no labelled box (background).
    pub fn is_empty(&self) -> bool {
        self.classes.is_empty()
    }
}

/// The targets of a batch: one [`ImageTargets`] per image (in batch order) and the network input size.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetBatch {
    /// One entry per image of the batch, in batch order.
    pub images: Vec<ImageTargets>,
    /// Network input size `(h, w)` in pixels.
    pub input_size: [usize; 2],
}

/// Ground truth padded to the largest box count of the batch, on the host.
/// Rows `b * max_boxes + m`; padding rows have class 0, a zero box and `mask == false`.
#[derive(Debug, Clone, PartialEq)]
pub struct PaddedTargets {
    /// Images in the batch (`b`).
    pub batch_size: usize,
    /// `M`: the largest box count of one image; every image is padded to it (0: no labels in the batch).
    pub max_boxes: usize,
    /// Class id of each row (0 for padding).
    pub classes: Vec<usize>,
    /// `x1, y1, x2, y2` in input pixels.
    pub boxes_xyxy: Vec<[f32; 4]>,
    /// True for a real box, false for a padding row.
    pub mask: Vec<bool>,
}

impl TargetBatch {
    /// A batch from its per-image targets and the network input size `(h, w)` in pixels.
    pub fn new(images: Vec<ImageTargets>, input_size: [usize; 2]) -> Self {
        Self { images, input_size }
    }

    /// Build from Ultralytics-style flat arrays: per box its image index, class and normalised xywh box.
    /// Boxes keep their order within each image.
    pub fn from_flat(
        batch_idx: &[usize],
        classes: &[usize],
        boxes: &[[f32; 4]],
        batch_size: usize,
        input_size: [usize; 2],
    ) -> Self {
        assert_eq!(batch_idx.len(), classes.len());
        assert_eq!(batch_idx.len(), boxes.len());
        let mut images = vec![ImageTargets::default(); batch_size];
        for ((&i, &c), b) in batch_idx.iter().zip(classes).zip(boxes) {
            assert!(i < batch_size, "batch index {i} out of range for batch size {batch_size}");
            images[i].classes.push(c);
            images[i].boxes.push(*b);
        }
        Self { images, input_size }
    }

    /// Number of images in the batch, background images included.
    pub fn batch_size(&self) -> usize {
        self.images.len()
    }

    /// Largest number of boxes in one image (0 for an all-background batch).
    pub fn max_boxes(&self) -> usize {
        self.images.iter().map(|im| im.len()).max().unwrap_or(0)
    }

    /// Number of labelled boxes over all images.
    pub fn num_boxes(&self) -> usize {
        self.images.iter().map(|im| im.len()).sum()
    }

    /// Pad to `[batch, max_boxes]` and convert boxes to pixel `xyxy` for an input of `size = (h, w)`
    /// (the same arithmetic as Ultralytics: scale xywh, then `xy -/+ wh/2`).
    pub fn padded(&self, size: [f32; 2]) -> PaddedTargets {
        let (h, w) = (size[0], size[1]);
        let b = self.batch_size();
        let m = self.max_boxes();
        let mut classes = vec![0usize; b * m];
        let mut boxes_xyxy = vec![[0f32; 4]; b * m];
        let mut mask = vec![false; b * m];
        for (i, im) in self.images.iter().enumerate() {
            for (j, (&c, bx)) in im.classes.iter().zip(&im.boxes).enumerate() {
                let r = i * m + j;
                classes[r] = c;
                // Scaled, then corners: Ultralytics' `v8DetectionLoss.preprocess` order (validate.rs keeps the
                // validator's other order; the two differ in the last bits).
                boxes_xyxy[r] = xywh_to_xyxy([bx[0] * w, bx[1] * h, bx[2] * w, bx[3] * h]);
                mask[r] = true;
            }
        }
        PaddedTargets { batch_size: b, max_boxes: m, classes, boxes_xyxy, mask }
    }

    /// Padded tensors at the batch's `input_size`: classes `[b, max_boxes, 1]`, pixel xyxy boxes
    /// `[b, max_boxes, 4]`, validity mask `[b, max_boxes, 1]`.
    pub fn to_tensors<B: Backend>(&self, device: &B::Device) -> (Tensor<B, 3, Int>, Tensor<B, 3>, Tensor<B, 3, Bool>) {
        let p = self.padded([self.input_size[0] as f32, self.input_size[1] as f32]);
        p.to_tensors(device)
    }
}

impl PaddedTargets {
    /// As device tensors: classes `[b, M, 1]`, pixel xyxy boxes `[b, M, 4]` and the mask `[b, M, 1]` (M: `max_boxes`).
    pub fn to_tensors<B: Backend>(&self, device: &B::Device) -> (Tensor<B, 3, Int>, Tensor<B, 3>, Tensor<B, 3, Bool>) {
        let (b, m) = (self.batch_size, self.max_boxes);
        let cls: Vec<i64> = self.classes.iter().map(|&c| c as i64).collect();
        let boxes: Vec<f32> = self.boxes_xyxy.iter().flatten().copied().collect();
        (
            Tensor::from_data(TensorData::new(cls, [b, m, 1]), device),
            Tensor::from_data(TensorData::new(boxes, [b, m, 4]), device),
            Tensor::from_data(TensorData::new(self.mask.clone(), [b, m, 1]), device),
        )
    }
}
