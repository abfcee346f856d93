//! [`Stream`]: one run of the loader's threads from a start position onwards: it starts the
//! dispatcher, the workers and the readahead thread, puts finished batches back into order for
//! the consumer (a reorder window as large as the pool, which bounds it), and tears everything
//! down again, handing the workers' augmenters back for the next stream.

use crate::augment::Augmenter;
use crate::loader::batch::{Batch, Pool};
use crate::loader::dispatch::{Dispatcher, Walk};
use crate::loader::error::BatchError;
use crate::loader::metrics::{ConsumerCounters, ReadaheadCounters};
use crate::loader::readahead;
use crate::loader::worker::{self, Task, WorkerContext};
use crate::loader::Position;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use shardfeed_shards::Dataset;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often a waiting consumer checks that the threads are still alive.
const LIVENESS_CHECK: Duration = Duration::from_millis(250);

/// The running threads of a loader, from one start position on.
pub(crate) struct Stream {
    /// The position the consumer gets next.
    pub next: Position,
    pub batches_per_epoch: u64,
    end_epoch: Option<u64>,
    /// Sequence number of the next batch to deliver.
    seq: u64,
    done: Receiver<Batch>,
    /// Finished batches that came early, at `seq % len`.
    ring: Vec<Option<Batch>>,
    stop: Arc<AtomicBool>,
    stop_tx: Option<Sender<()>>,
    dispatcher: Option<JoinHandle<()>>,
    workers: Vec<JoinHandle<Augmenter>>,
    readahead: Option<JoinHandle<()>>,
    /// An error was delivered (or a thread died): the stream yields nothing more.
    pub failed: bool,
    /// Batches at requested positions ([`Walk::Requested`]), in the order requested: `next` is
    /// not used, and the stream ends when the requests do.
    requested: bool,
}

/// What starting a stream needs from the loader.
pub(crate) struct StreamStart<'a> {
    pub dataset: &'a Arc<Dataset>,
    pub pool: &'a Pool,
    pub dispatcher: Dispatcher,
    pub worker_context: WorkerContext,
    pub tasks_rx: Receiver<Task>,
    pub done_rx: Receiver<Batch>,
    pub stop: Arc<AtomicBool>,
    pub stop_tx: Sender<()>,
    pub hints_rx: Option<Receiver<readahead::Hint>>,
    pub readahead_counters: &'a Arc<ReadaheadCounters>,
}

impl Stream {
    /// Starts the threads. On failure everything started is stopped again and the augmenters
    /// not yet handed to a thread are lost (they are only caches).
    pub fn start(s: StreamStart<'_>, augmenters: Vec<Augmenter>) -> Result<Stream, BatchError> {
        let StreamStart {
            dataset,
            pool,
            dispatcher,
            worker_context,
            tasks_rx,
            done_rx,
            stop,
            stop_tx,
            hints_rx,
            readahead_counters,
        } = s;
        let (next, requested) = match &dispatcher.walk {
            Walk::From(p) => (*p, false),
            Walk::Requested(_) => (Position::default(), true),
        };
        let mut stream = Stream {
            next,
            requested,
            batches_per_epoch: dispatcher.batches_per_epoch,
            end_epoch: dispatcher.end_epoch,
            seq: 0,
            done: done_rx,
            ring: (0..pool.size).map(|_| None).collect(),
            stop,
            stop_tx: Some(stop_tx),
            dispatcher: None,
            workers: Vec::with_capacity(augmenters.len()),
            readahead: None,
            failed: false,
        };
        let context = Arc::new(worker_context);
        for (id, augmenter) in augmenters.into_iter().enumerate() {
            let (ctx, tasks) = (Arc::clone(&context), tasks_rx.clone());
            match std::thread::Builder::new()
                .name(format!("shardfeed-worker-{id}"))
                .spawn(move || worker::run(&ctx, id, &tasks, augmenter))
            {
                Ok(h) => stream.workers.push(h),
                Err(e) => {
                    // The dispatcher holds the task channel open: close it first.
                    drop(dispatcher);
                    stream.stop();
                    return Err(BatchError::Spawn(e));
                }
            }
        }
        drop((tasks_rx, context));
        if let Some(hints) = hints_rx {
            let (dataset, counters) = (Arc::clone(dataset), Arc::clone(readahead_counters));
            match std::thread::Builder::new()
                .name("shardfeed-readahead".into())
                .spawn(move || readahead::run(&dataset, &hints, &counters))
            {
                Ok(h) => stream.readahead = Some(h),
                Err(e) => {
                    drop(dispatcher);
                    stream.stop();
                    return Err(BatchError::Spawn(e));
                }
            }
        }
        // On failure the closure, and the dispatcher's channels with it, are dropped first.
        match std::thread::Builder::new()
            .name("shardfeed-dispatch".into())
            .spawn(move || dispatcher.run())
        {
            Ok(h) => stream.dispatcher = Some(h),
            Err(e) => {
                stream.stop();
                return Err(BatchError::Spawn(e));
            }
        }
        Ok(stream)
    }

    /// A stream whose batches come from `producer`, a thread started by the caller (the remote
    /// source's coordinator) that fills pool buffers and sends each finished batch on `done`,
    /// tagged with its sequence number, in any order; it stops when `stop_tx` is dropped.
    pub fn remote(
        start: Position,
        batches_per_epoch: u64,
        end_epoch: Option<u64>,
        pool: &Pool,
        done: Receiver<Batch>,
        stop_tx: Sender<()>,
        producer: JoinHandle<()>,
    ) -> Stream {
        Stream {
            next: start,
            requested: false,
            batches_per_epoch,
            end_epoch,
            seq: 0,
            done,
            ring: (0..pool.size).map(|_| None).collect(),
            stop: Arc::new(AtomicBool::new(false)),
            stop_tx: Some(stop_tx),
            dispatcher: Some(producer),
            workers: Vec::new(),
            readahead: None,
            failed: false,
        }
    }

    /// True when the consumer has had every batch of the configured epochs.
    pub fn at_end(&self) -> bool {
        self.end_epoch.is_some_and(|end| self.next.epoch >= end)
    }

    /// Batches finished and waiting for the consumer.
    fn ready(&self) -> u64 {
        (self.ring.iter().filter(|b| b.is_some()).count() + self.done.len()) as u64
    }

    /// True when a thread ended while the stream still needs it.
    fn thread_died(&self) -> Option<&'static str> {
        let dispatching = self.dispatcher.as_ref().is_some_and(|d| !d.is_finished());
        if dispatching && self.workers.iter().any(JoinHandle::is_finished) {
            return Some("a worker");
        }
        None
    }

    /// The next batch in order, waiting for it if needed.
    pub fn next_batch(
        &mut self,
        pool: &Pool,
        counters: &mut ConsumerCounters,
    ) -> Option<Result<Batch, BatchError>> {
        if self.failed || self.at_end() {
            return None;
        }
        if pool.held.load(Ordering::Acquire) >= pool.size {
            return Some(Err(BatchError::AllBuffersHeld {
                prefetch: pool.size,
            }));
        }
        let depth = self.ready();
        counters.depth_sum += depth;
        counters.depth_max = counters.depth_max.max(depth);
        let slot = (self.seq % self.ring.len() as u64) as usize;
        let mut batch = loop {
            if let Some(b) = self.ring[slot].take() {
                break b;
            }
            let waited = Instant::now();
            let received = self.done.recv_timeout(LIVENESS_CHECK);
            counters.wait += waited.elapsed();
            match received {
                Ok(b) => {
                    let at = (b.buf().seq % self.ring.len() as u64) as usize;
                    self.ring[at] = Some(b);
                }
                Err(RecvTimeoutError::Timeout) => {
                    if let Some(what) = self.thread_died() {
                        self.failed = true;
                        return Some(Err(BatchError::ThreadDied(what)));
                    }
                }
                Err(RecvTimeoutError::Disconnected) => {
                    self.failed = true;
                    if self.requested {
                        // Every request was answered and the requests ended.
                        return None;
                    }
                    return Some(Err(BatchError::ThreadDied("the pipeline")));
                }
            }
        };
        self.seq += 1;
        if let Some(e) = batch.take_error() {
            self.failed = true;
            return Some(Err(e));
        }
        if !self.requested {
            debug_assert_eq!(batch.position(), self.next, "batches arrive in order");
            self.next = self.next.next(self.batches_per_epoch);
        }
        counters.batches += 1;
        counters.samples += batch.len() as u64;
        batch.hand_out(&pool.held);
        Some(Ok(batch))
    }

    /// Stops and joins every thread, returns the workers' augmenters (a fresh one for a worker
    /// that panicked), and gives every buffer back to the pool.
    pub fn stop(&mut self) -> Vec<Augmenter> {
        self.stop.store(true, Ordering::Relaxed);
        // Wakes the dispatcher if it waits for a buffer.
        self.stop_tx = None;
        if let Some(d) = self.dispatcher.take() {
            let _ = d.join();
        }
        // The dispatcher is gone, so the task channel closes once the workers have handed the
        // queued slots back (unfilled).
        let augmenters = self
            .workers
            .drain(..)
            .map(|w| w.join().unwrap_or_default())
            .collect();
        if let Some(r) = self.readahead.take() {
            let _ = r.join();
        }
        // Finished batches nobody will take: dropping them returns their buffers.
        self.ring.iter_mut().for_each(|b| *b = None);
        while self.done.try_recv().is_ok() {}
        self.failed = true;
        augmenters
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        if !self.workers.is_empty() || self.dispatcher.is_some() {
            self.stop();
        }
    }
}
