//! # shardfeed-shards
//!
//! The shardfeed record format (specified in `docs/FORMAT.md`): a dataset is a directory of
//! shard files plus a `manifest.json`. Each shard holds records — an encoded image with its
//! label, size, real format and source path, each checked by a CRC32C — followed by an index
//! for O(1) random access and a footer (magic, version, checksums) that readers check before
//! they trust anything.
//!
//! The main types:
//! - [`ShardWriter`] writes one shard to any `Write`, front to back.
//! - [`ShardReader`] opens one shard (memory-mapped), checks it, and reads record `i` in O(1).
//! - [`ShardStream`] reads a shard front to back from any `Read`, no seeks.
//! - [`DatasetWriter`] writes a whole dataset directory atomically (temp files, rename,
//!   manifest last); [`Dataset`] opens one; [`verify_dataset`] checks every byte of one.
//!
//! This crate knows nothing of pixels: image decoding lives in `shardfeed-augment`.
//!
//! ```
//! use shardfeed_shards::{ImageFormat, Record, ShardReader, ShardWriter};
//!
//! let mut writer = ShardWriter::new(Vec::new())?;
//! writer.append(&Record {
//!     label: Some(3),
//!     width: 500,
//!     height: 375,
//!     format: ImageFormat::Jpeg,
//!     path: "train/n01440764/n01440764_10026.JPEG",
//!     image: b"\xFF\xD8\xFF...",
//! })?;
//! let (bytes, summary) = writer.finish()?;
//! assert_eq!(summary.records, 1);
//!
//! let shard = ShardReader::from_bytes("example.sfs", bytes)?;
//! let rec = shard.record(0)?;
//! assert_eq!((rec.label, rec.width, rec.format), (Some(3), 500, ImageFormat::Jpeg));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod dataset;
mod dataset_writer;
mod error;
pub mod format;
mod manifest;
mod reader;
mod stream;
mod writer;

pub use dataset::{verify_dataset, Dataset, Problem, VerifyReport};
pub use dataset_writer::{
    check_output_dir, shard_file_name, DatasetSpec, DatasetWriter, ShardLayout,
};
pub use error::{ShardError, WriteError};
pub use format::{ImageFormat, IndexEntry, OwnedRecord, Record, RecordMeta};
pub use manifest::{
    write_atomic, BuildParams, ClassEntry, Manifest, ShardEntry, SkippedInput, MANIFEST_FILE,
};
pub use reader::ShardReader;
pub use stream::ShardStream;
pub use writer::{ShardSummary, ShardWriter};
