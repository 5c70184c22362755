//! The console of `ember train`: the trainer's events as Ultralytics users know them, a progress bar per epoch
//! with the running losses in its columns, a row per epoch, validation lines and the final per-class table.

use std::io::Write;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::config::DEFAULT_BATCH;
use crate::train::autobatch::AutoBatch;
use crate::train::events::{ProgressRow, RunLength, StopReason, Throughput, TrainEvent, TrainReporter};
use crate::train::loss_scale::ScaleEvent;

/// Prints a run's events: lines to `out`, the progress bar to the terminal's stderr.
pub struct ConsoleReporter {
    out: Box<dyn Write>,
    /// `verbose=true`: the throughput lines of each epoch's training and validation.
    verbose: bool,
    /// Whether this process draws progress bars (rank 0 of a data-parallel run does; logs get the rows instead).
    bars: bool,
    /// The device's kind as Ultralytics names it in messages (`CPU`, `CUDA`, `VULKAN`); on a GPU the memory
    /// column is the device's (`GPU_mem`), not the process's (`mem`).
    device_kind: &'static str,
    bar: Option<ProgressBar>,
    /// The `mem` column's figure in GiB on the CPU.
    memory: fn() -> f64,
}

impl ConsoleReporter {
    /// The console on standard output.
    pub fn stdout(verbose: bool, bars: bool, device_kind: &'static str) -> Self {
        ConsoleReporter {
            out: Box::new(std::io::stdout()),
            verbose,
            bars,
            device_kind,
            bar: None,
            memory: resident_gib,
        }
    }

    fn line(&mut self, text: impl std::fmt::Display) {
        // A closed stdout (`ember train | head`) must not stop the training.
        let _ = writeln!(self.out, "{text}");
    }

    fn row(&self, r: &ProgressRow) -> String {
        format!(
            "{:>11}{:>11}{:>11.4}{:>11.4}{:>11.4}{:>11}{:>11}",
            format!("{}/{}", r.epoch + 1, r.epochs),
            format!("{:.3}G", r.device_memory.map_or_else(self.memory, gib)),
            r.losses[0],
            r.losses[1],
            r.losses[2],
            r.instances,
            r.size
        )
    }
}

impl TrainReporter for ConsoleReporter {
    fn report(&mut self, event: &TrainEvent<'_>) {
        match *event {
            TrainEvent::EpochStarted { loss_names, batches } => {
                self.line(format!(
                    "\n{:>11}{:>11}{:>11}{:>11}{:>11}{:>11}{:>11}",
                    "Epoch",
                    if self.device_kind == "CPU" { "mem" } else { "GPU_mem" },
                    loss_names[0],
                    loss_names[1],
                    loss_names[2],
                    "Instances",
                    "Size"
                ));
                self.bar = Some(epoch_bar(batches, self.bars));
            }
            TrainEvent::Batch(ref row) => {
                if let Some(bar) = &self.bar {
                    bar.set_message(self.row(row));
                    bar.inc(1);
                }
            }
            TrainEvent::EpochEnded { ref row, skipped_steps, throughput, peak_device_memory } => {
                if let Some(bar) = self.bar.take() {
                    bar.finish_and_clear();
                }
                let text = self.row(row);
                self.line(text.trim_end());
                if skipped_steps > 0 {
                    self.line(format!(
                        "{skipped_steps} steps skipped this epoch (non-finite loss or gradient overflow)"
                    ));
                }
                if self.verbose {
                    let peak = peak_device_memory.map(|b| format!("; peak GPU_mem {:.3}G", gib(b))).unwrap_or_default();
                    self.line(format!("{}{peak}", train_throughput(throughput)));
                }
            }
            TrainEvent::Validated { metrics, names, throughput } => {
                if self.verbose {
                    let secs = throughput.seconds.max(1e-9);
                    let images = throughput.images;
                    self.line(format!(
                        "val: {images} images in {:.1}s ({:.2} images/s)",
                        throughput.seconds,
                        images as f64 / secs
                    ));
                }
                // The header and the `all` row; the per-class rows are for the final table.
                for line in metrics.format_table(names).lines().take(2) {
                    self.line(line);
                }
            }
            TrainEvent::OutOfMemoryRetry { batch, reduced, attempt, attempts } => self.line(format!(
                "WARNING: {} out of memory with batch={batch}. Reducing to batch={reduced} and retrying \
                 ({attempt}/{attempts}).",
                self.device_kind
            )),
            TrainEvent::AutoBatch(AutoBatch::Default { ref reason }) => {
                self.line(format!("AutoBatch: WARNING {reason}, using default batch-size {DEFAULT_BATCH}"))
            }
            TrainEvent::AutoBatch(AutoBatch::Fitted { batch, predicted_bytes, device_bytes, ref trials }) => {
                let gib = |b: f64| b / (1u64 << 30) as f64;
                let measured: Vec<String> = trials
                    .iter()
                    .map(|(b, used)| match used {
                        Some(bytes) => format!("{b}: {:.3}G", gib(*bytes)),
                        None => format!("{b}: out of memory"),
                    })
                    .collect();
                self.line(format!("AutoBatch: trial batches {}", measured.join(", ")));
                let (predicted, total) = (gib(*predicted_bytes), gib(*device_bytes as f64));
                self.line(format!(
                    "AutoBatch: Using batch-size {batch} for {} {predicted:.2}G/{total:.2}G ({:.0}%) ✅",
                    self.device_kind,
                    100.0 * predicted / total
                ))
            }
            ref other => {
                if let Some(text) = line_of(other) {
                    self.line(text);
                }
            }
        }
    }
}

/// The line (or lines) of an event that leaves the progress bar alone, if it prints any.
fn line_of(event: &TrainEvent<'_>) -> Option<String> {
    match *event {
        TrainEvent::WeightsTransferred { from, report } => Some(format!("Transferred weights from {from}: {report}")),
        TrainEvent::Frozen { tensors, layers } => {
            Some(format!("freeze: {tensors} parameter tensors of layers {layers:?} (and the DFL) stay fixed"))
        }
        TrainEvent::OptimizerChosen { kind, lr, ignored_lr0, ignored_momentum, iterations } => Some(format!(
            "optimizer: 'optimizer=auto' found, ignoring lr0={ignored_lr0} and momentum={ignored_momentum}; \
                 picked {kind:?}(lr={lr}) for {iterations} iterations"
        )),
        TrainEvent::Optimizer { kind, lr, momentum, weight_decay } => {
            let decayed = match kind {
                crate::config::OptimizerKind::MuSGD => "conv and matrix weights (Muon + SGD)",
                _ => "conv weights",
            };
            Some(format!(
                "optimizer: {kind:?}(lr={lr}, momentum={momentum}) with weight decay {weight_decay} on {decayed}, \
                     none on biases and norms"
            ))
        }
        TrainEvent::Resumed { from, epoch, epochs } => {
            Some(format!("Resuming training from {} at epoch {} of {epochs}", from.display(), epoch + 1))
        }
        TrainEvent::RectIgnored => Some(
            "rect: rectangular training batches are not implemented; training batches stay square (mosaic needs \
                 them)"
                .into(),
        ),
        TrainEvent::AmpChecked(check) if check.passed() => Some(format!(
            "AMP checks passed: {} forward within {:.1e} of FP32 on a real batch",
            check.precision, check.relative_error
        )),
        TrainEvent::AmpChecked(check) => Some(format!(
            "AMP check failed: {} forward differs from FP32 by {:.1e} (tolerance {:.0e}); training in FP32",
            check.precision, check.relative_error, check.tolerance
        )),
        TrainEvent::DataParallel { processes, per_process, batch } => {
            Some(format!("DDP: {processes} processes, {per_process} images each a batch, {batch} in all"))
        }
        TrainEvent::Started { run_dir, length } => {
            let length = match length {
                RunLength::Hours(hours) => format!("{hours} hours"),
                RunLength::Epochs(epochs) => format!("{epochs} epochs"),
            };
            Some(format!("Logging results to {}\nStarting training for {length}...", run_dir.display()))
        }
        TrainEvent::MosaicClosed => Some("Closing dataloader mosaic".into()),
        TrainEvent::FaultInjected { epoch, batch } => {
            Some(format!("EMBER_FAULT: weights set to NaN before epoch {} batch {batch}", epoch + 1))
        }
        TrainEvent::LossScale { event: ScaleEvent::Backoff, from, to, .. } => {
            Some(format!("AMP: gradient overflow, step skipped; loss scale {from} -> {to}"))
        }
        TrainEvent::LossScale { event: ScaleEvent::Growth, from, to, growth_interval } => {
            Some(format!("AMP: {growth_interval} clean steps, loss scale {from} -> {to}"))
        }
        TrainEvent::LossScale { event: ScaleEvent::Unchanged, .. } => None,
        TrainEvent::Diverged { reason, epoch, attempt, attempts, reload } => Some(format!(
            "{reason} detected in epoch {} (attempt {attempt}/{attempts}): reloading {} and repeating the epoch",
            epoch + 1,
            reload.display()
        )),
        TrainEvent::OutOfMemoryRetry { .. } | TrainEvent::AutoBatch(_) => None,
        TrainEvent::AutoBatchStarted { imgsz, fraction } => Some(format!(
            "AutoBatch: Computing optimal batch size for imgsz={imgsz} at {:.1}% GPU memory utilization.",
            fraction * 100.0
        )),
        TrainEvent::Stopped(StopReason::Patience { patience, best_fitness }) => Some(format!(
            "Stopping early: no improvement in the last {patience} epochs (best fitness {best_fitness:.5})"
        )),
        TrainEvent::Stopped(StopReason::TimeLimit { hours }) => {
            Some(format!("Stopping: the time limit of {hours} hours is reached"))
        }
        TrainEvent::Finished { epochs, hours } => Some(format!("\n{epochs} epochs completed in {hours:.3} hours.")),
        TrainEvent::FinalValidation { weights } => Some(format!("\nValidating {}...", weights.display())),
        TrainEvent::FinalMetrics { metrics, names } => Some(metrics.format_table(names)),
        TrainEvent::Saved { run_dir } => Some(format!("Results saved to {}", run_dir.display())),
        TrainEvent::EpochStarted { .. }
        | TrainEvent::Batch(_)
        | TrainEvent::EpochEnded { .. }
        | TrainEvent::Validated { .. } => None,
    }
}

/// The training throughput line of an epoch (`verbose=true`): how much of it went to waiting for data.
fn train_throughput(t: Throughput) -> String {
    let secs = t.seconds.max(1e-9);
    format!(
        "train: {} images in {secs:.1}s ({:.2} images/s); waited {:.2}s for data ({:.1}% of the epoch)",
        t.images,
        t.images as f64 / secs,
        t.waiting,
        100.0 * t.waiting / secs
    )
}

fn gib(bytes: u64) -> f64 {
    bytes as f64 / (1u64 << 30) as f64
}

/// Resident memory of this process in GiB (what the `mem` column shows on CPU).
fn resident_gib() -> f64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: f64 = statm.split_whitespace().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0.0);
    pages * 4096.0 / (1u64 << 30) as f64
}

/// A bar over one epoch's batches; drawn only on a terminal (logs get the final row instead).
fn epoch_bar(batches: usize, visible: bool) -> ProgressBar {
    let target = if visible { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::hidden() };
    let bar = ProgressBar::with_draw_target(Some(batches as u64), target);
    bar.set_style(
        ProgressStyle::with_template("{msg} {percent:>3}% {bar:20} {pos}/{len} [{elapsed}<{eta}]")
            .expect("valid template"),
    );
    bar
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::path::Path;
    use std::rc::Rc;

    use super::*;
    use crate::config::{AmpMode, OptimizerKind};
    use crate::train::events::AmpCheck;

    /// What the reporter wrote, shared with the test.
    #[derive(Clone, Default)]
    struct Captured(Rc<RefCell<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.borrow_mut().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn printed(verbose: bool, gpu: bool, events: &[TrainEvent<'_>]) -> String {
        let captured = Captured::default();
        let device_kind = if gpu { "CUDA" } else { "CPU" };
        let mut reporter = ConsoleReporter {
            out: Box::new(captured.clone()),
            verbose,
            bars: false,
            device_kind,
            bar: None,
            memory: || 1.25,
        };
        for e in events {
            reporter.report(e);
        }
        let bytes = captured.0.borrow().clone();
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn setup_lines_read_as_they_always_have() {
        let layers = ["0".to_string(), "1".to_string()];
        let text = printed(
            true,
            false,
            &[
                TrainEvent::WeightsTransferred { from: "yolo26n.pt", report: "loaded 594 tensors" },
                TrainEvent::Frozen { tensors: 6, layers: &layers },
                TrainEvent::OptimizerChosen {
                    kind: OptimizerKind::AdamW,
                    lr: 0.000119,
                    ignored_lr0: 0.01,
                    ignored_momentum: 0.937,
                    iterations: 3,
                },
                TrainEvent::Optimizer { kind: OptimizerKind::MuSGD, lr: 0.01, momentum: 0.937, weight_decay: 0.0005 },
                TrainEvent::Resumed { from: Path::new("runs/train/weights/last.safetensors"), epoch: 2, epochs: 5 },
                TrainEvent::AmpChecked(AmpCheck { precision: AmpMode::Fp16, relative_error: 5.4e-4, tolerance: 1e-2 }),
                TrainEvent::AmpChecked(AmpCheck { precision: AmpMode::Bf16, relative_error: 0.2, tolerance: 5e-2 }),
                TrainEvent::DataParallel { processes: 2, per_process: 8, batch: 16 },
                TrainEvent::Started { run_dir: Path::new("runs/train"), length: RunLength::Hours(0.5) },
            ],
        );
        assert_eq!(
            text,
            "Transferred weights from yolo26n.pt: loaded 594 tensors\n\
             freeze: 6 parameter tensors of layers [\"0\", \"1\"] (and the DFL) stay fixed\n\
             optimizer: 'optimizer=auto' found, ignoring lr0=0.01 and momentum=0.937; picked AdamW(lr=0.000119) for 3 iterations\n\
             optimizer: MuSGD(lr=0.01, momentum=0.937) with weight decay 0.0005 on conv and matrix weights (Muon + SGD), none on biases and norms\n\
             Resuming training from runs/train/weights/last.safetensors at epoch 3 of 5\n\
             AMP checks passed: fp16 forward within 5.4e-4 of FP32 on a real batch\n\
             AMP check failed: bf16 forward differs from FP32 by 2.0e-1 (tolerance 5e-2); training in FP32\n\
             DDP: 2 processes, 8 images each a batch, 16 in all\n\
             Logging results to runs/train\n\
             Starting training for 0.5 hours...\n"
        );
    }

    #[test]
    fn an_epoch_prints_its_header_row_and_validation_in_ultralytics_columns() {
        let row = ProgressRow {
            epoch: 0,
            epochs: 3,
            losses: [3.20641, 5.39062, 0.12864],
            instances: 13,
            size: 64,
            device_memory: None,
        };
        let throughput = Throughput { images: 4, seconds: 0.3047, waiting: 0.004 };
        let text = printed(
            true,
            false,
            &[
                TrainEvent::EpochStarted { loss_names: ["box_loss", "cls_loss", "dfl_loss"], batches: 1 },
                TrainEvent::MosaicClosed,
                TrainEvent::LossScale { event: ScaleEvent::Backoff, from: 65536.0, to: 32768.0, growth_interval: 2000 },
                TrainEvent::LossScale { event: ScaleEvent::Unchanged, from: 1.0, to: 1.0, growth_interval: 2000 },
                TrainEvent::LossScale { event: ScaleEvent::Growth, from: 32768.0, to: 65536.0, growth_interval: 2000 },
                TrainEvent::Batch(row),
                TrainEvent::EpochEnded { row, skipped_steps: 1, throughput, peak_device_memory: None },
                TrainEvent::Stopped(StopReason::Patience { patience: 5, best_fitness: 0.123456 }),
                TrainEvent::Stopped(StopReason::TimeLimit { hours: 0.25 }),
                TrainEvent::Finished { epochs: 3, hours: 0.0123 },
                TrainEvent::Saved { run_dir: Path::new("runs/train") },
            ],
        );
        assert_eq!(
            text,
            "\n      Epoch        mem   box_loss   cls_loss   dfl_loss  Instances       Size\n\
             Closing dataloader mosaic\n\
             AMP: gradient overflow, step skipped; loss scale 65536 -> 32768\n\
             AMP: 2000 clean steps, loss scale 32768 -> 65536\n        \
             1/3     1.250G     3.2064     5.3906     0.1286         13         64\n\
             1 steps skipped this epoch (non-finite loss or gradient overflow)\n\
             train: 4 images in 0.3s (13.13 images/s); waited 0.00s for data (1.3% of the epoch)\n\
             Stopping early: no improvement in the last 5 epochs (best fitness 0.12346)\n\
             Stopping: the time limit of 0.25 hours is reached\n\
             \n3 epochs completed in 0.012 hours.\n\
             Results saved to runs/train\n"
        );
        let quiet = printed(
            false,
            false,
            &[TrainEvent::EpochEnded { row, skipped_steps: 0, throughput, peak_device_memory: None }],
        );
        assert_eq!(quiet.lines().count(), 1, "verbose=false leaves out the throughput line: {quiet}");
    }

    #[test]
    fn on_a_gpu_the_memory_column_is_the_devices() {
        let row = ProgressRow {
            epoch: 4,
            epochs: 10,
            losses: [1.0, 2.0, 0.5],
            instances: 7,
            size: 320,
            device_memory: Some(3 << 29),
        };
        let throughput = Throughput { images: 8, seconds: 2.0, waiting: 0.0 };
        let text = printed(
            true,
            true,
            &[
                TrainEvent::EpochStarted { loss_names: ["box_loss", "cls_loss", "dfl_loss"], batches: 1 },
                TrainEvent::EpochEnded { row, skipped_steps: 0, throughput, peak_device_memory: Some(1 << 31) },
            ],
        );
        assert_eq!(
            text,
            "\n      Epoch    GPU_mem   box_loss   cls_loss   dfl_loss  Instances       Size\n       \
             5/10     1.500G     1.0000     2.0000     0.5000          7        320\n\
             train: 8 images in 2.0s (4.00 images/s); waited 0.00s for data (0.0% of the epoch); peak GPU_mem 2.000G\n"
        );
    }

    #[test]
    fn out_of_memory_a_diverged_epoch_and_an_injected_fault_say_what_happens() {
        let text = printed(
            false,
            false,
            &[
                TrainEvent::OutOfMemoryRetry { batch: 16, reduced: 8, attempt: 1, attempts: 3 },
                TrainEvent::FaultInjected { epoch: 1, batch: 1 },
                TrainEvent::Diverged {
                    reason: "non-finite loss",
                    epoch: 1,
                    attempt: 1,
                    attempts: 3,
                    reload: Path::new("w/last.safetensors"),
                },
            ],
        );
        assert_eq!(
            text,
            "WARNING: CPU out of memory with batch=16. Reducing to batch=8 and retrying (1/3).\n\
             EMBER_FAULT: weights set to NaN before epoch 2 batch 1\n\
             non-finite loss detected in epoch 2 (attempt 1/3): reloading w/last.safetensors and repeating the epoch\n"
        );
    }
}
