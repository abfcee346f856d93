//! Small synthetic datasets for examples, tests and benchmarks that must run without ImageNet:
//! [`synthetic_dataset`] generates an ImageNet-shaped folder with `shardfeed-synth` and shards
//! it, as `shardfeed synth` followed by `shardfeed shard` would.
//!
//! ```
//! let tmp = tempfile::tempdir()?;
//! let root = shardfeed_engine::demo::synthetic_dataset(tmp.path(), 2, 5)?;
//! let train = shardfeed_engine::shards::Dataset::open(root.join("train"))?;
//! assert_eq!(train.len(), 10);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use crate::ingest::{self, IngestError, IngestOptions, Mode, Order, Sharding};
use shardfeed_synth::{generate, SynthError, SynthOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

/// Making a synthetic dataset failed.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// Generating the images failed.
    #[error("generating synthetic images: {0}")]
    Synth(#[from] SynthError),
    /// Sharding them failed.
    #[error("sharding synthetic images: {0}")]
    Ingest(#[from] IngestError),
}

/// Generates `classes` x `per_class` training images (and one validation image per class) in
/// `dir/images`, shards them into `dir/shards/{train,val}` (two shards per split) and returns
/// `dir/shards`.
///
/// # Errors
///
/// [`DemoError`] when generating or sharding fails (e.g. `dir` is not writable).
pub fn synthetic_dataset(dir: &Path, classes: u32, per_class: u32) -> Result<PathBuf, DemoError> {
    let opts = SynthOptions {
        classes,
        per_class,
        val_per_class: 1,
        ..SynthOptions::default()
    };
    synthetic_dataset_with(dir, &opts, 2)
}

/// [`synthetic_dataset`] with every option of the generator, and `shards` shards per split.
///
/// # Errors
///
/// As [`synthetic_dataset`].
pub fn synthetic_dataset_with(
    dir: &Path,
    opts: &SynthOptions,
    shards: u32,
) -> Result<PathBuf, DemoError> {
    let images = dir.join("images");
    let out = dir.join("shards");
    generate(&images, opts, &|_| {})?;
    let ingest_opts = IngestOptions {
        mode: Mode::Passthrough { deep_check: false },
        order: Order::Shuffled(opts.seed),
        sharding: Sharding::Count(shards.max(1)),
        strict: false,
        workers: 2,
        overwrite: true,
        limits: Default::default(),
    };
    let cancel = AtomicBool::new(false);
    for split in ingest::discover(&images, None, None)? {
        let dest = match &split.out_subdir {
            Some(sub) => out.join(sub),
            None => out.clone(),
        };
        ingest::ingest_split(&split, &dest, &ingest_opts, &mut |_| {}, &cancel)?;
    }
    Ok(out)
}
