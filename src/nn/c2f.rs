//! Ultralytics' `C2f` (YOLOv8): the same split-and-chain block as [`C3k2`](super::C3k2), whose bottlenecks
//! keep the full hidden width (`e=1.0`) where C3k2's halve it. Built as a [`C3k2`], so it shares its forward,
//! cost and export.

use burn::config::Config;
use burn::tensor::backend::Backend;

use super::c3k2::{C3k2, C3k2Config};

/// [`C2f`](self) configuration: `C2f(c1, c2, n, shortcut, g, e)`.
#[derive(Config, Debug)]
pub struct C2fConfig {
    /// Input channels (Ultralytics' `c1`).
    pub c_in: usize,
    /// Output channels (Ultralytics' `c2`).
    pub c_out: usize,
    /// Number of bottlenecks. Default: 1.
    #[config(default = 1)]
    pub n: usize,
    /// Default: false.
    #[config(default = false)]
    pub shortcut: bool,
    /// Default: 1.
    #[config(default = 1)]
    pub groups: usize,
    /// Hidden channels = `int(c_out * expansion)`. Default: 0.5.
    #[config(default = 0.5)]
    pub expansion: f64,
}

impl C2fConfig {
    /// A new C2f on `device`, with freshly initialised weights: a [`C3k2`] of plain bottlenecks at full hidden
    /// width, whose tensor names are C2f's.
    pub fn init<B: Backend>(&self, device: &B::Device) -> C3k2<B> {
        C3k2Config::new(self.c_in, self.c_out)
            .with_n(self.n)
            .with_shortcut(self.shortcut)
            .with_groups(self.groups)
            .with_expansion(self.expansion)
            .with_bottleneck_expansion(1.0)
            .init(device)
    }
}
