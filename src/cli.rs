//! The command line: subcommands whose flags are generated from `configs/default.yaml`, plus
//! Ultralytics' `key=value` form (`ember train data=coco8.yaml epochs=5`).

use anyhow::{bail, Result};
use clap::{Arg, ArgAction, ArgMatches, Command};

use crate::config::foreign::{foreign_keys, is_foreign};
use crate::config::{closest, key_specs, KeyKind, KeySpec, Overrides};

pub use crate::config::Mode;

/// The one-line description of a subcommand in `--help`.
fn about(mode: Mode) -> &'static str {
    match mode {
        Mode::Train => "Train a detector on a dataset YAML (mixed precision on a GPU by default)",
        Mode::Val => "Validate weights on a dataset split: P, R, mAP50 and mAP50-95 per class",
        Mode::Predict => "Detect objects in images and save annotated copies",
        Mode::Export => "Export weights to ONNX, SafeTensors or burnpack",
        Mode::Check => "Check a dataset: images, labels, backgrounds, corrupt files, instances per class",
        Mode::Info => "Show a model's layers, parameter count and GFLOPs",
    }
}

/// A parsed command line.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// The subcommand.
    pub mode: Mode,
    /// The settings given on the command line (flags, `key=value` words and `--no-KEY` as `false`);
    /// [`crate::config::Settings::resolve`] lays them over the defaults and `--cfg`.
    pub overrides: Overrides,
}

/// The clap command tree.
pub fn command() -> Command {
    let mut root = Command::new("ember")
        .version(env!("CARGO_PKG_VERSION"))
        .about("Train, validate, export and run YOLO object detectors; mixed-precision training in one binary.")
        .after_help(
            "Settings can also be given as key=value, as with Ultralytics: `ember train data=coco8.yaml epochs=5`.\n\
             Defaults come from configs/default.yaml; --cfg FILE overrides them and flags override that file.",
        )
        .subcommand_required(true)
        .arg_required_else_help(true);
    for mode in Mode::ALL {
        let mut sub = Command::new(mode.name()).about(about(mode));
        for spec in key_specs().iter().filter(|s| mode.takes(s)) {
            sub = sub.arg(flag_for(spec));
            if spec.kind == KeyKind::Bool || spec.name == "amp" {
                sub = sub.arg(
                    Arg::new(format!("no_{}", spec.name))
                        .long(format!("no-{}", spec.flag()))
                        .action(ArgAction::SetTrue)
                        .hide(spec.name != "amp")
                        .help(format!("Same as --{}=false", spec.flag())),
                );
            }
        }
        // Ultralytics-only keys (`task=detect`, `compile=true`, ...) are accepted as hidden flags, so that an
        // Ultralytics command line works too; Settings::resolve says which do not apply or refuses them.
        for key in foreign_keys() {
            let flag = Arg::new(key).long(key.replace('_', "-")).hide(true).action(ArgAction::Set);
            sub = sub.arg(flag.num_args(0..=1).default_missing_value("true"));
        }
        root = root.subcommand(sub);
    }
    root
}

fn flag_for(spec: &KeySpec) -> Arg {
    let default = if spec.default.is_empty() { String::new() } else { format!(" [default: {}]", spec.default) };
    let mut help = spec.help.to_string();
    if let Some(first) = help.get_mut(0..1) {
        first.make_ascii_uppercase();
    }
    let arg = Arg::new(spec.name).long(spec.flag()).help(format!("{help}{default}")).action(ArgAction::Set);
    match spec.kind {
        // `--exist-ok` alone means true; `--exist-ok=false` is accepted too.
        KeyKind::Bool => arg.num_args(0..=1).default_missing_value("true").value_name("BOOL"),
        _ if matches!(spec.name, "amp" | "resume") => {
            arg.num_args(0..=1).default_missing_value("true").value_name("VALUE")
        }
        KeyKind::Int => arg.value_name("INT").allow_negative_numbers(true),
        KeyKind::Float => arg.value_name("FLOAT").allow_negative_numbers(true),
        KeyKind::Str => arg.value_name("VALUE"),
    }
}

/// Rewrites Ultralytics' `key=value` words into `--key=value` flags; an unknown key is an error
/// that suggests the closest one.
pub fn normalize_args(args: Vec<String>) -> Result<Vec<String>> {
    let mut out = Vec::with_capacity(args.len());
    for (i, arg) in args.into_iter().enumerate() {
        let is_kv = i > 0 && !arg.starts_with('-') && arg.split_once('=').is_some_and(|(k, _)| is_identifier(k));
        if !is_kv {
            out.push(arg);
            continue;
        }
        let (key, value) = arg.split_once('=').expect("checked");
        let key = key.replace('-', "_");
        if !key_specs().iter().any(|s| s.name == key) && !is_foreign(&key) {
            match closest(&key, key_specs().iter().map(|s| s.name)) {
                Some(best) => bail!("unknown setting '{key}' in '{arg}'; did you mean '{best}={value}'?"),
                None => bail!("unknown setting '{key}' in '{arg}' (see `ember <command> --help`)"),
            }
        }
        out.push(format!("--{}={value}", key.replace('_', "-")));
    }
    Ok(out)
}

fn is_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        && !s.starts_with(char::is_numeric)
}

/// Parses a full command line (program name first).
pub fn parse(args: Vec<String>) -> Result<Invocation, CliError> {
    let args = normalize_args(args).map_err(CliError::Setting)?;
    let matches = command().try_get_matches_from(args).map_err(CliError::Clap)?;
    let (name, sub) = matches.subcommand().expect("a subcommand is required");
    let mode = Mode::ALL.into_iter().find(|m| m.name() == name).expect("known subcommand");
    Ok(Invocation { mode, overrides: collect_overrides(mode, sub) })
}

fn collect_overrides(mode: Mode, m: &ArgMatches) -> Overrides {
    let mut values = Vec::new();
    for spec in key_specs().iter().filter(|s| mode.takes(s)) {
        if let Some(v) = m.get_one::<String>(spec.name) {
            values.push((spec.name.to_string(), v.clone()));
        }
        let no = format!("no_{}", spec.name);
        if m.try_get_one::<bool>(&no).ok().flatten() == Some(&true) {
            values.push((spec.name.to_string(), "false".to_string()));
        }
    }
    for key in foreign_keys() {
        if let Some(v) = m.get_one::<String>(key) {
            values.push((key.to_string(), v.clone()));
        }
    }
    Overrides { values }
}

/// A command line that could not be parsed.
#[derive(Debug)]
pub enum CliError {
    /// clap's own error (also `--help` and `--version`, which clap reports this way).
    Clap(clap::Error),
    /// A `key=value` word with an unknown key (the error suggests the closest one).
    Setting(anyhow::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<String> {
        std::iter::once("ember").chain(line.split_whitespace()).map(String::from).collect()
    }

    fn values(line: &str) -> Vec<(String, String)> {
        match parse(args(line)) {
            Ok(inv) => inv.overrides.values,
            Err(CliError::Clap(e)) => panic!("{e}"),
            Err(CliError::Setting(e)) => panic!("{e}"),
        }
    }

    fn pair(k: &str, v: &str) -> (String, String) {
        (k.into(), v.into())
    }

    #[test]
    fn flags_and_key_value_forms_agree() {
        let a = values("train --data coco8.yaml --epochs 5 --weight-decay 0.001");
        let b = values("train data=coco8.yaml epochs=5 weight_decay=0.001");
        assert_eq!(a, b);
        assert!(a.contains(&pair("weight_decay", "0.001")));
    }

    #[test]
    fn ultralytics_only_keys_pass_through_to_the_settings() {
        let v = values("train data=coco8.yaml task=detect compile=true --deterministic false");
        assert!(v.contains(&pair("task", "detect")) && v.contains(&pair("compile", "true")), "{v:?}");
        assert!(v.contains(&pair("deterministic", "false")), "{v:?}");
        assert!(parse(args("train tsak=detect")).is_err(), "a typo is still an error");
    }

    #[test]
    fn amp_forms() {
        assert_eq!(values("train --amp"), vec![pair("amp", "true")]);
        assert_eq!(values("train --amp=false"), vec![pair("amp", "false")]);
        assert_eq!(values("train --no-amp"), vec![pair("amp", "false")]);
        assert_eq!(values("train --amp bf16"), vec![pair("amp", "bf16")]);
        assert_eq!(values("train --amp fp32"), vec![pair("amp", "fp32")]);
        assert_eq!(values("train amp=fp16"), vec![pair("amp", "fp16")]);
    }

    #[test]
    fn bare_bool_flags() {
        assert_eq!(values("train --exist-ok --cos-lr=false"), vec![pair("exist_ok", "true"), pair("cos_lr", "false")]);
        assert_eq!(values("train --resume"), vec![pair("resume", "true")]);
    }

    #[test]
    fn unknown_keys_suggest_the_closest() {
        let Err(CliError::Setting(e)) = parse(args("train epohcs=5")) else { panic!("expected an error") };
        assert!(e.to_string().contains("did you mean 'epochs=5'"), "{e}");
        let Err(CliError::Clap(e)) = parse(args("train --epohcs 5")) else { panic!("expected an error") };
        assert!(e.to_string().contains("--epochs"), "{e}");
    }

    #[test]
    fn subcommands_take_their_own_flags() {
        assert!(parse(args("check --data x.yaml")).is_ok());
        assert!(matches!(parse(args("check --lr0 0.1")), Err(CliError::Clap(_))));
        assert!(parse(args("export --format onnx --half --dynamic")).is_ok());
        assert!(parse(args("info --model yolov8n --imgsz 320")).is_ok());
        command().debug_assert();
    }
}
