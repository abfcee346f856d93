//! [`Catalog`]: the datasets a worker serves (one, or a root's `train/` and `val/`), each opened
//! once and named by its fingerprint, the SHA-256 of its `manifest.json`.

use shardfeed_engine::layout;
use shardfeed_engine::shards::{Dataset, ShardError, MANIFEST_FILE};
use shardfeed_wire::auth::{dataset_fingerprint, short_hex};
use shardfeed_wire::message::Bytes32;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A dataset that cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The directory holds no dataset.
    #[error("{0} holds no dataset (no manifest.json, nor train/ or val/ with one)")]
    Empty(PathBuf),
    /// A dataset did not open.
    #[error("opening {path}: {error}")]
    Open {
        /// Its directory.
        path: PathBuf,
        /// Why.
        error: ShardError,
    },
    /// Its manifest could not be read for the fingerprint.
    #[error("reading {path}: {error}")]
    Manifest {
        /// The file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
}

/// One served dataset.
#[derive(Debug)]
pub struct Served {
    /// `train`, `val`, or the directory's name.
    pub name: String,
    /// The fingerprint clients name it by.
    pub fingerprint: Bytes32,
    /// The opened dataset, shared by every session.
    pub dataset: Arc<Dataset>,
}

/// The datasets served.
#[derive(Debug, Default)]
pub struct Catalog {
    /// In the order found (train first).
    pub datasets: Vec<Served>,
}

impl Catalog {
    /// Opens the dataset(s) under `dir`.
    ///
    /// # Errors
    ///
    /// [`CatalogError`] naming the directory or file.
    pub fn open(dir: &Path) -> Result<Catalog, CatalogError> {
        let dirs = layout::split_dirs(dir).datasets();
        let dirs = if dirs.is_empty() && dir.join(MANIFEST_FILE).exists() {
            vec![dir.to_owned()]
        } else {
            dirs
        };
        if dirs.is_empty() {
            return Err(CatalogError::Empty(dir.to_owned()));
        }
        let mut datasets = Vec::new();
        for d in dirs {
            let path = d.join(MANIFEST_FILE);
            let manifest = std::fs::read(&path).map_err(|error| CatalogError::Manifest {
                path: path.clone(),
                error,
            })?;
            let dataset = Dataset::open(&d).map_err(|error| CatalogError::Open {
                path: d.clone(),
                error,
            })?;
            let name = if d == dir {
                d.file_name()
                    .map_or_else(|| "dataset".into(), |n| n.to_string_lossy().into_owned())
            } else {
                d.strip_prefix(dir)
                    .map_or_else(|_| d.display().to_string(), |p| p.display().to_string())
            };
            datasets.push(Served {
                name,
                fingerprint: dataset_fingerprint(&manifest),
                dataset: Arc::new(dataset),
            });
        }
        Ok(Catalog { datasets })
    }

    /// The dataset with `fingerprint`.
    pub fn find(&self, fingerprint: &Bytes32) -> Option<&Served> {
        self.datasets.iter().find(|d| &d.fingerprint == fingerprint)
    }

    /// "train 3f9a01… and val 81c2d4…", for refusals and logs.
    pub fn describe(&self) -> String {
        let parts: Vec<String> = self
            .datasets
            .iter()
            .map(|d| format!("{} {}…", d.name, short_hex(&d.fingerprint, 6)))
            .collect();
        parts.join(" and ")
    }
}
