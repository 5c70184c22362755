//! One file per subcommand: each turns resolved settings into work and console output. Commands share the
//! helpers below and never call one another.

pub mod check;
pub mod export;
pub mod info;
pub mod predict;
pub mod train;
pub mod val;

use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::config::Settings;
use crate::data::{download, DatasetConfig};

/// Loads the dataset YAML named by `--data`, downloading the dataset if its YAML says how.
pub fn load_dataset(settings: &Settings) -> Result<DatasetConfig> {
    let data = settings.data.as_deref().context("no dataset given: pass --data FILE.yaml (e.g. --data coco8.yaml)")?;
    let dir = settings.datasets_dir.as_ref().map(PathBuf::from);
    let config = DatasetConfig::load(data.as_ref(), dir.as_deref())?;
    download::ensure_present(&config)?;
    Ok(config)
}

/// The class names of `--data` and the YAML they come from, if given (only the YAML is read: the images need not
/// be present).
pub fn dataset_names(settings: &Settings) -> Result<Option<(Vec<String>, PathBuf)>> {
    let Some(data) = settings.data.as_deref() else {
        return Ok(None);
    };
    let dir = settings.datasets_dir.as_ref().map(PathBuf::from);
    let config = DatasetConfig::load(data.as_ref(), dir.as_deref())?;
    Ok(Some((config.names, config.yaml_path)))
}
