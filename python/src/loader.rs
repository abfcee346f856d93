//! `_Loader`: the engine's [`Loader`] behind a PyTorch-shaped state machine.
//!
//! The engine's API is positional (`Loader::resume(Position)` yields the batches from a position
//! to the end of its epoch, byte for byte what an uninterrupted run would); a Python loop wants
//! `for images, labels in loader`, `set_epoch`, `state_dict`. [`State`] maps one onto the other:
//!
//! - `epoch` is the epoch the next `iter()` yields; it moves on by one when an epoch's last batch
//!   is handed out (so a loop without `set_epoch` still gets a fresh shuffle every epoch, as
//!   FFCV's and DALI's loaders do), and `set_epoch(e)` sets it (as `DistributedSampler`).
//! - `resume` is the batch `load_state_dict` asked the next `iter()` to start at.
//! - `cur` is the next position of the running iteration.
//!
//! Each `next()` asks the engine for `resume(cur).next()`: when `cur` is where the engine's
//! stream already is (every batch after the first), that continues the stream without a restart,
//! so the threads run on across batches and epochs as they do under `shardfeed bench`.
//!
//! The GIL is released while the engine works or waits. The engine's `Loader` is behind a mutex
//! taken with `try_lock`, so a second Python thread using the same loader gets an error instead
//! of a deadlock (it would hold the GIL while waiting for a thread that needs the GIL back).
//!
//! After `fork` the child has this object but none of the engine's threads: every method
//! refuses with a clear error there, and dropping it in the child leaks the engine's state
//! instead of joining threads that do not exist.

use crate::array::{Array, Elem, Owner};
use crate::errors;
use pyo3::exceptions::{PyKeyError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use shardfeed_engine::augment::{
    DecodeLimits, JpegBackend, TrainTransform, Transform, ValTransform,
};
use shardfeed_engine::loader::{Batch, Loader, LoaderConfig, LoaderMetrics, Position};
use shardfeed_engine::sampler::{LastBatch, Shuffle};
use shardfeed_engine::shards::MANIFEST_FILE;
use std::mem::ManuallyDrop;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError};

/// The version of `state_dict()`'s layout.
const STATE_VERSION: u64 = 1;

/// The epoch/position bookkeeping around the engine's loader.
struct State {
    loader: Loader,
    epoch: u64,
    resume: Option<u64>,
    cur: Option<Position>,
}

impl State {
    /// Where the next batch handed out will come from, as `state_dict` reports it.
    fn next_position(&self) -> Position {
        let per = self.loader.batches_per_epoch();
        match self.cur {
            Some(c) if c.batch < per => c,
            _ => Position::new(self.epoch, self.resume.unwrap_or(0)),
        }
    }
}

/// A batch owned by Python (through [`Array`]s). In a child made by `fork` it is leaked rather
/// than dropped: returning it to the pool takes locks that a thread of the parent may have held
/// at the fork.
struct Held {
    pid: u32,
    batch: ManuallyDrop<Batch>,
}

impl Drop for Held {
    fn drop(&mut self) {
        if self.pid == crate::pid() {
            // SAFETY: dropped once, here; never used after.
            unsafe { ManuallyDrop::drop(&mut self.batch) };
        }
    }
}

/// What the loader was configured with, kept for `state_dict` and its checks.
#[derive(Debug, Clone)]
struct Settings {
    dir: PathBuf,
    transform: String,
    size: u32,
    seed: u64,
    batch_size: usize,
    rank: u32,
    world: u32,
    last_batch: String,
    full_batches: bool,
    shuffle: String,
    records: u64,
}

/// The engine's loader (see the `shardfeed.Loader` Python class, which wraps this one).
#[pyclass(name = "_Loader", module = "shardfeed._shardfeed")]
pub struct PyLoader {
    inner: Mutex<Option<State>>,
    settings: Settings,
    pid: u32,
}

/// The dataset a path names: itself when it holds a manifest, else its `train/` or `val/`
/// (by transform) when that does, else itself (opening it then says why it is not a dataset).
fn dataset_dir(path: &Path, val: bool) -> PathBuf {
    if path.join(MANIFEST_FILE).exists() {
        return path.to_owned();
    }
    let sub = path.join(if val { "val" } else { "train" });
    if sub.join(MANIFEST_FILE).exists() {
        sub
    } else {
        path.to_owned()
    }
}

fn parse_shuffle(s: &str, window: usize, val: bool) -> PyResult<(Shuffle, String)> {
    let shuffle = match s {
        "auto" if val => Shuffle::Sequential,
        "auto" | "global" => Shuffle::Global,
        "sequential" | "none" => Shuffle::Sequential,
        "window" => Shuffle::ShardWindow { window },
        other => {
            return Err(PyValueError::new_err(format!(
                "shuffle must be 'auto', 'global', 'window' or 'sequential', not {other:?}"
            )))
        }
    };
    let name = match shuffle {
        Shuffle::Sequential => "sequential".to_owned(),
        Shuffle::Global => "global".to_owned(),
        Shuffle::ShardWindow { window } => format!("window:{window}"),
    };
    Ok((shuffle, name))
}

fn metrics_dict<'py>(py: Python<'py>, m: &LoaderMetrics) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("elapsed_s", m.elapsed.as_secs_f64())?;
    d.set_item("workers", m.workers)?;
    d.set_item("batches", m.batches)?;
    d.set_item("images", m.images)?;
    d.set_item("samples_filled", m.samples_filled)?;
    d.set_item("images_per_sec", m.images_per_sec())?;
    d.set_item("busy_fraction", m.busy_fraction())?;
    d.set_item("read_s", m.read.as_secs_f64())?;
    d.set_item("decode_s", m.decode.as_secs_f64())?;
    d.set_item("augment_s", m.augment.as_secs_f64())?;
    d.set_item("worker_busy_s", m.worker_busy.as_secs_f64())?;
    d.set_item("consumer_wait_s", m.consumer_wait.as_secs_f64())?;
    d.set_item("mean_queue_depth", m.mean_queue_depth())?;
    d.set_item("max_queue_depth", m.queue_depth_max)?;
    d.set_item("failures", m.failures)?;
    d.set_item("readahead_bytes", m.readahead_bytes)?;
    Ok(d)
}

impl PyLoader {
    /// The state, in this process, from this thread only.
    fn state(&self) -> PyResult<MutexGuard<'_, Option<State>>> {
        let now = crate::pid();
        if now != self.pid {
            return Err(PyRuntimeError::new_err(format!(
                "this shardfeed.Loader was made in process {} and this is process {now}, a child \
                 made by fork: the loader's threads do not survive a fork. Make the Loader in the \
                 process that iterates it; it needs no worker processes (its threads are the \
                 workers)",
                self.pid
            )));
        }
        let guard = match self.inner.try_lock() {
            Ok(g) => g,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            Err(TryLockError::WouldBlock) => {
                return Err(PyRuntimeError::new_err(
                    "this shardfeed.Loader is in use by another thread: iterate a loader from \
                     one thread at a time",
                ))
            }
        };
        if guard.is_none() {
            return Err(PyRuntimeError::new_err("this shardfeed.Loader is closed"));
        }
        Ok(guard)
    }
}

/// `guard.as_mut()` of a state [`PyLoader::state`] checked.
fn st<'a>(guard: &'a mut MutexGuard<'_, Option<State>>) -> PyResult<&'a mut State> {
    guard
        .as_mut()
        .ok_or_else(|| PyRuntimeError::new_err("this shardfeed.Loader is closed"))
}

/// The remote source's settings: `host:port[,host:port...]` workers of `shardfeed serve`.
fn remote_config(
    list: &str,
    token_file: Option<&Path>,
    deadline: f64,
) -> PyResult<shardfeed_engine::remote::RemoteConfig> {
    use shardfeed_engine::remote::{RemoteConfig, WorkerList};
    if !(deadline > 0.0 && deadline.is_finite()) {
        return Err(PyValueError::new_err(
            "deadline must be a positive number of seconds",
        ));
    }
    let workers = WorkerList::parse_addresses(list);
    if workers.addresses.is_empty() {
        return Err(PyValueError::new_err(
            "remote must list at least one host:port",
        ));
    }
    let token = token_file
        .map(|path| {
            shardfeed_engine::remote::read_token(path).map_err(|e| match e {
                shardfeed_engine::remote::TokenFileError::Read { .. } => {
                    pyo3::exceptions::PyFileNotFoundError::new_err(e.to_string())
                }
                shardfeed_engine::remote::TokenFileError::TooShort(_) => {
                    PyValueError::new_err(e.to_string())
                }
            })
        })
        .transpose()?;
    Ok(RemoteConfig {
        token,
        deadline: std::time::Duration::from_secs_f64(deadline),
        client_name: format!("python:{}", std::process::id()),
        ..RemoteConfig::new(workers)
    })
}

#[pymethods]
impl PyLoader {
    #[new]
    #[pyo3(signature = (
        path, batch_size, transform, size, seed, workers, rank, world, last_batch, prefetch,
        readahead, shuffle, window, full_batches, strict, decoder, dct_downscale, max_pixels,
        val_resize, scale, ratio, decode_only, remote=None, token_file=None, deadline=30.0
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        path: PathBuf,
        batch_size: usize,
        transform: &str,
        size: u32,
        seed: u64,
        workers: usize,
        rank: u32,
        world: u32,
        last_batch: &str,
        prefetch: usize,
        readahead: usize,
        shuffle: &str,
        window: usize,
        full_batches: bool,
        strict: bool,
        decoder: &str,
        dct_downscale: bool,
        max_pixels: u64,
        val_resize: Option<u32>,
        scale: (f64, f64),
        ratio: (f64, f64),
        decode_only: bool,
        remote: Option<String>,
        token_file: Option<PathBuf>,
        deadline: f64,
    ) -> PyResult<PyLoader> {
        let val = match transform {
            "train" => false,
            "val" => true,
            other => {
                return Err(PyValueError::new_err(format!(
                    "transform must be 'train' or 'val', not {other:?}"
                )))
            }
        };
        let t = if val {
            let mut v = ValTransform::new(size);
            if let Some(r) = val_resize {
                v.resize = r;
            }
            Transform::Val(v)
        } else {
            Transform::Train(TrainTransform {
                scale,
                ratio,
                ..TrainTransform::new(size)
            })
        };
        let last = match last_batch {
            "drop" => LastBatch::Drop,
            "pad" => LastBatch::Pad,
            other => {
                return Err(PyValueError::new_err(format!(
                    "last_batch must be 'drop' or 'pad', not {other:?}"
                )))
            }
        };
        let (shuffle, shuffle_name) = parse_shuffle(shuffle, window, val)?;
        let decoder: JpegBackend = decoder.parse().map_err(PyValueError::new_err)?;
        if max_pixels == 0 {
            return Err(PyValueError::new_err("max_pixels must be at least 1"));
        }
        // Field by field over the recipe's defaults, so fields the engine adds later keep
        // their defaults here.
        let mut config = if val {
            LoaderConfig::val(size)
        } else {
            LoaderConfig::train(size)
        };
        config.transform = t.into();
        config.batch_size = batch_size;
        config.workers = workers;
        config.prefetch = prefetch;
        config.readahead = readahead;
        config.seed = seed;
        config.shuffle = shuffle;
        config.rank = rank;
        config.world = world;
        config.last_batch = last;
        config.full_batches = full_batches;
        config.strict = strict;
        config.decode_only = decode_only;
        config.epochs = None;
        config.decoder = decoder;
        config.dct_downscale = dct_downscale;
        config.decode_limits = DecodeLimits { max_pixels };
        let dir = dataset_dir(&path, val);
        let loader = match remote {
            None => py
                .detach(|| Loader::open(&dir, config))
                .map_err(|e| errors::open_error(&e))?,
            Some(list) => {
                let remote = remote_config(&list, token_file.as_deref(), deadline)?;
                let opened = py.detach(|| {
                    let dataset = shardfeed_engine::shards::Dataset::open(&dir)?;
                    Loader::remote(Arc::new(dataset), config, remote)
                });
                opened.map_err(|e| errors::open_error(&e))?
            }
        };
        let settings = Settings {
            dir,
            transform: transform.to_owned(),
            size,
            seed,
            batch_size,
            rank,
            world,
            last_batch: last_batch.to_owned(),
            full_batches,
            shuffle: shuffle_name,
            records: loader.dataset().len(),
        };
        Ok(PyLoader {
            inner: Mutex::new(Some(State {
                loader,
                epoch: 0,
                resume: None,
                cur: None,
            })),
            settings,
            pid: crate::pid(),
        })
    }

    /// Starts an iteration: at the batch `load_state_dict` gave, else at the start of the
    /// current epoch.
    fn start(&self) -> PyResult<()> {
        let mut g = self.state()?;
        let s = st(&mut g)?;
        s.cur = Some(Position::new(s.epoch, s.resume.take().unwrap_or(0)));
        Ok(())
    }

    /// The next batch of the iteration as `(images, labels, epoch, index, padding)`, or `None`
    /// at the end of the epoch. Waits without the GIL.
    #[allow(clippy::type_complexity)]
    fn next(&self, py: Python<'_>) -> PyResult<Option<(Array, Array, u64, u64, usize)>> {
        let mut g = self.state()?;
        let s = st(&mut g)?;
        let per = s.loader.batches_per_epoch();
        let pos = match s.cur {
            Some(p) => p,
            None => {
                let p = Position::new(s.epoch, s.resume.take().unwrap_or(0));
                s.cur = Some(p);
                p
            }
        };
        if pos.batch >= per {
            s.cur = None;
            return Ok(None);
        }
        let loader = &mut s.loader;
        let got = py.detach(move || loader.resume(pos).next());
        let batch = match got {
            Some(Ok(b)) => b,
            Some(Err(e)) => {
                s.cur = None;
                return Err(errors::batch_error(&e));
            }
            None => {
                s.cur = None;
                return Err(errors::BatchError::new_err(format!(
                    "the loader's stream ended before epoch {} batch {} (a bug: please report it)",
                    pos.epoch, pos.batch
                )));
            }
        };
        let next = Position::new(pos.epoch, pos.batch + 1);
        if next.batch >= per {
            s.epoch = pos.epoch + 1;
        }
        s.cur = Some(next);
        drop(g);

        let [n, h, w, c] = batch.shape();
        let (n, h, w, c) = (n as i64, h as i64, w as i64, c as i64);
        let labels = Array::labels(batch.labels());
        let padding = batch.padding();
        let data = batch.images().as_ptr();
        let owner: Owner = Arc::new(Held {
            pid: crate::pid(),
            batch: ManuallyDrop::new(batch),
        });
        // NCHW shape over NHWC memory (channels last). SAFETY: the engine's batch (kept by
        // `owner`) holds n*h*w*c bytes at `data`, not written again until it is dropped.
        let images = unsafe {
            Array::new(
                owner,
                data,
                Elem::U8,
                vec![n, c, h, w],
                vec![h * w * c, 1, w * c, c],
            )
        };
        Ok(Some((images, labels, pos.epoch, pos.batch, padding)))
    }

    /// Sets the epoch the next iteration yields.
    fn set_epoch(&self, epoch: u64) -> PyResult<()> {
        let mut g = self.state()?;
        let s = st(&mut g)?;
        if epoch != s.epoch {
            s.resume = None;
        }
        s.epoch = epoch;
        Ok(())
    }

    /// The epoch the next iteration yields (or the running one).
    #[getter]
    fn epoch(&self) -> PyResult<u64> {
        let mut g = self.state()?;
        let s = st(&mut g)?;
        Ok(match s.cur {
            Some(c) if c.batch < s.loader.batches_per_epoch() => c.epoch,
            _ => s.epoch,
        })
    }

    fn __len__(&self) -> PyResult<usize> {
        let mut g = self.state()?;
        Ok(st(&mut g)?.loader.batches_per_epoch() as usize)
    }

    /// This rank's images per epoch.
    #[getter]
    fn samples_per_epoch(&self) -> PyResult<u64> {
        let mut g = self.state()?;
        Ok(st(&mut g)?.loader.samples_per_epoch())
    }

    /// Worker threads.
    #[getter]
    fn workers(&self) -> PyResult<usize> {
        let mut g = self.state()?;
        Ok(st(&mut g)?.loader.workers())
    }

    /// The dataset directory read.
    #[getter]
    fn path(&self) -> PathBuf {
        self.settings.dir.clone()
    }

    /// Records in the dataset.
    #[getter]
    fn records(&self) -> u64 {
        self.settings.records
    }

    /// The position of the next batch and what the order depends on.
    fn state_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let mut g = self.state()?;
        let s = st(&mut g)?;
        let p = s.next_position();
        let c = &self.settings;
        let d = PyDict::new(py);
        d.set_item("version", STATE_VERSION)?;
        d.set_item("epoch", p.epoch)?;
        d.set_item("batch", p.batch)?;
        d.set_item("batches_per_epoch", s.loader.batches_per_epoch())?;
        d.set_item("samples_yielded", p.batch * c.batch_size as u64)?;
        d.set_item("seed", c.seed)?;
        d.set_item("batch_size", c.batch_size)?;
        d.set_item("transform", &c.transform)?;
        d.set_item("size", c.size)?;
        d.set_item("shuffle", &c.shuffle)?;
        d.set_item("last_batch", &c.last_batch)?;
        d.set_item("full_batches", c.full_batches)?;
        d.set_item("world", c.world)?;
        d.set_item("rank", c.rank)?;
        d.set_item("records", c.records)?;
        Ok(d)
    }

    /// Resumes at the state's position. Refuses a state whose order or batches would differ
    /// (seed, batch size, world size, transform, size, shuffle, last batch, record count); a
    /// different rank is allowed (the position is the same on every rank).
    fn load_state_dict(&self, state: &Bound<'_, PyDict>) -> PyResult<()> {
        fn get<'py, T: FromPyObjectOwned<'py>>(d: &Bound<'py, PyDict>, k: &str) -> PyResult<T> {
            match d.get_item(k)? {
                Some(v) => v.extract::<T>().map_err(|e| {
                    let e: PyErr = e.into();
                    PyValueError::new_err(format!("state_dict[{k:?}] has the wrong type: {e}"))
                }),
                None => Err(PyKeyError::new_err(format!(
                    "not a shardfeed.Loader state_dict: it has no {k:?}"
                ))),
            }
        }
        let version: u64 = get(state, "version")?;
        if version != STATE_VERSION {
            return Err(PyValueError::new_err(format!(
                "state_dict version {version}; this shardfeed reads version {STATE_VERSION}"
            )));
        }
        let c = &self.settings;
        let mut diffs = Vec::new();
        macro_rules! same {
            ($key:literal, $ty:ty, $mine:expr) => {
                let theirs: $ty = get(state, $key)?;
                if theirs != $mine {
                    diffs.push(format!("{} {:?} (this loader: {:?})", $key, theirs, $mine));
                }
            };
        }
        same!("seed", u64, c.seed);
        same!("batch_size", usize, c.batch_size);
        same!("world", u32, c.world);
        same!("transform", String, c.transform);
        same!("size", u32, c.size);
        same!("shuffle", String, c.shuffle);
        same!("last_batch", String, c.last_batch);
        same!("full_batches", bool, c.full_batches);
        same!("records", u64, c.records);
        if !diffs.is_empty() {
            return Err(PyValueError::new_err(format!(
                "this state_dict was saved by a loader with a different order or batches, so \
                 resuming from it would not be exact: {}",
                diffs.join(", ")
            )));
        }
        let epoch: u64 = get(state, "epoch")?;
        let batch: u64 = get(state, "batch")?;
        let mut g = self.state()?;
        let s = st(&mut g)?;
        let per = s.loader.batches_per_epoch();
        if batch >= per {
            return Err(PyValueError::new_err(format!(
                "state_dict batch {batch} is past the end of an epoch of {per} batches"
            )));
        }
        s.epoch = epoch;
        s.resume = (batch > 0).then_some(batch);
        s.cur = None;
        Ok(())
    }

    /// The global record numbers this rank reads in `epoch`, in order (padding duplicates
    /// included; a record that fails to decode is replaced at run time, see `failures`).
    fn order(&self, epoch: u64) -> PyResult<Vec<u64>> {
        let mut g = self.state()?;
        let s = st(&mut g)?;
        let order = s
            .loader
            .order(epoch)
            .map_err(|e| PyValueError::new_err(e.to_string()))?;
        Ok(order.samples.iter().map(|x| x.record).collect())
    }

    /// The loader's counters since it was made.
    fn metrics<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let mut g = self.state()?;
        let m = st(&mut g)?.loader.metrics();
        drop(g);
        metrics_dict(py, &m)
    }

    /// The records that failed and were replaced (the first 10,000), each a dict.
    fn failures<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let mut g = self.state()?;
        let s = st(&mut g)?;
        let list = PyList::empty(py);
        for f in s.loader.failures() {
            let d = PyDict::new(py);
            d.set_item("epoch", f.epoch)?;
            d.set_item("position", f.position)?;
            d.set_item("record", f.record)?;
            d.set_item("shard", f.shard.display().to_string())?;
            d.set_item("shard_record", f.shard_record)?;
            d.set_item("source_path", &f.source_path)?;
            d.set_item("reason", &f.reason)?;
            d.set_item("replaced_by", f.replaced_by)?;
            d.set_item("message", f.to_string())?;
            list.append(d)?;
        }
        Ok(list)
    }

    /// Stops the threads and frees the buffers not held by Python (those go when their last
    /// array does). The loader cannot be used afterwards.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let taken = {
            let mut g = self.state()?;
            g.take()
        };
        // Joining the threads can take a batch's time: without the GIL.
        py.detach(move || drop(taken));
        Ok(())
    }

    fn __repr__(&self) -> String {
        let c = &self.settings;
        format!(
            "shardfeed.Loader({:?}, batch_size={}, transform={:?}, size={}, seed={}, rank={}, world={})",
            c.dir.display().to_string(),
            c.batch_size,
            c.transform,
            c.size,
            c.seed,
            c.rank,
            c.world
        )
    }
}

impl Drop for PyLoader {
    fn drop(&mut self) {
        let state = self
            .inner
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if crate::pid() != self.pid {
            // A child of fork: the threads this would join do not exist here.
            std::mem::forget(state);
        }
    }
}
