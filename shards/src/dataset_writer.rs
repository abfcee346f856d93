//! [`DatasetWriter`]: writes a dataset directory. Records arrive in their final order; shards
//! are cut by size or by count, each written as a temp file, synced and renamed in the
//! background, and the manifest is written last, so an interrupted run never leaves a
//! directory that opens as a complete dataset.

use crate::error::WriteError;
use crate::format::Record;
use crate::manifest::{
    sync_dir, BuildParams, ClassEntry, Manifest, ShardEntry, SkippedInput, MANIFEST_FILE,
    MANIFEST_FORMAT,
};
use crate::writer::ShardWriter;
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

/// How records are dealt into shards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShardLayout {
    /// Start a new shard when the next record would take the current one past this many bytes.
    TargetBytes(u64),
    /// Exactly `shards` shards; input number `p` of `inputs` goes to shard `p * shards / inputs`.
    Count {
        /// Number of shards.
        shards: u32,
        /// Number of inputs (skipped ones included), to place each record by its position.
        inputs: u64,
    },
}

/// What a dataset is made of, besides its records.
#[derive(Debug, Clone)]
pub struct DatasetSpec {
    /// Free-text split name.
    pub split: String,
    /// Synset ids in label order (label `i` is `classes[i]`).
    pub classes: Vec<String>,
    /// Shard cutting.
    pub layout: ShardLayout,
    /// Written into the manifest as they are.
    pub params: BuildParams,
    /// Replace a dataset already in the directory.
    pub overwrite: bool,
}

/// File name of shard `n`.
pub fn shard_file_name(n: usize) -> String {
    format!("shard-{n:05}.sfs")
}

fn is_our_leftover(name: &str) -> bool {
    let shard =
        name.starts_with("shard-") && (name.ends_with(".sfs") || name.ends_with(".sfs.tmp"));
    shard || name == "manifest.json.tmp"
}

struct OpenShard {
    writer: ShardWriter<BufWriter<File>>,
    tmp: PathBuf,
}

type Closing = JoinHandle<Result<ShardEntry, WriteError>>;

/// Writes a dataset directory. See the module docs.
pub struct DatasetWriter {
    dir: PathBuf,
    spec: DatasetSpec,
    current: Option<OpenShard>,
    /// Shards closed, being synced and renamed in the background.
    closing: Vec<Closing>,
    /// Shards closed, synced and in place, in order (all before those in `closing`).
    closed: Vec<ShardEntry>,
    next_position: u64,
    class_counts: Vec<u64>,
    format_counts: BTreeMap<String, u64>,
    skipped: Vec<SkippedInput>,
    finished: bool,
}

impl DatasetWriter {
    /// Prepares `dir` (created if missing). A directory that already holds a dataset is refused
    /// unless `spec.overwrite`; one that holds other files is refused; leftovers of an
    /// interrupted run (`shard-*.sfs`, `*.tmp`) are removed.
    pub fn create(dir: impl AsRef<Path>, spec: DatasetSpec) -> Result<DatasetWriter, WriteError> {
        let dir = dir.as_ref().to_owned();
        match spec.layout {
            ShardLayout::TargetBytes(0) => {
                return Err(WriteError::Usage("target shard size must be > 0".into()))
            }
            ShardLayout::Count { shards: 0, .. } => {
                return Err(WriteError::Usage("shard count must be > 0".into()))
            }
            _ => {}
        }
        prepare_output_dir(&dir, spec.overwrite)?;
        Ok(DatasetWriter {
            class_counts: vec![0; spec.classes.len()],
            dir,
            spec,
            current: None,
            closing: Vec::new(),
            closed: Vec::new(),
            next_position: 0,
            format_counts: BTreeMap::new(),
            skipped: Vec::new(),
            finished: false,
        })
    }

    /// The output directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn check_position(&mut self, position: u64) -> Result<(), WriteError> {
        if position < self.next_position {
            return Err(WriteError::Usage(format!(
                "input position {position} arrived after {}",
                self.next_position
            )));
        }
        self.next_position = position + 1;
        Ok(())
    }

    /// Number of shards opened so far.
    fn shards_started(&self) -> usize {
        self.closed.len() + self.closing.len() + usize::from(self.current.is_some())
    }

    fn open_shard(&mut self) -> Result<(), WriteError> {
        let name = shard_file_name(self.shards_started());
        let tmp = self.dir.join(format!("{name}.tmp"));
        let file = crate::manifest::create_exclusive(&tmp)?;
        let writer = ShardWriter::new(BufWriter::with_capacity(1 << 20, file))
            .map_err(WriteError::io(&tmp))?;
        self.current = Some(OpenShard { writer, tmp });
        Ok(())
    }

    /// Finishes the current shard and hands it to a background thread that syncs and renames it.
    fn close_shard(&mut self) -> Result<(), WriteError> {
        let Some(open) = self.current.take() else {
            return Ok(());
        };
        let name = shard_file_name(self.closed.len() + self.closing.len());
        let final_path = self.dir.join(&name);
        let tmp = open.tmp;
        let (buf, summary) = open.writer.finish().map_err(WriteError::io(&tmp))?;
        let file = buf.into_inner().map_err(|e| WriteError::Io {
            path: tmp.clone(),
            error: e.into_error(),
        })?;
        self.closing.push(std::thread::spawn(move || {
            file.sync_all().map_err(WriteError::io(&tmp))?;
            drop(file);
            fs::rename(&tmp, &final_path).map_err(WriteError::io(&final_path))?;
            Ok(ShardEntry {
                file: name,
                records: summary.records,
                bytes: summary.bytes,
                crc32c: format!("{:08x}", summary.crc32c),
            })
        }));
        Ok(())
    }

    /// Makes sure the record at input `position` goes to the right shard.
    fn route(&mut self, position: u64, record_len: u64) -> Result<(), WriteError> {
        match self.spec.layout {
            ShardLayout::TargetBytes(target) => {
                let full = self.current.as_ref().is_some_and(|c| {
                    c.writer.records() > 0 && c.writer.bytes_written() + record_len > target
                });
                if full {
                    self.close_shard()?;
                }
            }
            ShardLayout::Count { shards, inputs } => {
                let want = if inputs == 0 {
                    0
                } else {
                    (u128::from(position.min(inputs - 1)) * u128::from(shards) / u128::from(inputs))
                        as usize
                };
                while self.shards_started() < want + 1 {
                    self.close_shard()?;
                    self.open_shard()?;
                }
            }
        }
        if self.current.is_none() {
            self.open_shard()?;
        }
        Ok(())
    }

    /// Appends the record made from input number `position` (positions must increase; gaps are
    /// skipped inputs).
    pub fn append(&mut self, position: u64, rec: &Record<'_>) -> Result<(), WriteError> {
        self.check_position(position)?;
        ShardWriter::<std::io::Sink>::check(rec)?;
        if let Some(label) = rec.label {
            if label as usize >= self.class_counts.len() {
                return Err(WriteError::LabelOutOfRange {
                    path: rec.path.to_owned(),
                    label,
                    classes: self.class_counts.len(),
                });
            }
        }
        self.route(position, rec.encoded_len())?;
        let open = self
            .current
            .as_mut()
            .ok_or_else(|| WriteError::Usage("internal: no open shard after routing".into()))?;
        open.writer.append(rec).map_err(|e| match e {
            WriteError::Io { error, .. } => WriteError::Io {
                path: open.tmp.clone(),
                error,
            },
            other => other,
        })?;
        if let Some(label) = rec.label {
            self.class_counts[label as usize] += 1;
        }
        *self
            .format_counts
            .entry(rec.format.name().to_owned())
            .or_default() += 1;
        Ok(())
    }

    /// Records that input number `position` was left out, and why.
    pub fn skip(&mut self, position: u64, path: &str, reason: &str) -> Result<(), WriteError> {
        self.check_position(position)?;
        self.skipped.push(SkippedInput {
            path: path.to_owned(),
            reason: reason.to_owned(),
        });
        Ok(())
    }

    /// The inputs skipped so far.
    pub fn skipped(&self) -> &[SkippedInput] {
        &self.skipped
    }

    /// Closes the last shard, waits until every shard is synced and in place, then writes the
    /// manifest. Returns the manifest.
    pub fn finish(mut self) -> Result<Manifest, WriteError> {
        if let ShardLayout::Count { shards, .. } = self.spec.layout {
            // Inputs at the end that were all skipped still get their (empty) shards.
            while self.shards_started() < shards as usize {
                self.close_shard()?;
                self.open_shard()?;
            }
        }
        self.close_shard()?;
        self.sync_closed()?;
        let shards = std::mem::take(&mut self.closed);
        let manifest = Manifest {
            format: MANIFEST_FORMAT.into(),
            format_version: Manifest::current_version(),
            split: self.spec.split.clone(),
            records: shards.iter().map(|s| s.records).sum(),
            bytes: shards.iter().map(|s| s.bytes).sum(),
            classes: self
                .spec
                .classes
                .iter()
                .zip(&self.class_counts)
                .enumerate()
                .map(|(i, (synset, &records))| ClassEntry {
                    index: i as u32,
                    synset: synset.clone(),
                    records,
                })
                .collect(),
            formats: std::mem::take(&mut self.format_counts),
            shards,
            skipped: std::mem::take(&mut self.skipped),
            params: self.spec.params.clone(),
        };
        manifest.write_atomic(&self.dir)?;
        self.finished = true;
        Ok(manifest)
    }

    /// Waits until every shard closed so far is synced and renamed into place, and the
    /// renames are durable (fsync of the directory). [`finish`](Self::finish) does this before
    /// it writes the manifest.
    pub fn sync_closed(&mut self) -> Result<(), WriteError> {
        self.join_closing()?;
        sync_dir(&self.dir)
    }

    fn join_closing(&mut self) -> Result<(), WriteError> {
        let mut first_err = None;
        for h in self.closing.drain(..) {
            match h.join() {
                Ok(Ok(e)) => self.closed.push(e),
                Ok(Err(e)) => {
                    first_err.get_or_insert(e);
                }
                Err(_) => {
                    first_err
                        .get_or_insert(WriteError::Usage("a shard-closing thread panicked".into()));
                }
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Stops without a dataset: removes every shard and temp file this writer made.
    pub fn abort(mut self) {
        self.remove_partial();
    }

    fn remove_partial(&mut self) {
        if let Some(open) = self.current.take() {
            drop(open.writer);
            let _ = fs::remove_file(&open.tmp);
        }
        let _ = self.join_closing();
        if let Ok(entries) = fs::read_dir(&self.dir) {
            for e in entries.flatten() {
                if e.file_name().to_str().is_some_and(is_our_leftover) {
                    let _ = fs::remove_file(e.path());
                }
            }
        }
        let _ = fs::remove_dir(&self.dir); // only succeeds when empty
    }
}

impl Drop for DatasetWriter {
    fn drop(&mut self) {
        if !self.finished {
            self.remove_partial();
        }
    }
}

/// Checks, changing nothing, that [`DatasetWriter::create`] may write to `dir`: it is missing,
/// or a directory that holds nothing but a dataset (only with `overwrite`) and leftovers of an
/// interrupted run. A caller that writes several datasets checks them all before it starts, so
/// that a refusal never comes after a deletion.
pub fn check_output_dir(dir: &Path, overwrite: bool) -> Result<(), WriteError> {
    if !dir.exists() {
        return Ok(());
    }
    if !dir.is_dir() {
        return Err(WriteError::OutputExists {
            path: dir.to_owned(),
            detail: "exists and is not a directory".into(),
        });
    }
    if dir.join(MANIFEST_FILE).exists() && !overwrite {
        return Err(WriteError::OutputExists {
            path: dir.to_owned(),
            detail: "already holds a dataset (manifest.json); pass --force to replace it".into(),
        });
    }
    for e in fs::read_dir(dir).map_err(WriteError::io(dir))? {
        let name = e.map_err(WriteError::io(dir))?.file_name();
        match name.to_str() {
            Some(n) if n == MANIFEST_FILE || is_our_leftover(n) => {}
            _ => {
                return Err(WriteError::OutputExists {
                    path: dir.to_owned(),
                    detail: format!(
                        "is not empty (found {:?}): choose a new or empty directory",
                        name
                    ),
                })
            }
        }
    }
    Ok(())
}

/// Makes `dir` ready for a new dataset, after [`check_output_dir`]: nothing is deleted unless
/// everything there is ours.
fn prepare_output_dir(dir: &Path, overwrite: bool) -> Result<(), WriteError> {
    check_output_dir(dir, overwrite)?;
    if !dir.exists() {
        return fs::create_dir_all(dir).map_err(WriteError::io(dir));
    }
    let manifest = dir.join(MANIFEST_FILE);
    if manifest.exists() {
        // Remove the manifest first: from here on the old dataset no longer opens as complete.
        fs::remove_file(&manifest).map_err(WriteError::io(&manifest))?;
        sync_dir(dir)?;
    }
    let mut ours = Vec::new();
    for e in fs::read_dir(dir).map_err(WriteError::io(dir))? {
        let e = e.map_err(WriteError::io(dir))?;
        if e.file_name().to_str().is_some_and(is_our_leftover) {
            ours.push(e.path());
        }
    }
    for p in ours {
        fs::remove_file(&p).map_err(WriteError::io(&p))?;
    }
    Ok(())
}

#[cfg(test)]
mod output_dir_tests {
    use super::*;

    #[test]
    fn a_foreign_file_is_found_before_a_forced_replace_deletes_anything() {
        let d = tempfile::tempdir().unwrap();
        fs::write(d.path().join(MANIFEST_FILE), "{}").unwrap();
        fs::write(d.path().join("shard-00000.sfs"), "old").unwrap();
        fs::write(d.path().join("README.txt"), "notes").unwrap();
        let e = prepare_output_dir(d.path(), true).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "{}: is not empty (found \"README.txt\"): choose a new or empty directory",
                d.path().display()
            )
        );
        for kept in [MANIFEST_FILE, "shard-00000.sfs", "README.txt"] {
            assert!(d.path().join(kept).exists(), "{kept} kept");
        }
        // Without the stranger, --force clears the old dataset.
        fs::remove_file(d.path().join("README.txt")).unwrap();
        check_output_dir(d.path(), true).unwrap();
        prepare_output_dir(d.path(), true).unwrap();
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 0);
    }
}
