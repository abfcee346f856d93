//! [`StreamDigest`]: one SHA-256 over every batch a stream delivered (labels, then pixels, of
//! each batch in delivery order): the proof that two runs, local or from remote workers, with
//! any worker count, gave the same bytes (`shardfeed bench --digest`).

use crate::loader::Batch;
use sha2::{Digest, Sha256};

/// A running SHA-256 over batches.
///
/// ```
/// use shardfeed_engine::loader::{Loader, LoaderConfig, StreamDigest};
///
/// # let tmp = tempfile::tempdir()?;
/// # let root = shardfeed_engine::demo::synthetic_dataset(tmp.path(), 2, 6)?;
/// let digest = |workers| -> Result<String, Box<dyn std::error::Error>> {
///     let config = LoaderConfig { batch_size: 4, workers, ..LoaderConfig::train(32) };
///     let mut loader = Loader::open(root.join("train"), config)?;
///     let mut d = StreamDigest::default();
///     for batch in loader.epoch(0) {
///         d.update(&batch?);
///     }
///     Ok(d.hex())
/// };
/// assert_eq!(digest(1)?, digest(3)?);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct StreamDigest {
    hasher: Sha256,
    batches: u64,
}

impl StreamDigest {
    /// Adds one batch: its image count, labels (little-endian u32) and pixels.
    pub fn update(&mut self, batch: &Batch) {
        self.hasher.update((batch.len() as u64).to_le_bytes());
        for l in batch.labels() {
            self.hasher.update(l.to_le_bytes());
        }
        self.hasher.update(batch.images());
        self.batches += 1;
    }

    /// Batches added.
    pub fn batches(&self) -> u64 {
        self.batches
    }

    /// The digest so far, as 64 hex digits.
    pub fn hex(&self) -> String {
        self.hasher
            .clone()
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}
