//! The dataset YAML: `path`, `train`/`val`/`test`, `names`, optional `nc` and `download`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde_yaml::Value;

use crate::config::closest;

pub use crate::config::Split;

/// A parsed dataset YAML with its paths resolved.
#[derive(Debug, Clone)]
pub struct DatasetConfig {
    /// The YAML file itself.
    pub yaml_path: PathBuf,
    /// The dataset root (`path`), resolved; may not exist yet when `download` can fetch it.
    pub root: PathBuf,
    /// Per split: folders, `.txt` lists or image files, resolved against `root`. Empty when absent.
    pub train: Vec<PathBuf>,
    /// The `val` split's sources, as `train`.
    pub val: Vec<PathBuf>,
    /// The `test` split's sources, as `train`.
    pub test: Vec<PathBuf>,
    /// Class names by id.
    pub names: Vec<String>,
    /// A zip URL that provides the dataset when it is missing.
    pub download: Option<String>,
    /// Where the dataset was looked for and would be downloaded to.
    pub datasets_dir: PathBuf,
}

const KNOWN_KEYS: &[&str] = &["path", "train", "val", "test", "names", "nc", "download"];
/// Keys other Ultralytics tasks use; accepted silently.
const OTHER_TASK_KEYS: &[&str] = &["kpt_shape", "flip_idx", "channels", "minival", "kpt_names", "yaml_file"];

impl DatasetConfig {
    /// The number of classes: the length of `names` (a YAML `nc` must agree with it).
    pub fn nc(&self) -> usize {
        self.names.len()
    }

    /// The sources listed for `split`, resolved but not checked to exist ([`split_sources`](Self::split_sources)
    /// checks); empty when the YAML does not name it.
    pub fn split(&self, split: Split) -> &[PathBuf] {
        match split {
            Split::Train => &self.train,
            Split::Val => &self.val,
            Split::Test => &self.test,
        }
    }

    /// Reads a dataset YAML. `datasets_dir` is where a relative `path` is looked up when it is not
    /// beside the YAML (`--datasets-dir`, else `$EMBER_DATASETS`, else the YAML's folder).
    ///
    /// A bare name such as `coco8.yaml` that is not a file here is also looked up in the datasets dir.
    pub fn load(yaml: &Path, datasets_dir: Option<&Path>) -> Result<DatasetConfig> {
        let env_dir = std::env::var_os("EMBER_DATASETS").map(PathBuf::from);
        let given_dir = datasets_dir.map(Path::to_path_buf).or(env_dir);
        let yaml_path = locate_yaml(yaml, given_dir.as_deref())?;
        let text = std::fs::read_to_string(&yaml_path)
            .with_context(|| format!("cannot read the dataset YAML {}", yaml_path.display()))?;
        let yaml_dir = yaml_path.parent().map(Path::to_path_buf).unwrap_or_default();
        let datasets_dir = given_dir.unwrap_or_else(|| yaml_dir.clone());
        Self::parse(&text, &yaml_path, &yaml_dir, &datasets_dir)
    }

    fn parse(text: &str, yaml_path: &Path, yaml_dir: &Path, datasets_dir: &Path) -> Result<DatasetConfig> {
        let at = |key: &str| {
            let line = text.lines().position(|l| l.starts_with(&format!("{key}:"))).map(|i| i + 1);
            format!("{}{}", yaml_path.display(), line.map(|l| format!(":{l}")).unwrap_or_default())
        };
        let doc: Value =
            serde_yaml::from_str(text).with_context(|| format!("{} is not valid YAML", yaml_path.display()))?;
        let Value::Mapping(map) = doc else {
            bail!("{}: a dataset YAML is a mapping with path, train, val and names", yaml_path.display());
        };
        for key in map.keys() {
            let key = key.as_str().unwrap_or_default();
            if KNOWN_KEYS.contains(&key) || OTHER_TASK_KEYS.contains(&key) {
                continue;
            }
            match closest(key, KNOWN_KEYS.iter().copied()) {
                Some(best) => bail!("{}: unknown key '{key}'; did you mean '{best}'?", at(key)),
                None => tracing::warn!("{}: ignoring unknown key '{key}'", at(key)),
            }
        }

        let names = parse_names(map.get("names")).with_context(|| at("names"))?;
        if let Some(nc) = map.get("nc").filter(|v| !v.is_null()) {
            let nc = nc.as_u64().with_context(|| format!("{}: nc must be a whole number", at("nc")))?;
            if nc as usize != names.len() {
                bail!("{}: nc is {nc} but names lists {} classes", at("nc"), names.len());
            }
        }

        let root = match map.get("path").and_then(Value::as_str).filter(|p| !p.is_empty()) {
            None => yaml_dir.to_path_buf(),
            Some(p) => resolve_root(Path::new(p), yaml_dir, datasets_dir),
        };
        let split = |key: &str| -> Result<Vec<PathBuf>> {
            let entries = match map.get(key) {
                None | Some(Value::Null) => vec![],
                Some(Value::String(s)) => vec![s.clone()],
                Some(Value::Sequence(seq)) => seq
                    .iter()
                    .map(|v| {
                        v.as_str()
                            .map(str::to_owned)
                            .with_context(|| format!("{}: {key} entries must be paths", at(key)))
                    })
                    .collect::<Result<_>>()?,
                Some(_) => bail!("{}: {key} must be a path or a list of paths", at(key)),
            };
            Ok(entries.iter().map(|e| root.join(e)).collect())
        };
        let (train, val, test) = (split("train")?, split("val")?, split("test")?);
        if train.is_empty() && val.is_empty() {
            bail!("{}: names neither a train nor a val split", yaml_path.display());
        }
        Ok(DatasetConfig {
            yaml_path: yaml_path.to_path_buf(),
            root,
            train,
            val,
            test,
            names,
            download: map.get("download").and_then(Value::as_str).map(str::to_owned),
            datasets_dir: datasets_dir.to_path_buf(),
        })
    }

    /// Whether every path that a split names exists.
    pub fn is_present(&self) -> bool {
        self.train.iter().chain(&self.val).all(|p| p.exists())
    }

    /// The paths of a split, checked to exist; a clear error for a split that is absent or missing.
    pub fn split_sources(&self, split: Split) -> Result<&[PathBuf]> {
        let paths = self.split(split);
        if paths.is_empty() {
            bail!("{} has no '{split}' split", self.yaml_path.display());
        }
        for p in paths {
            if !p.exists() {
                bail!(
                    "{}: the '{split}' split points to {}, which does not exist{}",
                    self.yaml_path.display(),
                    p.display(),
                    self.download.as_ref().map(|u| format!(" (the YAML's download URL is {u})")).unwrap_or_default()
                );
            }
        }
        Ok(paths)
    }
}

fn locate_yaml(yaml: &Path, datasets_dir: Option<&Path>) -> Result<PathBuf> {
    if yaml.is_file() {
        return Ok(yaml.to_path_buf());
    }
    let mut tried = vec![yaml.display().to_string()];
    if yaml.components().count() == 1 {
        let bundled = Path::new(env!("CARGO_MANIFEST_DIR")).join("datasets");
        for dir in datasets_dir.into_iter().chain([bundled.as_path()]) {
            let candidate = dir.join(yaml);
            if candidate.is_file() {
                return Ok(candidate);
            }
            tried.push(candidate.display().to_string());
        }
    }
    bail!("dataset YAML not found (looked at {})", tried.join(", "))
}

/// `path:` beside the YAML first, then under the datasets dir (where a download would put it).
fn resolve_root(path: &Path, yaml_dir: &Path, datasets_dir: &Path) -> PathBuf {
    if path.is_absolute() {
        return path.to_path_buf();
    }
    let beside = yaml_dir.join(path);
    if beside.exists() {
        return beside;
    }
    datasets_dir.join(path)
}

fn parse_names(v: Option<&Value>) -> Result<Vec<String>> {
    let name_of = |v: &Value| -> Result<String> {
        match v {
            Value::String(s) => Ok(s.clone()),
            Value::Number(n) => Ok(n.to_string()),
            Value::Bool(b) => Ok(b.to_string()),
            other => bail!("class names must be text, got {other:?}"),
        }
    };
    match v {
        None | Some(Value::Null) => bail!("names is missing: list the class names, e.g. names: {{0: person, 1: car}}"),
        Some(Value::Sequence(seq)) => seq.iter().map(name_of).collect(),
        Some(Value::Mapping(map)) => {
            let mut pairs = map
                .iter()
                .map(|(k, v)| {
                    let id =
                        k.as_u64().with_context(|| format!("class ids in names must be whole numbers, got {k:?}"))?;
                    Ok((id as usize, name_of(v)?))
                })
                .collect::<Result<Vec<_>>>()?;
            pairs.sort_by_key(|(id, _)| *id);
            for (i, (id, _)) in pairs.iter().enumerate() {
                if *id != i {
                    bail!("class ids in names must run 0, 1, 2, ... without gaps; id {i} is missing");
                }
            }
            Ok(pairs.into_iter().map(|(_, n)| n).collect())
        }
        Some(other) => bail!("names must be a list or an id: name mapping, got {other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_as_map_or_list() {
        let list = parse_names(Some(&serde_yaml::from_str("[cat, dog]").unwrap())).unwrap();
        let map = parse_names(Some(&serde_yaml::from_str("{1: dog, 0: cat}").unwrap())).unwrap();
        assert_eq!(list, map);
        let gap = parse_names(Some(&serde_yaml::from_str("{0: cat, 2: dog}").unwrap())).unwrap_err();
        assert!(gap.to_string().contains("id 1 is missing"));
    }
}
