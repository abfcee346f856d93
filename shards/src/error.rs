//! Error types of the shards crate: one enum for reading (and verifying) shards and datasets,
//! one for writing them. Every variant that concerns a file names it.

use std::io;
use std::path::PathBuf;

/// Reading a shard or a dataset failed. Every variant names the file; corruption also names the
/// record and its byte offset where one is involved.
#[derive(Debug, thiserror::Error)]
pub enum ShardError {
    /// The operating system refused to open, map or read a file.
    #[error("{path}: {error}", path = path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said: part of the message, so not also given as `source()` (an error
        /// chain printed whole would say it twice).
        error: io::Error,
    },
    /// The path is a directory, a FIFO, a device or a socket: shards and manifests are only
    /// ever regular files. (A FIFO is refused without waiting for a writer.)
    #[error("{path}: not a regular file ({kind})", path = path.display())]
    NotAFile {
        /// The path.
        path: PathBuf,
        /// What it is instead, e.g. `a directory`.
        kind: &'static str,
    },
    /// A shard file changed size after it was opened. Datasets are immutable once written;
    /// reading on could touch a part of the memory map the file no longer has, which kills the
    /// process (SIGBUS), so the reader checks the size before each record and stops here.
    #[error(
        "{path}: the shard changed while it was open ({opened} bytes when opened, {now} now): \
         a dataset must not be modified while it is read",
        path = path.display()
    )]
    Changed {
        /// The shard file.
        path: PathBuf,
        /// Its size when it was opened (and mapped).
        opened: u64,
        /// Its size now.
        now: u64,
    },
    /// The magic bytes are wrong: this is not a shard, or its end is missing.
    #[error("{path}: {detail}", path = path.display())]
    BadMagic {
        /// The file.
        path: PathBuf,
        /// Which magic was wrong and what that suggests.
        detail: String,
    },
    /// The file is shorter than its own header, footer or index say it must be.
    #[error("{path}: truncated shard: {detail}", path = path.display())]
    Truncated {
        /// The file.
        path: PathBuf,
        /// Which bound was violated.
        detail: String,
    },
    /// The file was written by a format version this reader does not know.
    #[error(
        "{path}: unsupported format version {major}.{minor} (this build reads {supported}.x)",
        path = path.display()
    )]
    UnsupportedVersion {
        /// The file.
        path: PathBuf,
        /// Major version found in the file.
        major: u16,
        /// Minor version found in the file.
        minor: u16,
        /// The major version this build reads.
        supported: u16,
    },
    /// A CRC32C did not match: the bytes changed after they were written.
    #[error(
        "{path}: checksum mismatch in {what}: stored {stored:08x}, computed {computed:08x}",
        path = path.display()
    )]
    Checksum {
        /// The file.
        path: PathBuf,
        /// What the checksum covers, e.g. `record 17 (offset 123456)`.
        what: String,
        /// The checksum stored in the file.
        stored: u32,
        /// The checksum of the bytes as they are now.
        computed: u32,
    },
    /// A structure is inconsistent (bad tag, lengths that disagree, out-of-range offsets).
    #[error("{path}: corrupt {what}: {detail}", path = path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The structure, e.g. `index entry 3` or `record 17 (offset 123456)`.
        what: String,
        /// What is wrong with it.
        detail: String,
    },
    /// The dataset manifest is missing, unreadable or disagrees with the shards.
    #[error("{path}: {detail}", path = path.display())]
    Manifest {
        /// The manifest (or dataset directory).
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// A record number past the end was asked for.
    #[error("record {index} out of range: {what} holds {len} records")]
    OutOfRange {
        /// The record number asked for.
        index: u64,
        /// The number of records there are.
        len: u64,
        /// The shard or dataset asked.
        what: String,
    },
}

/// Appending a record to a shard, or writing a dataset, failed.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// Writing, syncing or renaming a file failed.
    #[error("{path}: {error}", path = path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said: part of the message, so not also given as `source()` (an error
        /// chain printed whole would say it twice).
        error: io::Error,
    },
    /// The source path of a record is longer than the format allows (65,535 bytes).
    #[error("source path of {len} bytes is longer than 65535: {path}")]
    PathTooLong {
        /// The path.
        path: String,
        /// Its length in bytes.
        len: usize,
    },
    /// The record does not fit the format's 32-bit record length.
    #[error("record for {path} is {len} bytes, more than the 4 GiB a record may hold")]
    RecordTooLarge {
        /// The source path of the record.
        path: String,
        /// Its length in bytes.
        len: u64,
    },
    /// A label is not one of the dataset's classes.
    #[error("record for {path} has label {label}, but the dataset has {classes} classes")]
    LabelOutOfRange {
        /// The source path of the record.
        path: String,
        /// The label.
        label: u32,
        /// How many classes there are.
        classes: usize,
    },
    /// The output directory already holds a dataset or other files.
    #[error("{path}: {detail}", path = path.display())]
    OutputExists {
        /// The output directory.
        path: PathBuf,
        /// What is there and what to do about it.
        detail: String,
    },
    /// The writer was used against its contract (records out of order, bad options).
    #[error("{0}")]
    Usage(String),
}

impl WriteError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> WriteError {
        let path = path.into();
        move |error| WriteError::Io { path, error }
    }
}

impl ShardError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> ShardError {
        let path = path.into();
        move |error| ShardError::Io { path, error }
    }
}
