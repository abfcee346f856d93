//! [`Dataset`]: a directory of shards opened through its manifest, with global record numbers;
//! and [`verify_dataset`], which checks every byte and reports every problem it finds.

use crate::error::ShardError;
use crate::format::{ImageFormat, Record, RECORD_FIXED_LEN};
use crate::manifest::{Manifest, ShardEntry, MANIFEST_FILE};
use crate::reader::ShardReader;
use std::collections::{BTreeMap, BTreeSet};
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
    /// index; not the record bytes), their record counts and sizes, and that every label in
    /// their indexes is one of the manifest's classes.
    pub fn open(dir: impl AsRef<Path>) -> Result<Dataset, ShardError> {
        let dir = dir.as_ref().to_owned();
        let manifest = Manifest::load(&dir)?;
        let mut shards = Vec::with_capacity(manifest.shards.len());
        let mut starts = Vec::with_capacity(manifest.shards.len() + 1);
        let mut total = 0u64;
        for entry in &manifest.shards {
            let shard = ShardReader::open(dir.join(&entry.file))?;
            check_against_manifest(&shard, entry)?;
            check_labels(&shard, manifest.classes.len())?;
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

    /// Global record `g`, checked, its label one of the manifest's classes.
    pub fn record(&self, g: u64) -> Result<Record<'_>, ShardError> {
        let (s, i) = self.locate(g)?;
        let rec = self.shards[s].record(i)?;
        self.check_label(s, i, rec.label)?;
        Ok(rec)
    }

    /// The label of global record `g`, from the index.
    pub fn label(&self, g: u64) -> Result<Option<u32>, ShardError> {
        let (s, i) = self.locate(g)?;
        let label = self.shards[s].label(i)?;
        self.check_label(s, i, label)?;
        Ok(label)
    }

    /// [`open`](Self::open) checked every label; this catches a shard overwritten in place
    /// since, so that no label past the class list ever reaches a caller.
    fn check_label(&self, s: usize, i: u64, label: Option<u32>) -> Result<(), ShardError> {
        match label {
            Some(l) if l as usize >= self.num_classes() => {
                Err(label_error(&self.shards[s], i, l, self.num_classes()))
            }
            _ => Ok(()),
        }
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

/// Fails when a label in the index of `shard` is not one of the `classes` classes (a manifest
/// whose class list was cut short), naming the first such record.
fn check_labels(shard: &ShardReader, classes: usize) -> Result<(), ShardError> {
    if shard.max_label().is_none_or(|m| (m as usize) < classes) {
        return Ok(());
    }
    for i in 0..shard.len() {
        if let Some(l) = shard.label(i)? {
            if l as usize >= classes {
                return Err(label_error(shard, i, l, classes));
            }
        }
    }
    Ok(())
}

fn label_error(shard: &ShardReader, i: u64, label: u32, classes: usize) -> ShardError {
    let offset = shard.entry(i).map_or(0, |e| e.offset);
    ShardError::Manifest {
        path: shard.path().to_owned(),
        detail: format!(
            "record {i} (offset {offset}) has label {label}, but the manifest lists {classes} classes"
        ),
    }
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
    /// Shards listed in the manifest with at least one problem.
    pub bad_shards: u64,
    /// Every problem found: the manifest's own, then each shard's in manifest order, then the
    /// manifest's counts against the records, then files the manifest does not list.
    pub problems: Vec<Problem>,
}

impl VerifyReport {
    /// True when nothing is wrong.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Checks the dataset in `dir` and reports every problem rather than stopping at the first:
/// the manifest itself; every shard it lists against it (size, CRC32C of the whole file,
/// record count) and every record and index entry inside; every label against the class list;
/// the manifest's per-class and per-format record counts against the records; and files in
/// the directory that look like shards but are not listed. `progress` is called with the bytes
/// of each record checked.
///
/// Fails only when `dir` is not a directory, the manifest cannot be read (an I/O error), or its
/// major version is one this build does not know. A missing or malformed manifest is a
/// [`Problem`]: a dataset whose writing was interrupted, or whose manifest was damaged.
pub fn verify_dataset(
    dir: &Path,
    mut progress: impl FnMut(u64),
) -> Result<VerifyReport, ShardError> {
    let manifest_path = dir.join(MANIFEST_FILE);
    let mut report = VerifyReport::default();
    let manifest = match Manifest::load(dir) {
        Ok(m) => m,
        Err(e @ (ShardError::Io { .. } | ShardError::UnsupportedVersion { .. })) => return Err(e),
        Err(e) if !dir.is_dir() => return Err(e),
        Err(e) => {
            report.problems.push(Problem {
                file: manifest_path,
                record: None,
                source_path: None,
                detail: e.to_string(),
            });
            return Ok(report);
        }
    };
    let classes = manifest.classes.len();
    let mut class_counts = vec![0u64; classes];
    let mut format_counts: BTreeMap<String, u64> = BTreeMap::new();
    // The counts are compared only when every record was read.
    let mut every_record_read = true;
    let mut global = 0u64;
    for entry in &manifest.shards {
        let path = dir.join(&entry.file);
        report.shards += 1;
        let problems_before = report.problems.len();
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
                report.bad_shards += 1;
                every_record_read = false;
                global += entry.records;
                continue;
            }
        };
        if let Err(e) = check_against_manifest(&shard, entry) {
            report.problems.push(problem(e.to_string()));
        }
        if let Err(e) = shard.check_unchanged() {
            report.problems.push(problem(e.to_string()));
            report.bad_shards += 1;
            every_record_read = false;
            global += shard.len();
            continue;
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
        // Records whose label is not one of the classes: how many, and the first.
        let mut outside = 0u64;
        let mut first_outside = None;
        for i in 0..shard.len() {
            report.records += 1;
            match shard.record(i) {
                Ok(rec) => {
                    progress(rec.encoded_len());
                    *format_counts
                        .entry(rec.format.name().to_owned())
                        .or_default() += 1;
                    match rec.label.map(|l| (l, class_counts.get_mut(l as usize))) {
                        Some((_, Some(count))) => *count += 1,
                        Some((l, None)) => {
                            outside += 1;
                            first_outside.get_or_insert((i, l));
                        }
                        None => {}
                    }
                }
                Err(e) => {
                    every_record_read = false;
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
        if let Some((i, label)) = first_outside {
            let offset = shard.entry(i).map_or(0, |e| e.offset);
            report.problems.push(problem(format!(
                "{}: {outside} records have a label the manifest's {classes} classes do not \
                 hold (the first: record {i} (offset {offset}), label {label})",
                path.display()
            )));
        }
        if report.problems.len() > problems_before {
            report.bad_shards += 1;
        }
        global += shard.len();
    }
    let dataset_problem = |detail: String| Problem {
        file: manifest_path.clone(),
        record: None,
        source_path: None,
        detail: format!("{}: {detail}", manifest_path.display()),
    };
    if every_record_read {
        let stale: Vec<(usize, u64)> = manifest
            .classes
            .iter()
            .zip(&class_counts)
            .enumerate()
            .filter(|(_, (c, &n))| c.records != n)
            .map(|(i, (_, &n))| (i, n))
            .collect();
        if let Some(&(i, n)) = stale.first() {
            let c = &manifest.classes[i];
            report.problems.push(dataset_problem(format!(
                "the record counts of {} classes disagree with the shards (the first: class \
                 {i} ({}): the manifest says {}, the shards hold {n})",
                stale.len(),
                c.synset,
                c.records
            )));
        }
        if told_formats(&manifest) != format_counts {
            report.problems.push(dataset_problem(format!(
                "the image format counts disagree with the shards: the manifest says {}, the \
                 shards hold {}",
                show_counts(&manifest.formats),
                show_counts(&format_counts)
            )));
        }
    }
    report.problems.extend(unlisted_files(dir, &manifest)?);
    Ok(report)
}

/// The manifest's records per format as this build reads them: formats with no records left
/// out, and names this build does not know (a newer minor version's) counted as `unknown`,
/// which is how their records read.
fn told_formats(m: &Manifest) -> BTreeMap<String, u64> {
    let known: BTreeSet<&str> = ImageFormat::ALL.iter().map(|f| f.name()).collect();
    let mut out: BTreeMap<String, u64> = BTreeMap::new();
    for (name, &n) in m.formats.iter().filter(|(_, &n)| n > 0) {
        let name = if known.contains(name.as_str()) {
            name.as_str()
        } else {
            ImageFormat::Unknown.name()
        };
        let sum = out.entry(name.to_owned()).or_default();
        *sum = sum.saturating_add(n);
    }
    out
}

/// `jpeg 1279, png 1`.
fn show_counts(counts: &BTreeMap<String, u64>) -> String {
    let parts: Vec<String> = counts.iter().map(|(k, n)| format!("{k} {n}")).collect();
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join(", ")
    }
}

/// Files in `dir` that look like shards (`*.sfs`) or a writer's temporary files but that the
/// manifest does not list, in name order. Other files are left alone.
fn unlisted_files(dir: &Path, m: &Manifest) -> Result<Vec<Problem>, ShardError> {
    let listed: BTreeSet<&str> = m.shards.iter().map(|s| s.file.as_str()).collect();
    let mut names = Vec::new();
    for e in std::fs::read_dir(dir).map_err(ShardError::io(dir))? {
        let name = e.map_err(ShardError::io(dir))?.file_name();
        if let Some(name) = name.to_str() {
            if !listed.contains(name) {
                names.push(name.to_owned());
            }
        }
    }
    names.sort();
    Ok(names
        .into_iter()
        .filter_map(|name| {
            let what = if name.ends_with(".sfs") {
                "a shard file the manifest does not list"
            } else if name.ends_with(".sfs.tmp") || name == format!("{MANIFEST_FILE}.tmp") {
                "a temporary file left by an interrupted write"
            } else {
                return None;
            };
            let file = dir.join(&name);
            Some(Problem {
                detail: format!("{}: {what}", file.display()),
                file,
                record: None,
                source_path: None,
            })
        })
        .collect())
}

/// Reads the source path a record claims without trusting its CRC, for error messages only.
fn peek_source_path(file: &[u8], offset: u64, len: u32) -> Option<String> {
    let rec = file.get(offset as usize..offset as usize + len as usize)?;
    let path_len = usize::from(u16::from_le_bytes([*rec.get(22)?, *rec.get(23)?]));
    let bytes = rec.get(RECORD_FIXED_LEN..RECORD_FIXED_LEN + path_len)?;
    std::str::from_utf8(bytes).ok().map(str::to_owned)
}
