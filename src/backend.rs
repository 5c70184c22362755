//! The backends ember computes on.

/// The CPU backend: burn-flex, f32 storage (f16/bf16 compute is reached through casts).
pub type Cpu = burn_flex::Flex;
/// The CPU backend with reverse-mode autodiff, for training.
pub type CpuAutodiff = burn::backend::Autodiff<Cpu>;
