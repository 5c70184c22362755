//! The console of `ember train`, pinned: what a user reads during a run (the setup lines, a header and a row per
//! epoch, the validation lines, the final table) is the same line for line. Numbers with a decimal point
//! (losses, memory, timings) vary from run to run and are masked; counts, epochs and wording are not.

use std::path::Path;
use std::process::Command;

use crate::common;

/// Each number with a decimal point becomes `#`, the run's temporary folder `<dir>`, and runs of spaces one
/// space (column widths follow the numbers' widths; the reporter's own tests pin the columns).
fn masked(stdout: &str, dir: &Path) -> Vec<String> {
    let text = stdout.replace(&dir.display().to_string(), "<dir>");
    text.lines()
        .map(|line| {
            let mut out = String::new();
            let mut token = String::new();
            let flush = |token: &mut String, out: &mut String| {
                let numeric = token.contains('.') && token.chars().any(|c| c.is_ascii_digit());
                out.push_str(if numeric { "#" } else { token });
                token.clear();
            };
            for c in line.chars() {
                if c.is_ascii_digit() || c == '.' || (c == 'e' || c == '-') && !token.is_empty() {
                    token.push(c);
                } else {
                    flush(&mut token, &mut out);
                    out.push(c);
                }
            }
            flush(&mut token, &mut out);
            out.split_whitespace().collect::<Vec<_>>().join(" ")
        })
        // Whether a step overflows in FP16 depends on the gradients' values: the loss-scale lines are the
        // reporter's tests' to pin.
        .filter(|l| !l.starts_with("AMP: gradient overflow") && !l.contains("steps skipped this epoch"))
        .collect()
}

const EXPECTED: &str = "\
device: CPU (burn-flex)
AMP: fp16 compute, fp32 master weights, loss scale 65536
train: 4 images, 4 labelled, 0 backgrounds, 0 corrupt, 13 instances
val: 4 images, 4 labelled, 0 backgrounds, 0 corrupt, 17 instances
freeze: 6 parameter tensors of layers [\"0\", \"1\"] (and the DFL) stay fixed
optimizer: 'optimizer=auto' found, ignoring lr0=# and momentum=#; picked AdamW(lr=#) for 3 iterations
optimizer: AdamW(lr=#, momentum=#) with weight decay # on conv weights, none on biases and norms
rect: rectangular training batches are not implemented; training batches stay square (mosaic needs them)
AMP checks passed: fp16 forward within # of FP32 on a real batch
Logging results to <dir>/runs/console
Starting training for 3 epochs...

Epoch mem box_loss cls_loss l1_loss Instances Size
Closing dataloader mosaic
1/3 #G # # # 13 64
train: 4 images in #s (# images/s); waited #s for data (#% of the epoch)
val: 4 images in #s (# images/s)
Class Images Instances Box(P R mAP50 mAP50-95)
all 4 17 # # # #

Epoch mem box_loss cls_loss l1_loss Instances Size
2/3 #G # # # 13 64
train: 4 images in #s (# images/s); waited #s for data (#% of the epoch)
val: 4 images in #s (# images/s)
Class Images Instances Box(P R mAP50 mAP50-95)
all 4 17 # # # #

Epoch mem box_loss cls_loss l1_loss Instances Size
3/3 #G # # # 13 64
train: 4 images in #s (# images/s); waited #s for data (#% of the epoch)
val: 4 images in #s (# images/s)
Class Images Instances Box(P R mAP50 mAP50-95)
all 4 17 # # # #

3 epochs completed in # hours.

Validating <dir>/runs/console/weights/best.safetensors...
Class Images Instances Box(P R mAP50 mAP50-95)
all 4 17 # # # #
person 3 10 # # # #
dog 1 1 # # # #
horse 1 2 # # # #
elephant 1 2 # # # #
umbrella 1 1 # # # #
potted plant 1 1 # # # #
Results saved to <dir>/runs/console";

#[test]
fn a_training_run_prints_what_it_always_printed() {
    let dir = tempfile::tempdir().unwrap();
    let coco8 = common::shared_datasets().join("coco8.yaml");
    let out = Command::new(env!("CARGO_BIN_EXE_ember"))
        .args(["train", "--epochs", "3", "--imgsz", "64", "--batch", "4", "--amp", "fp16", "--freeze", "2", "--rect"])
        .arg("--data")
        .arg(&coco8)
        .arg("--project")
        .arg(dir.path().join("runs"))
        .args(["--name", "console"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    // Metrics print as 0 or with decimals depending on what 3 epochs learn: a table row's figures are masked
    // whole.
    let lines: Vec<String> = masked(&stdout, dir.path())
        .into_iter()
        .map(|l| {
            let words: Vec<&str> = l.split(' ').collect();
            let is_row = words.len() >= 6 && words[words.len() - 4..].iter().all(|w| *w == "#" || *w == "0");
            if is_row {
                let head = words[..words.len() - 4].join(" ");
                format!("{head} # # # #")
            } else {
                l
            }
        })
        .collect();
    let expected: Vec<&str> = EXPECTED.lines().collect();
    for (i, (got, want)) in lines.iter().zip(&expected).enumerate() {
        assert_eq!(got, want, "line {} differs; the whole output:\n{stdout}", i + 1);
    }
    assert_eq!(lines.len(), expected.len(), "line count; the whole output:\n{stdout}");
}
