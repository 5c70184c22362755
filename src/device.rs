//! Where a command computes: the CPU (burn-flex, always built in) or an NVIDIA GPU through burn's CUDA
//! backend (the `cuda` cargo feature). `--device` takes Ultralytics' spellings: `cpu`, `0`, `cuda:0`.

use anyhow::{bail, Context, Result};

/// A resolved `--device`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ComputeDevice {
    Cpu,
    /// GPU `index` as the driver numbers it, with the name the driver reports.
    Cuda { index: usize, name: String },
}

impl ComputeDevice {
    /// Parses `--device` and, for a GPU, checks that a driver sees it, so a machine without one gets a
    /// clear error instead of a failure deep inside the backend.
    pub fn resolve(device: Option<&str>) -> Result<ComputeDevice> {
        let Some(index) = gpu_index(device)? else { return Ok(ComputeDevice::Cpu) };
        if !cfg!(feature = "cuda") {
            bail!(
                "device '{}' needs CUDA, and this ember was built without it (cargo build --release --features cuda)",
                device.unwrap_or_default()
            );
        }
        let name = gpu_name(index)?;
        Ok(ComputeDevice::Cuda { index, name })
    }

    pub fn is_cuda(&self) -> bool {
        matches!(self, ComputeDevice::Cuda { .. })
    }
}

impl std::fmt::Display for ComputeDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ComputeDevice::Cpu => write!(f, "CPU (burn-flex)"),
            ComputeDevice::Cuda { index, name } => write!(f, "CUDA:{index} ({name})"),
        }
    }
}

/// The GPU index `--device` names, or `None` for the CPU.
fn gpu_index(device: Option<&str>) -> Result<Option<usize>> {
    let text = device.unwrap_or("").trim().to_ascii_lowercase();
    if text.is_empty() || text == "cpu" {
        return Ok(None);
    }
    if text == "cuda" {
        return Ok(Some(0));
    }
    let digits = text.strip_prefix("cuda:").unwrap_or(&text);
    match digits.parse::<usize>() {
        Ok(index) => Ok(Some(index)),
        Err(_) if digits.contains(',') => bail!("device '{text}': ember trains on one GPU; pick one, e.g. --device 0"),
        Err(_) => bail!("device '{text}' not understood: use cpu, 0, 1, ... or cuda:0"),
    }
}

/// The name of GPU `index` from `nvidia-smi`, which ships with every NVIDIA driver.
fn gpu_name(index: usize) -> Result<String> {
    let out = std::process::Command::new("nvidia-smi")
        .args(["--query-gpu=name", "--format=csv,noheader", &format!("--id={index}")])
        .output()
        .context("device: no NVIDIA driver found (nvidia-smi could not run); use --device cpu")?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !out.status.success() || text.is_empty() {
        bail!("device: no GPU {index} ({}); use --device cpu", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(text.lines().next().unwrap_or_default().trim().to_string())
}

/// GPUs known to give NaN losses or zero mAP when training in FP16 (the list Ultralytics keeps: GTX 16xx,
/// Quadro T-series, Tesla K40m); they train in FP32.
pub fn fp16_unsafe(gpu_name: &str) -> bool {
    let name = gpu_name.to_ascii_lowercase();
    let vendor = ["nvidia", "geforce", "quadro", "tesla"].iter().any(|v| name.contains(v));
    let model = ["1660", "1650", "1630", "t400", "t550", "t600", "t1000", "t1200", "t2000", "k40m"].iter().any(|m| name.contains(m));
    vendor && model
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ultralytics_device_spellings() {
        assert_eq!(gpu_index(None).unwrap(), None);
        assert_eq!(gpu_index(Some("cpu")).unwrap(), None);
        assert_eq!(gpu_index(Some("CPU")).unwrap(), None);
        assert_eq!(gpu_index(Some("0")).unwrap(), Some(0));
        assert_eq!(gpu_index(Some("cuda:1")).unwrap(), Some(1));
        assert_eq!(gpu_index(Some("cuda")).unwrap(), Some(0));
        assert!(format!("{}", gpu_index(Some("0,1")).unwrap_err()).contains("one GPU"));
        assert!(format!("{}", gpu_index(Some("mps")).unwrap_err()).contains("not understood"));
        assert_eq!(ComputeDevice::resolve(Some("cpu")).unwrap(), ComputeDevice::Cpu);
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn gpu_in_a_cpu_build_is_a_clear_error() {
        let text = format!("{:#}", ComputeDevice::resolve(Some("cuda:0")).unwrap_err());
        assert!(text.contains("--features cuda"), "{text}");
    }

    #[test]
    fn fp16_unsafe_gpus() {
        assert!(fp16_unsafe("NVIDIA GeForce GTX 1660 SUPER"));
        assert!(fp16_unsafe("Quadro T1000"));
        assert!(fp16_unsafe("NVIDIA T600"));
        assert!(!fp16_unsafe("NVIDIA H200"));
        assert!(!fp16_unsafe("NVIDIA GeForce RTX 4090"));
        assert!(!fp16_unsafe("NVIDIA A100-SXM4-80GB"));
    }
}
