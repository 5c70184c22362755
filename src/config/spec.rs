//! The list of setting keys, read from the embedded `configs/default.yaml`, so that the YAML is the one
//! place where a key, its default and its help text are written down.

use std::sync::OnceLock;

/// The embedded defaults file.
pub const DEFAULT_YAML: &str = include_str!("../../configs/default.yaml");

/// The value type a key takes, from the `(type)` tag of its comment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// `(bool)`: true or false; a bare flag means true.
    Bool,
    /// `(int)`: an integer.
    Int,
    /// `(float)`: a number.
    Float,
    /// `(str)`, or no tag: any value, parsed by the setting's own type (lists and paths included).
    Str,
}

/// Which part of the defaults file a key is written in; decides which subcommands take it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    /// `# Common ---`: model, data, device and run-folder keys, taken by most subcommands.
    Common,
    /// `# Train ---`: keys of `ember train` only.
    Train,
    /// `# Val and predict ---`: thresholds and outputs of val and predict (train takes them too, for its
    /// validation).
    ValPredict,
    /// `# Export ---`: keys of `ember export` only.
    Export,
    /// `# Hyper-parameters ---`: learning-rate schedule, optimizer and loss gains (train only).
    Hyper,
    /// `# Augmentation ---`: training augmentation (train only).
    Augment,
}

/// One key of `configs/default.yaml`: its name, type, section, default and help text, from which the CLI
/// builds its flags and the settings check the values given.
#[derive(Debug, Clone)]
pub struct KeySpec {
    /// The key as written in the YAML (`weight_decay`); also the `key=value` spelling.
    pub name: &'static str,
    /// The value type, from the `(type)` tag of the key's comment.
    pub kind: KeyKind,
    /// The section the key is written in.
    pub section: Section,
    /// The default as written in the YAML (empty when the key has none).
    pub default: &'static str,
    /// The help text after the `(type)` tag; the CLI shows it (capitalised) in `--help`.
    pub help: &'static str,
}

impl KeySpec {
    /// The flag spelling: `weight_decay` -> `weight-decay`.
    pub fn flag(&self) -> String {
        self.name.replace('_', "-")
    }
}

/// All keys in file order.
pub fn key_specs() -> &'static [KeySpec] {
    static SPECS: OnceLock<Vec<KeySpec>> = OnceLock::new();
    SPECS.get_or_init(|| parse_specs(DEFAULT_YAML))
}

fn parse_specs(text: &'static str) -> Vec<KeySpec> {
    let mut section = Section::Common;
    let mut specs = Vec::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if let Some(title) = trimmed.strip_prefix('#') {
            let title = title.trim_start();
            for (prefix, s) in [
                ("Common", Section::Common),
                ("Train", Section::Train),
                ("Val and predict", Section::ValPredict),
                ("Export", Section::Export),
                ("Hyper-parameters", Section::Hyper),
                ("Augmentation", Section::Augment),
            ] {
                if title.starts_with(prefix) && title.contains("----") {
                    section = s;
                }
            }
            continue;
        }
        let Some((name, rest)) = trimmed.split_once(':') else { continue };
        let (default, comment) = rest.split_once('#').unwrap_or((rest, ""));
        let comment = comment.trim();
        let (kind, help) = match comment.strip_prefix('(').and_then(|c| c.split_once(')')) {
            Some((tag, help)) => (tag.trim(), help.trim()),
            None => ("str", comment),
        };
        let kind = match kind {
            "bool" => KeyKind::Bool,
            "int" => KeyKind::Int,
            "float" => KeyKind::Float,
            _ => KeyKind::Str,
        };
        specs.push(KeySpec { name: name.trim(), kind, section, default: default.trim(), help });
    }
    specs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_has_help_and_sections_are_found() {
        let specs = key_specs();
        assert!(specs.len() > 60);
        assert!(specs.iter().all(|s| !s.help.is_empty()), "a key in default.yaml has no help text");
        let lr0 = specs.iter().find(|s| s.name == "lr0").unwrap();
        assert_eq!((lr0.kind, lr0.section, lr0.default), (KeyKind::Float, Section::Hyper, "0.01"));
        let mosaic = specs.iter().find(|s| s.name == "mosaic").unwrap();
        assert_eq!(mosaic.section, Section::Augment);
        assert_eq!(specs.iter().find(|s| s.name == "iou").unwrap().section, Section::ValPredict);
    }
}
