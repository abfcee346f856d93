//! [`ShardReader`]: random access to the records of one shard, memory-mapped or in memory.
//! Everything is checked on open (magic, bounds, version, checksums, index) and each record is
//! checked (tag, lengths, CRC) every time it is read, after a check that the file still has
//! the size it had when it was mapped.

use crate::error::ShardError;
use crate::format::{
    check_footer, decode_index_entry, decode_record, decode_record_meta, IndexEntry, Record,
    RecordMeta, HEADER_LEN, INDEX_ENTRY_LEN, INDEX_HEADER_LEN, INDEX_TAG, MIN_RECORD_LEN, NO_LABEL,
};
use std::fs::{File, FileType, OpenOptions};
use std::ops::Deref;
use std::path::{Path, PathBuf};

/// The bytes of a shard: a read-only memory map of the file (with the file kept open, to check
/// its size before each read), or a buffer.
enum ShardBytes {
    Mapped { map: memmap2::Mmap, file: File },
    Owned(Vec<u8>),
}

impl Deref for ShardBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            ShardBytes::Mapped { map, .. } => map,
            ShardBytes::Owned(v) => v,
        }
    }
}

/// Opens `path` for reading if it is a regular file; returns it with its size.
///
/// Only regular files hold shards and manifests. The type is checked on the opened file (no
/// race with a rename), and the open itself does not block: opening a FIFO for reading waits
/// for a writer, forever if none comes, so it is opened with `O_NONBLOCK` (which changes
/// nothing for a regular file) and then refused.
pub(crate) fn open_regular_file(path: &Path) -> Result<(File, u64), ShardError> {
    let mut options = OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32);
    }
    let file = options.open(path).map_err(ShardError::io(path))?;
    let meta = file.metadata().map_err(ShardError::io(path))?;
    if !meta.is_file() {
        return Err(ShardError::NotAFile {
            path: path.to_owned(),
            kind: file_kind(meta.file_type()),
        });
    }
    Ok((file, meta.len()))
}

/// What a file that is not a regular file is, for error messages.
fn file_kind(t: FileType) -> &'static str {
    if t.is_dir() {
        return "a directory";
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_fifo() {
            return "a FIFO";
        }
        if t.is_socket() {
            return "a socket";
        }
        if t.is_char_device() || t.is_block_device() {
            return "a device";
        }
    }
    "not a file"
}

/// One opened, checked shard.
pub struct ShardReader {
    path: PathBuf,
    bytes: ShardBytes,
    index_offset: usize,
    count: u64,
    version: (u16, u16),
    /// The largest label in the index, `None` when no record has one.
    max_label: Option<u32>,
}

impl std::fmt::Debug for ShardReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardReader")
            .field("path", &self.path)
            .field("len", &self.count)
            .field("bytes", &self.bytes.len())
            .finish()
    }
}

impl ShardReader {
    /// Opens and memory-maps a shard file, then checks it as `docs/FORMAT.md` says.
    ///
    /// Only a regular file is opened ([`ShardError::NotAFile`] otherwise, without blocking on
    /// a FIFO). The file must not be changed while it is open: shards are written once, then
    /// renamed into place, and never modified. Renaming another file over it is safe (the map
    /// keeps the old file); changing its size is caught before the next record is read
    /// ([`ShardError::Changed`]), but a change that lands while a record's bytes are being read
    /// (decoded) makes that read fault, which kills the process (SIGBUS).
    ///
    /// The reader keeps the file open (one descriptor per shard).
    pub fn open(path: impl AsRef<Path>) -> Result<Self, ShardError> {
        let path = path.as_ref();
        let (file, len) = open_regular_file(path)?;
        let bytes = if len == 0 {
            // mmap of an empty file fails on some systems; an empty shard is just truncated.
            ShardBytes::Owned(Vec::new())
        } else {
            // SAFETY: shards are immutable once renamed into place (see the doc comment), and
            // every read first checks that the file still has the mapped size.
            let map = unsafe { memmap2::Mmap::map(&file) }.map_err(ShardError::io(path))?;
            ShardBytes::Mapped { map, file }
        };
        Self::check(path.to_owned(), bytes)
    }

    /// Checks a shard held in memory; `path` is only used in error messages.
    pub fn from_bytes(path: impl Into<PathBuf>, bytes: Vec<u8>) -> Result<Self, ShardError> {
        Self::check(path.into(), ShardBytes::Owned(bytes))
    }

    fn check(path: PathBuf, bytes: ShardBytes) -> Result<Self, ShardError> {
        let footer = check_footer(&path, &bytes)?;
        // check_footer proved index_offset + index + footer == len, so these fit in usize.
        let index_offset = footer.index_offset as usize;
        let index_len = INDEX_HEADER_LEN + footer.record_count as usize * INDEX_ENTRY_LEN;
        let index = &bytes[index_offset..index_offset + index_len];
        let computed = crc32c::crc32c(index);
        if computed != footer.index_crc32c {
            return Err(ShardError::Checksum {
                path,
                what: "index".into(),
                stored: footer.index_crc32c,
                computed,
            });
        }
        if &index[..4] != INDEX_TAG {
            return Err(ShardError::Corrupt {
                path,
                what: "index".into(),
                detail: format!("expected the SIDX tag at offset {index_offset}"),
            });
        }
        // Records tile the space between the header and the index, in order.
        let mut expected = HEADER_LEN as u64;
        let mut max_label = None;
        for i in 0..footer.record_count as usize {
            let at = INDEX_HEADER_LEN + i * INDEX_ENTRY_LEN;
            let e = decode_index_entry(&index[at..at + INDEX_ENTRY_LEN]);
            if e.label != NO_LABEL {
                max_label = max_label.max(Some(e.label));
            }
            if e.offset != expected || (e.len as usize) < MIN_RECORD_LEN {
                return Err(ShardError::Corrupt {
                    path,
                    what: format!("index entry {i}"),
                    detail: format!(
                        "record at offset {} of {} bytes; expected offset {expected} and at least {MIN_RECORD_LEN} bytes",
                        e.offset, e.len
                    ),
                });
            }
            expected += u64::from(e.len);
        }
        if expected != footer.index_offset {
            return Err(ShardError::Corrupt {
                path,
                what: "index".into(),
                detail: format!(
                    "records end at offset {expected} but the index starts at {}",
                    footer.index_offset
                ),
            });
        }
        Ok(ShardReader {
            path,
            bytes,
            index_offset,
            count: footer.record_count,
            version: footer.version,
            max_label,
        })
    }

    /// Fails with [`ShardError::Changed`] when the file no longer has the size it had when it
    /// was mapped: reading a part of the map past the file's end would kill the process. One
    /// `fstat` of the open file; every read of a record or index entry does it first (a shard
    /// held in memory cannot change).
    pub fn check_unchanged(&self) -> Result<(), ShardError> {
        if let ShardBytes::Mapped { map, file } = &self.bytes {
            let now = file.metadata().map_err(ShardError::io(&self.path))?.len();
            let opened = map.len() as u64;
            if now != opened {
                return Err(ShardError::Changed {
                    path: self.path.clone(),
                    opened,
                    now,
                });
            }
        }
        Ok(())
    }

    /// The open file behind a memory-mapped shard (`None` for one held in memory), e.g. to
    /// advise the kernel on it without opening the path again.
    pub fn file(&self) -> Option<&File> {
        match &self.bytes {
            ShardBytes::Mapped { file, .. } => Some(file),
            ShardBytes::Owned(_) => None,
        }
    }

    /// The largest label in the index (checked on open), `None` when no record has one.
    pub fn max_label(&self) -> Option<u32> {
        self.max_label
    }

    /// The shard's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Number of records.
    pub fn len(&self) -> u64 {
        self.count
    }

    /// True when the shard holds no records.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Size of the shard file.
    pub fn file_len(&self) -> u64 {
        self.bytes.len() as u64
    }

    /// The format version the shard was written with.
    pub fn version(&self) -> (u16, u16) {
        self.version
    }

    /// The whole file's bytes (for whole-file checksums). Call
    /// [`check_unchanged`](Self::check_unchanged) first: this does not.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The index entry of record `i`, in O(1), after checking that the file has not changed
    /// size since it was opened.
    pub fn entry(&self, i: u64) -> Result<IndexEntry, ShardError> {
        if i >= self.count {
            return Err(ShardError::OutOfRange {
                index: i,
                len: self.count,
                what: self.path.display().to_string(),
            });
        }
        self.check_unchanged()?;
        let at = self.index_offset + INDEX_HEADER_LEN + i as usize * INDEX_ENTRY_LEN;
        Ok(decode_index_entry(&self.bytes[at..at + INDEX_ENTRY_LEN]))
    }

    /// The label of record `i` from the index, without touching the record.
    pub fn label(&self, i: u64) -> Result<Option<u32>, ShardError> {
        let e = self.entry(i)?;
        Ok((e.label != NO_LABEL).then_some(e.label))
    }

    /// Record `i`, checked (tag, lengths, label against the index, CRC32C).
    pub fn record(&self, i: u64) -> Result<Record<'_>, ShardError> {
        let e = self.entry(i)?;
        let rec = decode_record(&self.path, self.record_bytes(i, e)?, i, e.offset)?;
        if rec.label.unwrap_or(NO_LABEL) != e.label {
            return Err(ShardError::Corrupt {
                path: self.path.clone(),
                what: format!("record {i} (offset {})", e.offset),
                detail: format!(
                    "label {:?} disagrees with the index ({})",
                    rec.label, e.label
                ),
            });
        }
        Ok(rec)
    }

    /// The fixed fields of record `i` (label, size, format), checking its tag and lengths but
    /// not its CRC: cheap statistics. [`record`](Self::record) checks everything.
    pub fn meta(&self, i: u64) -> Result<RecordMeta, ShardError> {
        let e = self.entry(i)?;
        decode_record_meta(&self.path, self.record_bytes(i, e)?, i, e.offset)
    }

    /// The bytes of record `i`. The index was checked on open, so the range lies inside the
    /// record area; it is checked again because a file overwritten in place with the same size
    /// may now hold any index.
    fn record_bytes(&self, i: u64, e: IndexEntry) -> Result<&[u8], ShardError> {
        usize::try_from(e.offset)
            .ok()
            .and_then(|start| Some(start..start.checked_add(e.len as usize)?))
            .filter(|r| r.end <= self.index_offset)
            .and_then(|r| self.bytes.get(r))
            .ok_or_else(|| ShardError::Corrupt {
                path: self.path.clone(),
                what: format!("index entry {i}"),
                detail: format!(
                    "record at offset {} of {} bytes lies outside the record area, which ends at {}",
                    e.offset, e.len, self.index_offset
                ),
            })
    }

    /// All records in order.
    pub fn records(&self) -> impl Iterator<Item = Result<Record<'_>, ShardError>> + '_ {
        (0..self.count).map(move |i| self.record(i))
    }

    /// Asks the OS to start reading the whole shard into the page cache (no-op for in-memory
    /// shards). Used to read ahead the shards coming next.
    pub fn advise_willneed(&self) {
        if let ShardBytes::Mapped { map, .. } = &self.bytes {
            // Only a hint: a failure changes nothing but speed.
            let _ = map.advise(memmap2::Advice::WillNeed);
        }
    }
}
