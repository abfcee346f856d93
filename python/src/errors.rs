//! Python exceptions for the engine's errors. The message is always the engine's own (file,
//! record, reason); the class says what kind of failure it was:
//!
//! | engine error | Python exception |
//! | --- | --- |
//! | a path that does not exist | `FileNotFoundError` |
//! | other I/O errors | `OSError` |
//! | a dataset that does not open (manifest, shard structure, checksum) | `shardfeed.DatasetError` |
//! | an invalid configuration (batch size, rank/world, size) | `ValueError` |
//! | a batch that cannot be made (strict mode, shard changed, thread died) | `shardfeed.BatchError` |
//! | every batch buffer held by the caller | `shardfeed.BuffersHeldError` (a `BatchError`) |
//! | `shard()` / `synth()` failures | `shardfeed.IngestError` |
//!
//! All of the `shardfeed.*` classes derive from `shardfeed.ShardfeedError`.

use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyFileNotFoundError, PyOSError, PyValueError};
use pyo3::PyErr;
use shardfeed_engine::loader::{BatchError as EngineBatchError, OpenError};
use shardfeed_engine::shards::ShardError;

create_exception!(
    shardfeed,
    ShardfeedError,
    PyException,
    "Base class of shardfeed's own exceptions."
);
create_exception!(
    shardfeed,
    DatasetError,
    ShardfeedError,
    "A dataset does not open or a record cannot be read: the message names the file, the record and the reason."
);
create_exception!(
    shardfeed,
    BatchError,
    ShardfeedError,
    "A batch could not be made (strict mode, a shard changed under the loader, a loader thread stopped)."
);
create_exception!(
    shardfeed,
    BuffersHeldError,
    BatchError,
    "Every batch buffer is held by the caller: free a batch (its tensors/arrays) before asking for the next one, or raise prefetch."
);
create_exception!(
    shardfeed,
    IngestError,
    ShardfeedError,
    "shard() or synth() failed: the message names the file or folder."
);

/// A dataset error: a missing path is `FileNotFoundError`, other I/O `OSError`, the rest
/// (structure, checksums, manifest) `DatasetError`.
pub fn shard_error(e: &ShardError) -> PyErr {
    let msg = e.to_string();
    match e {
        ShardError::Io { error, .. } if error.kind() == std::io::ErrorKind::NotFound => {
            PyFileNotFoundError::new_err(msg)
        }
        ShardError::Io { .. } => PyOSError::new_err(msg),
        // The manifest's reader says "no such dataset directory" for a missing directory.
        ShardError::Manifest { path, .. } if !path.exists() => PyFileNotFoundError::new_err(msg),
        ShardError::OutOfRange { .. } => pyo3::exceptions::PyIndexError::new_err(msg),
        _ => DatasetError::new_err(msg),
    }
}

/// Opening a loader failed.
pub fn open_error(e: &OpenError) -> PyErr {
    match e {
        OpenError::Dataset(d) => shard_error(d),
        OpenError::Config(_) | OpenError::Sampler(_) => PyValueError::new_err(e.to_string()),
        OpenError::Remote(_) => DatasetError::new_err(e.to_string()),
    }
}

/// Making a batch failed.
pub fn batch_error(e: &EngineBatchError) -> PyErr {
    let msg = e.to_string();
    match e {
        EngineBatchError::AllBuffersHeld { .. } => BuffersHeldError::new_err(msg),
        EngineBatchError::BatchOutOfRange { .. }
        | EngineBatchError::PastLastEpoch { .. }
        | EngineBatchError::Sampler(_) => PyValueError::new_err(msg),
        _ => BatchError::new_err(msg),
    }
}
