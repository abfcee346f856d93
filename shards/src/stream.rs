//! [`ShardStream`]: reads a shard front to back from any `Read` (a pipe, an object store
//! download) without seeking. Each record is checked as it arrives; the index and footer at the
//! end are checked against the records that were seen.

use crate::error::ShardError;
use crate::format::{
    check_header, decode_index_entry, decode_record, le_u16, le_u32, le_u64, OwnedRecord,
    FOOTER_LEN, HEADER_LEN, INDEX_ENTRY_LEN, INDEX_HEADER_LEN, INDEX_TAG, MAGIC, MIN_RECORD_LEN,
    NO_LABEL, RECORD_TAG,
};
use std::io::{self, Read};
use std::path::PathBuf;

/// Streams the records of one shard. An iterator of checked [`OwnedRecord`]s; it ends after the
/// index and footer have been read and checked, or at the first error.
pub struct ShardStream<R: Read> {
    name: PathBuf,
    input: R,
    offset: u64,
    /// (offset, len, label) of each record seen, to check the index against.
    seen: Vec<(u64, u32, u32)>,
    started: bool,
    done: bool,
}

impl<R: Read> ShardStream<R> {
    /// Wraps `input`; `name` is used in error messages (a path or URL).
    pub fn new(name: impl Into<PathBuf>, input: R) -> Self {
        ShardStream {
            name: name.into(),
            input,
            offset: 0,
            seen: Vec::new(),
            started: false,
            done: false,
        }
    }

    fn truncated(&self, what: &str) -> ShardError {
        ShardError::Truncated {
            path: self.name.clone(),
            detail: format!("stream ends inside {what} at offset {}", self.offset),
        }
    }

    /// Reads until `buf` is full or the stream ends; returns the bytes read.
    fn fill_up_to(&mut self, buf: &mut [u8]) -> Result<usize, ShardError> {
        let mut got = 0;
        while got < buf.len() {
            match self.input.read(&mut buf[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(ShardError::Io {
                        path: self.name.clone(),
                        error: e,
                    })
                }
            }
        }
        self.offset += got as u64;
        Ok(got)
    }

    /// Reads exactly `buf.len()` bytes; `Ok(false)` when the stream ended before all of them.
    fn fill(&mut self, buf: &mut [u8]) -> Result<bool, ShardError> {
        Ok(self.fill_up_to(buf)? == buf.len())
    }

    fn read_exact_or(&mut self, buf: &mut [u8], what: &str) -> Result<(), ShardError> {
        if self.fill(buf)? {
            Ok(())
        } else {
            Err(self.truncated(what))
        }
    }

    fn next_record(&mut self) -> Result<Option<OwnedRecord>, ShardError> {
        if !self.started {
            self.started = true;
            let mut header = [0u8; HEADER_LEN];
            let got = self.fill_up_to(&mut header)?;
            // An empty stream, a wrong magic, then a short header, as the format orders them.
            check_header(&self.name, &header[..got])?;
        }
        let start = self.offset;
        let mut head = [0u8; 8];
        self.read_exact_or(&mut head, "a record or the index")?;
        if &head[..4] == INDEX_TAG {
            self.finish_index(start, head)?;
            return Ok(None);
        }
        if &head[..4] != RECORD_TAG {
            return Err(ShardError::Corrupt {
                path: self.name.clone(),
                what: format!("record {} (offset {start})", self.seen.len()),
                detail: format!("expected the SREC or SIDX tag, found {:02x?}", &head[..4]),
            });
        }
        let record_len = le_u32(&head, 4);
        if (record_len as usize) < MIN_RECORD_LEN {
            return Err(ShardError::Corrupt {
                path: self.name.clone(),
                what: format!("record {} (offset {start})", self.seen.len()),
                detail: format!("record_len {record_len} is shorter than {MIN_RECORD_LEN}"),
            });
        }
        // Grow the buffer as bytes arrive rather than trusting record_len with an allocation.
        let mut bytes = head.to_vec();
        let want = u64::from(record_len) - 8;
        let got = (&mut self.input)
            .take(want)
            .read_to_end(&mut bytes)
            .map_err(ShardError::io(self.name.clone()))?;
        self.offset += got as u64;
        if (got as u64) < want {
            return Err(self.truncated(&format!("record {}", self.seen.len())));
        }
        let index = self.seen.len() as u64;
        let rec = decode_record(&self.name, &bytes, index, start)?;
        self.seen
            .push((start, record_len, rec.label.unwrap_or(NO_LABEL)));
        Ok(Some(rec.to_owned_record()))
    }

    fn finish_index(&mut self, index_offset: u64, head: [u8; 8]) -> Result<(), ShardError> {
        let n = self.seen.len();
        let mut index = head.to_vec();
        index.resize(INDEX_HEADER_LEN + n * INDEX_ENTRY_LEN, 0);
        self.read_exact_or(&mut index[INDEX_HEADER_LEN..], "the index")?;
        let mut footer = [0u8; FOOTER_LEN];
        self.read_exact_or(&mut footer, "the footer")?;
        let name = self.name.clone();
        let corrupt = |what: &str, detail: String| ShardError::Corrupt {
            path: name.clone(),
            what: what.into(),
            detail,
        };
        if &footer[32..] != MAGIC {
            return Err(corrupt("footer", "missing the SHRDFEED magic".into()));
        }
        let (count, offset) = (le_u64(&footer, 8), le_u64(&footer, 0));
        if count != n as u64 || offset != index_offset {
            return Err(corrupt(
                "footer",
                format!("footer says {count} records with the index at {offset}; the stream had {n} records and the index at {index_offset}"),
            ));
        }
        crate::format::check_version(&self.name, (le_u16(&footer, 24), le_u16(&footer, 26)))?;
        for (what, stored, computed) in [
            ("footer", le_u32(&footer, 28), crc32c::crc32c(&footer[..28])),
            ("index", le_u32(&footer, 16), crc32c::crc32c(&index)),
        ] {
            if stored != computed {
                return Err(ShardError::Checksum {
                    path: self.name.clone(),
                    what: what.into(),
                    stored,
                    computed,
                });
            }
        }
        for (i, &(off, len, label)) in self.seen.iter().enumerate() {
            let at = INDEX_HEADER_LEN + i * INDEX_ENTRY_LEN;
            let e = decode_index_entry(&index[at..at + INDEX_ENTRY_LEN]);
            if (e.offset, e.len, e.label) != (off, len, label) {
                return Err(corrupt(
                    &format!("index entry {i}"),
                    format!("{e:?} disagrees with the record read at offset {off}"),
                ));
            }
        }
        let mut extra = [0u8; 1];
        if self.fill(&mut extra)? {
            return Err(corrupt(
                "footer",
                format!("bytes follow the footer at offset {}", self.offset - 1),
            ));
        }
        Ok(())
    }
}

impl<R: Read> Iterator for ShardStream<R> {
    type Item = Result<OwnedRecord, ShardError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let out = self.next_record();
        if !matches!(out, Ok(Some(_))) {
            self.done = true;
        }
        out.transpose()
    }
}
