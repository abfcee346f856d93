//! Where the datasets under a directory are. `shardfeed shard` writes an ILSVRC2012 root as
//! `OUT/train` and `OUT/val`, each a dataset (a folder holding `manifest.json`); a folder that
//! holds a manifest itself is one dataset. The CLI (`inspect`, `verify`) and the trainer
//! (`--data shards:DIR`) both accept either, so they share this one rule.
//!
//! A split folder is listed whether or not it holds a manifest: one without is a write that was
//! interrupted, and opening it says so, rather than the split being silently left out (a root
//! whose `val/` was cut short must not verify as a good dataset of `train/` alone).
//!
//! ```
//! use shardfeed_engine::layout::{split_dirs_by, SplitDirs};
//! use std::path::{Path, PathBuf};
//!
//! // `root` is no dataset itself; only `root/val` exists.
//! let dirs = split_dirs_by(Path::new("root"), |_| false, |d| d == Path::new("root/val"));
//! assert_eq!(dirs, SplitDirs { train: None, val: Some(PathBuf::from("root/val")) });
//! assert_eq!(dirs.datasets(), vec![PathBuf::from("root/val")]);
//! ```

use std::path::{Path, PathBuf};

use crate::shards::MANIFEST_FILE;

/// The training and validation datasets found under a directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitDirs {
    /// The directory itself when it holds a manifest, else its `train/` when that exists.
    pub train: Option<PathBuf>,
    /// Its `val/` when that exists (never when the directory is itself a dataset).
    pub val: Option<PathBuf>,
}

impl SplitDirs {
    /// Every dataset found, training set first; empty when there is none.
    pub fn datasets(&self) -> Vec<PathBuf> {
        self.train.iter().chain(&self.val).cloned().collect()
    }
}

/// The datasets under `dir`, looking at the disk (see [`split_dirs_by`]).
pub fn split_dirs(dir: &Path) -> SplitDirs {
    split_dirs_by(dir, |d| d.join(MANIFEST_FILE).exists(), Path::is_dir)
}

/// The folders to open for `dir`: its datasets, or `dir` itself when it has none, so that
/// opening it says why it is not a dataset. What `inspect` and `verify` look at.
pub fn dataset_dirs(dir: &Path) -> Vec<PathBuf> {
    let found = split_dirs(dir).datasets();
    if found.is_empty() {
        vec![dir.to_owned()]
    } else {
        found
    }
}

/// The datasets under `dir`, where `has_manifest(d)` says whether folder `d` holds a manifest and
/// `exists(d)` whether folder `d` exists: `dir` alone when it is a dataset, else whichever of
/// `dir/train` and `dir/val` exist. Pure: the caller decides how to look.
pub fn split_dirs_by(
    dir: &Path,
    has_manifest: impl Fn(&Path) -> bool,
    exists: impl Fn(&Path) -> bool,
) -> SplitDirs {
    if has_manifest(dir) {
        return SplitDirs {
            train: Some(dir.to_owned()),
            val: None,
        };
    }
    let sub = |name: &str| Some(dir.join(name)).filter(|d| exists(d));
    SplitDirs {
        train: sub("train"),
        val: sub("val"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `datasets` hold a manifest; every other path in `folders` merely exists.
    fn found(dir: &str, datasets: &[&str], folders: &[&str]) -> SplitDirs {
        split_dirs_by(
            Path::new(dir),
            |d| datasets.iter().any(|s| d == Path::new(s)),
            |d| datasets.iter().chain(folders).any(|s| d == Path::new(s)),
        )
    }

    #[test]
    fn a_dataset_directory_is_the_training_set_alone() {
        // Even with split folders below it: the manifest at the top wins.
        let d = found("r", &["r", "r/train", "r/val"], &[]);
        assert_eq!(
            d,
            SplitDirs {
                train: Some("r".into()),
                val: None
            }
        );
        assert_eq!(d.datasets(), vec![PathBuf::from("r")]);
    }

    #[test]
    fn a_root_gives_every_split_folder_with_or_without_a_manifest() {
        let both = found("r", &["r/train", "r/val"], &[]);
        assert_eq!(
            both.datasets(),
            vec![PathBuf::from("r/train"), PathBuf::from("r/val")]
        );
        // val/ was cut short (no manifest): still listed, so opening it reports the damage.
        assert_eq!(
            found("r", &["r/train"], &["r/val"]).datasets(),
            vec![PathBuf::from("r/train"), PathBuf::from("r/val")]
        );
        let none = found("r", &[], &[]);
        assert_eq!(
            none,
            SplitDirs {
                train: None,
                val: None
            }
        );
        assert!(none.datasets().is_empty());
    }

    #[test]
    fn dataset_dirs_falls_back_to_the_folder_itself() {
        let t = tempfile::tempdir().expect("tempdir");
        assert_eq!(dataset_dirs(t.path()), vec![t.path().to_owned()]);
        let val = t.path().join("val");
        std::fs::create_dir_all(&val).expect("mkdir");
        std::fs::write(val.join(MANIFEST_FILE), b"{}").expect("write");
        assert_eq!(dataset_dirs(t.path()), vec![val.clone()]);
        std::fs::create_dir_all(t.path().join("train")).expect("mkdir");
        assert_eq!(
            split_dirs(t.path()),
            SplitDirs {
                train: Some(t.path().join("train")),
                val: Some(val)
            }
        );
    }
}
