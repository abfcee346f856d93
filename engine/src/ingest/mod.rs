//! `shardfeed shard`: turns an image folder into a shardfeed dataset.
//!
//! [`discover`] finds the splits and their inputs (pure directory listing, no image bytes);
//! [`ingest_split`] reads, checks (or re-encodes) and writes them on all cores: workers prepare
//! records out of order, the calling thread writes them in input order, so the output is
//! byte-identical whatever the number of workers.

mod discover;
mod names;

pub use discover::{
    class_folders, from_class_folders, from_flat_folder, FlatLabels, InputFile, SplitInputs,
};
pub use names::{escape_controls, escape_name, unescape_name};

use crate::rng;
use crossbeam_channel::{bounded, unbounded, RecvTimeoutError};
use shardfeed_augment::{
    probe_deep_with_limits, probe_with_limits, DecodeLimits, ReencodeOptions, Reencoder,
};
use shardfeed_shards::{
    BuildParams, DatasetSpec, DatasetWriter, ImageFormat, Manifest, Record, ShardLayout, WriteError,
};
use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// A path in a message: its bytes escaped as record paths are (see [`escape_name`]), so that a
/// name with a newline cannot forge a line and names that are not UTF-8 stay distinct.
fn shown(path: &Path) -> String {
    escape_name(path.as_os_str().as_encoded_bytes())
}

/// Ingest failed. Every variant names the file or folder.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// An input directory or file could not be listed or read.
    ///
    /// The OS error is part of the message and deliberately not a `source()`: a report that
    /// prints the chain of causes (anyhow's `{:#}`) would otherwise say it twice.
    #[error("{path}: {error}", path = shown(path))]
    Io {
        /// The path.
        path: PathBuf,
        /// What the OS said.
        error: std::io::Error,
    },
    /// The input is not laid out as expected.
    #[error("{path}: {detail}", path = shown(path))]
    Source {
        /// The input path.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// A label file could not be parsed.
    #[error("{path}: {detail}", path = shown(path))]
    Labels {
        /// The label file.
        path: PathBuf,
        /// What is wrong, with the line.
        detail: String,
    },
    /// `--strict`: an input was not a usable image.
    #[error("{path}: {reason} (--strict makes this fatal; without it the file is skipped and listed)", path = shown(path), reason = escape_controls(reason))]
    Strict {
        /// The input.
        path: PathBuf,
        /// Why it is unusable.
        reason: String,
    },
    /// Every input was skipped.
    #[error("{path}: none of the {inputs} inputs is a usable image (first: {first})", path = shown(path), first = escape_controls(first))]
    NothingUsable {
        /// The split's folder.
        path: PathBuf,
        /// How many inputs there were.
        inputs: usize,
        /// The first input's problem.
        first: String,
    },
    /// Writing the dataset failed.
    #[error(transparent)]
    Write(#[from] WriteError),
    /// The worker threads stopped before every input was prepared (a bug); the partial output
    /// was removed.
    #[error("{path}: the worker threads stopped before this input was prepared; the partial output was removed", path = shown(path))]
    WorkersStopped {
        /// The first input not written.
        path: PathBuf,
    },
    /// Ctrl-C: stopped, partial output removed.
    #[error("interrupted: the partial output was removed")]
    Interrupted,
}

/// One split to shard: its name, where its inputs are, and where it goes.
#[derive(Debug, Clone)]
pub struct Split {
    /// `train`, `val`, or the input folder's name.
    pub name: String,
    /// The split's input folder.
    pub dir: PathBuf,
    /// Output sub-directory (`train`, `val`), or `None` to write the output directory itself.
    pub out_subdir: Option<String>,
    /// The inputs.
    pub inputs: SplitInputs,
}

/// Finds what to shard under `src`:
/// - an ILSVRC2012-style root (`src/train/<synset>/…`, optional `src/val/`) gives a train split
///   and a val split that uses train's classes; a flat `val/` needs `labels`;
/// - otherwise `src` itself is one split: class folders, or a flat folder with `labels`.
///
/// `classes` fixes the class list (e.g. the train split's, when sharding a val folder alone).
pub fn discover(
    src: &Path,
    labels: Option<&FlatLabels>,
    classes: Option<&[String]>,
) -> Result<Vec<Split>, IngestError> {
    if !src.is_dir() {
        return Err(IngestError::Source {
            path: src.to_owned(),
            detail: if src.exists() {
                "not a directory".into()
            } else {
                "no such directory".into()
            },
        });
    }
    let train_dir = src.join("train");
    if train_dir.is_dir() {
        let train = from_class_folders(src, &train_dir, classes)?;
        let mut splits = Vec::new();
        let val_dir = src.join("val");
        if val_dir.is_dir() {
            let val = if !class_folders(&val_dir)?.is_empty() {
                from_class_folders(src, &val_dir, Some(&train.classes))?
            } else if let Some(l) = labels {
                from_flat_folder(src, &val_dir, l, Some(&train.classes))?
            } else {
                return Err(IngestError::Source {
                    path: val_dir,
                    detail: "a flat folder: pass --val-labels (and --synset-map for the devkit's IDs) to label it".into(),
                });
            };
            splits.push(Split {
                name: "val".into(),
                dir: val_dir,
                out_subdir: Some("val".into()),
                inputs: val,
            });
        }
        splits.insert(
            0,
            Split {
                name: "train".into(),
                dir: train_dir,
                out_subdir: Some("train".into()),
                inputs: train,
            },
        );
        return Ok(splits);
    }
    let inputs = match labels {
        Some(l) => from_flat_folder(src, src, l, classes)?,
        None => from_class_folders(src, src, classes)?,
    };
    let name = src
        .file_name()
        .map(|n| escape_name(n.as_encoded_bytes()))
        .unwrap_or_else(|| "data".into());
    Ok(vec![Split {
        name,
        dir: src.to_owned(),
        out_subdir: None,
        inputs,
    }])
}

/// What to do with each image's bytes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mode {
    /// Store the bytes as read, after a structural check (`deep_check`: a full decode).
    Passthrough {
        /// Decode every pixel to check the image (slower; catches corrupt scan data).
        deep_check: bool,
    },
    /// Decode, shrink to `max_side`, re-encode as baseline RGB JPEG (FFCV-style).
    Reencode(ReencodeOptions),
}

/// Record order in the shards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// Sorted by path (class, then file name).
    Sorted,
    /// A seeded shuffle, so every shard holds a mix of classes.
    Shuffled(u64),
}

/// How records are cut into shards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sharding {
    /// About this many bytes per shard.
    TargetBytes(u64),
    /// Exactly this many shards.
    Count(u32),
}

/// Options of [`ingest_split`].
#[derive(Debug, Clone)]
pub struct IngestOptions {
    /// What to do with image bytes.
    pub mode: Mode,
    /// Record order.
    pub order: Order,
    /// Shard cutting.
    pub sharding: Sharding,
    /// Unusable inputs are fatal instead of skipped.
    pub strict: bool,
    /// Worker threads (at least 1).
    pub workers: usize,
    /// Replace a dataset already in the output directory.
    pub overwrite: bool,
    /// What an image's headers may declare: a file over it (a decompression bomb) is skipped
    /// before any pixel buffer is sized. Default: Pillow's `MAX_IMAGE_PIXELS`.
    pub limits: DecodeLimits,
}

/// What [`ingest_split`] did.
#[derive(Debug, Clone)]
pub struct IngestSummary {
    /// The manifest written.
    pub manifest: Manifest,
    /// Input files considered.
    pub inputs: u64,
    /// Bytes read from inputs.
    pub bytes_in: u64,
    /// Wall time.
    pub elapsed: Duration,
}

/// A record made ready by a worker.
struct Prepared {
    image: Vec<u8>,
    width: u32,
    height: u32,
    format: ImageFormat,
    bytes_in: u64,
}

enum Outcome {
    Ready(Prepared),
    Skip { reason: String, bytes_in: u64 },
}

fn prepare(file: &InputFile, mode: &Mode, reencoder: &mut Reencoder) -> Outcome {
    if let Some(reason) = &file.problem {
        return Outcome::Skip {
            reason: reason.clone(),
            bytes_in: 0,
        };
    }
    let bytes = match std::fs::read(&file.path) {
        Ok(b) => b,
        Err(e) => {
            return Outcome::Skip {
                reason: format!("cannot read: {e}"),
                bytes_in: 0,
            }
        }
    };
    let bytes_in = bytes.len() as u64;
    let skip = |reason: String| Outcome::Skip { reason, bytes_in };
    match mode {
        Mode::Passthrough { deep_check } => {
            let limits = reencoder.decode_limits();
            let info = if *deep_check {
                probe_deep_with_limits(&bytes, &limits)
            } else {
                probe_with_limits(&bytes, &limits)
            };
            match info {
                Ok(info) => Outcome::Ready(Prepared {
                    width: info.width,
                    height: info.height,
                    format: info.format,
                    image: bytes,
                    bytes_in,
                }),
                Err(e) => skip(e.to_string()),
            }
        }
        Mode::Reencode(opts) => match reencoder.reencode(&bytes, opts) {
            Ok(r) => Outcome::Ready(Prepared {
                width: r.width,
                height: r.height,
                format: ImageFormat::Jpeg,
                image: r.jpeg,
                bytes_in,
            }),
            Err(e) => skip(e.to_string()),
        },
    }
}

/// The `params` block of the manifest for these options.
pub fn build_params(opts: &IngestOptions) -> BuildParams {
    let (mode, max_side, quality) = match opts.mode {
        Mode::Passthrough { .. } => ("passthrough", None, None),
        Mode::Reencode(r) => ("reencode", r.max_side, Some(r.quality)),
    };
    let (target_shard_bytes, shard_count) = match opts.sharding {
        Sharding::TargetBytes(b) => (Some(b), None),
        Sharding::Count(n) => (None, Some(n)),
    };
    let (order, shuffle_seed) = match opts.order {
        Order::Sorted => ("sorted", 0),
        Order::Shuffled(s) => ("shuffled", s),
    };
    BuildParams {
        tool: concat!("shardfeed ", env!("CARGO_PKG_VERSION")).into(),
        mode: mode.into(),
        max_side,
        quality,
        target_shard_bytes,
        shard_count,
        order: order.into(),
        shuffle_seed,
        strict: opts.strict,
    }
}

/// [`prepare`], run on a worker for each input; tests put a stand-in here.
type PrepareFn = dyn Fn(&InputFile, &Mode, &mut Reencoder) -> Outcome + Sync;

/// Runs `prepare` on one input; a panic (a decoder bug on a hostile file) becomes that input's
/// skip reason, so the run goes on and the file is named, instead of the worker dying with the
/// input the writer waits for.
fn prepare_guarded(
    prepare: &PrepareFn,
    file: &InputFile,
    mode: &Mode,
    reencoder: &mut Reencoder,
) -> Outcome {
    match catch_unwind(AssertUnwindSafe(|| prepare(file, mode, reencoder))) {
        Ok(outcome) => outcome,
        Err(panic) => {
            // Its buffers may be in any state: start afresh, with the same limits.
            let limits = reencoder.decode_limits();
            *reencoder = Reencoder::new();
            reencoder.set_decode_limits(limits);
            let what = crate::panic::message(panic.as_ref());
            Outcome::Skip {
                reason: format!("the decoder panicked: {what}"),
                bytes_in: 0,
            }
        }
    }
}

/// Shards one split into `out`. `progress(bytes_in)` is called once per input, from the calling
/// thread. Setting `cancel` stops the run and removes the partial output.
pub fn ingest_split(
    split: &Split,
    out: &Path,
    opts: &IngestOptions,
    progress: &mut dyn FnMut(u64),
    cancel: &AtomicBool,
) -> Result<IngestSummary, IngestError> {
    ingest_split_with(split, out, opts, progress, cancel, &prepare)
}

fn ingest_split_with(
    split: &Split,
    out: &Path,
    opts: &IngestOptions,
    progress: &mut dyn FnMut(u64),
    cancel: &AtomicBool,
    prepare: &PrepareFn,
) -> Result<IngestSummary, IngestError> {
    let start = Instant::now();
    let mut files: Vec<&InputFile> = split.inputs.files.iter().collect();
    if let Order::Shuffled(seed) = opts.order {
        rng::shuffle(&mut files, seed);
    }
    let layout = match opts.sharding {
        Sharding::TargetBytes(b) => ShardLayout::TargetBytes(b),
        Sharding::Count(n) => ShardLayout::Count {
            shards: n,
            inputs: files.len() as u64,
        },
    };
    let mut writer = DatasetWriter::create(
        out,
        DatasetSpec {
            split: split.name.clone(),
            classes: split.inputs.classes.clone(),
            layout,
            params: build_params(opts),
            overwrite: opts.overwrite,
        },
    )?;
    let workers = opts.workers.max(1);
    // Inputs in flight: bounds memory whatever the order in which workers finish.
    let window = 8 * workers + 16;
    let mut bytes_in = 0u64;
    let written = std::thread::scope(|s| -> Result<(), IngestError> {
        let (job_tx, job_rx) = bounded::<usize>(window);
        let (done_tx, done_rx) = unbounded::<(usize, Outcome)>();
        for _ in 0..workers {
            let (job_rx, done_tx) = (job_rx.clone(), done_tx.clone());
            let (files, mode, limits) = (&files, &opts.mode, opts.limits);
            s.spawn(move || {
                let mut reencoder = Reencoder::new();
                reencoder.set_decode_limits(limits);
                for i in job_rx {
                    let outcome = prepare_guarded(prepare, files[i], mode, &mut reencoder);
                    if done_tx.send((i, outcome)).is_err() {
                        break;
                    }
                }
            });
        }
        drop((job_rx, done_tx));
        let mut pending: BTreeMap<usize, Outcome> = BTreeMap::new();
        let (mut next_send, mut next_write) = (0usize, 0usize);
        while next_write < files.len() {
            if cancel.load(Ordering::Relaxed) {
                return Err(IngestError::Interrupted);
            }
            while next_send < files.len() && next_send < next_write + window {
                // Workers only stop after job_tx is dropped, so this cannot fail.
                let _ = job_tx.send(next_send);
                next_send += 1;
            }
            let (i, outcome) = match done_rx.recv_timeout(Duration::from_millis(200)) {
                Ok(done) => done,
                Err(RecvTimeoutError::Timeout) => continue,
                // Every worker is gone with inputs still owed: waiting longer would hang.
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(IngestError::WorkersStopped {
                        path: files[next_write].path.clone(),
                    })
                }
            };
            pending.insert(i, outcome);
            while let Some(outcome) = pending.remove(&next_write) {
                let file = files[next_write];
                let position = next_write as u64;
                let (n, result) = match (outcome, &file.label) {
                    (Outcome::Skip { reason, bytes_in }, _) => (bytes_in, Err(reason)),
                    (Outcome::Ready(p), Err(reason)) => (p.bytes_in, Err(reason.clone())),
                    (Outcome::Ready(p), Ok(label)) => (p.bytes_in, Ok((p, *label))),
                };
                bytes_in += n;
                match result {
                    Ok((p, label)) => writer.append(
                        position,
                        &Record {
                            label: Some(label),
                            width: p.width,
                            height: p.height,
                            format: p.format,
                            path: &file.rel,
                            image: &p.image,
                        },
                    )?,
                    Err(reason) if opts.strict => {
                        return Err(IngestError::Strict {
                            path: file.path.clone(),
                            reason,
                        })
                    }
                    Err(reason) => writer.skip(position, &file.rel, &reason)?,
                }
                progress(n);
                next_write += 1;
            }
        }
        drop(job_tx);
        Ok(())
    });
    if let Err(e) = written {
        writer.abort();
        return Err(e);
    }
    if writer.skipped().len() == files.len() {
        let first = writer
            .skipped()
            .first()
            .map(|s| format!("{}: {}", s.path, s.reason));
        writer.abort();
        return Err(IngestError::NothingUsable {
            path: split.dir.clone(),
            inputs: files.len(),
            first: first.unwrap_or_default(),
        });
    }
    let manifest = writer.finish()?;
    Ok(IngestSummary {
        manifest,
        inputs: files.len() as u64,
        bytes_in,
        elapsed: start.elapsed(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split_of(dir: &Path, names: &[&str]) -> Split {
        let files = names
            .iter()
            .map(|n| InputFile {
                path: dir.join(n),
                rel: format!("n00000001/{n}"),
                label: Ok(0),
                problem: None,
            })
            .collect();
        Split {
            name: "train".into(),
            dir: dir.to_owned(),
            out_subdir: None,
            inputs: SplitInputs {
                classes: vec!["n00000001".into()],
                files,
            },
        }
    }

    fn options(strict: bool) -> IngestOptions {
        IngestOptions {
            mode: Mode::Passthrough { deep_check: false },
            order: Order::Sorted,
            sharding: Sharding::Count(1),
            strict,
            workers: 2,
            overwrite: false,
            limits: Default::default(),
        }
    }

    /// Stands in for a decoder that panics on one file.
    fn panics_on_boom(file: &InputFile, _: &Mode, _: &mut Reencoder) -> Outcome {
        if file.rel.ends_with("boom.JPEG") {
            panic!("corrupt Huffman table");
        }
        Outcome::Ready(Prepared {
            image: file.rel.as_bytes().to_vec(),
            width: 1,
            height: 1,
            format: ImageFormat::Jpeg,
            bytes_in: 1,
        })
    }

    #[test]
    fn a_panicking_decoder_skips_the_file_naming_it_instead_of_hanging() {
        let t = tempfile::tempdir().unwrap();
        let names = ["a.JPEG", "boom.JPEG", "c.JPEG", "d.JPEG"];
        let split = split_of(t.path(), &names);
        let cancel = AtomicBool::new(false);
        let out = t.path().join("out");
        let summary = ingest_split_with(
            &split,
            &out,
            &options(false),
            &mut |_| {},
            &cancel,
            &panics_on_boom,
        )
        .unwrap();
        assert_eq!(summary.manifest.records, 3);
        let skipped: Vec<(&str, &str)> = summary
            .manifest
            .skipped
            .iter()
            .map(|s| (s.path.as_str(), s.reason.as_str()))
            .collect();
        assert_eq!(
            skipped,
            [(
                "n00000001/boom.JPEG",
                "the decoder panicked: corrupt Huffman table"
            )]
        );

        let e = ingest_split_with(
            &split,
            &t.path().join("strict"),
            &options(true),
            &mut |_| {},
            &cancel,
            &panics_on_boom,
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "{}: the decoder panicked: corrupt Huffman table (--strict makes this fatal; \
                 without it the file is skipped and listed)",
                t.path().join("boom.JPEG").display()
            )
        );
        assert!(!t.path().join("strict").exists(), "partial output removed");
    }

    #[test]
    fn entries_discovery_could_not_use_are_skipped_unread() {
        let t = tempfile::tempdir().unwrap();
        let mut split = split_of(t.path(), &["a.JPEG", "gone.JPEG"]);
        split.inputs.files[1].problem =
            Some("cannot follow symbolic link: No such file or directory (os error 2)".into());
        let summary = ingest_split_with(
            &split,
            &t.path().join("out"),
            &options(false),
            &mut |_| {},
            &AtomicBool::new(false),
            &|file: &InputFile, mode: &Mode, r: &mut Reencoder| {
                if file.problem.is_none() {
                    panics_on_boom(file, mode, r)
                } else {
                    prepare(file, mode, r)
                }
            },
        )
        .unwrap();
        assert_eq!(summary.manifest.records, 1);
        assert_eq!(
            summary.manifest.skipped[0].reason,
            "cannot follow symbolic link: No such file or directory (os error 2)"
        );
    }
}
