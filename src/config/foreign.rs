//! Keys of Ultralytics 8.4.190's `cfg/default.yaml` that ember accepts without acting on them, so that an
//! Ultralytics `args.yaml` works as `--cfg` as written. Each key either never applies to ember (another task, an
//! export format ember does not write, a PyTorch runtime switch) or changes detection results in a way ember does
//! not implement; those are accepted at their Ultralytics default and refused clearly otherwise.

use anyhow::{bail, Result};
use serde_yaml::Value;

/// How ember treats a foreign key.
#[derive(Debug, Clone, Copy)]
enum Rule {
    /// Never applies to ember's detection: accepted with any value.
    Ignored,
    /// Would change detection results: accepted only at these values (`~` is null), refused otherwise.
    OnlyAt(&'static [&'static str], &'static str),
}

use Rule::*;

const KEYS: &[(&str, Rule)] = &[
    ("task", OnlyAt(&["detect", "~"], "ember trains and runs detection models only")),
    ("mode", Ignored),
    ("save_dir", Ignored),
    ("cls_remap", Ignored),
    ("deterministic", Ignored),
    ("profile", Ignored),
    ("compile", Ignored),
    ("channels_last", Ignored),
    ("overlap_mask", Ignored),
    ("mask_ratio", Ignored),
    ("dropout", Ignored),
    ("quantize", OnlyAt(&["~"], "use half=true for FP16 val/predict/export; INT8 and QAT are not implemented")),
    ("dnn", Ignored),
    ("vid_stride", Ignored),
    ("stream_buffer", Ignored),
    ("visualize", Ignored),
    ("augment", OnlyAt(&["false"], "test-time augmentation is not implemented")),
    ("retina_masks", Ignored),
    ("embed", OnlyAt(&["~"], "feature embeddings are not implemented")),
    ("show", Ignored),
    ("save_frames", Ignored),
    ("save_crop", Ignored),
    ("show_boxes", Ignored),
    ("optimize", Ignored),
    ("simplify", Ignored),
    ("workspace", Ignored),
    ("distill_model", OnlyAt(&["~"], "knowledge distillation is not implemented")),
    ("dis", Ignored),
    ("cls_pw", OnlyAt(&["0", "0.0"], "class weighting of the classification loss is not implemented")),
    ("pose", Ignored),
    ("kobj", Ignored),
    ("rle", Ignored),
    ("angle", Ignored),
    ("dlog", Ignored),
    ("dgrad", Ignored),
    ("dlam", Ignored),
    ("bgr", OnlyAt(&["0", "0.0"], "the RGB/BGR channel-swap augmentation is not implemented")),
    ("copy_paste", Ignored),
    ("copy_paste_mode", Ignored),
    ("auto_augment", Ignored),
    ("erasing", Ignored),
    ("tracker", Ignored),
];

/// The foreign keys, in the order of Ultralytics' default.yaml.
pub fn foreign_keys() -> impl Iterator<Item = &'static str> {
    KEYS.iter().map(|(k, _)| *k)
}

/// Whether `key` is one of these foreign keys.
pub fn is_foreign(key: &str) -> bool {
    KEYS.iter().any(|(k, _)| *k == key)
}

/// Checks a foreign key's value: Ok for one ember can ignore, an error naming the key for one it cannot.
pub fn check_foreign(key: &str, value: &Value) -> Result<()> {
    let Some((_, rule)) = KEYS.iter().find(|(k, _)| *k == key) else { bail!("'{key}' is not a foreign key") };
    if let OnlyAt(allowed, why) = rule {
        let shown = serde_yaml::to_string(value).unwrap_or_default().trim().to_string();
        let shown = if value.is_null() { "~".to_string() } else { shown.to_ascii_lowercase() };
        if !allowed.contains(&shown.as_str()) {
            bail!("{key}={shown} is an Ultralytics setting ember does not support: {why}");
        }
    }
    Ok(())
}

/// The one line printed for the foreign keys a run was given.
pub fn ignored_line(keys: &[String]) -> String {
    format!("ignored (Ultralytics settings that do not apply to ember's detection): {}", keys.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_pass_and_other_values_are_refused_by_name() {
        assert!(check_foreign("task", &Value::String("detect".into())).is_ok());
        assert!(check_foreign("cls_pw", &serde_yaml::from_str("0.0").unwrap()).is_ok());
        assert!(check_foreign("compile", &Value::Bool(true)).is_ok());
        let e = check_foreign("task", &Value::String("segment".into())).unwrap_err().to_string();
        assert!(e.contains("task=segment") && e.contains("detection"), "{e}");
        let e = check_foreign("cls_pw", &serde_yaml::from_str("0.5").unwrap()).unwrap_err().to_string();
        assert!(e.contains("cls_pw=0.5"), "{e}");
        assert!(!is_foreign("epochs"));
    }
}
