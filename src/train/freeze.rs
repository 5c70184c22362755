//! `freeze`: parameters of the named layers take no gradient and keep their values, as Ultralytics 8.4.190's
//! trainer freezes them (`_setup_train`): a parameter is frozen when its key contains `model.<item>.` for an
//! item of the list (`freeze: N` lists the first N layers), or `.dfl` (always frozen). The BatchNorm layers of
//! frozen layers also keep their running statistics and normalise with them, as Ultralytics puts them in eval
//! mode (src/nn/frozen_norm.rs).

use anyhow::{bail, Result};
use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::Tensor;

use crate::model::weights::PathStack;
use crate::model::Yolo;
use crate::nn::frozen_norm::freeze_norm;

/// The key fragments that freeze a parameter, for `freeze` items `layers`.
pub fn frozen_fragments(layers: &[String]) -> Vec<String> {
    layers.iter().map(|l| format!("model.{l}.")).chain([".dfl".to_string()]).collect()
}

/// Freezes the parameters of `layers` in `model`; returns the model and the keys it froze.
pub fn freeze<B: AutodiffBackend>(model: Yolo<B>, layers: &[String]) -> Result<(Yolo<B>, Vec<String>)> {
    let fragments = frozen_fragments(layers);
    let (path, containers) = (PathStack::default(), Vec::new());
    let mut mapper = Freezer { fragments, path, containers, frozen: Vec::new(), total: 0 };
    let model = model.map(&mut mapper);
    let trainable = mapper.total - mapper.frozen.len();
    if trainable == 0 {
        bail!("freeze={layers:?} froze the entire model with no trainable parameters left; freeze fewer layers");
    }
    Ok((model, mapper.frozen))
}

struct Freezer {
    fragments: Vec<String>,
    path: PathStack,
    /// Module types along the path, to find BatchNorm scales.
    containers: Vec<String>,
    frozen: Vec<String>,
    total: usize,
}

impl<B: AutodiffBackend> ModuleMapper<B> for Freezer {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path.enter(name, container_type);
        self.containers.push(container_type.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.exit();
        self.containers.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let key = self.path.key();
        // Running statistics come through here too: they are buffers, not parameters (see batchnorm.rs).
        if key.ends_with("running_mean") || key.ends_with("running_var") {
            return param;
        }
        self.total += 1;
        if !self.fragments.iter().any(|f| key.contains(f.as_str())) {
            return param;
        }
        let in_norm = self.containers.last().is_some_and(|c| c.contains("BatchNorm"));
        if in_norm && key.ends_with(".weight") {
            freeze_norm(param.id);
        }
        self.frozen.push(key);
        param.set_require_grad(false)
    }
}
