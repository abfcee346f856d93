//! The bytes of a shard file, as `docs/FORMAT.md` specifies them: constants, the record type,
//! and pure encode/decode functions over byte slices (no I/O here).

use crate::error::ShardError;
use std::path::Path;

/// Magic bytes at the start and at the end of every shard file.
pub const MAGIC: &[u8; 8] = b"SHRDFEED";
/// Major format version written by this build; readers refuse any other major.
pub const VERSION_MAJOR: u16 = 1;
/// Minor format version written by this build.
pub const VERSION_MINOR: u16 = 0;
/// Size of the shard header.
pub const HEADER_LEN: usize = 16;
/// Size of the shard footer.
pub const FOOTER_LEN: usize = 40;
/// Tag that starts every record.
pub const RECORD_TAG: &[u8; 4] = b"SREC";
/// Tag that starts the index.
pub const INDEX_TAG: &[u8; 4] = b"SIDX";
/// Size of a record's fixed fields before the path.
pub const RECORD_FIXED_LEN: usize = 28;
/// Size of the trailing CRC of a record.
pub const RECORD_CRC_LEN: usize = 4;
/// The smallest possible record: fixed fields and CRC, empty path and image.
pub const MIN_RECORD_LEN: usize = RECORD_FIXED_LEN + RECORD_CRC_LEN;
/// Size of the index's tag and reserved word.
pub const INDEX_HEADER_LEN: usize = 8;
/// Size of one index entry.
pub const INDEX_ENTRY_LEN: usize = 16;
/// The label value that means "no label".
pub const NO_LABEL: u32 = u32::MAX;

/// The real format of an encoded image, detected from its magic bytes (never its file name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ImageFormat {
    /// Not recognised.
    Unknown,
    /// JPEG/JFIF/EXIF (`FF D8 FF`).
    Jpeg,
    /// PNG.
    Png,
    /// GIF87a/GIF89a.
    Gif,
    /// WebP (RIFF container).
    Webp,
    /// Windows bitmap.
    Bmp,
    /// TIFF or BigTIFF, either byte order.
    Tiff,
}

impl ImageFormat {
    /// Every format, in code order.
    pub const ALL: [ImageFormat; 7] = [
        ImageFormat::Unknown,
        ImageFormat::Jpeg,
        ImageFormat::Png,
        ImageFormat::Gif,
        ImageFormat::Webp,
        ImageFormat::Bmp,
        ImageFormat::Tiff,
    ];

    /// Detects the format from the first bytes of an encoded image.
    pub fn detect(bytes: &[u8]) -> ImageFormat {
        match bytes {
            [0xFF, 0xD8, 0xFF, ..] => ImageFormat::Jpeg,
            [0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A, ..] => ImageFormat::Png,
            [b'G', b'I', b'F', b'8', b'7' | b'9', b'a', ..] => ImageFormat::Gif,
            [b'R', b'I', b'F', b'F', _, _, _, _, b'W', b'E', b'B', b'P', ..] => ImageFormat::Webp,
            [b'B', b'M', ..] if bytes.len() >= 26 => ImageFormat::Bmp,
            [b'I', b'I', b'*' | b'+', 0, ..] | [b'M', b'M', 0, b'*' | b'+', ..] => {
                ImageFormat::Tiff
            }
            _ => ImageFormat::Unknown,
        }
    }

    /// The on-disk code (`docs/FORMAT.md`).
    pub fn code(self) -> u8 {
        match self {
            ImageFormat::Unknown => 0,
            ImageFormat::Jpeg => 1,
            ImageFormat::Png => 2,
            ImageFormat::Gif => 3,
            ImageFormat::Webp => 4,
            ImageFormat::Bmp => 5,
            ImageFormat::Tiff => 6,
        }
    }

    /// The format for an on-disk code; codes from a newer minor version read as `Unknown`.
    pub fn from_code(code: u8) -> ImageFormat {
        ImageFormat::ALL
            .get(usize::from(code))
            .copied()
            .unwrap_or(ImageFormat::Unknown)
    }

    /// Lower-case name, as used in the manifest and by `inspect`.
    pub fn name(self) -> &'static str {
        match self {
            ImageFormat::Unknown => "unknown",
            ImageFormat::Jpeg => "jpeg",
            ImageFormat::Png => "png",
            ImageFormat::Gif => "gif",
            ImageFormat::Webp => "webp",
            ImageFormat::Bmp => "bmp",
            ImageFormat::Tiff => "tiff",
        }
    }

    /// The usual file extension, for records pulled back out as files.
    pub fn extension(self) -> &'static str {
        match self {
            ImageFormat::Unknown => "bin",
            ImageFormat::Jpeg => "jpg",
            other => other.name(),
        }
    }
}

impl std::fmt::Display for ImageFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One record: an encoded image and what is known about it. Borrowed, so that reading from a
/// memory-mapped shard copies nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    /// Class index, `None` for unlabeled data.
    pub label: Option<u32>,
    /// Width of the stored image in pixels.
    pub width: u32,
    /// Height of the stored image in pixels.
    pub height: u32,
    /// Real format of `image`.
    pub format: ImageFormat,
    /// Source path relative to the input root, `/`-separated.
    pub path: &'a str,
    /// The encoded image.
    pub image: &'a [u8],
}

impl Record<'_> {
    /// Bytes this record takes in a shard.
    pub fn encoded_len(&self) -> u64 {
        (RECORD_FIXED_LEN + RECORD_CRC_LEN) as u64
            + self.path.len() as u64
            + self.image.len() as u64
    }

    /// An owned copy.
    pub fn to_owned_record(&self) -> OwnedRecord {
        OwnedRecord {
            label: self.label,
            width: self.width,
            height: self.height,
            format: self.format,
            path: self.path.to_owned(),
            image: self.image.to_vec(),
        }
    }
}

/// An owned [`Record`], as yielded by the streaming reader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedRecord {
    /// Class index, `None` for unlabeled data.
    pub label: Option<u32>,
    /// Width of the stored image in pixels.
    pub width: u32,
    /// Height of the stored image in pixels.
    pub height: u32,
    /// Real format of `image`.
    pub format: ImageFormat,
    /// Source path relative to the input root.
    pub path: String,
    /// The encoded image.
    pub image: Vec<u8>,
}

impl OwnedRecord {
    /// A borrowed view.
    pub fn as_record(&self) -> Record<'_> {
        Record {
            label: self.label,
            width: self.width,
            height: self.height,
            format: self.format,
            path: &self.path,
            image: &self.image,
        }
    }
}

/// The fixed fields of a record, read without its path, image or CRC check: cheap, for
/// statistics (`inspect`). Use [`decode_record`] for anything that trusts the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordMeta {
    /// Class index, `None` for unlabeled data.
    pub label: Option<u32>,
    /// Width of the stored image in pixels.
    pub width: u32,
    /// Height of the stored image in pixels.
    pub height: u32,
    /// Real format of the image.
    pub format: ImageFormat,
    /// Bytes of the encoded image.
    pub image_len: u32,
}

/// One index entry: where a record is and its label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexEntry {
    /// Offset of the record's tag in the file.
    pub offset: u64,
    /// Length of the whole record.
    pub len: u32,
    /// Label, [`NO_LABEL`] for none.
    pub label: u32,
}

/// The parsed footer of a shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Footer {
    /// Offset of the index.
    pub index_offset: u64,
    /// Number of records.
    pub record_count: u64,
    /// CRC32C of the index.
    pub index_crc32c: u32,
    /// Format version (major, minor).
    pub version: (u16, u16),
}

pub(crate) fn le_u16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

pub(crate) fn le_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

pub(crate) fn le_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// The 16 header bytes.
pub fn encode_header() -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..8].copy_from_slice(MAGIC);
    h[8..10].copy_from_slice(&VERSION_MAJOR.to_le_bytes());
    h[10..12].copy_from_slice(&VERSION_MINOR.to_le_bytes());
    h
}

/// The fixed fields of a record (everything before the path), given its lengths.
pub fn encode_record_fixed(rec: &Record<'_>, record_len: u32) -> [u8; RECORD_FIXED_LEN] {
    let mut f = [0u8; RECORD_FIXED_LEN];
    f[..4].copy_from_slice(RECORD_TAG);
    f[4..8].copy_from_slice(&record_len.to_le_bytes());
    f[8..12].copy_from_slice(&rec.label.unwrap_or(NO_LABEL).to_le_bytes());
    f[12..16].copy_from_slice(&rec.width.to_le_bytes());
    f[16..20].copy_from_slice(&rec.height.to_le_bytes());
    f[20] = rec.format.code();
    f[21] = 0;
    // Callers check that the path fits in u16 and the image in u32 before encoding.
    f[22..24].copy_from_slice(&(rec.path.len() as u16).to_le_bytes());
    f[24..28].copy_from_slice(&(rec.image.len() as u32).to_le_bytes());
    f
}

/// The index tag and reserved word.
pub fn encode_index_header() -> [u8; INDEX_HEADER_LEN] {
    let mut h = [0u8; INDEX_HEADER_LEN];
    h[..4].copy_from_slice(INDEX_TAG);
    h
}

/// One index entry.
pub fn encode_index_entry(e: &IndexEntry) -> [u8; INDEX_ENTRY_LEN] {
    let mut b = [0u8; INDEX_ENTRY_LEN];
    b[..8].copy_from_slice(&e.offset.to_le_bytes());
    b[8..12].copy_from_slice(&e.len.to_le_bytes());
    b[12..16].copy_from_slice(&e.label.to_le_bytes());
    b
}

/// Parses one index entry from its 16 bytes.
pub fn decode_index_entry(b: &[u8]) -> IndexEntry {
    IndexEntry {
        offset: le_u64(b, 0),
        len: le_u32(b, 8),
        label: le_u32(b, 12),
    }
}

/// The 40 footer bytes.
pub fn encode_footer(index_offset: u64, record_count: u64, index_crc32c: u32) -> [u8; FOOTER_LEN] {
    let mut f = [0u8; FOOTER_LEN];
    f[..8].copy_from_slice(&index_offset.to_le_bytes());
    f[8..16].copy_from_slice(&record_count.to_le_bytes());
    f[16..20].copy_from_slice(&index_crc32c.to_le_bytes());
    f[24..26].copy_from_slice(&VERSION_MAJOR.to_le_bytes());
    f[26..28].copy_from_slice(&VERSION_MINOR.to_le_bytes());
    let crc = crc32c::crc32c(&f[..28]);
    f[28..32].copy_from_slice(&crc.to_le_bytes());
    f[32..40].copy_from_slice(MAGIC);
    f
}

/// Checks the header of a shard (magic, then version) and returns its version.
pub fn check_header(path: &Path, bytes: &[u8]) -> Result<(u16, u16), ShardError> {
    if bytes.is_empty() {
        return Err(empty_file(path));
    }
    if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
        return Err(ShardError::BadMagic {
            path: path.to_owned(),
            detail: "not a shardfeed shard: the file does not start with SHRDFEED".into(),
        });
    }
    if bytes.len() < HEADER_LEN {
        return Err(ShardError::Truncated {
            path: path.to_owned(),
            detail: format!(
                "{} bytes, shorter than the {HEADER_LEN}-byte header",
                bytes.len()
            ),
        });
    }
    let version = (le_u16(bytes, 8), le_u16(bytes, 10));
    check_version(path, version)?;
    Ok(version)
}

pub(crate) fn check_version(path: &Path, (major, minor): (u16, u16)) -> Result<(), ShardError> {
    if major != VERSION_MAJOR {
        return Err(ShardError::UnsupportedVersion {
            path: path.to_owned(),
            major,
            minor,
            supported: VERSION_MAJOR,
        });
    }
    Ok(())
}

/// Parses and checks the header and footer of a whole shard held in `bytes`, in the order the
/// format requires: magic, length bounds, version, footer checksum. The index is checked by the
/// caller.
pub fn check_footer(path: &Path, bytes: &[u8]) -> Result<Footer, ShardError> {
    let len = bytes.len();
    let has = |at: usize| len >= at + MAGIC.len() && &bytes[at..at + MAGIC.len()] == MAGIC;
    let head_ok = has(0);
    let tail_ok = len >= MAGIC.len() && has(len - MAGIC.len());
    // 1. Magic.
    if len == 0 {
        return Err(empty_file(path));
    }
    if !head_ok {
        return Err(ShardError::BadMagic {
            path: path.to_owned(),
            detail: "not a shardfeed shard: the file does not start with SHRDFEED".into(),
        });
    }
    if !tail_ok {
        if let Some(e) = appended(path, bytes) {
            return Err(e);
        }
        return Err(ShardError::Truncated {
            path: path.to_owned(),
            detail: format!(
                "the file ends without the SHRDFEED footer ({len} bytes): was it cut short?"
            ),
        });
    }
    // 2. Length bounds: a header, an index and a footer fit, and the index fills exactly the
    // space between index_offset and the footer.
    if len < HEADER_LEN + INDEX_HEADER_LEN + FOOTER_LEN {
        return Err(ShardError::Truncated {
            path: path.to_owned(),
            detail: format!("{len} bytes, shorter than a header, an empty index and a footer"),
        });
    }
    let f = &bytes[len - FOOTER_LEN..];
    let footer = Footer {
        index_offset: le_u64(f, 0),
        record_count: le_u64(f, 8),
        index_crc32c: le_u32(f, 16),
        version: (le_u16(f, 24), le_u16(f, 26)),
    };
    let expected_len = footer
        .record_count
        .checked_mul(INDEX_ENTRY_LEN as u64)
        .and_then(|n| n.checked_add((INDEX_HEADER_LEN + FOOTER_LEN) as u64))
        .and_then(|n| n.checked_add(footer.index_offset));
    if footer.index_offset < HEADER_LEN as u64 || expected_len != Some(len as u64) {
        // E.g. a second shard appended to this one: the file ends with a good footer, not its
        // own.
        if let Some(e) = appended(path, bytes) {
            return Err(e);
        }
        return Err(ShardError::Corrupt {
            path: path.to_owned(),
            what: "footer".into(),
            detail: format!(
                "{} records with the index at offset {} do not fit a file of {len} bytes",
                footer.record_count, footer.index_offset
            ),
        });
    }
    // 3. Version, in the header and the footer.
    let header_version = (le_u16(bytes, 8), le_u16(bytes, 10));
    check_version(path, header_version)?;
    check_version(path, footer.version)?;
    if header_version != footer.version {
        return Err(ShardError::Corrupt {
            path: path.to_owned(),
            what: "footer".into(),
            detail: format!(
                "header says version {}.{}, footer says {}.{}",
                header_version.0, header_version.1, footer.version.0, footer.version.1
            ),
        });
    }
    // 4. Checksum of the footer itself.
    let stored = le_u32(f, 28);
    let computed = crc32c::crc32c(&f[..28]);
    if stored != computed {
        return Err(ShardError::Checksum {
            path: path.to_owned(),
            what: "footer".into(),
            stored,
            computed,
        });
    }
    Ok(footer)
}

/// The error for a shard with bytes appended after its footer, if that is what `bytes` is.
fn appended(path: &Path, bytes: &[u8]) -> Option<ShardError> {
    let end = earlier_footer_end(bytes)?;
    Some(ShardError::Corrupt {
        path: path.to_owned(),
        what: "footer".into(),
        detail: format!(
            "{} bytes follow the footer, which ends at offset {end}: something was appended to \
             the shard",
            bytes.len() - end
        ),
    })
}

/// Where the shard in `bytes` really ends when something was appended to it: the end of the
/// last footer (searching back from the end) whose checksum holds and which describes a file
/// that ends exactly there. `None` for a file cut short. Only called to name an error, so the
/// linear search costs nothing on the path that reads good shards.
fn earlier_footer_end(bytes: &[u8]) -> Option<usize> {
    let min_end = HEADER_LEN + INDEX_HEADER_LEN + FOOTER_LEN;
    let mut end = bytes.len().checked_sub(1)?;
    while end >= min_end {
        // The last MAGIC that ends before `end`.
        let at = bytes[..end]
            .windows(MAGIC.len())
            .rposition(|w| w == MAGIC)?;
        end = at + MAGIC.len();
        if end >= min_end {
            let f = &bytes[end - FOOTER_LEN..end];
            let fits = le_u64(f, 8)
                .checked_mul(INDEX_ENTRY_LEN as u64)
                .and_then(|n| n.checked_add((INDEX_HEADER_LEN + FOOTER_LEN) as u64))
                .and_then(|n| n.checked_add(le_u64(f, 0)))
                == Some(end as u64);
            if fits && le_u32(f, 28) == crc32c::crc32c(&f[..28]) {
                return Some(end);
            }
        }
        end -= 1;
    }
    None
}

/// An empty file: most likely a shard whose writing never got past creating the file.
fn empty_file(path: &Path) -> ShardError {
    ShardError::Truncated {
        path: path.to_owned(),
        detail: "the file is empty (0 bytes)".into(),
    }
}

/// Where a record is, for error messages: `record 17 (offset 123456)`.
pub(crate) fn record_what(index: u64, offset: u64) -> String {
    format!("record {index} (offset {offset})")
}

/// Parses the fixed fields of a record held in `bytes` (exactly the record's bytes), checking
/// its tag and lengths but not its CRC.
pub fn decode_record_meta(
    path: &Path,
    bytes: &[u8],
    index: u64,
    offset: u64,
) -> Result<RecordMeta, ShardError> {
    let corrupt = |detail: String| ShardError::Corrupt {
        path: path.to_owned(),
        what: record_what(index, offset),
        detail,
    };
    if bytes.len() < MIN_RECORD_LEN || &bytes[..4] != RECORD_TAG {
        return Err(corrupt("not a record: bad tag or too short".into()));
    }
    let record_len = le_u32(bytes, 4) as usize;
    let path_len = usize::from(le_u16(bytes, 22));
    let image_len = le_u32(bytes, 24);
    if record_len != bytes.len()
        || RECORD_FIXED_LEN + path_len + image_len as usize + RECORD_CRC_LEN != record_len
    {
        return Err(corrupt(format!(
            "lengths disagree: record_len {record_len}, path_len {path_len}, image_len {image_len}, index {}",
            bytes.len()
        )));
    }
    let label = le_u32(bytes, 8);
    Ok(RecordMeta {
        label: (label != NO_LABEL).then_some(label),
        width: le_u32(bytes, 12),
        height: le_u32(bytes, 16),
        format: ImageFormat::from_code(bytes[20]),
        image_len,
    })
}

/// Parses and checks one record held in `bytes` (exactly the record's bytes), numbered `index`
/// and found at `offset`, for error messages. Checks tag, lengths and CRC before returning it.
pub fn decode_record<'a>(
    path: &Path,
    bytes: &'a [u8],
    index: u64,
    offset: u64,
) -> Result<Record<'a>, ShardError> {
    let corrupt = |detail: String| ShardError::Corrupt {
        path: path.to_owned(),
        what: record_what(index, offset),
        detail,
    };
    if bytes.len() < MIN_RECORD_LEN {
        return Err(corrupt(format!(
            "{} bytes, shorter than the smallest record ({MIN_RECORD_LEN})",
            bytes.len()
        )));
    }
    if &bytes[..4] != RECORD_TAG {
        return Err(corrupt(format!(
            "expected the SREC tag, found {:02x?}",
            &bytes[..4]
        )));
    }
    let record_len = le_u32(bytes, 4) as usize;
    if record_len != bytes.len() {
        return Err(corrupt(format!(
            "record_len {record_len} disagrees with the index ({})",
            bytes.len()
        )));
    }
    let path_len = usize::from(le_u16(bytes, 22));
    let image_len = le_u32(bytes, 24) as usize;
    if RECORD_FIXED_LEN + path_len + image_len + RECORD_CRC_LEN != record_len {
        return Err(corrupt(format!(
            "path_len {path_len} + image_len {image_len} do not add up to record_len {record_len}"
        )));
    }
    let body = &bytes[..record_len - RECORD_CRC_LEN];
    let stored = le_u32(bytes, record_len - RECORD_CRC_LEN);
    let computed = crc32c::crc32c(body);
    if stored != computed {
        return Err(ShardError::Checksum {
            path: path.to_owned(),
            what: record_what(index, offset),
            stored,
            computed,
        });
    }
    let path_bytes = &bytes[RECORD_FIXED_LEN..RECORD_FIXED_LEN + path_len];
    let src_path = std::str::from_utf8(path_bytes)
        .map_err(|e| corrupt(format!("source path is not UTF-8: {e}")))?;
    let label = le_u32(bytes, 8);
    Ok(Record {
        label: (label != NO_LABEL).then_some(label),
        width: le_u32(bytes, 12),
        height: le_u32(bytes, 16),
        format: ImageFormat::from_code(bytes[20]),
        path: src_path,
        image: &bytes[RECORD_FIXED_LEN + path_len..record_len - RECORD_CRC_LEN],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_is_castagnoli() {
        assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
    }

    #[test]
    fn detects_formats_from_magic_bytes() {
        assert_eq!(
            ImageFormat::detect(&[0xFF, 0xD8, 0xFF, 0xE0]),
            ImageFormat::Jpeg
        );
        assert_eq!(
            ImageFormat::detect(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"),
            ImageFormat::Png
        );
        assert_eq!(ImageFormat::detect(b"GIF89a...."), ImageFormat::Gif);
        assert_eq!(
            ImageFormat::detect(b"RIFF\0\0\0\0WEBPVP8 "),
            ImageFormat::Webp
        );
        assert_eq!(ImageFormat::detect(b"II*\0"), ImageFormat::Tiff);
        assert_eq!(ImageFormat::detect(b"MM\0*"), ImageFormat::Tiff);
        assert_eq!(ImageFormat::detect(b"<html>"), ImageFormat::Unknown);
        assert_eq!(ImageFormat::detect(b""), ImageFormat::Unknown);
        assert_eq!(ImageFormat::detect(&[0xFF, 0xD8]), ImageFormat::Unknown);
    }

    #[test]
    fn format_codes_round_trip_and_unknown_codes_read_as_unknown() {
        for f in ImageFormat::ALL {
            assert_eq!(ImageFormat::from_code(f.code()), f);
        }
        assert_eq!(ImageFormat::from_code(200), ImageFormat::Unknown);
    }

    #[test]
    fn record_encoding_is_the_documented_layout() {
        let rec = Record {
            label: Some(7),
            width: 500,
            height: 375,
            format: ImageFormat::Jpeg,
            path: "a/b.JPEG",
            image: &[1, 2, 3],
        };
        let len = rec.encoded_len() as u32;
        assert_eq!(len, 28 + 8 + 3 + 4);
        let fixed = encode_record_fixed(&rec, len);
        assert_eq!(&fixed[..4], b"SREC");
        assert_eq!(le_u32(&fixed, 4), len);
        assert_eq!(le_u32(&fixed, 8), 7);
        assert_eq!(le_u32(&fixed, 12), 500);
        assert_eq!(le_u32(&fixed, 16), 375);
        assert_eq!(fixed[20], 1);
        assert_eq!(le_u16(&fixed, 22), 8);
        assert_eq!(le_u32(&fixed, 24), 3);
        let mut bytes = fixed.to_vec();
        bytes.extend_from_slice(rec.path.as_bytes());
        bytes.extend_from_slice(rec.image);
        let crc = crc32c::crc32c(&bytes);
        bytes.extend_from_slice(&crc.to_le_bytes());
        let back = decode_record(Path::new("x"), &bytes, 0, 16).unwrap();
        assert_eq!(back, rec);
    }
}
