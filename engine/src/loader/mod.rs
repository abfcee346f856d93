//! The loader: batches of augmented images from a shardfeed dataset, on every core, in a fixed
//! order that depends only on the configuration.
//!
//! [`Loader`] is the entry point; [`Loader::epoch`] gives an [`Epoch`], an iterator of
//! [`Batch`]es (`images`: N x H x W x 3 `u8`, `labels`, and where each image came from).
//!
//! # How it runs
//!
//! ```text
//!  dispatcher ──tasks (one per sample)──▶ workers (N) ──finished batches──▶ consumer (next())
//!      ▲  │                                  │ read record (mmap), decode,        │
//!      │  └─hints─▶ readahead (fadvise)      │ augment into the batch's slot      │
//!      └──────────── free buffers (the pool: `prefetch` batches) ◀── Batch dropped ┘
//! ```
//!
//! - **Order** ([`crate::sampler`]): a pure function of (seed, epoch, rank, world); every rank
//!   gets the same number of samples.
//! - **Determinism**: each image's randomness comes from (seed, epoch, position in the epoch),
//!   never from a thread; a failed record is replaced by the next one in the order that decodes.
//!   The bytes of every batch are the same whatever the worker count or timing.
//! - **Parallelism**: samples, not batches, are spread over the workers, so a batch is ready
//!   after `batch_size / workers` images' time and memory does not grow with the worker count.
//!   Batches are delivered in order.
//! - **Memory**: `prefetch` batch buffers, allocated once; when all are in use (filling, ready,
//!   or held by the caller) the dispatcher waits: back-pressure. Memory is flat across epochs.
//! - **Epochs**: the stream runs on into the next epoch while the caller finishes the current
//!   one, so there is no pause at epoch boundaries; [`Loader::resume`] restarts it anywhere.
//! - **Readahead**: a thread asks the kernel to read the records of the batches coming next.
//! - **Metrics**: [`Loader::metrics`] (images/s, time per stage, worker busy %, queue depth,
//!   time the caller waited).
//!
//! # Example
//!
//! ```
//! use shardfeed_engine::loader::{Loader, LoaderConfig};
//!
//! # let tmp = tempfile::tempdir()?;
//! # let root = shardfeed_engine::demo::synthetic_dataset(tmp.path(), 2, 6)?;
//! // `root/train` is a dataset made by `shardfeed shard`.
//! let config = LoaderConfig { batch_size: 4, workers: 2, ..LoaderConfig::train(64) };
//! let mut loader = Loader::open(root.join("train"), config)?;
//! assert_eq!(loader.batches_per_epoch(), 3);
//! for epoch in 0..2 {
//!     for batch in loader.epoch(epoch) {
//!         let batch = batch?;
//!         assert_eq!(batch.shape(), [4, 64, 64, 3]);
//!         let (images, labels): (&[u8], &[u32]) = (batch.images(), batch.labels());
//!         // ... copy `images` into pinned memory and send it to the GPU, then drop the batch.
//!         # assert_eq!(images.len(), 4 * 64 * 64 * 3);
//!         # assert!(labels.iter().all(|&l| l < 2));
//!     }
//! }
//! let m = loader.metrics();
//! assert_eq!(m.images, 24);
//! println!("{:.0} images/s, workers {:.0}% busy", m.images_per_sec(), 100.0 * m.busy_fraction());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub(crate) mod batch;
mod config;
mod digest;
pub(crate) mod dispatch;
mod error;
mod metrics;
mod readahead;
pub mod recipe;
mod stream;
mod worker;

pub use batch::Batch;
pub use config::{ConfigError, LoaderConfig, TransformSchedule};
pub use digest::StreamDigest;
pub use error::{BatchError, OpenError, RecordFailure};
pub use metrics::LoaderMetrics;

use crate::augment::Augmenter;
use crate::remote::connection::HelloParts;
use crate::remote::coordinator::Coordinator;
use crate::remote::{RemoteConfig, RemoteError, RemoteStats};
use crate::sampler::{per_rank_count, SamplerError};
use batch::Pool;
use crossbeam_channel::bounded;
use dispatch::{Dispatcher, OrderCache, OrderParams, Walk};
use metrics::{ConsumerCounters, ReadaheadCounters, WorkerCounters};
use shardfeed_shards::Dataset;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;
use stream::{Stream, StreamStart};
use worker::WorkerContext;

/// Where a stream of batches is: an epoch and a batch number in it. Save the position of the
/// next batch to resume exactly there ([`Loader::resume`]).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    serde::Serialize,
    serde::Deserialize,
)]
pub struct Position {
    /// The epoch.
    pub epoch: u64,
    /// The batch within the epoch, from 0.
    pub batch: u64,
}

impl Position {
    /// Batch `batch` of `epoch`.
    pub fn new(epoch: u64, batch: u64) -> Self {
        Position { epoch, batch }
    }

    /// The position after this one, in epochs of `batches_per_epoch` batches.
    pub fn next(self, batches_per_epoch: u64) -> Position {
        self.advance(1, batches_per_epoch)
    }

    /// The position `n` batches later.
    pub fn advance(self, n: u64, batches_per_epoch: u64) -> Position {
        let per = batches_per_epoch.max(1);
        let flat = self.batch + n;
        Position {
            epoch: self.epoch + flat / per,
            batch: flat % per,
        }
    }
}

/// Failures kept for [`Loader::failures`]; more are counted but not kept.
const MAX_FAILURES_KEPT: usize = 10_000;

/// Batches of augmented images from a dataset. See the [module docs](self) for an example and
/// how it works.
pub struct Loader {
    dataset: Arc<Dataset>,
    config: LoaderConfig,
    params: OrderParams,
    workers: usize,
    samples_per_epoch: u64,
    batches_per_epoch: u64,
    pool: Pool,
    augmenters: Vec<Augmenter>,
    stream: Option<Stream>,
    started: Instant,
    worker_counters: Arc<[WorkerCounters]>,
    readahead_counters: Arc<ReadaheadCounters>,
    consumer: ConsumerCounters,
    failures: Vec<RecordFailure>,
    remote: Option<RemoteSource>,
}

/// A loader's remote workers ([`Loader::remote`]).
struct RemoteSource {
    config: RemoteConfig,
    hello: HelloParts,
    stats: Arc<Mutex<RemoteStats>>,
}

impl std::fmt::Debug for Loader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loader")
            .field("dataset", &self.dataset.dir())
            .field("config", &self.config)
            .field("workers", &self.workers)
            .field("next", &self.next_position())
            .finish()
    }
}

impl Loader {
    /// Opens the dataset in `dir` and makes a loader for it.
    ///
    /// # Errors
    ///
    /// [`OpenError::Dataset`] when the dataset does not open, [`OpenError::Config`] or
    /// [`OpenError::Sampler`] when the configuration does not fit it.
    pub fn open(dir: impl AsRef<Path>, config: LoaderConfig) -> Result<Loader, OpenError> {
        Loader::new(Arc::new(Dataset::open(dir)?), config)
    }

    /// A loader over an opened dataset (which may be shared, e.g. with an evaluation loader).
    /// Allocates the batch buffers and each worker's augmenter; threads start with the first
    /// epoch.
    ///
    /// # Errors
    ///
    /// As [`Loader::open`], less the dataset's.
    pub fn new(dataset: Arc<Dataset>, config: LoaderConfig) -> Result<Loader, OpenError> {
        config.validate()?;
        let multiple_of = if config.full_batches {
            config.batch_size as u64
        } else {
            1
        };
        let params = OrderParams {
            seed: config.seed,
            rank: config.rank,
            world: config.world,
            last_batch: config.last_batch,
            multiple_of,
            shuffle: config.shuffle,
            partition: config.partition,
        };
        // Every epoch has the same counts; planning epoch 0 checks everything else.
        let samples_per_epoch =
            per_rank_count(dataset.len(), config.world, multiple_of, config.last_batch)?;
        params.plan(&dataset, 0)?;
        let workers = config.worker_count();
        let pool = Pool::new(
            config.prefetch,
            config.batch_size,
            config.transform.max_output_len(),
        );
        Ok(Loader {
            batches_per_epoch: samples_per_epoch.div_ceil(config.batch_size as u64),
            samples_per_epoch,
            augmenters: (0..workers).map(|_| config.augmenter()).collect(),
            worker_counters: (0..workers).map(|_| WorkerCounters::default()).collect(),
            readahead_counters: Arc::default(),
            consumer: ConsumerCounters::default(),
            failures: Vec::new(),
            started: Instant::now(),
            stream: None,
            remote: None,
            workers,
            pool,
            params,
            dataset,
            config,
        })
    }

    /// A loader whose batches are computed by `shardfeed serve` workers ([`crate::remote`]):
    /// the same batches, byte for byte, as [`Loader::new`] with the same `config` gives, made on
    /// other hosts. This process reads only the dataset's manifest and shard index (for the
    /// sample order and the handshake's fingerprint) and runs no decode thread; `config.workers`
    /// and `config.readahead` are the workers' business and are ignored.
    ///
    /// # Errors
    ///
    /// As [`Loader::new`], or [`OpenError::Remote`] when the manifest cannot be read for the
    /// fingerprint.
    pub fn remote(
        dataset: Arc<Dataset>,
        config: LoaderConfig,
        remote: RemoteConfig,
    ) -> Result<Loader, OpenError> {
        let path = dataset.dir().join(shardfeed_shards::MANIFEST_FILE);
        let manifest = std::fs::read(&path).map_err(|e| RemoteError::Manifest {
            path: path.display().to_string(),
            error: e.to_string(),
        })?;
        let hello = HelloParts {
            dataset: shardfeed_wire::auth::dataset_fingerprint(&manifest),
            recipe: recipe::canonical(&config),
            client: remote.client_name.clone(),
            token: remote.token.clone(),
        };
        let mut loader = Loader::new(
            dataset,
            LoaderConfig {
                workers: 1,
                ..config
            },
        )?;
        loader.workers = 0;
        loader.augmenters.clear();
        loader.worker_counters = Arc::new([]);
        loader.remote = Some(RemoteSource {
            config: remote,
            hello,
            stats: Arc::default(),
        });
        Ok(loader)
    }

    /// What the remote source counted (per worker, reassignments, its fault log); `None` for
    /// a local loader.
    pub fn remote_stats(&self) -> Option<RemoteStats> {
        self.remote.as_ref().map(|r| {
            r.stats
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone()
        })
    }

    /// The shared counters of the remote source, for a metrics endpoint that reads them while
    /// the loader runs on another thread; `None` for a local loader.
    pub fn remote_stats_handle(&self) -> Option<Arc<Mutex<RemoteStats>>> {
        self.remote.as_ref().map(|r| Arc::clone(&r.stats))
    }

    /// The batches at the positions sent on `requests`, in the order sent, until `requests`
    /// closes: what a `shardfeed serve` worker computes for one client. Each position must be
    /// in range (batch < [`batches_per_epoch`](Self::batches_per_epoch)); `epochs` is not
    /// applied. Any stream running before is stopped.
    pub fn on_demand(&mut self, requests: crossbeam_channel::Receiver<Position>) -> OnDemand<'_> {
        if let Some(mut s) = self.stream.take() {
            self.augmenters = s.stop();
        }
        let error = self.start_walk(Walk::Requested(requests)).err();
        OnDemand {
            loader: self,
            error,
        }
    }

    /// The batches of `epoch`, from its first. If the loader was already producing exactly
    /// these (the previous epoch ran to its end), it goes on without a pause; otherwise it
    /// restarts there.
    pub fn epoch(&mut self, epoch: u64) -> Epoch<'_> {
        self.resume(Position::new(epoch, 0))
    }

    /// The batches from `from` to the end of its epoch: what an uninterrupted run would have
    /// produced from there, byte for byte. Save [`Loader::next_position`] (or the position
    /// after the last batch trained on) in a checkpoint and resume from it.
    pub fn resume(&mut self, from: Position) -> Epoch<'_> {
        let error = self.prepare(from).err();
        Epoch {
            loader: self,
            epoch: from.epoch,
            error,
            ended: false,
        }
    }

    fn prepare(&mut self, from: Position) -> Result<(), BatchError> {
        if from.batch >= self.batches_per_epoch {
            return Err(BatchError::BatchOutOfRange {
                batch: from.batch,
                batches: self.batches_per_epoch,
            });
        }
        if let Some(epochs) = self.config.epochs {
            if from.epoch >= epochs {
                return Err(BatchError::PastLastEpoch {
                    epoch: from.epoch,
                    epochs,
                });
            }
        }
        if let Some(s) = &self.stream {
            if !s.failed && s.next == from {
                return Ok(());
            }
        }
        if let Some(mut s) = self.stream.take() {
            self.augmenters = s.stop();
        }
        self.start_stream(from)
    }

    fn start_stream(&mut self, from: Position) -> Result<(), BatchError> {
        if self.remote.is_some() {
            return self.start_remote(from);
        }
        self.start_walk(Walk::From(from))
    }

    fn start_remote(&mut self, from: Position) -> Result<(), BatchError> {
        let Some(remote) = &self.remote else {
            return Ok(());
        };
        let c = &self.config;
        let (done_tx, done_rx) = bounded(self.pool.size);
        let (stop_tx, stop_rx) = bounded::<()>(0);
        let coordinator = Coordinator {
            config: remote.config.clone(),
            hello: remote.hello.clone(),
            orders: OrderCache::new(self.params.clone(), Arc::clone(&self.dataset)),
            schedule: c.transform.clone(),
            batch_size: c.batch_size,
            batches_per_epoch: self.batches_per_epoch,
            start: from,
            end_epoch: c.epochs,
            dataset_len: self.dataset.len(),
            pool_rx: self.pool.free_rx.clone(),
            pool_tx: self.pool.free_tx.clone(),
            stop_rx,
            done: done_tx,
            stats: Arc::clone(&remote.stats),
            started: self.started,
        };
        let producer = std::thread::Builder::new()
            .name("shardfeed-remote".into())
            .spawn(move || coordinator.run())
            .map_err(BatchError::Spawn)?;
        self.stream = Some(Stream::remote(
            from,
            self.batches_per_epoch,
            c.epochs,
            &self.pool,
            done_rx,
            stop_tx,
            producer,
        ));
        Ok(())
    }

    fn start_walk(&mut self, walk: Walk) -> Result<(), BatchError> {
        let c = &self.config;
        let (tasks_tx, tasks_rx) = bounded(self.pool.size * c.batch_size);
        let (done_tx, done_rx) = bounded(self.pool.size);
        let (stop_tx, stop_rx) = bounded::<()>(0);
        let (hints_tx, hints_rx) = if c.readahead > 0 {
            let (t, r) = bounded(c.readahead * 2);
            (Some(t), Some(r))
        } else {
            (None, None)
        };
        let stop = Arc::new(AtomicBool::new(false));
        let dispatcher = Dispatcher {
            orders: OrderCache::new(self.params.clone(), Arc::clone(&self.dataset)),
            schedule: c.transform.clone(),
            batch_size: c.batch_size,
            batches_per_epoch: self.batches_per_epoch,
            end_epoch: if matches!(walk, Walk::Requested(_)) {
                None
            } else {
                c.epochs
            },
            walk,
            readahead: c.readahead,
            pool_rx: self.pool.free_rx.clone(),
            pool_tx: self.pool.free_tx.clone(),
            stop_rx,
            tasks: tasks_tx,
            hints: hints_tx,
            done: done_tx.clone(),
            dataset_len: self.dataset.len(),
        };
        let worker_context = WorkerContext {
            dataset: Arc::clone(&self.dataset),
            seed: c.seed,
            strict: c.strict,
            decode_only: c.decode_only,
            stop: Arc::clone(&stop),
            done: done_tx,
            pool: self.pool.free_tx.clone(),
            counters: Arc::clone(&self.worker_counters),
        };
        let mut augmenters = std::mem::take(&mut self.augmenters);
        augmenters.resize_with(self.workers, || self.config.augmenter());
        let stream = Stream::start(
            StreamStart {
                dataset: &self.dataset,
                pool: &self.pool,
                dispatcher,
                worker_context,
                tasks_rx,
                done_rx,
                stop,
                stop_tx,
                hints_rx,
                readahead_counters: &self.readahead_counters,
            },
            augmenters,
        )?;
        self.stream = Some(stream);
        Ok(())
    }

    /// The dataset.
    pub fn dataset(&self) -> &Arc<Dataset> {
        &self.dataset
    }

    /// The configuration.
    pub fn config(&self) -> &LoaderConfig {
        &self.config
    }

    /// Worker threads.
    pub fn workers(&self) -> usize {
        self.workers
    }

    /// This rank's samples per epoch (the same every epoch).
    pub fn samples_per_epoch(&self) -> u64 {
        self.samples_per_epoch
    }

    /// Batches per epoch (the same every epoch).
    pub fn batches_per_epoch(&self) -> u64 {
        self.batches_per_epoch
    }

    /// The position of the next batch the running stream will deliver (`None` before the first
    /// epoch, or after an error).
    pub fn next_position(&self) -> Option<Position> {
        self.stream.as_ref().filter(|s| !s.failed).map(|s| s.next)
    }

    /// Counters since the loader was made.
    pub fn metrics(&self) -> LoaderMetrics {
        metrics::snapshot(
            self.started,
            &self.worker_counters,
            &self.readahead_counters,
            &self.consumer,
        )
    }

    /// Records that failed and were replaced, in delivery order (the first 10,000; the metrics
    /// count them all).
    pub fn failures(&self) -> &[RecordFailure] {
        &self.failures
    }

    /// Batch buffers not in use right now (a test hook for back-pressure: never more than
    /// `prefetch`).
    pub fn free_buffers(&self) -> usize {
        self.pool.free()
    }

    /// The sample order this loader reads in `epoch` (pure; the same the workers use).
    ///
    /// # Errors
    ///
    /// None for a loader that was made: the order was checked then.
    pub fn order(&self, epoch: u64) -> Result<crate::sampler::RankOrder, SamplerError> {
        self.params.plan(&self.dataset, epoch)
    }
}

/// The batches of [`Loader::on_demand`], in the order requested: an iterator of
/// `Result<Batch, BatchError>` that ends when the requests end and every one was answered, or
/// after an error.
pub struct OnDemand<'a> {
    loader: &'a mut Loader,
    error: Option<BatchError>,
}

impl OnDemand<'_> {
    /// The loader.
    pub fn loader(&self) -> &Loader {
        self.loader
    }
}

impl Iterator for OnDemand<'_> {
    type Item = Result<Batch, BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(e) = self.error.take() {
            return Some(Err(e));
        }
        let loader = &mut *self.loader;
        let stream = loader.stream.as_mut()?;
        let item = stream.next_batch(&loader.pool, &mut loader.consumer)?;
        if let Ok(batch) = &item {
            loader.consumer.failures += batch.failures().len() as u64;
        }
        Some(item)
    }
}

/// The batches of one epoch, in order: an iterator of `Result<Batch, BatchError>` that ends at
/// the epoch's last batch, or after an error.
pub struct Epoch<'a> {
    loader: &'a mut Loader,
    epoch: u64,
    error: Option<BatchError>,
    ended: bool,
}

impl Epoch<'_> {
    /// The loader (for its metrics while iterating).
    pub fn loader(&self) -> &Loader {
        self.loader
    }

    /// Batches still to come in this epoch.
    pub fn remaining(&self) -> u64 {
        match &self.loader.stream {
            Some(s) if !self.ended && !s.failed && s.next.epoch == self.epoch => {
                self.loader.batches_per_epoch - s.next.batch
            }
            _ => 0,
        }
    }
}

impl Iterator for Epoch<'_> {
    type Item = Result<Batch, BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.ended {
            return None;
        }
        if let Some(e) = self.error.take() {
            self.ended = true;
            return Some(Err(e));
        }
        let loader = &mut *self.loader;
        let stream = loader.stream.as_mut()?;
        if stream.next.epoch != self.epoch {
            return None;
        }
        let item = stream.next_batch(&loader.pool, &mut loader.consumer)?;
        match &item {
            Ok(batch) => {
                loader.consumer.failures += batch.failures().len() as u64;
                let room = MAX_FAILURES_KEPT.saturating_sub(loader.failures.len());
                loader
                    .failures
                    .extend(batch.failures().iter().take(room).cloned());
            }
            Err(_) => self.ended = true,
        }
        Some(item)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loaders_and_batches_move_between_threads() {
        fn send<T: Send>() {}
        send::<Loader>();
        send::<Batch>();
        send::<BatchError>();
    }

    #[test]
    fn positions_advance_across_epochs() {
        let p = Position::new(2, 3);
        assert_eq!(p.next(4), Position::new(3, 0));
        assert_eq!(p.next(5), Position::new(2, 4));
        assert_eq!(p.advance(9, 4), Position::new(5, 0));
        assert!(Position::new(1, 9) < Position::new(2, 0));
    }
}
