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
