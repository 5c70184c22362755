//! Vulkan adapters: the list `ember info --device vulkan` prints, the one `--device vulkan[:N]` picks,
//! and burn's wgpu runtime started on it once per process with the Vulkan API (cubecl's SPIR-V compiler).
//!
//! `vulkan:N` is the N-th adapter of that list, in the order the Vulkan loader reports them. burn's wgpu
//! backend does not number adapters that way: it takes "the k-th adapter of a kind" (discrete GPU,
//! integrated GPU, virtual GPU, CPU), so each adapter keeps its rank among those of its kind.
//! `vulkan` alone is the best adapter: a discrete GPU before an integrated, a virtual, then a CPU one
//! (Mesa's lavapipe reports itself as a CPU), the first of its kind.

use anyhow::Result;

/// The kind of a Vulkan adapter, as the driver reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum AdapterKind {
    /// A GPU of its own; plain `vulkan` prefers it over every other kind (the variants are in that order).
    DiscreteGpu,
    /// A GPU built into the CPU or chipset, sharing system memory.
    IntegratedGpu,
    /// A virtual GPU, as a hypervisor or a remote host presents it.
    VirtualGpu,
    /// A software rasteriser such as Mesa's lavapipe.
    Cpu,
    /// A kind the driver does not name; picked last.
    Other,
}

impl std::fmt::Display for AdapterKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AdapterKind::DiscreteGpu => "discrete GPU",
            AdapterKind::IntegratedGpu => "integrated GPU",
            AdapterKind::VirtualGpu => "virtual GPU",
            AdapterKind::Cpu => "CPU, software",
            AdapterKind::Other => "other",
        })
    }
}

/// One Vulkan adapter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Adapter {
    /// Position in the adapter list: what `vulkan:N` names.
    pub index: usize,
    /// The device name the driver reports, e.g. "NVIDIA GeForce RTX 4090" or "llvmpipe (LLVM 15.0.6, 256 bits)".
    pub name: String,
    /// What sort of device it is, which decides the best adapter and burn's per-kind numbering (`rank`).
    pub kind: AdapterKind,
    /// Driver name and version, e.g. "llvmpipe, Mesa 22.3.6 (LLVM 15.0.6)".
    pub driver: String,
    /// Whether the adapter offers FP16 arithmetic in shaders (`shaderFloat16`).
    pub shader_f16: bool,
    /// Which adapter of its kind this is, as burn's wgpu backend selects adapters.
    pub rank: usize,
    /// Bytes of its largest device-local memory heap (for a software device, the host memory it uses), which
    /// AutoBatch fits the batch to; `None` when the driver does not say.
    pub memory: Option<u64>,
}

/// The adapter `vulkan:index` names, or the best one for plain `vulkan`.
pub fn find(index: Option<usize>) -> Result<Adapter> {
    let adapters = list()?;
    let Some(best) = adapters.iter().min_by_key(|a| (a.kind, a.index)) else {
        anyhow::bail!(
            "device 'vulkan': no Vulkan device found. Install a Vulkan driver for your GPU, or Mesa's software \
             device for a CPU-only machine (Debian/Ubuntu: apt-get install mesa-vulkan-drivers); \
             `vulkaninfo --summary` (package vulkan-tools) lists what the loader sees"
        );
    };
    let adapter = match index {
        None => best.clone(),
        Some(i) => adapters.get(i).cloned().ok_or_else(|| {
            anyhow::anyhow!("device 'vulkan:{i}': there are {} Vulkan adapters (vulkan:0..{}); `ember info --device vulkan` lists them", adapters.len(), adapters.len() - 1)
        })?,
    };
    if adapter.kind == AdapterKind::Cpu && adapter.rank > 0 {
        anyhow::bail!(
            "device 'vulkan:{}': burn's wgpu backend can only open the first CPU-type adapter",
            adapter.index
        );
    }
    Ok(adapter)
}

/// Every Vulkan adapter the loader reports, in its order.
#[cfg(feature = "vulkan")]
pub fn list() -> Result<Vec<Adapter>> {
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
        backends: wgpu::Backends::VULKAN,
        ..wgpu::InstanceDescriptor::new_without_display_handle()
    });
    let found = block_on(instance.enumerate_adapters(wgpu::Backends::VULKAN));
    let mut adapters: Vec<Adapter> = Vec::with_capacity(found.len());
    for (index, adapter) in found.iter().enumerate() {
        let info = adapter.get_info();
        let kind = match info.device_type {
            wgpu::DeviceType::DiscreteGpu => AdapterKind::DiscreteGpu,
            wgpu::DeviceType::IntegratedGpu => AdapterKind::IntegratedGpu,
            wgpu::DeviceType::VirtualGpu => AdapterKind::VirtualGpu,
            wgpu::DeviceType::Cpu => AdapterKind::Cpu,
            wgpu::DeviceType::Other => AdapterKind::Other,
        };
        let rank = adapters.iter().filter(|a| a.kind == kind).count();
        let driver = [info.driver.as_str(), info.driver_info.as_str()]
            .iter()
            .filter(|s| !s.is_empty())
            .copied()
            .collect::<Vec<_>>()
            .join(", ");
        let shader_f16 = adapter.features().contains(wgpu::Features::SHADER_F16);
        let memory = device_local_bytes(adapter);
        adapters.push(Adapter { index, name: info.name, kind, driver, shader_f16, rank, memory });
    }
    Ok(adapters)
}

/// The size of the adapter's largest device-local heap, from Vulkan's memory properties (wgpu does not report it).
#[cfg(feature = "vulkan")]
fn device_local_bytes(adapter: &wgpu::Adapter) -> Option<u64> {
    // SAFETY: the raw adapter is only read, while `adapter` (and so its instance) is alive.
    let hal = unsafe { adapter.as_hal::<wgpu::hal::api::Vulkan>() }?;
    let instance = hal.shared_instance().raw_instance();
    // SAFETY: a physical device of this instance; the call only fills a properties struct.
    let properties = unsafe { instance.get_physical_device_memory_properties(hal.raw_physical_device()) };
    const DEVICE_LOCAL: u32 = 0x1; // VK_MEMORY_HEAP_DEVICE_LOCAL_BIT
    properties.memory_heaps_as_slice().iter().filter(|h| h.flags.as_raw() & DEVICE_LOCAL != 0).map(|h| h.size).max()
}

/// Without the Vulkan backend there is nothing to list: an error that says how to build it.
#[cfg(not(feature = "vulkan"))]
pub fn list() -> Result<Vec<Adapter>> {
    anyhow::bail!("device 'vulkan' needs the Vulkan backend, and this ember was built without it (cargo build --release --features vulkan)")
}

/// The table `ember info --device vulkan` prints.
pub fn describe(adapters: &[Adapter]) -> String {
    if adapters.is_empty() {
        return "No Vulkan adapters found.".into();
    }
    let mut out = String::from("Vulkan adapters (--device vulkan:N):\n");
    for a in adapters {
        let f16 = if a.shader_f16 { "FP16" } else { "no FP16" };
        out.push_str(&format!("  vulkan:{}  {} ({}; {}; {f16})\n", a.index, a.name, a.kind, a.driver));
    }
    if let Some(best) = adapters.iter().min_by_key(|a| (a.kind, a.index)) {
        out.push_str(&format!("--device vulkan picks vulkan:{}", best.index));
    }
    out
}

#[cfg(feature = "vulkan")]
impl Adapter {
    /// burn's device for this adapter, its runtime started with the Vulkan API on first use.
    pub fn device(&self) -> burn::backend::wgpu::WgpuDevice {
        use burn::backend::wgpu::WgpuDevice;
        let device = match self.kind {
            AdapterKind::DiscreteGpu => WgpuDevice::DiscreteGpu(self.rank),
            AdapterKind::IntegratedGpu => WgpuDevice::IntegratedGpu(self.rank),
            AdapterKind::VirtualGpu => WgpuDevice::VirtualGpu(self.rank),
            AdapterKind::Cpu => WgpuDevice::Cpu,
            AdapterKind::Other => WgpuDevice::DefaultDevice,
        };
        // A runtime is registered once per device; a second registration panics inside cubecl.
        static STARTED: std::sync::Mutex<Vec<WgpuDevice>> = std::sync::Mutex::new(Vec::new());
        let mut started = STARTED.lock().unwrap_or_else(|e| e.into_inner());
        if !started.contains(&device) {
            burn::backend::wgpu::init_setup::<burn::backend::wgpu::graphics::Vulkan>(&device, Default::default());
            started.push(device.clone());
        }
        device
    }
}

/// Drives a wgpu future to completion: on native platforms wgpu's futures are ready when first polled.
#[cfg(feature = "vulkan")]
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let mut context = std::task::Context::from_waker(std::task::Waker::noop());
    loop {
        if let std::task::Poll::Ready(value) = future.as_mut().poll(&mut context) {
            return value;
        }
        std::thread::yield_now();
    }
}
