//! The dataset manifest (`manifest.json`): what a dataset holds and how it was made. Written
//! last and atomically, so its presence means the dataset is complete.

use crate::error::{ShardError, WriteError};
use crate::format::{VERSION_MAJOR, VERSION_MINOR};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

/// File name of the manifest inside a dataset directory.
pub const MANIFEST_FILE: &str = "manifest.json";
/// Value of the manifest's `format` key.
pub const MANIFEST_FORMAT: &str = "shardfeed-dataset";

/// The manifest of a dataset (`docs/FORMAT.md`, "The manifest").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always [`MANIFEST_FORMAT`].
    pub format: String,
    /// `"major.minor"`.
    pub format_version: String,
    /// Free text: `train`, `val`, …
    pub split: String,
    /// Total records.
    pub records: u64,
    /// Total bytes of all shard files.
    pub bytes: u64,
    /// Classes in label order.
    pub classes: Vec<ClassEntry>,
    /// Records per image format name.
    pub formats: BTreeMap<String, u64>,
    /// Shards in global record order.
    pub shards: Vec<ShardEntry>,
    /// Inputs left out, with the reason.
    #[serde(default)]
    pub skipped: Vec<SkippedInput>,
    /// How the dataset was made.
    pub params: BuildParams,
}

/// One class.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassEntry {
    /// The label.
    pub index: u32,
    /// The WordNet id (folder name), e.g. `n01440764`.
    pub synset: String,
    /// Records with this label.
    pub records: u64,
}

/// One shard file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardEntry {
    /// File name inside the dataset directory.
    pub file: String,
    /// Records in the shard.
    pub records: u64,
    /// Size of the file.
    pub bytes: u64,
    /// CRC32C of the whole file, 8 lower-case hex digits.
    pub crc32c: String,
}

/// An input that was not stored, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedInput {
    /// Path relative to the input root.
    pub path: String,
    /// Why it was skipped.
    pub reason: String,
}

/// The parameters a dataset was made with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildParams {
    /// Tool name and version.
    pub tool: String,
    /// `passthrough` or `reencode`.
    pub mode: String,
    /// Re-encode: longer side at most this.
    pub max_side: Option<u32>,
    /// Re-encode: JPEG quality.
    pub quality: Option<u8>,
    /// A new shard starts when the next record would pass this size.
    pub target_shard_bytes: Option<u64>,
    /// Or: records dealt into exactly this many shards.
    pub shard_count: Option<u32>,
    /// `shuffled` or `sorted`.
    pub order: String,
    /// Seed of the record order when shuffled.
    pub shuffle_seed: u64,
    /// Undecodable inputs were fatal.
    pub strict: bool,
}

impl Manifest {
    /// The `format_version` string this build writes.
    pub fn current_version() -> String {
        format!("{VERSION_MAJOR}.{VERSION_MINOR}")
    }

    /// Reads and checks `DIR/manifest.json`: known format, known major version, consistent
    /// totals. Does not open the shards.
    pub fn load(dir: &Path) -> Result<Manifest, ShardError> {
        let path = dir.join(MANIFEST_FILE);
        let bad = |detail: String| ShardError::Manifest {
            path: path.clone(),
            detail,
        };
        let text = match fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let detail = if dir.is_dir() {
                    "no manifest.json: not a shardfeed dataset, or one whose writing was interrupted"
                } else {
                    "no such dataset directory"
                };
                return Err(ShardError::Manifest {
                    path: dir.to_owned(),
                    detail: detail.into(),
                });
            }
            Err(e) => return Err(ShardError::Io { path, source: e }),
        };
        // Check format and version before trusting the rest of the structure.
        let value: serde_json::Value =
            serde_json::from_slice(&text).map_err(|e| bad(format!("not valid JSON: {e}")))?;
        if value.get("format").and_then(|f| f.as_str()) != Some(MANIFEST_FORMAT) {
            return Err(bad(format!(
                "not a shardfeed manifest (format is not \"{MANIFEST_FORMAT}\")"
            )));
        }
        let version = value
            .get("format_version")
            .and_then(|v| v.as_str())
            .ok_or_else(|| bad("format_version is missing".into()))?;
        let (major, minor) = parse_version(version)
            .ok_or_else(|| bad(format!("format_version {version:?} is not MAJOR.MINOR")))?;
        if major != VERSION_MAJOR {
            return Err(ShardError::UnsupportedVersion {
                path,
                major,
                minor,
                supported: VERSION_MAJOR,
            });
        }
        let m: Manifest = serde_json::from_value(value).map_err(|e| bad(format!("{e}")))?;
        let records: u64 = m.shards.iter().map(|s| s.records).sum();
        let bytes: u64 = m.shards.iter().map(|s| s.bytes).sum();
        if records != m.records || bytes != m.bytes {
            return Err(bad(format!(
                "totals ({} records, {} bytes) disagree with the shard list ({records}, {bytes})",
                m.records, m.bytes
            )));
        }
        for (i, c) in m.classes.iter().enumerate() {
            if c.index as usize != i {
                return Err(bad(format!("class {} is listed at position {i}", c.index)));
            }
        }
        for s in &m.shards {
            if s.file.contains('/') || s.file.contains('\\') || s.file.starts_with('.') {
                return Err(bad(format!(
                    "shard file name {:?} is not a plain file name",
                    s.file
                )));
            }
        }
        Ok(m)
    }

    /// Writes the manifest into `dir` atomically: temp file, fsync, rename, fsync of the
    /// directory.
    pub fn write_atomic(&self, dir: &Path) -> Result<(), WriteError> {
        let mut text =
            serde_json::to_vec_pretty(self).map_err(|e| WriteError::Usage(e.to_string()))?;
        text.push(b'\n');
        write_atomic(&dir.join(MANIFEST_FILE), &text)
    }
}

/// Parses `"MAJOR.MINOR"`.
pub fn parse_version(v: &str) -> Option<(u16, u16)> {
    let (a, b) = v.split_once('.')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// Writes `bytes` to `path` so that readers see the old file or the whole new one, never a part:
/// `path.tmp`, fsync, rename, fsync of the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), WriteError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    let mut f = File::create(&tmp).map_err(WriteError::io(&tmp))?;
    f.write_all(bytes).map_err(WriteError::io(&tmp))?;
    f.sync_all().map_err(WriteError::io(&tmp))?;
    drop(f);
    fs::rename(&tmp, path).map_err(WriteError::io(path))?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// fsync of a directory, so that renames inside it are durable.
pub fn sync_dir(dir: &Path) -> Result<(), WriteError> {
    let d = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    File::open(d)
        .and_then(|f| f.sync_all())
        .map_err(WriteError::io(d))
}
