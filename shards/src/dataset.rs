//! [`Dataset`]: a directory of shards opened through its manifest, with global record numbers;
//! and [`verify_dataset`], which checks every byte and reports every problem it finds.

use crate::error::ShardError;
use crate::format::{Record, RECORD_FIXED_LEN};
use crate::manifest::{Manifest, ShardEntry};
use crate::reader::ShardReader;
use std::path::{Path, PathBuf};

/// An opened dataset: its manifest and every shard, memory-mapped and checked.
#[derive(Debug)]
pub struct Dataset {
    dir: PathBuf,
    manifest: Manifest,
    shards: Vec<ShardReader>,
    /// `starts[s]` is the global number of shard `s`'s first record; one extra entry holds the
    /// total.
    starts: Vec<u64>,
}

impl Dataset {
    /// Opens `dir`: reads the manifest, then opens and checks every shard it lists (footer,
    /// index; not the record bytes) and their record counts.
    pub fn open(dir: impl AsRef<Path>) -> Result<Dataset, ShardError> {
        let dir = dir.as_ref().to_owned();
        let manifest = Manifest::load(&dir)?;
        let mut shards = Vec::with_capacity(manifest.shards.len());
        let mut starts = Vec::with_capacity(manifest.shards.len() + 1);
        let mut total = 0u64;
        for entry in &manifest.shards {
            let shard = ShardReader::open(dir.join(&entry.file))?;
            check_against_manifest(&shard, entry)?;
            starts.push(total);
            total += shard.len();
            shards.push(shard);
        }
        starts.push(total);
        Ok(Dataset {
            dir,
            manifest,
            shards,
            starts,
        })
    }

    /// The dataset directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The shards, in global record order.
    pub fn shards(&self) -> &[ShardReader] {
        &self.shards
    }

    /// Total number of records.
    pub fn len(&self) -> u64 {
        self.starts.last().copied().unwrap_or(0)
    }

    /// True when there are no records.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of classes.
    pub fn num_classes(&self) -> usize {
        self.manifest.classes.len()
    }

    /// Global number of the first record of each shard.
    pub fn shard_starts(&self) -> &[u64] {
        &self.starts[..self.shards.len()]
    }

    /// (shard, local record) of global record `g`, in O(log shards).
    pub fn locate(&self, g: u64) -> Result<(usize, u64), ShardError> {
        if g >= self.len() {
            return Err(ShardError::OutOfRange {
                index: g,
                len: self.len(),
                what: self.dir.display().to_string(),
            });
        }
        // The last shard whose start is <= g (empty shards share a start; skip past them).
        let s = self.starts.partition_point(|&start| start <= g) - 1;
        Ok((s, g - self.starts[s]))
    }

    /// Global record `g`, checked.
    pub fn record(&self, g: u64) -> Result<Record<'_>, ShardError> {
        let (s, i) = self.locate(g)?;
        self.shards[s].record(i)
    }

    /// The label of global record `g`, from the index.
    pub fn label(&self, g: u64) -> Result<Option<u32>, ShardError> {
        let (s, i) = self.locate(g)?;
        self.shards[s].label(i)
    }

    /// The global number of the record whose source path is `path` (a scan of the records).
    pub fn find_path(&self, path: &str) -> Result<Option<u64>, ShardError> {
        for (s, shard) in self.shards.iter().enumerate() {
            for i in 0..shard.len() {
                if shard.record(i)?.path == path {
                    return Ok(Some(self.starts[s] + i));
                }
            }
        }
        Ok(None)
    }
}

fn check_against_manifest(shard: &ShardReader, entry: &ShardEntry) -> Result<(), ShardError> {
    if shard.len() != entry.records || shard.file_len() != entry.bytes {
        return Err(ShardError::Manifest {
            path: shard.path().to_owned(),
            detail: format!(
                "holds {} records in {} bytes, the manifest says {} records in {} bytes",
                shard.len(),
                shard.file_len(),
                entry.records,
                entry.bytes
            ),
        });
    }
    Ok(())
}

/// One problem found by [`verify_dataset`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The shard file (or the manifest).
    pub file: PathBuf,
    /// The record, when the problem is in one: (local number in the shard, global number).
    pub record: Option<(u64, u64)>,
    /// The source path the record claims, when it could be read.
    pub source_path: Option<String>,
    /// What is wrong, naming the file.
    pub detail: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some((_, g)) = self.record {
            write!(f, "global record {g}")?;
            if let Some(p) = &self.source_path {
                write!(f, " ({p})")?;
            }
            write!(f, ": ")?;
        }
        f.write_str(&self.detail)
    }
}

/// What [`verify_dataset`] found.
#[derive(Debug, Clone, Default)]
pub struct VerifyReport {
    /// Shards checked.
    pub shards: u64,
    /// Records whose bytes were checked.
    pub records: u64,
    /// Bytes read.
    pub bytes: u64,
    /// Every problem found, in file order.
    pub problems: Vec<Problem>,
}

impl VerifyReport {
    /// True when nothing is wrong.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Checks every shard of the dataset in `dir` against the manifest (size, CRC32C of the whole
/// file, record count) and every record and index entry inside it, and reports every problem
/// rather than stopping at the first. `progress` is called with the bytes of each record checked.
///
/// Fails only when the manifest itself cannot be read; everything else is a [`Problem`].
pub fn verify_dataset(
    dir: &Path,
    mut progress: impl FnMut(u64),
) -> Result<VerifyReport, ShardError> {
    let manifest = Manifest::load(dir)?;
    let mut report = VerifyReport::default();
    let mut global = 0u64;
    for entry in &manifest.shards {
        let path = dir.join(&entry.file);
        report.shards += 1;
        let problem = |detail: String| Problem {
            file: path.clone(),
            record: None,
            source_path: None,
            detail,
        };
        let shard = match ShardReader::open(&path) {
            Ok(s) => s,
            Err(e) => {
                report.problems.push(problem(e.to_string()));
                global += entry.records;
                continue;
            }
        };
        if let Err(e) = check_against_manifest(&shard, entry) {
            report.problems.push(problem(e.to_string()));
        }
        let crc = format!("{:08x}", crc32c::crc32c(shard.as_bytes()));
        if crc != entry.crc32c {
            report.problems.push(problem(format!(
                "{}: whole-file CRC32C is {crc}, the manifest says {}",
                path.display(),
                entry.crc32c
            )));
        }
        report.bytes += shard.file_len();
        for i in 0..shard.len() {
            report.records += 1;
            match shard.record(i) {
                Ok(rec) => progress(rec.encoded_len()),
                Err(e) => {
                    let source_path = shard
                        .entry(i)
                        .ok()
                        .and_then(|e| peek_source_path(shard.as_bytes(), e.offset, e.len));
                    report.problems.push(Problem {
                        file: path.clone(),
                        record: Some((i, global + i)),
                        source_path,
                        detail: e.to_string(),
                    });
                }
            }
        }
        global += shard.len();
    }
    Ok(report)
}

/// Reads the source path a record claims without trusting its CRC, for error messages only.
fn peek_source_path(file: &[u8], offset: u64, len: u32) -> Option<String> {
    let rec = file.get(offset as usize..offset as usize + len as usize)?;
    let path_len = usize::from(u16::from_le_bytes([*rec.get(22)?, *rec.get(23)?]));
    let bytes = rec.get(RECORD_FIXED_LEN..RECORD_FIXED_LEN + path_len)?;
    std::str::from_utf8(bytes).ok().map(str::to_owned)
}
