//! Run folders: `runs/train`, `runs/train2`, ... unless `--exist-ok` reuses one.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// The run folder for `project`/`name`: the first of `name`, `name2`, `name3`, ... that does not
/// exist, or `name` itself with `exist_ok`. Creates it.
pub fn make_run_dir(project: &Path, name: &str, exist_ok: bool) -> Result<PathBuf> {
    let mut dir = project.join(name);
    if !exist_ok {
        let mut n = 2;
        while dir.exists() {
            dir = project.join(format!("{name}{n}"));
            n += 1;
        }
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create the run folder {}", dir.display()))?;
    Ok(dir)
}

/// Writes a file so that a crash at any moment leaves either the old or the new content: the bytes
/// go to a temporary file beside it, are flushed to disk, then renamed over the target.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let tmp = path.with_extension(format!("{}.tmp", path.extension().and_then(|e| e.to_str()).unwrap_or("")));
    let mut f = std::fs::File::create(&tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
    f.write_all(bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path).with_context(|| format!("cannot replace {}", path.display()))?;
    Ok(())
}

/// The `last` checkpoint of the newest run under `project`, for `--resume` without a path.
pub fn newest_last_checkpoint(project: &Path) -> Result<PathBuf> {
    let mut newest: Option<(std::time::SystemTime, PathBuf)> = None;
    if let Ok(entries) = std::fs::read_dir(project) {
        for entry in entries.flatten() {
            let candidate = entry.path().join("weights/last.safetensors");
            if let Ok(modified) = candidate.metadata().and_then(|m| m.modified()) {
                if newest.as_ref().is_none_or(|(t, _)| modified > *t) {
                    newest = Some((modified, candidate));
                }
            }
        }
    }
    newest
        .map(|(_, p)| p)
        .with_context(|| format!("--resume: no run with weights/last.safetensors under {}", project.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbered_run_folders() {
        let root = std::env::temp_dir().join(format!("ember-runs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let a = make_run_dir(&root, "train", false).unwrap();
        let b = make_run_dir(&root, "train", false).unwrap();
        let c = make_run_dir(&root, "train", true).unwrap();
        assert_eq!((a.file_name().unwrap(), b.file_name().unwrap()), ("train".as_ref(), "train2".as_ref()));
        assert_eq!(c, a);
        assert!(b.is_dir());
        write_atomic(&a.join("x.txt"), b"one").unwrap();
        write_atomic(&a.join("x.txt"), b"two").unwrap();
        assert_eq!(std::fs::read_to_string(a.join("x.txt")).unwrap(), "two");
        assert!(!a.join("x.txt.tmp").exists());
        std::fs::remove_dir_all(&root).unwrap();
    }
}
