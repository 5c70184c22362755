//! What burn's cubecl backends (CUDA, Vulkan) report about themselves: the device memory their pool holds, and
//! (for benchmarks) a log of every kernel they launch. Reached from code generic over backends by the backend's
//! type, as the kernels of src/kernels/ are; every other backend gets `None`.

use std::any::{Any, TypeId};
use std::path::{Path, PathBuf};

use burn::tensor::backend::Backend;

use super::DeviceMemory;

/// The device memory of `B` on `device`, when `B` is a cubecl backend (plain or autodiff).
pub fn memory<B: Backend>(device: &B::Device) -> Option<DeviceMemory> {
    let backend = TypeId::of::<B>();
    #[cfg(feature = "vulkan")]
    if backend == TypeId::of::<super::Vulkan>() || backend == TypeId::of::<super::VulkanAutodiff>() {
        let device = (device as &dyn Any).downcast_ref::<burn::backend::wgpu::WgpuDevice>()?;
        return usage::<burn::backend::wgpu::WgpuRuntime>(device);
    }
    #[cfg(feature = "cuda")]
    if backend == TypeId::of::<super::Gpu>() || backend == TypeId::of::<super::GpuAutodiff>() {
        let device = (device as &dyn Any).downcast_ref::<burn::backend::cuda::CudaDevice>()?;
        return usage::<::cubecl::cuda::CudaRuntime>(device);
    }
    let _ = (backend, device as &dyn Any);
    None
}

#[cfg(any(feature = "vulkan", feature = "cuda"))]
fn usage<R: ::cubecl::Runtime>(device: &R::Device) -> Option<DeviceMemory> {
    let usage = R::client(device).memory_usage().ok()?;
    Some(DeviceMemory { in_use: usage.bytes_in_use, reserved: usage.bytes_reserved })
}

/// A log of every kernel the cubecl runtimes launch from now on, one line each (cubecl's profiler at its
/// lowest level: names only, no timing, so the kernels still queue as they do in training). Must be turned on
/// before the first tensor reaches a GPU; `None` when that is too late or no cubecl backend is built in.
pub fn log_kernels(path: &Path) -> Option<KernelLog> {
    #[cfg(any(feature = "vulkan", feature = "cuda"))]
    {
        use ::cubecl::config::{profiling::ProfilingLogLevel, CubeClRuntimeConfig, RuntimeConfig};
        if CubeClRuntimeConfig::storage().lock().is_some() {
            return None; // a runtime already read its configuration
        }
        let mut config = CubeClRuntimeConfig::default();
        config.profiling.logger.level = ProfilingLogLevel::Minimal;
        config.profiling.logger.file = Some(path.to_path_buf());
        config.profiling.logger.append = false;
        CubeClRuntimeConfig::set(config);
        Some(KernelLog { path: path.to_path_buf() })
    }
    #[cfg(not(any(feature = "vulkan", feature = "cuda")))]
    {
        let _ = path;
        None
    }
}

/// The kernel log [`log_kernels`] turned on.
#[derive(Debug, Clone)]
pub struct KernelLog {
    path: PathBuf,
}

impl KernelLog {
    /// Kernels launched so far. The log is written by a thread of cubecl's: call after the device finished its
    /// queue (a read, or `Backend::sync`); this waits until the count stops growing.
    pub fn count(&self) -> u64 {
        let read = || {
            std::fs::read_to_string(&self.path).map(|t| t.lines().filter(|l| l.starts_with("Executing")).count() as u64)
        };
        let mut last = read().unwrap_or(0);
        loop {
            std::thread::sleep(std::time::Duration::from_millis(30));
            let now = read().unwrap_or(0);
            if now == last {
                return now;
            }
            last = now;
        }
    }

    /// Kernels launched so far, by name (the balanced form cubecl logs).
    pub fn by_name(&self) -> std::collections::BTreeMap<String, u64> {
        let _ = self.count();
        let mut names = std::collections::BTreeMap::new();
        for line in std::fs::read_to_string(&self.path).unwrap_or_default().lines() {
            if let Some(name) = line.strip_prefix("Executing ") {
                *names.entry(name.split('<').next().unwrap_or(name).trim().to_string()).or_insert(0) += 1;
            }
        }
        names
    }
}
