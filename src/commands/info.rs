//! `ember info`: a model's layers, parameters and GFLOPs.

use std::path::PathBuf;

use anyhow::Result;

use crate::config::{DeviceSpec, Settings};
use crate::data::DatasetConfig;
use crate::model::weights_file::model_from_pt;
use crate::model::Yolo;

/// Prints the layer table of `model` at `imgsz`, built on the CPU, for the dataset's class count (else the
/// checkpoint's, else 80); with `--device vulkan` and no index, lists the Vulkan adapters instead.
pub fn run(settings: &Settings) -> Result<()> {
    // `ember info --device vulkan` lists the adapters `--device vulkan:N` can name.
    if settings.device.0 == [DeviceSpec::Vulkan(None)] {
        println!("{}", crate::device::vulkan::describe(&crate::device::vulkan::list()?));
        return Ok(());
    }
    // `--model best.pt`: the architecture and class count the checkpoint records.
    let (model, checkpoint_nc) = match model_from_pt(&settings.model)? {
        Some((_, architecture, nc)) => (architecture, Some(nc)),
        None => (settings.model.clone(), None),
    };
    let nc = match settings.data.as_deref() {
        Some(data) => {
            DatasetConfig::load(data.as_ref(), settings.datasets_dir.as_ref().map(PathBuf::from).as_deref())?.nc()
        }
        None => checkpoint_nc.filter(|&n| n > 0).unwrap_or(80),
    };
    // Summarised on the CPU: the layer table needs no accelerator. (Settings checked imgsz.)
    let yolo = Yolo::<crate::backend::Cpu>::new(&model, nc, &Default::default())?;
    println!("{}", yolo.summary(settings.imgsz as usize));
    Ok(())
}
