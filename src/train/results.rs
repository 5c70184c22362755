//! `results.csv`, one row per epoch, with Ultralytics' column names (plus ember's loss scale).

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// One epoch's row of `results.csv`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EpochRow {
    /// The epoch, 1-based (epochs completed), as Ultralytics writes it.
    pub epoch: usize,
    /// Seconds since training started.
    pub time: f64,
    /// Mean training loss components `(box, cls, dfl|l1)`, gain-scaled, over the epoch's batches with a finite loss.
    pub train_loss: [f64; 3],
    /// Precision, recall, mAP50, mAP50-95.
    pub metrics: [f64; 4],
    /// Mean validation loss components `(box, cls, dfl|l1)`; zeros when the epoch was not validated.
    pub val_loss: [f64; 3],
    /// The `lr/pg*` columns (`schedule::results_lr_columns`).
    pub lr: Vec<f64>,
    /// The FP16 loss scale at the end of the epoch (ember's own column); 1 without a scaler.
    pub loss_scale: f64,
}

/// The run's `results.csv`, written one row at a time so that an interrupted run keeps its finished epochs.
pub struct ResultsCsv {
    path: PathBuf,
    third_loss: &'static str,
    lr_columns: usize,
}

impl ResultsCsv {
    /// `third_loss` is `dfl_loss` or `l1_loss`, depending on the head; `lr_columns` is 3, or 8 under MuSGD.
    pub fn create(path: &Path, third_loss: &'static str, lr_columns: usize, append: bool) -> Result<Self> {
        let csv = ResultsCsv { path: path.to_path_buf(), third_loss, lr_columns };
        if !(append && path.exists()) {
            std::fs::write(path, csv.header() + "\n").with_context(|| format!("cannot write {}", path.display()))?;
        }
        Ok(csv)
    }

    fn header(&self) -> String {
        let l = self.third_loss;
        let mut columns = vec![
            "epoch".to_string(),
            "time".into(),
            "train/box_loss".into(),
            "train/cls_loss".into(),
            format!("train/{l}"),
            "metrics/precision(B)".into(),
            "metrics/recall(B)".into(),
            "metrics/mAP50(B)".into(),
            "metrics/mAP50-95(B)".into(),
            "val/box_loss".into(),
            "val/cls_loss".into(),
            format!("val/{l}"),
        ];
        columns.extend((0..self.lr_columns).map(|i| format!("lr/pg{i}")));
        columns.push("loss_scale".into());
        columns.join(",")
    }

    /// Appends `row` to the file (opened and closed per row).
    pub fn append(&self, row: &EpochRow) -> Result<()> {
        let mut values = vec![format!("{}", row.epoch), format!("{:.3}", row.time)];
        values.extend(row.train_loss.iter().chain(&row.metrics).chain(&row.val_loss).map(|v| format!("{v:.5}")));
        values.extend(row.lr.iter().map(|v| format!("{v:.6e}")));
        values.push(format!("{}", row.loss_scale));
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.path)
            .with_context(|| format!("cannot append to {}", self.path.display()))?;
        writeln!(f, "{}", values.join(","))?;
        Ok(())
    }
}

/// Draws `results.png` from `results.csv` as Ultralytics' `plot_results` does: one panel per loss and metric
/// column, the first half of the losses and of the metrics on top (train losses, P, R), the rest below (val
/// losses, mAP50, mAP50-95). Empty or unparsable cells are NaN, which break the lines.
pub fn plot_results(csv: &Path, png: &Path) -> Result<()> {
    let text = std::fs::read_to_string(csv).with_context(|| format!("cannot read {}", csv.display()))?;
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<&str> = lines.next().unwrap_or_default().split(',').map(str::trim).collect();
    let rows: Vec<Vec<f64>> =
        lines.map(|l| l.split(',').map(|v| v.trim().parse().unwrap_or(f64::NAN)).collect()).collect();
    let column = |i: usize| rows.iter().map(|r| r.get(i).copied().unwrap_or(f64::NAN)).collect::<Vec<f64>>();
    // ember's `loss_scale` holds the AMP scale, not a loss.
    let losses: Vec<usize> =
        (0..header.len()).filter(|&i| header[i].contains("loss") && header[i] != "loss_scale").collect();
    let metrics: Vec<usize> =
        (0..header.len()).filter(|&i| !header[i].contains("loss") && header[i].contains("metric")).collect();
    let (l, m) = (losses.len() / 2, metrics.len().div_ceil(2));
    let order = [&losses[..l], &metrics[..m], &losses[l..], &metrics[m..]].concat();
    let epochs = column(0);
    let panels: Vec<_> = order.iter().map(|&i| (header[i].to_string(), epochs.clone(), column(i))).collect();
    crate::metrics::plots::plot_panels(&panels, png)
}
