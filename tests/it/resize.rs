//! Image resizing gives OpenCV's pixels (`cv2.resize`, `INTER_LINEAR`, what Ultralytics resizes with) on real photos,
//! down and up, at integer and non-integer ratios. Fixture: tools/reference/resize_fixture.py.

use crate::common;

use ember::data::image_io::decode_rgb;
use ember::data::resize::resize_linear;

fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3))
}

#[test]
fn resizing_gives_opencvs_pixels() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/resize/opencv_linear.json");
    let fixture: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let cases = fixture["cases"].as_array().unwrap();
    assert!(cases.len() >= 40);
    for case in cases {
        let image = decode_rgb(&common::shared_datasets().join(case["path"].as_str().unwrap())).unwrap();
        let size: Vec<u32> = case["size"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
        let out = resize_linear(&image, size[0], size[1]);
        let sum: u64 = out.as_raw().iter().map(|&b| b as u64).sum();
        let at = format!("{} to {}x{}", case["path"], size[0], size[1]);
        assert_eq!(sum, case["sum"].as_u64().unwrap(), "{at}: pixel sum");
        assert_eq!(format!("{:016x}", fnv1a64(out.as_raw())), case["fnv1a64"].as_str().unwrap(), "{at}: pixels");
    }
}
