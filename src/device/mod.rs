//! Where a command computes: the CPU (burn-flex, always built in), an NVIDIA GPU through burn's CUDA
//! backend (the `cuda` cargo feature) or any Vulkan device through burn's wgpu backend with cubecl's
//! SPIR-V compiler (the `vulkan` feature). `--device` takes Ultralytics' spellings (`cpu`, `0`,
//! `cuda:0`) plus `vulkan` (the best adapter) and `vulkan:N` (the N-th adapter, as
//! `ember info --device vulkan` lists them).
//!
//! CUDA and Vulkan are one path: both are burn-cubecl backends, and every command is generic over
//! burn's `Backend`; [`ComputeDevice::run`] and [`ComputeDevice::run_autodiff`] are the one place
//! that picks the concrete backend.

pub mod vulkan;

use anyhow::{bail, Context, Result};
use burn::tensor::backend::{AutodiffBackend, Backend};

use crate::config::DeviceSpec;

/// A resolved `--device`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ComputeDevice {
    /// The CPU, through burn-flex (always built in).
    Cpu,
    /// GPU `index` as the driver numbers it, with the name the driver reports.
    Cuda {
        /// The GPU's index as the driver numbers it (`cuda:N`).
        index: usize,
        /// The GPU's name as `nvidia-smi` reports it.
        name: String,
        /// Its total memory in bytes, as `nvidia-smi` reports it (what AutoBatch fits the batch to).
        memory: Option<u64>,
    },
    /// A Vulkan adapter: its position in the adapter list, its name and kind as the driver reports them.
    Vulkan(vulkan::Adapter),
}

/// Work generic over burn backends, run by [`ComputeDevice::run`] on the one the device resolved to.
pub trait OnBackend {
    /// What the work returns.
    type Output;
    /// Does the work on backend `B`, on `device`.
    fn run<B: Backend>(self, device: &B::Device) -> Self::Output;
}

/// Work that needs gradients (training), run by [`ComputeDevice::run_autodiff`].
pub trait OnAutodiffBackend {
    /// What the work returns.
    type Output;
    /// Does the work on the autodiff backend `B`, on `device`.
    fn run<B: AutodiffBackend>(self, device: &B::Device) -> Self::Output;
}

impl ComputeDevice {
    /// Checks that the named device exists (a driver sees the GPU, Vulkan lists the adapter), so a machine
    /// without one gets a clear error instead of a failure deep inside the backend.
    pub fn resolve(spec: DeviceSpec) -> Result<ComputeDevice> {
        match spec {
            DeviceSpec::Cpu => Ok(ComputeDevice::Cpu),
            DeviceSpec::Vulkan(index) => Ok(ComputeDevice::Vulkan(vulkan::find(index)?)),
            DeviceSpec::Cuda(index) => {
                if !cfg!(feature = "cuda") {
                    bail!("device '{spec}' needs CUDA, and this ember was built without it (cargo build --release --features cuda)");
                }
                let (name, memory) = gpu_info(index)?;
                Ok(ComputeDevice::Cuda { index, name, memory })
            }
        }
    }

    /// A GPU backend (CUDA or Vulkan): FP16 by default under `--amp`, FP16 validation during AMP training.
    pub fn is_gpu(&self) -> bool {
        !matches!(self, ComputeDevice::Cpu)
    }

    /// The device's memory in bytes, where it is known (Vulkan reports its heaps, nvidia-smi a CUDA GPU's total;
    /// the CPU has none of its own).
    pub fn total_memory(&self) -> Option<u64> {
        match self {
            ComputeDevice::Vulkan(adapter) => adapter.memory,
            ComputeDevice::Cuda { memory, .. } => *memory,
            ComputeDevice::Cpu => None,
        }
    }

    /// The device's kind as Ultralytics writes it in messages (`device.type.upper()`): `CPU`, `CUDA`, `VULKAN`.
    pub fn kind(&self) -> &'static str {
        match self {
            ComputeDevice::Cpu => "CPU",
            ComputeDevice::Cuda { .. } => "CUDA",
            ComputeDevice::Vulkan(_) => "VULKAN",
        }
    }

    /// Runs `work` on this device's backend.
    pub fn run<W: OnBackend>(&self, work: W) -> W::Output {
        match self {
            ComputeDevice::Cpu => work.run::<crate::backend::Cpu>(&Default::default()),
            #[cfg(feature = "cuda")]
            ComputeDevice::Cuda { index, .. } => work.run::<crate::backend::Gpu>(&crate::backend::gpu_device(*index)),
            #[cfg(feature = "vulkan")]
            ComputeDevice::Vulkan(adapter) => work.run::<crate::backend::Vulkan>(&adapter.device()),
            #[allow(unreachable_patterns)]
            other => unreachable!("ComputeDevice::resolve refuses {other} in a build without its feature"),
        }
    }

    /// Runs `work` on this device's backend with autodiff.
    pub fn run_autodiff<W: OnAutodiffBackend>(&self, work: W) -> W::Output {
        match self {
            ComputeDevice::Cpu => work.run::<crate::backend::CpuAutodiff>(&Default::default()),
            #[cfg(feature = "cuda")]
            ComputeDevice::Cuda { index, .. } => {
                work.run::<crate::backend::GpuAutodiff>(&crate::backend::gpu_device(*index))
            }
            #[cfg(feature = "vulkan")]
            ComputeDevice::Vulkan(adapter) => work.run::<crate::backend::VulkanAutodiff>(&adapter.device()),
            #[allow(unreachable_patterns)]
            other => unreachable!("ComputeDevice::resolve refuses {other} in a build without its feature"),
        }
    }

    /// Whether the device computes in FP16 (asked of the backend: a Vulkan adapter may lack `shaderFloat16`).
    pub fn supports_f16(&self) -> bool {
        struct AskF16;
        impl OnBackend for AskF16 {
            type Output = bool;
            fn run<B: Backend>(self, device: &B::Device) -> bool {
                B::supports_dtype(device, burn::tensor::DType::F16)
            }
        }
        self.run(AskF16)
    }
}

impl std::fmt::Display for ComputeDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ComputeDevice::Cpu => write!(f, "CPU (burn-flex)"),
            ComputeDevice::Cuda { index, name, .. } => write!(f, "CUDA:{index} ({name})"),
            ComputeDevice::Vulkan(a) => write!(f, "Vulkan:{} ({}, {})", a.index, a.name, a.kind),
        }
    }
}

/// The name of GPU `index` from `nvidia-smi`, which ships with every NVIDIA driver.
fn gpu_info(index: usize) -> Result<(String, Option<u64>)> {
    let out = std::process::Command::new("nvidia-smi")
        .args(["--query-gpu=name,memory.total", "--format=csv,noheader,nounits", &format!("--id={index}")])
        .output()
        .context("device: no NVIDIA driver found (nvidia-smi could not run); use --device cpu")?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !out.status.success() || text.is_empty() {
        bail!("device: no GPU {index} ({}); use --device cpu", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(parse_gpu_line(text.lines().next().unwrap_or_default()))
}

/// One line of `nvidia-smi --query-gpu=name,memory.total --format=csv,noheader,nounits`: the name, and the
/// total memory in MiB as bytes (none when the driver prints no number there, e.g. `[N/A]`).
fn parse_gpu_line(line: &str) -> (String, Option<u64>) {
    // A name may hold commas; the memory is the last field.
    match line.rsplit_once(',') {
        Some((name, mib)) => (name.trim().to_string(), mib.trim().parse::<u64>().ok().map(|m| m << 20)),
        None => (line.trim().to_string(), None),
    }
}

/// GPUs known to give NaN losses or zero mAP when training in FP16 (the list Ultralytics keeps: GTX 16xx,
/// Quadro T-series, Tesla K40m); they train in FP32.
pub fn fp16_unsafe(gpu_name: &str) -> bool {
    let name = gpu_name.to_ascii_lowercase();
    let vendor = ["nvidia", "geforce", "quadro", "tesla"].iter().any(|v| name.contains(v));
    let model = ["1660", "1650", "1630", "t400", "t550", "t600", "t1000", "t1200", "t2000", "k40m"]
        .iter()
        .any(|m| name.contains(m));
    vendor && model
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nvidia_smi_lines_give_name_and_memory() {
        assert_eq!(parse_gpu_line("NVIDIA H200, 143771"), ("NVIDIA H200".into(), Some(143771 << 20)));
        assert_eq!(
            parse_gpu_line("NVIDIA GeForce GTX 1660, SUPER, 6144"),
            ("NVIDIA GeForce GTX 1660, SUPER".into(), Some(6144 << 20))
        );
        assert_eq!(parse_gpu_line("Tesla K40m, [N/A]"), ("Tesla K40m".into(), None));
        assert_eq!(parse_gpu_line("Some GPU"), ("Some GPU".into(), None));
    }

    #[test]
    fn the_cpu_is_always_there() {
        assert_eq!(ComputeDevice::resolve(DeviceSpec::Cpu).unwrap(), ComputeDevice::Cpu);
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn gpu_in_a_cpu_build_is_a_clear_error() {
        let text = format!("{:#}", ComputeDevice::resolve(DeviceSpec::Cuda(0)).unwrap_err());
        assert!(text.contains("--features cuda"), "{text}");
    }

    #[cfg(not(feature = "vulkan"))]
    #[test]
    fn vulkan_in_a_build_without_it_is_a_clear_error() {
        let text = format!("{:#}", ComputeDevice::resolve(DeviceSpec::Vulkan(None)).unwrap_err());
        assert!(text.contains("--features vulkan"), "{text}");
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
