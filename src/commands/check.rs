//! `ember check`: what a dataset holds, split by split, and what is wrong with it.

use std::fmt::Write as _;

use anyhow::Result;

use crate::config::Settings;
use crate::data::scan::{scan_split, SplitScan};
use crate::data::{DatasetConfig, Split};

/// Scans every split the YAML names and prints the report. Fails when a named split is missing.
pub fn run(settings: &Settings) -> Result<()> {
    let dataset = super::load_dataset(settings)?;
    let scans = scan_all(&dataset)?;
    print!("{}", report(&dataset, &scans));
    Ok(())
}

/// Scans the train, val and test splits the dataset names, in that order, skipping those it leaves empty.
pub fn scan_all(dataset: &DatasetConfig) -> Result<Vec<SplitScan>> {
    let mut scans = Vec::new();
    for split in [Split::Train, Split::Val, Split::Test] {
        if dataset.split(split).is_empty() {
            continue;
        }
        let sources = dataset.split_sources(split)?;
        scans.push(scan_split(sources, dataset.nc(), split)?);
    }
    Ok(scans)
}

/// The text `ember check` prints.
pub fn report(dataset: &DatasetConfig, scans: &[SplitScan]) -> String {
    let mut out = String::new();
    let _ =
        writeln!(out, "{} ({} classes, root {})", dataset.yaml_path.display(), dataset.nc(), dataset.root.display());
    for scan in scans {
        let _ = writeln!(out, "{}", scan.summary_line());
        for c in &scan.corrupt {
            let _ = writeln!(out, "  corrupt: {}", c.reason);
        }
        let counts = scan.instances_per_class();
        let present: Vec<_> = counts.iter().enumerate().filter(|(_, n)| **n > 0).collect();
        if !present.is_empty() {
            let width = present.iter().map(|(i, _)| dataset.names[*i].len()).max().unwrap_or(5).max(5);
            let _ = writeln!(out, "  {:>width$} {:>10}", "class", "instances");
            for (i, n) in present {
                let _ = writeln!(out, "  {:>width$} {:>10}", dataset.names[i], n);
            }
        }
    }
    out
}
