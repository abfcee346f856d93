//! The loader's errors: [`OpenError`] (making a loader), [`BatchError`] (making a batch), and
//! [`RecordFailure`], the report of one record that could not be read or decoded.

use crate::loader::config::ConfigError;
use crate::sampler::SamplerError;
use shardfeed_shards::ShardError;
use std::fmt;
use std::path::PathBuf;

/// One record that could not be read (checksum, structure) or decoded, where it is, and what
/// took its place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordFailure {
    /// The epoch.
    pub epoch: u64,
    /// The sample's position in the epoch's global order (its `SampleKey::index`).
    pub position: u64,
    /// The global record number.
    pub record: u64,
    /// The shard file holding it.
    pub shard: PathBuf,
    /// The record's number inside that shard.
    pub shard_record: u64,
    /// The source path stored with the record, when the record could be read.
    pub source_path: Option<String>,
    /// Why it failed.
    pub reason: String,
    /// The record used in its place (the next one in this rank's order that decodes), or `None`
    /// when the failure was fatal.
    pub replaced_by: Option<u64>,
}

impl fmt::Display for RecordFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} record {} (global record {}",
            self.shard.display(),
            self.shard_record,
            self.record
        )?;
        if let Some(p) = &self.source_path {
            write!(f, ", {p}")?;
        }
        write!(
            f,
            ") at epoch {} sample {}: {}",
            self.epoch, self.position, self.reason
        )?;
        if let Some(r) = self.replaced_by {
            write!(f, "; replaced by global record {r}")?;
        }
        Ok(())
    }
}

/// Making a [`Loader`](super::Loader) failed.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The dataset did not open.
    #[error(transparent)]
    Dataset(#[from] ShardError),
    /// The configuration is invalid.
    #[error("invalid loader configuration: {0}")]
    Config(#[from] ConfigError),
    /// The sample order cannot be made (rank, world, dataset too small for drop).
    #[error("invalid sample order: {0}")]
    Sampler(#[from] SamplerError),
    /// The remote source cannot be set up.
    #[error(transparent)]
    Remote(#[from] crate::remote::RemoteError),
}

/// Making a batch failed. After an error the epoch's iterator ends; [`Loader::resume`]
/// (super::Loader::resume) starts again from any position.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    /// Strict mode: a record could not be read or decoded.
    #[error("{0} (strict mode makes this fatal; without it the record is replaced and counted)")]
    Strict(Box<RecordFailure>),
    /// A record failed and none of the records after it in the order could take its place.
    #[error("{failure}; none of the next {tried} records in the order decodes either")]
    NoReplacement {
        /// The record that failed first.
        failure: Box<RecordFailure>,
        /// How many other records were tried.
        tried: usize,
    },
    /// A shard file changed size while the loader was reading it. Datasets must not be modified
    /// while they are read: the order was made for the dataset as it was opened, and reading on
    /// could touch a part of the memory map the file no longer has, which kills the process. Not
    /// a failed record to replace: every record of the shard is gone.
    #[error(transparent)]
    ShardChanged(ShardError),
    /// The caller holds every batch buffer, so no batch can be made.
    #[error(
        "all {prefetch} batch buffers are held by the caller: drop a Batch before asking for \
         the next one, or raise prefetch"
    )]
    AllBuffersHeld {
        /// The pool's size.
        prefetch: usize,
    },
    /// An epoch past the configured number of epochs was asked for.
    #[error("epoch {epoch} asked for, but the loader was configured for {epochs} epochs")]
    PastLastEpoch {
        /// The epoch asked for.
        epoch: u64,
        /// The configured count.
        epochs: u64,
    },
    /// A resume position past the end of the epoch.
    #[error("batch {batch} asked for, but an epoch has {batches} batches")]
    BatchOutOfRange {
        /// The batch asked for.
        batch: u64,
        /// Batches per epoch.
        batches: u64,
    },
    /// The sample order could not be made.
    #[error("sample order: {0}")]
    Sampler(#[from] SamplerError),
    /// A thread could not be started.
    #[error("cannot start a loader thread: {0}")]
    Spawn(std::io::Error),
    /// A loader thread stopped unexpectedly (a bug: please report it).
    #[error("a loader thread stopped unexpectedly: {0}")]
    ThreadDied(&'static str),
    /// The remote workers could not deliver the batch.
    #[error("remote source: {0}")]
    Remote(#[from] crate::remote::RemoteError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_name_the_shard_and_record() {
        let mut f = RecordFailure {
            epoch: 2,
            position: 17,
            record: 1042,
            shard: PathBuf::from("/data/train/shard-00003.sfs"),
            shard_record: 18,
            source_path: Some("train/n01440764/x.JPEG".into()),
            reason: "truncated JPEG".into(),
            replaced_by: Some(77),
        };
        assert_eq!(
            f.to_string(),
            "/data/train/shard-00003.sfs record 18 (global record 1042, train/n01440764/x.JPEG) \
             at epoch 2 sample 17: truncated JPEG; replaced by global record 77"
        );
        f.replaced_by = None;
        f.source_path = None;
        let strict = BatchError::Strict(Box::new(f)).to_string();
        assert!(
            strict.starts_with("/data/train/shard-00003.sfs record 18 (global record 1042) at"),
            "{strict}"
        );
    }
}
