//! Dataset YAML forms: names as map or list, splits as folder, .txt list or list, paths relative to
//! the YAML or found under the datasets dir, and clear errors for bad files.

use crate::common;

use std::path::Path;

use common::{write, write_image};
use ember::data::scan::scan_split;
use ember::data::{DatasetConfig, Split};

fn tiny_dataset(root: &Path) {
    for (split, n) in [("train", 3), ("val", 2)] {
        for i in 0..n {
            write_image(&root.join(format!("images/{split}/{i}.png")), (32, 24), None, [0, 0, 0]);
            write(&root.join(format!("labels/{split}/{i}.txt")), "0 0.5 0.5 0.2 0.2\n");
        }
    }
}

#[test]
fn names_as_a_map_or_a_list_give_the_same_classes() {
    let dir = tempfile::tempdir().unwrap();
    tiny_dataset(&dir.path().join("d"));
    write(&dir.path().join("map.yaml"), "path: d\ntrain: images/train\nval: images/val\nnames:\n  0: cat\n  1: dog\n");
    write(&dir.path().join("list.yaml"), "path: d\ntrain: images/train\nval: images/val\nnames: [cat, dog]\nnc: 2\n");
    let a = DatasetConfig::load(&dir.path().join("map.yaml"), None).unwrap();
    let b = DatasetConfig::load(&dir.path().join("list.yaml"), None).unwrap();
    assert_eq!(a.names, vec!["cat", "dog"]);
    assert_eq!(a.names, b.names);
    assert_eq!(a.root, dir.path().join("d"));
}

#[test]
fn splits_as_folder_txt_list_or_list_of_both() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("d");
    tiny_dataset(&root);
    write(&root.join("train.txt"), "./images/train/0.png\n./images/train/1.png\n");
    write(
        &dir.path().join("forms.yaml"),
        "path: d\ntrain: train.txt\nval: [images/val, images/train/2.png]\ntest: images/train\nnames: [cat]\n",
    );
    let cfg = DatasetConfig::load(&dir.path().join("forms.yaml"), None).unwrap();
    let train = scan_split(cfg.split_sources(Split::Train).unwrap(), 1, Split::Train).unwrap();
    let val = scan_split(cfg.split_sources(Split::Val).unwrap(), 1, Split::Val).unwrap();
    let test = scan_split(cfg.split_sources(Split::Test).unwrap(), 1, Split::Test).unwrap();
    assert_eq!((train.images(), val.images(), test.images()), (2, 3, 3));
    assert_eq!(train.instances(), 2);
}

#[test]
fn relative_path_is_found_under_the_datasets_dir() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    tiny_dataset(&store.join("mine"));
    let yaml_dir = dir.path().join("configs");
    write(&yaml_dir.join("mine.yaml"), "path: mine\ntrain: images/train\nval: images/val\nnames: {0: cat}\n");
    let cfg = DatasetConfig::load(&yaml_dir.join("mine.yaml"), Some(&store)).unwrap();
    assert_eq!(cfg.root, store.join("mine"));
    assert!(cfg.is_present());
    // Without the datasets dir the root would be beside the YAML, where nothing is.
    let cfg = DatasetConfig::load(&yaml_dir.join("mine.yaml"), Some(&dir.path().join("elsewhere"))).unwrap();
    assert!(!cfg.is_present());
    let err = cfg.split_sources(Split::Train).unwrap_err().to_string();
    assert!(err.contains("mine.yaml") && err.contains("does not exist"), "{err}");
}

#[test]
fn the_bundled_coco8_yaml_finds_the_shared_images() {
    let shared = common::shared_datasets();
    let bundled = Path::new(env!("CARGO_MANIFEST_DIR")).join("datasets/coco8.yaml");
    let cfg = DatasetConfig::load(&bundled, Some(&shared)).unwrap();
    assert_eq!(cfg.root, shared.join("coco8"));
    assert_eq!(cfg.nc(), 80);
    assert_eq!(cfg.names[0], "person");
    assert!(cfg.download.as_deref().unwrap().ends_with("coco8.zip"));
    let train = scan_split(cfg.split_sources(Split::Train).unwrap(), cfg.nc(), Split::Train).unwrap();
    assert_eq!(train.images(), 4);
}

#[test]
fn bad_yaml_files_get_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    tiny_dataset(&dir.path().join("d"));
    let cases = [
        ("path: d\ntrian: images/train\nval: images/val\nnames: [a]\n", "did you mean 'train'"),
        ("path: d\ntrain: images/train\nval: images/val\nnames: [a, b]\nnc: 3\n", "nc is 3 but names lists 2"),
        ("path: d\ntrain: images/train\nval: images/val\n", "names is missing"),
        ("path: d\ntrain: images/train\nval: images/val\nnames: {0: a, 2: b}\n", "id 1 is missing"),
        ("path: d\nnames: [a]\n", "neither a train nor a val split"),
        ("path: d\ntrain: [images/train\n", "not valid YAML"),
    ];
    for (i, (text, expected)) in cases.iter().enumerate() {
        let yaml = dir.path().join(format!("bad{i}.yaml"));
        write(&yaml, text);
        let err = format!("{:#}", DatasetConfig::load(&yaml, None).unwrap_err());
        assert!(err.contains(expected), "case {i}: expected '{expected}' in: {err}");
        assert!(err.contains(&format!("bad{i}.yaml")), "case {i}: the error should name the file: {err}");
    }
    // A split that is not named at all.
    write(&dir.path().join("noval.yaml"), "path: d\ntrain: images/train\nnames: [a]\n");
    let cfg = DatasetConfig::load(&dir.path().join("noval.yaml"), None).unwrap();
    let err = cfg.split_sources(Split::Val).unwrap_err().to_string();
    assert!(err.contains("has no 'val' split"), "{err}");
}

#[test]
fn a_missing_yaml_says_where_it_looked() {
    let err = DatasetConfig::load(Path::new("no-such-dataset.yaml"), None).unwrap_err().to_string();
    assert!(err.contains("not found") && err.contains("no-such-dataset.yaml"), "{err}");
}
