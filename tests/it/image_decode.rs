//! ember decodes the shared coco8 photos to exactly the pixels OpenCV gives Ultralytics
//! (tests/fixtures/jpeg/opencv_coco8.json, from tools/reference/jpeg_fixture.py).

use crate::common;

fn fnv1a64(data: &[u8]) -> u64 {
    data.iter().fold(0xCBF2_9CE4_8422_2325u64, |h, &b| (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01B3))
}

#[test]
fn coco8_pixels_equal_opencv() {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/jpeg/opencv_coco8.json")).unwrap();
    let fx: serde_json::Value = serde_json::from_str(&text).unwrap();
    let images = fx["images"].as_object().unwrap();
    assert_eq!(images.len(), 8);
    let root = common::shared_datasets().join("coco8");
    for (rel, want) in images {
        let img = ember::data::image_io::decode_rgb(&root.join(rel)).unwrap();
        assert_eq!(
            (img.width() as u64, img.height() as u64),
            (want["width"].as_u64().unwrap(), want["height"].as_u64().unwrap()),
            "{rel}"
        );
        let sum: u64 = img.as_raw().iter().map(|&v| v as u64).sum();
        assert_eq!(sum, want["sum"].as_u64().unwrap(), "{rel}: pixel sum");
        assert_eq!(
            format!("{:016x}", fnv1a64(img.as_raw())),
            want["fnv1a64"].as_str().unwrap(),
            "{rel}: pixels differ"
        );
    }
}
