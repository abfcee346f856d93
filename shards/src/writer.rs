//! [`ShardWriter`]: writes one shard front to back to any `Write`, with no seeks, so the same
//! code writes files, pipes and uploads.

use crate::error::WriteError;
use crate::format::{
    encode_footer, encode_header, encode_index_entry, encode_index_header, encode_record_fixed,
    IndexEntry, Record, NO_LABEL, RECORD_FIXED_LEN,
};
use std::io::{self, Write};

/// What a finished shard holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardSummary {
    /// Number of records.
    pub records: u64,
    /// Size of the whole shard file.
    pub bytes: u64,
    /// CRC32C of the whole shard file.
    pub crc32c: u32,
}

/// A `Write` that counts and checksums what passes through it.
struct HashingWriter<W> {
    inner: W,
    bytes: u64,
    crc: u32,
}

impl<W: Write> HashingWriter<W> {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.inner.write_all(buf)?;
        self.crc = crc32c::crc32c_append(self.crc, buf);
        self.bytes += buf.len() as u64;
        Ok(())
    }
}

/// Writes one shard. Call [`append`](Self::append) for each record, then
/// [`finish`](Self::finish) to write the index and footer; a shard that is never finished has no
/// footer and every reader refuses it.
pub struct ShardWriter<W: Write> {
    out: HashingWriter<W>,
    entries: Vec<IndexEntry>,
}

impl<W: Write> ShardWriter<W> {
    /// Starts a shard: writes its header to `out`.
    pub fn new(out: W) -> io::Result<Self> {
        let mut out = HashingWriter {
            inner: out,
            bytes: 0,
            crc: 0,
        };
        out.write_all(&encode_header())?;
        Ok(ShardWriter {
            out,
            entries: Vec::new(),
        })
    }

    /// Number of records appended so far.
    pub fn records(&self) -> u64 {
        self.entries.len() as u64
    }

    /// Bytes written so far (header and records).
    pub fn bytes_written(&self) -> u64 {
        self.out.bytes
    }

    /// Checks that a record fits the format, without writing it.
    pub fn check(rec: &Record<'_>) -> Result<u32, WriteError> {
        if rec.path.len() > usize::from(u16::MAX) {
            return Err(WriteError::PathTooLong {
                path: rec.path.to_owned(),
                len: rec.path.len(),
            });
        }
        let len = rec.encoded_len();
        u32::try_from(len).map_err(|_| WriteError::RecordTooLarge {
            path: rec.path.to_owned(),
            len,
        })
    }

    /// Appends one record. On an I/O error the shard is unusable and must be discarded.
    pub fn append(&mut self, rec: &Record<'_>) -> Result<(), WriteError> {
        let record_len = Self::check(rec)?;
        let offset = self.out.bytes;
        let fixed = encode_record_fixed(rec, record_len);
        // The record CRC covers fixed fields, path and image; computed alongside the writes.
        let mut crc = crc32c::crc32c(&fixed);
        crc = crc32c::crc32c_append(crc, rec.path.as_bytes());
        crc = crc32c::crc32c_append(crc, rec.image);
        let io = |e| WriteError::Io {
            path: rec.path.into(),
            error: e,
        };
        self.out.write_all(&fixed).map_err(io)?;
        self.out.write_all(rec.path.as_bytes()).map_err(io)?;
        self.out.write_all(rec.image).map_err(io)?;
        self.out.write_all(&crc.to_le_bytes()).map_err(io)?;
        debug_assert_eq!(
            self.out.bytes - offset,
            u64::from(record_len),
            "record length"
        );
        debug_assert!(RECORD_FIXED_LEN <= record_len as usize);
        self.entries.push(IndexEntry {
            offset,
            len: record_len,
            label: rec.label.unwrap_or(NO_LABEL),
        });
        Ok(())
    }

    /// Writes the index and footer, flushes, and returns the writer and what was written.
    pub fn finish(mut self) -> io::Result<(W, ShardSummary)> {
        let index_offset = self.out.bytes;
        let header = encode_index_header();
        let mut index_crc = crc32c::crc32c(&header);
        self.out.write_all(&header)?;
        for e in &self.entries {
            let b = encode_index_entry(e);
            index_crc = crc32c::crc32c_append(index_crc, &b);
            self.out.write_all(&b)?;
        }
        let footer = encode_footer(index_offset, self.entries.len() as u64, index_crc);
        self.out.write_all(&footer)?;
        self.out.inner.flush()?;
        let summary = ShardSummary {
            records: self.entries.len() as u64,
            bytes: self.out.bytes,
            crc32c: self.out.crc,
        };
        Ok((self.out.inner, summary))
    }
}
