//! Console output of training: a bar per epoch with the running losses, in Ultralytics' columns.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Resident memory of this process in GiB (what the `mem` column shows on CPU).
pub fn resident_gib() -> f64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: f64 = statm.split_whitespace().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0.0);
    pages * 4096.0 / (1u64 << 30) as f64
}

pub fn header(loss_names: [&str; 3]) -> String {
    format!(
        "{:>11}{:>11}{:>11}{:>11}{:>11}{:>11}{:>11}",
        "Epoch", "mem", loss_names[0], loss_names[1], loss_names[2], "Instances", "Size"
    )
}

pub fn row(epoch: usize, epochs: usize, losses: [f64; 3], instances: usize, size: usize) -> String {
    format!(
        "{:>11}{:>11}{:>11.4}{:>11.4}{:>11.4}{:>11}{:>11}",
        format!("{}/{}", epoch + 1, epochs),
        format!("{:.3}G", resident_gib()),
        losses[0],
        losses[1],
        losses[2],
        instances,
        size
    )
}

/// A bar over one epoch's batches; drawn only on a terminal (logs get the final line instead), and only by the
/// process that reports the run (rank 0 of a data-parallel run).
pub fn epoch_bar(batches: usize, visible: bool) -> ProgressBar {
    let target = if visible { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::hidden() };
    let bar = ProgressBar::with_draw_target(Some(batches as u64), target);
    bar.set_style(
        ProgressStyle::with_template("{msg} {percent:>3}% {bar:20} {pos}/{len} [{elapsed}<{eta}]")
            .expect("valid template"),
    );
    bar
}
