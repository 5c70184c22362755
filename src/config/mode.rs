//! The commands ember runs, and which settings each takes.

use super::{KeySpec, Section};

/// What the user asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `ember train`: train a detector on a dataset YAML.
    Train,
    /// `ember val`: validate weights on a dataset split.
    Val,
    /// `ember predict`: detect objects in images and save annotated copies.
    Predict,
    /// `ember export`: write weights as ONNX, SafeTensors or burnpack.
    Export,
    /// `ember check`: check a dataset's images and labels (ember's own command).
    Check,
    /// `ember info`: show a model's layers, parameter count and GFLOPs (ember's own command).
    Info,
}

impl Mode {
    /// Every subcommand, in the order the CLI lists them.
    pub const ALL: [Mode; 6] = [Mode::Train, Mode::Val, Mode::Predict, Mode::Export, Mode::Check, Mode::Info];

    /// The subcommand's name, also the default run folder name of the commands that write one.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Train => "train",
            Mode::Val => "val",
            Mode::Predict => "predict",
            Mode::Export => "export",
            Mode::Check => "check",
            Mode::Info => "info",
        }
    }

    /// Whether a setting is a flag of this subcommand.
    pub fn takes(self, spec: &KeySpec) -> bool {
        use Section::*;
        match self {
            Mode::Train => !matches!(spec.section, Export) && spec.name != "source",
            Mode::Val => matches!(spec.section, Common | ValPredict) && !matches!(spec.name, "source"),
            Mode::Predict => matches!(spec.section, Common | ValPredict) && spec.name != "split",
            Mode::Export => {
                let val_keys = matches!(spec.name, "nms" | "end2end" | "max_det" | "conf" | "iou");
                matches!(spec.section, Common | Export) || val_keys
            }
            Mode::Check => matches!(spec.name, "data" | "datasets_dir" | "workers" | "verbose" | "cfg"),
            Mode::Info => {
                matches!(spec.name, "model" | "weights" | "imgsz" | "data" | "datasets_dir" | "cfg" | "device")
            }
        }
    }
}
