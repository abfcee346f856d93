//! Where the datasets under a directory are. `shardfeed shard` writes an ILSVRC2012 root as
//! `OUT/train` and `OUT/val`, each a dataset (a folder holding `manifest.json`); a folder that
//! holds a manifest itself is one dataset. The CLI (`inspect`, `verify`) and the trainer
//! (`--data shards:DIR`) both accept either, so they share this one rule.
//!
//! ```
//! use shardfeed_engine::layout::{split_dirs_by, SplitDirs};
//! use std::path::{Path, PathBuf};
//!
//! // Only `root/val` holds a manifest.
//! let dirs = split_dirs_by(Path::new("root"), |d| d == Path::new("root/val"));
//! assert_eq!(dirs, SplitDirs { train: None, val: Some(PathBuf::from("root/val")) });
//! assert_eq!(dirs.datasets(), vec![PathBuf::from("root/val")]);
//! ```

use std::path::{Path, PathBuf};

use crate::shards::MANIFEST_FILE;

/// The training and validation datasets found under a directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitDirs {
    /// The directory itself when it holds a manifest, else its `train/` when that does.
    pub train: Option<PathBuf>,
    /// Its `val/` when that holds a manifest (never when the directory is itself a dataset).
    pub val: Option<PathBuf>,
}

impl SplitDirs {
    /// Every dataset found, training set first; empty when there is none.
    pub fn datasets(&self) -> Vec<PathBuf> {
        self.train.iter().chain(&self.val).cloned().collect()
    }
}

/// The datasets under `dir`, looking for `manifest.json` on disk (see [`split_dirs_by`]).
pub fn split_dirs(dir: &Path) -> SplitDirs {
    split_dirs_by(dir, |d| d.join(MANIFEST_FILE).exists())
}

/// The datasets under `dir`, where `is_dataset(d)` says whether folder `d` holds a manifest: `dir`
/// alone when it is a dataset, else whichever of `dir/train` and `dir/val` are. Pure: the caller
/// decides how to look.
pub fn split_dirs_by(dir: &Path, is_dataset: impl Fn(&Path) -> bool) -> SplitDirs {
    if is_dataset(dir) {
        return SplitDirs {
            train: Some(dir.to_owned()),
            val: None,
        };
    }
    let sub = |name: &str| Some(dir.join(name)).filter(|d| is_dataset(d));
    SplitDirs {
        train: sub("train"),
        val: sub("val"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(dir: &str, datasets: &[&str]) -> SplitDirs {
        split_dirs_by(Path::new(dir), |d| {
            datasets.iter().any(|s| d == Path::new(s))
        })
    }

    #[test]
    fn a_dataset_directory_is_the_training_set_alone() {
        // Even with split folders below it: the manifest at the top wins.
        let d = found("r", &["r", "r/train", "r/val"]);
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
    fn a_root_gives_whichever_splits_hold_a_manifest() {
        let both = found("r", &["r/train", "r/val"]);
        assert_eq!(
            both.datasets(),
            vec![PathBuf::from("r/train"), PathBuf::from("r/val")]
        );
        assert_eq!(
            found("r", &["r/train"]),
            SplitDirs {
                train: Some("r/train".into()),
                val: None
            }
        );
        let none = found("r", &[]);
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
    fn split_dirs_looks_for_the_manifest_on_disk() {
        let t = tempfile::tempdir().expect("tempdir");
        let val = t.path().join("val");
        std::fs::create_dir_all(&val).expect("mkdir");
        std::fs::create_dir_all(t.path().join("train")).expect("mkdir");
        std::fs::write(val.join(MANIFEST_FILE), b"{}").expect("write");
        // train/ exists but holds no manifest: not a dataset.
        assert_eq!(
            split_dirs(t.path()),
            SplitDirs {
                train: None,
                val: Some(val)
            }
        );
    }
}
