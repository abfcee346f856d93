//! `shardfeed.shard(...)` and `shardfeed.synth(...)`: the CLI's `shard` and `synth` commands as
//! functions, with the same options and defaults, returning what the CLI prints as dicts.
//! They run without the GIL; Ctrl-C (KeyboardInterrupt) stops `shard` at the next record and
//! removes the partial output, as the CLI does.

use crate::errors::IngestError;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use shardfeed_engine::augment::{DecodeLimits, ReencodeOptions, DEFAULT_MAX_PIXELS};
use shardfeed_engine::ingest::{
    self, FlatLabels, IngestOptions, IngestSummary, Mode, Order, Sharding,
};
use shardfeed_engine::shards::{check_output_dir, Dataset};
use shardfeed_engine::synth::{generate, SynthOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// `"256MiB"`, `"1GiB"`, `"1.5G"` or a number of bytes.
fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size such as 256MiB"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        other => return Err(format!("unknown size unit {other:?} in {s:?}")),
    };
    let bytes = n * mult as f64;
    if !(bytes >= 1.0 && bytes < u64::MAX as f64) {
        return Err(format!("{s:?} is not a positive size"));
    }
    Ok(bytes as u64)
}

fn size_arg(v: &Bound<'_, PyAny>) -> PyResult<u64> {
    if let Ok(n) = v.extract::<u64>() {
        if n == 0 {
            return Err(PyValueError::new_err("shard_size must be at least 1 byte"));
        }
        return Ok(n);
    }
    if let Ok(s) = v.extract::<String>() {
        return parse_size(&s).map_err(PyValueError::new_err);
    }
    Err(PyTypeError::new_err(
        "shard_size is a number of bytes or a string such as '256MiB'",
    ))
}

/// The class list `classes` names: a dataset directory, a folder of class folders, a file with
/// one synset per line, or a list of synsets.
fn load_classes(v: &Bound<'_, PyAny>) -> PyResult<Vec<String>> {
    if let Ok(list) = v.extract::<Vec<String>>() {
        if !v.is_instance_of::<pyo3::types::PyString>() {
            if list.is_empty() {
                return Err(PyValueError::new_err("classes is an empty list"));
            }
            return Ok(list);
        }
    }
    let path: PathBuf = v.extract()?;
    if path.is_dir() {
        if let Ok(ds) = Dataset::open(&path) {
            return Ok(ds
                .manifest()
                .classes
                .iter()
                .map(|c| c.synset.clone())
                .collect());
        }
        let classes =
            ingest::class_folders(&path).map_err(|e| IngestError::new_err(e.to_string()))?;
        if classes.is_empty() {
            return Err(IngestError::new_err(format!(
                "{}: neither a dataset nor a folder of class folders",
                path.display()
            )));
        }
        return Ok(classes);
    }
    let text = std::fs::read_to_string(&path)
        .map_err(|e| pyo3::exceptions::PyOSError::new_err(format!("{}: {e}", path.display())))?;
    let classes: Vec<String> = text
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect();
    if classes.is_empty() {
        return Err(IngestError::new_err(format!(
            "{}: no classes in the file",
            path.display()
        )));
    }
    Ok(classes)
}

fn summary_dict<'py>(
    py: Python<'py>,
    name: &str,
    out: &Path,
    s: &IngestSummary,
) -> PyResult<Bound<'py, PyDict>> {
    let m = &s.manifest;
    let d = PyDict::new(py);
    d.set_item("split", name)?;
    d.set_item("out", out)?;
    d.set_item("records", m.records)?;
    d.set_item("shards", m.shards.len())?;
    d.set_item("bytes", m.bytes)?;
    d.set_item("classes", m.classes.len())?;
    d.set_item("inputs", s.inputs)?;
    d.set_item("bytes_in", s.bytes_in)?;
    d.set_item("seconds", s.elapsed.as_secs_f64())?;
    let formats = PyDict::new(py);
    for (k, v) in &m.formats {
        formats.set_item(k, v)?;
    }
    d.set_item("formats", formats)?;
    let skipped = PyList::empty(py);
    for sk in &m.skipped {
        skipped.append((sk.path.as_str(), sk.reason.as_str()))?;
    }
    d.set_item("skipped", skipped)?;
    Ok(d)
}

/// Shards an image folder as `shardfeed shard SRC --out OUT` does, with the same options and
/// defaults (see the README). Returns one dict per split written (`split`, `out`, `records`,
/// `shards`, `bytes`, `skipped`: a list of `(path, reason)`, ...).
#[pyfunction]
#[pyo3(signature = (
    src, out, *, shard_size=None, shards=None, reencode=false, max_side=None, quality=None,
    deep_check=false, strict=false, max_pixels=DEFAULT_MAX_PIXELS, no_shuffle=false, seed=0,
    workers=None, val_labels=None, synset_map=None, classes=None, force=false
))]
#[allow(clippy::too_many_arguments)]
pub fn shard<'py>(
    py: Python<'py>,
    src: PathBuf,
    out: PathBuf,
    shard_size: Option<Bound<'py, PyAny>>,
    shards: Option<u32>,
    reencode: bool,
    max_side: Option<u32>,
    quality: Option<u8>,
    deep_check: bool,
    strict: bool,
    max_pixels: u64,
    no_shuffle: bool,
    seed: u64,
    workers: Option<usize>,
    val_labels: Option<PathBuf>,
    synset_map: Option<PathBuf>,
    classes: Option<Bound<'py, PyAny>>,
    force: bool,
) -> PyResult<Bound<'py, PyList>> {
    if shard_size.is_some() && shards.is_some() {
        return Err(PyValueError::new_err("give shard_size or shards, not both"));
    }
    let sharding = match (shards, &shard_size) {
        (Some(0), _) => return Err(PyValueError::new_err("shards must be at least 1")),
        (Some(n), _) => Sharding::Count(n),
        (None, Some(v)) => Sharding::TargetBytes(size_arg(v)?),
        (None, None) => Sharding::TargetBytes(256 << 20),
    };
    if let Some(q) = quality {
        if !(1..=100).contains(&q) {
            return Err(PyValueError::new_err(format!(
                "quality must be 1-100, not {q}"
            )));
        }
    }
    if max_pixels == 0 {
        return Err(PyValueError::new_err("max_pixels must be at least 1"));
    }
    let labels = match &val_labels {
        None => {
            if synset_map.is_some() {
                return Err(PyValueError::new_err("synset_map goes with val_labels"));
            }
            None
        }
        Some(p) if p.extension().is_some_and(|e| e.eq_ignore_ascii_case("csv")) => {
            Some(FlatLabels::KaggleCsv(p.clone()))
        }
        Some(p) => Some(FlatLabels::GroundTruth {
            file: p.clone(),
            synset_map: synset_map.clone(),
        }),
    };
    let classes = classes.as_ref().map(load_classes).transpose()?;
    let mode = if reencode || max_side.is_some() || quality.is_some() {
        if deep_check {
            return Err(PyValueError::new_err(
                "deep_check is for pass-through mode: re-encoding decodes every image anyway",
            ));
        }
        Mode::Reencode(ReencodeOptions {
            max_side,
            quality: quality.unwrap_or(90),
        })
    } else {
        Mode::Passthrough { deep_check }
    };
    let opts = IngestOptions {
        mode,
        order: if no_shuffle {
            Order::Sorted
        } else {
            Order::Shuffled(seed)
        },
        sharding,
        strict,
        workers: workers
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
            .max(1),
        overwrite: force,
        limits: DecodeLimits { max_pixels },
    };
    let ingest_err = |e: ingest::IngestError| IngestError::new_err(e.to_string());
    let splits = py
        .detach(|| ingest::discover(&src, labels.as_ref(), classes.as_deref()))
        .map_err(ingest_err)?;
    let outs: Vec<PathBuf> = splits
        .iter()
        .map(|split| match &split.out_subdir {
            Some(sub) => out.join(sub),
            None => out.clone(),
        })
        .collect();
    // Every output folder is checked before the first split deletes anything (as the CLI).
    for o in &outs {
        check_output_dir(o, force).map_err(|e| IngestError::new_err(e.to_string()))?;
    }
    let result = PyList::empty(py);
    for (split, dest) in splits.iter().zip(&outs) {
        let cancel = AtomicBool::new(false);
        let interrupt: Mutex<Option<PyErr>> = Mutex::new(None);
        let summary = py.detach(|| {
            let mut n = 0u64;
            let mut progress = |_bytes: u64| {
                n += 1;
                if n % 64 == 0 {
                    // KeyboardInterrupt and other signal handlers run on the main thread only.
                    if let Err(e) = Python::attach(|py| py.check_signals()) {
                        if let Ok(mut slot) = interrupt.lock() {
                            slot.get_or_insert(e);
                        }
                        cancel.store(true, Ordering::Relaxed);
                    }
                }
            };
            ingest::ingest_split(split, dest, &opts, &mut progress, &cancel)
        });
        if let Some(e) = interrupt.lock().ok().and_then(|mut s| s.take()) {
            return Err(e);
        }
        let summary = summary.map_err(ingest_err)?;
        result.append(summary_dict(py, &split.name, dest, &summary)?)?;
    }
    Ok(result)
}

/// Writes a synthetic ImageNet-shaped image folder as `shardfeed synth OUT` does
/// (`OUT/train/<synset>/*.JPEG`, `OUT/val/<synset>/*.JPEG`; the same seed gives the same
/// bytes). Returns `{"images", "bytes", "classes"}`.
#[pyfunction]
#[pyo3(signature = (
    out, *, classes=10, per_class=100, val_per_class=10, seed=0, quality=90, oddities=false,
    workers=0
))]
#[allow(clippy::too_many_arguments)]
pub fn synth<'py>(
    py: Python<'py>,
    out: PathBuf,
    classes: u32,
    per_class: u32,
    val_per_class: u32,
    seed: u64,
    quality: u8,
    oddities: bool,
    workers: usize,
) -> PyResult<Bound<'py, PyDict>> {
    if !(1..=100).contains(&quality) {
        return Err(PyValueError::new_err(format!(
            "quality must be 1-100, not {quality}"
        )));
    }
    let opts = SynthOptions {
        classes,
        per_class,
        val_per_class,
        seed,
        quality,
        oddities,
        threads: workers,
    };
    let summary = py
        .detach(|| generate(&out, &opts, &|_| {}))
        .map_err(|e| IngestError::new_err(e.to_string()))?;
    let d = PyDict::new(py);
    d.set_item("images", summary.images)?;
    d.set_item("bytes", summary.bytes)?;
    d.set_item("classes", summary.classes)?;
    Ok(d)
}
