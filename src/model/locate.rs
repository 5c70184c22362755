//! Where a named weights file is found: the working directory, then `weights/` under it, then
//! `$EMBER_WEIGHTS`. Official Ultralytics names (`yolo26n.pt`, `yolov8s.pt`) are downloaded into `weights/`
//! when missing, unless `EMBER_OFFLINE` is set; otherwise the error says where to put the file.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

use super::yaml::{family_of, guess_scale};

/// The folder named weights are kept in, relative to the working directory.
pub const WEIGHTS_DIR: &str = "weights";

/// Where Ultralytics publishes its pretrained detection weights.
const RELEASE_URL: &str = "https://github.com/ultralytics/assets/releases/latest/download";

/// Where and how named weights are looked up: `$EMBER_WEIGHTS` and `$EMBER_OFFLINE` as the process has them.
#[derive(Debug, Clone)]
pub struct Lookup {
    /// A folder searched after `weights/` (`$EMBER_WEIGHTS`).
    pub extra_dir: Option<PathBuf>,
    /// Whether official names may be downloaded (unset `$EMBER_OFFLINE`).
    pub online: bool,
}

impl Lookup {
    /// Read `$EMBER_WEIGHTS` (extra folder) and `$EMBER_OFFLINE` (any value disables downloads) from the process.
    pub fn from_env() -> Lookup {
        Lookup {
            extra_dir: std::env::var_os("EMBER_WEIGHTS").map(PathBuf::from),
            online: std::env::var_os("EMBER_OFFLINE").is_none(),
        }
    }

    /// The places `name` is looked for, in order.
    pub fn candidates(&self, name: &str) -> Vec<PathBuf> {
        let mut out = vec![PathBuf::from(name)];
        let bare = Path::new(name).components().count() == 1;
        if bare {
            out.push(Path::new(WEIGHTS_DIR).join(name));
            if let Some(dir) = &self.extra_dir {
                out.push(dir.join(name));
            }
        }
        out
    }
}

/// An official Ultralytics detection weights name (`yolo26n.pt`, `yolov8x.pt`)?
fn is_official(name: &str) -> bool {
    let Some(stem) = name.strip_suffix(".pt") else { return false };
    family_of(stem).is_some() && guess_scale(stem).is_some()
}

/// The file `name` refers to: an existing path, or a bare name found in `weights/` or `$EMBER_WEIGHTS`,
/// or an official name downloaded into `weights/`.
pub fn locate_weights(name: &str) -> Result<PathBuf> {
    locate_weights_with(name, &Lookup::from_env())
}

/// [`locate_weights`] with an explicit lookup.
pub fn locate_weights_with(name: &str, lookup: &Lookup) -> Result<PathBuf> {
    let tried = lookup.candidates(name);
    if let Some(found) = tried.iter().find(|p| p.is_file()) {
        return Ok(found.clone());
    }
    let looked = tried.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ");
    if is_official(name) && lookup.online {
        let dest = Path::new(WEIGHTS_DIR).join(name);
        std::fs::create_dir_all(WEIGHTS_DIR)?;
        let url = format!("{RELEASE_URL}/{name}");
        match crate::data::download::fetch(&url, &dest) {
            Ok(()) => return Ok(dest),
            Err(e) => bail!(
                "weights {name} not found (looked in {looked}) and the download from {url} failed ({e:#}); \
                 download it yourself and put it in {WEIGHTS_DIR}/ or in the folder $EMBER_WEIGHTS names"
            ),
        }
    }
    let hint = match is_official(name) {
        true => format!(" (Ultralytics publishes it at {RELEASE_URL}/{name})"),
        false => String::new(),
    };
    bail!(
        "weights {name} not found: looked in {looked}; put the file in {WEIGHTS_DIR}/ under the working directory \
         or in the folder $EMBER_WEIGHTS names{hint}"
    )
}
