//! The backends ember computes on.

/// The CPU backend: burn-flex, f32 storage (f16/bf16 compute is reached through casts).
pub type Cpu = burn_flex::Flex;
/// The CPU backend with reverse-mode autodiff, for training.
pub type CpuAutodiff = burn::backend::Autodiff<Cpu>;

/// burn's CUDA backend (f32 storage; FP16 compute through casts, on tensor cores).
#[cfg(feature = "cuda")]
pub type Gpu = burn::backend::Cuda;
/// The CUDA backend with reverse-mode autodiff, for training.
#[cfg(feature = "cuda")]
pub type GpuAutodiff = burn::backend::Autodiff<Gpu>;

/// The burn device of CUDA GPU `index`.
#[cfg(feature = "cuda")]
pub fn gpu_device(index: usize) -> burn::backend::cuda::CudaDevice {
    burn::backend::cuda::CudaDevice::new(index)
}

/// burn's Vulkan backend: wgpu with cubecl's SPIR-V compiler, the same cubecl kernels as CUDA (f32
/// storage; FP16 compute through casts).
#[cfg(feature = "vulkan")]
pub type Vulkan = burn::backend::Vulkan;
/// The Vulkan backend with reverse-mode autodiff, for training.
#[cfg(feature = "vulkan")]
pub type VulkanAutodiff = burn::backend::Autodiff<Vulkan>;

/// Runs `work` on a thread of rayon's global pool, the pool flex and `gemm` split their kernels over.
///
/// Called from an outside thread, every parallel kernel wakes the pool's workers and the caller sleeps;
/// between kernels (autodiff bookkeeping, small ops) the workers spin while the caller runs, so on a
/// machine with as many cores as workers three threads fight for the cores. Driven from inside the pool,
/// the driving thread is one of the workers, and a training step gets faster (BENCHMARKS.md).
pub fn on_compute_pool<R: Send>(work: impl FnOnce() -> R + Send) -> R {
    // The commands used to run on the main thread's 8 MiB stack; a worker's default is 2 MiB, so the pool
    // gets more than the main thread had. An already-built global pool (a test harness that ran a kernel
    // first) is used as it is.
    let _ = rayon::ThreadPoolBuilder::new().stack_size(32 << 20).build_global();
    rayon::scope(|_| work())
}

/// Lets glibc's allocator keep freed tensor buffers for reuse. By default it serves multi-megabyte
/// activations from fresh `mmap`s (or trims them back to the kernel when freed), so every step
/// page-faults its outputs in again. Keeping them cuts the page faults of a training step by a third at
/// the same peak memory (BENCHMARKS.md). Buffers above 32 MiB (glibc's largest mmap threshold; a 640 px
/// batch has many) are kept as well by serving every allocation from the one main heap: without a cap on
/// arenas, a pool thread's arena is made of 64 MiB heaps, which cannot hold them and are unmapped when
/// emptied. At 640 px this takes another 5-12% off a step and lowers the peak (BENCHMARKS.md, 2026-12-05).
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; called before any thread allocates.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
        libc::mallopt(libc::M_MMAP_MAX, 0);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 512 << 20);
    }
}

/// The vector instruction sets ember's own CPU loops come in (each module detects what its loops need).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SimdLevel {
    /// What every x86-64 (or other) CPU runs: SSE2 on x86-64.
    Baseline,
    /// 256-bit vectors.
    Avx2,
    /// 512-bit vectors.
    Avx512,
}

/// The widest level ember's CPU loops may use whatever the CPU has: `EMBER_SIMD=baseline|avx2` lowers it, to
/// compare (read once).
pub fn simd_cap() -> SimdLevel {
    static CAP: std::sync::OnceLock<SimdLevel> = std::sync::OnceLock::new();
    *CAP.get_or_init(|| match std::env::var("EMBER_SIMD").as_deref() {
        Ok("baseline") => SimdLevel::Baseline,
        Ok("avx2") => SimdLevel::Avx2,
        _ => SimdLevel::Avx512,
    })
}

pub mod cubecl;

/// What a device holds, as its runtime reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DeviceMemory {
    /// Bytes of live tensors.
    pub in_use: u64,
    /// Bytes the device's memory pool holds (PyTorch's `memory_reserved`, what Ultralytics' `GPU_mem` shows).
    pub reserved: u64,
}

/// The device memory held by backend `B` on `device`: the cubecl runtime's own figures on CUDA and Vulkan,
/// `None` on the CPU (whose tensors are the process's memory).
pub fn device_memory<B: burn::tensor::backend::Backend>(device: &B::Device) -> Option<DeviceMemory> {
    cubecl::memory::<B>(device)
}
