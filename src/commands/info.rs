//! `ember info`: a model's layers, parameters and GFLOPs.

use std::path::PathBuf;

use anyhow::Result;

use crate::config::Settings;
use crate::data::DatasetConfig;

pub fn run(settings: &Settings) -> Result<()> {
    // `ember info --device vulkan` lists the adapters `--device vulkan:N` can name.
    if settings.device.as_deref().is_some_and(|d| d.trim().eq_ignore_ascii_case("vulkan")) {
        println!("{}", crate::device::vulkan::describe(&crate::device::vulkan::list()?));
        return Ok(());
    }
    let nc = match settings.data.as_deref() {
        Some(data) => DatasetConfig::load(data.as_ref(), settings.datasets_dir.as_ref().map(PathBuf::from).as_deref())?.nc(),
        None => 80,
    };
    crate::model::print_info(&settings.model, settings.imgsz as usize, nc)
}
