//! Fetching a dataset from its YAML's `download:` zip URL, as Ultralytics does.

use std::path::Path;

use anyhow::{bail, Context, Result};

use super::DatasetConfig;

/// Downloads and unpacks the dataset when its splits are missing. Offline, the error names the URL
/// and how to point ember at a local copy.
pub fn ensure_present(config: &DatasetConfig) -> Result<()> {
    if config.is_present() {
        return Ok(());
    }
    let Some(url) = config.download.as_deref() else {
        return Ok(()); // the split check that follows names the missing path
    };
    if !url.starts_with("http://") && !url.starts_with("https://") {
        bail!("{}: only zip URLs are supported in download:, got '{}'", config.yaml_path.display(), first_line(url));
    }
    std::fs::create_dir_all(&config.datasets_dir)
        .with_context(|| format!("cannot create the datasets dir {}", config.datasets_dir.display()))?;
    tracing::info!("dataset not found at {}; downloading {url}", config.root.display());
    let zip_path = config.datasets_dir.join(url.rsplit('/').next().unwrap_or("dataset.zip"));
    fetch(url, &zip_path).with_context(|| {
        format!(
            "could not download {url}; without internet, put the dataset under a folder and pass it with \
             --datasets-dir (or set EMBER_DATASETS)"
        )
    })?;
    unzip(&zip_path, &config.datasets_dir)?;
    let _ = std::fs::remove_file(&zip_path);
    Ok(())
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or_default()
}

/// Fetches with the system's `curl` (its progress bar shows on the terminal). ember links no TLS
/// stack of its own: the HTTPS client every machine already has is the dependable choice.
pub(crate) fn fetch(url: &str, dest: &Path) -> Result<()> {
    let tmp = dest.with_extension("part");
    tracing::info!("Downloading {url} to {}", dest.display());
    let status = std::process::Command::new("curl")
        .args(["--fail", "--location", "--progress-bar", "--retry", "2", "--connect-timeout", "20", "--output"])
        .arg(&tmp)
        .arg(url)
        .status()
        .context("cannot run curl (install it, or download the file yourself)")?;
    if !status.success() {
        let _ = std::fs::remove_file(&tmp);
        bail!("curl failed ({status})");
    }
    std::fs::rename(&tmp, dest)?;
    Ok(())
}

fn unzip(zip_path: &Path, into: &Path) -> Result<()> {
    let file = std::fs::File::open(zip_path)?;
    let mut archive =
        zip::ZipArchive::new(file).with_context(|| format!("{} is not a zip file", zip_path.display()))?;
    archive.extract(into).with_context(|| format!("cannot unpack {} into {}", zip_path.display(), into.display()))?;
    Ok(())
}
