//! The `amp` setting given every way a user can give it, for the AMP tests on each device.

use std::path::Path;

use ember::config::{AmpMode, AmpRequest, Settings};

/// What a source asks for: the automatic choice (`true`, the default) or a forced precision.
pub const AUTO: AmpRequest = AmpRequest::Auto;
pub const FP16: AmpRequest = AmpRequest::Forced(AmpMode::Fp16);
pub const FP32: AmpRequest = AmpRequest::Forced(AmpMode::Fp32);

/// `ember train ...` resolved as `main` resolves it.
fn command_line(args: &[&str]) -> Settings {
    let line = ["ember", "train"].iter().chain(args).map(|s| s.to_string()).collect();
    let invocation = ember::cli::parse(line).unwrap_or_else(|_| panic!("bad command line {args:?}"));
    Settings::resolve(&invocation.overrides).unwrap()
}

/// Every source of the setting, each with what it asks for: nothing (the default), the bare flag, the flag with a
/// value, `--no-amp`, `key=value`, a `--cfg` file (as a user writes one, and a flag over it), and Ultralytics'
/// `args.yaml` given as `--cfg` (`amp: false` as its fixture run wrote it, and `amp: true`).
pub fn every_source(dir: &Path) -> Vec<(String, Settings, AmpRequest)> {
    let cfg = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    let fp16_cfg = cfg("fp16.yaml", "epochs: 3\namp: fp16\n");
    let true_cfg = cfg("true.yaml", "amp: true\n");
    let ultralytics = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/schedule/args.yaml");
    let ultralytics_text = std::fs::read_to_string(ultralytics).unwrap();
    assert!(ultralytics_text.contains("\namp: false\n"));
    let ultralytics_true = cfg("args.yaml", &ultralytics_text.replace("\namp: false\n", "\namp: true\n"));
    let sources: Vec<(&str, Vec<&str>, AmpRequest)> = vec![
        ("the default", vec![], AUTO),
        ("--amp", vec!["--amp"], AUTO),
        ("--amp fp16", vec!["--amp", "fp16"], FP16),
        ("--amp=false", vec!["--amp=false"], FP32),
        ("--no-amp", vec!["--no-amp"], FP32),
        ("amp=fp16", vec!["amp=fp16"], FP16),
        ("amp=true", vec!["amp=true"], AUTO),
        ("--cfg with amp: fp16", vec!["--cfg", &fp16_cfg], FP16),
        ("--cfg with amp: true", vec!["--cfg", &true_cfg], AUTO),
        ("--cfg amp: fp16, then --amp fp32", vec!["--cfg", &fp16_cfg, "--amp", "fp32"], FP32),
        ("Ultralytics args.yaml (amp: false)", vec!["--cfg", ultralytics], FP32),
        ("Ultralytics args.yaml (amp: true)", vec!["--cfg", &ultralytics_true], AUTO),
    ];
    sources
        .into_iter()
        .map(|(what, args, asked)| {
            let s = command_line(&args);
            assert_eq!(s.amp, asked, "{what}: the setting as resolved");
            assert_eq!(s.is_given("amp"), what != "the default", "{what}: given explicitly");
            (what.to_string(), s, asked)
        })
        .collect()
}
