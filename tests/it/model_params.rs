//! Parameter counts, fused counts and GFLOPs against Ultralytics 8.4 (nc = 80). No forward pass.

use ember::backend::Cpu;
use ember::model::Yolo;

fn summary(name: &str, imgsz: usize) -> ember::model::ModelSummary {
    let device = Default::default();
    Yolo::<Cpu>::new(name, 80, &device).unwrap_or_else(|e| panic!("{name}: {e:#}")).summary(imgsz)
}

#[test]
fn parameter_counts_match_ultralytics() {
    // (model, parameters, fused parameters, GFLOPs at 640, fused GFLOPs at 640) from Ultralytics 8.4.190
    // (`DetectionModel(yaml)`, `get_flops`, `fuse()`).
    let expected = [
        ("yolo26n", 2_572_280, 2_408_932, 6.2397, 5.4803),
        ("yolo26s", 10_009_784, 9_496_140, 23.0793, 20.9332),
        ("yolo26m", 21_896_248, 20_411_132, 75.6351, 68.4257),
        ("yolov8n", 3_157_200, 3_151_904, 8.8551, 8.7440),
        ("yolo11n", 2_624_080, 2_616_248, 6.6733, 6.5425),
    ];
    let mut failures = Vec::new();
    for (name, params, fused, gflops, fused_gflops) in expected {
        let s = summary(name, 640);
        println!(
            "{name}: params {} fused {} gflops {:.4} fused gflops {:.4}",
            s.params, s.fused_params, s.gflops, s.fused_gflops
        );
        if s.params != params {
            failures.push(format!("{name}: {} parameters, expected {params}", s.params));
        }
        if s.fused_params != fused {
            failures.push(format!("{name}: {} fused parameters, expected {fused}", s.fused_params));
        }
        if (s.gflops - gflops).abs() / gflops > 0.02 {
            failures.push(format!("{name}: {:.3} GFLOPs, expected {gflops} within 2%", s.gflops));
        }
        if (s.fused_gflops - fused_gflops).abs() / fused_gflops > 0.02 {
            failures.push(format!("{name}: {:.3} fused GFLOPs, expected {fused_gflops} within 2%", s.fused_gflops));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn gflops_scale_with_image_size() {
    // Ultralytics at 160: yolo26n 0.3828, yolov8n 0.5534.
    for (name, g) in [("yolo26n", 0.3828), ("yolov8n", 0.5534)] {
        let s = summary(name, 160);
        assert!((s.gflops - g).abs() / g < 0.02, "{name} at 160: {} GFLOPs, expected {g}", s.gflops);
    }
}

#[test]
fn summary_lists_every_layer() {
    let s = summary("yolo26n", 640);
    assert_eq!(s.layers.len(), 24);
    assert_eq!(s.layers.iter().map(|l| l.params).sum::<usize>(), s.params);
    let text = s.to_string();
    assert!(text.contains("2,572,280 parameters"), "{text}");
    assert!(text.contains("2,408,932 parameters"), "{text}");
}

#[test]
fn model_names_resolve() {
    let device = Default::default();
    for name in ["yolo26n", "yolo26n.yaml", "YOLOv8s.yaml", "yolo11m"] {
        Yolo::<Cpu>::new(name, 3, &device).unwrap_or_else(|e| panic!("{name}: {e:#}"));
    }
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/configs/models/yolov8.yaml");
    let m = Yolo::<Cpu>::new(path, 3, &device).expect("path to a YAML");
    assert_eq!(m.name(), "yolov8n", "a file without a scale in its name takes the first scale");
    let err = Yolo::<Cpu>::new("yolo99n", 3, &device).unwrap_err();
    assert!(format!("{err:#}").contains("unknown model"), "{err:#}");
    let err = Yolo::<Cpu>::new("yolo26n", 0, &device).unwrap_err();
    assert!(format!("{err:#}").contains("classes"), "{err:#}");
}
