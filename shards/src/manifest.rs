//! The dataset manifest (`manifest.json`): what a dataset holds and how it was made. Written
//! last and atomically, so its presence means the dataset is complete.

use crate::error::{ShardError, WriteError};
use crate::format::{VERSION_MAJOR, VERSION_MINOR};
use crate::reader::open_regular_file;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{Read, Write};
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
        let read = open_regular_file(&path).and_then(|(mut file, len)| {
            let mut text = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
            file.read_to_end(&mut text)
                .map_err(ShardError::io(&path))
                .map(|_| text)
        });
        let text = match read {
            Ok(t) => t,
            Err(ShardError::Io { error: e, .. }) if e.kind() == std::io::ErrorKind::NotFound => {
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
            Err(e) => return Err(e),
        };
        Manifest::parse(&path, &text)
    }

    /// Parses and checks the bytes of a manifest (the pure part of [`load`](Self::load)):
    /// format and major version first, then the structure, then that the totals agree with the
    /// shard list and the shard file names are plain names. `path` is only used in errors.
    ///
    /// ```
    /// use shardfeed_shards::{Manifest, ShardError};
    /// use std::path::Path;
    ///
    /// let err = Manifest::parse(Path::new("ds/manifest.json"), br#"{"format": "tar"}"#).unwrap_err();
    /// assert!(err.to_string().starts_with("ds/manifest.json: not a shardfeed manifest"));
    /// let err = Manifest::parse(
    ///     Path::new("ds/manifest.json"),
    ///     br#"{"format": "shardfeed-dataset", "format_version": "2.0"}"#,
    /// )
    /// .unwrap_err();
    /// assert!(matches!(err, ShardError::UnsupportedVersion { major: 2, .. }));
    /// ```
    pub fn parse(path: &Path, text: &[u8]) -> Result<Manifest, ShardError> {
        let bad = |detail: String| ShardError::Manifest {
            path: path.to_owned(),
            detail,
        };
        // Check format and version before trusting the rest of the structure.
        let value: serde_json::Value =
            serde_json::from_slice(text).map_err(|e| bad(format!("not valid JSON: {e}")))?;
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
                path: path.to_owned(),
                major,
                minor,
                supported: VERSION_MAJOR,
            });
        }
        let m: Manifest = serde_json::from_value(value).map_err(|e| bad(format!("{e}")))?;
        // Sums of numbers from outside: checked, so a manifest that lies cannot overflow them.
        let records = m
            .shards
            .iter()
            .try_fold(0u64, |sum, s| sum.checked_add(s.records));
        let bytes = m
            .shards
            .iter()
            .try_fold(0u64, |sum, s| sum.checked_add(s.bytes));
        if records != Some(m.records) || bytes != Some(m.bytes) {
            let show =
                |n: Option<u64>| n.map_or_else(|| "more than 2^64".into(), |n| n.to_string());
            return Err(bad(format!(
                "totals ({} records, {} bytes) disagree with the shard list ({}, {})",
                m.records,
                m.bytes,
                show(records),
                show(bytes)
            )));
        }
        for (i, c) in m.classes.iter().enumerate() {
            if c.index as usize != i {
                return Err(bad(format!("class {} is listed at position {i}", c.index)));
            }
        }
        // A shard listed twice would be read twice: records counted and sampled twice.
        let mut seen = std::collections::HashMap::with_capacity(m.shards.len());
        for (i, s) in m.shards.iter().enumerate() {
            if let Some(first) = seen.insert(s.file.as_str(), i) {
                return Err(bad(format!(
                    "shard file {:?} is listed twice (shards {first} and {i})",
                    s.file
                )));
            }
        }
        for s in &m.shards {
            if s.file.is_empty()
                || s.file.contains('/')
                || s.file.contains('\\')
                || s.file.starts_with('.')
            {
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
    let mut f = create_exclusive(&tmp)?;
    f.write_all(bytes).map_err(WriteError::io(&tmp))?;
    f.sync_all().map_err(WriteError::io(&tmp))?;
    drop(f);
    fs::rename(&tmp, path).map_err(WriteError::io(path))?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// Creates `path` for writing, never through what is already there: a stale file or a link
/// planted at the name (a temporary name is predictable) is removed, not followed, and the new
/// file is created with `O_EXCL`, so a link planted between the two makes the write fail rather
/// than land in the link's target.
pub(crate) fn create_exclusive(path: &Path) -> Result<File, WriteError> {
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(WriteError::io(path)(e)),
    }
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(WriteError::io(path))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn atomic_writes_never_follow_a_link_planted_at_the_temporary_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let victim = dir.path().join("victim");
        fs::write(&victim, b"precious").expect("write");
        let target = dir.path().join(MANIFEST_FILE);
        std::os::unix::fs::symlink(&victim, dir.path().join("manifest.json.tmp")).expect("link");
        write_atomic(&target, b"{}").expect("writes");
        assert_eq!(fs::read(&victim).expect("read"), b"precious");
        assert_eq!(fs::read(&target).expect("read"), b"{}");
        assert!(!dir.path().join("manifest.json.tmp").exists());
    }

    fn manifest_json(shards: &str, records: &str, bytes: &str) -> String {
        format!(
            r#"{{"format": "shardfeed-dataset", "format_version": "1.0", "split": "train",
                "records": {records}, "bytes": {bytes}, "classes": [], "formats": {{}},
                "shards": {shards}, "skipped": [],
                "params": {{"tool": "t", "mode": "passthrough", "max_side": null, "quality": null,
                            "target_shard_bytes": 1, "shard_count": null, "order": "sorted",
                            "shuffle_seed": 0, "strict": false}}}}"#
        )
    }

    fn shard(file: &str, records: u64, bytes: u64) -> String {
        format!(
            r#"{{"file": "{file}", "records": {records}, "bytes": {bytes}, "crc32c": "00000000"}}"#
        )
    }

    #[test]
    fn a_well_formed_manifest_parses() {
        let text = manifest_json(
            &format!("[{}, {}]", shard("a.sfs", 2, 100), shard("b.sfs", 3, 50)),
            "5",
            "150",
        );
        let m = Manifest::parse(Path::new("m.json"), text.as_bytes()).unwrap();
        assert_eq!((m.records, m.bytes, m.shards.len()), (5, 150, 2));
    }

    /// Found by the property tests: record counts whose sum passes 2^64 made the totals check
    /// overflow (a panic in debug builds, a wrong sum in release).
    #[test]
    fn shard_counts_that_overflow_u64_are_refused_not_a_panic() {
        let text = manifest_json(
            &format!(
                "[{}, {}]",
                shard("a.sfs", u64::MAX, 100),
                shard("b.sfs", 2, 50)
            ),
            "1",
            "150",
        );
        let err = Manifest::parse(Path::new("ds/manifest.json"), text.as_bytes()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "ds/manifest.json: totals (1 records, 150 bytes) disagree with the shard list \
             (more than 2^64, 150)"
        );
        let text = manifest_json(
            &format!(
                "[{}, {}]",
                shard("a.sfs", 1, u64::MAX),
                shard("b.sfs", 1, 1)
            ),
            "2",
            "0",
        );
        assert!(Manifest::parse(Path::new("m.json"), text.as_bytes()).is_err());
    }

    #[test]
    fn shard_names_that_leave_the_directory_are_refused() {
        for name in ["../x.sfs", "sub/x.sfs", "..", ".hidden", "", "a\\\\b"] {
            let text = manifest_json(&format!("[{}]", shard(name, 1, 1)), "1", "1");
            let err = Manifest::parse(Path::new("m.json"), text.as_bytes()).unwrap_err();
            assert!(
                err.to_string().contains("is not a plain file name"),
                "{name}: {err}"
            );
        }
    }

    #[test]
    fn errors_name_the_manifest_file() {
        let path = Path::new("data/train/manifest.json");
        for (text, want) in [
            ("", "not valid JSON"),
            ("[1, 2]", "not a shardfeed manifest"),
            (
                r#"{"format": "shardfeed-dataset"}"#,
                "format_version is missing",
            ),
            (
                r#"{"format": "shardfeed-dataset", "format_version": "one"}"#,
                "is not MAJOR.MINOR",
            ),
            (
                r#"{"format": "shardfeed-dataset", "format_version": "1.0"}"#,
                "missing field",
            ),
            (
                r#"{"format": "shardfeed-dataset", "format_version": "3.1"}"#,
                "unsupported format version 3.1 (this build reads 1.x)",
            ),
        ] {
            let err = Manifest::parse(path, text.as_bytes())
                .unwrap_err()
                .to_string();
            assert!(err.starts_with("data/train/manifest.json: "), "{err}");
            assert!(err.contains(want), "{text}: {err}");
        }
    }
}
