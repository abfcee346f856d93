//! The dispatcher thread: walks the stream's batch positions in order, and for each takes a free
//! buffer from the pool (waiting when the consumer is behind: back-pressure), splits it into
//! one slot per sample and queues the samples for the workers. It also tells the readahead
//! thread which records come `readahead` batches later.
//!
//! [`OrderCache`] holds the sample orders of the epochs being dispatched and read ahead
//! (computed by the pure [`plan_epoch`]), so the order of the next epoch is ready before the
//! current one ends and the stream runs on across epoch boundaries without a pause.

use crate::loader::batch::{Batch, BatchState};
use crate::loader::config::TransformSchedule;
use crate::loader::error::BatchError;
use crate::loader::readahead::Hint;
use crate::loader::worker::Task;
use crate::loader::Position;
use crate::sampler::{
    plan_epoch, EpochSpec, LastBatch, Partition, RankOrder, SamplerError, Shuffle,
};
use crossbeam_channel::{select, Receiver, Sender, TryRecvError};
use shardfeed_shards::Dataset;
use std::sync::Arc;

/// What fixes the sample order of every epoch.
#[derive(Debug, Clone)]
pub(crate) struct OrderParams {
    pub seed: u64,
    pub rank: u32,
    pub world: u32,
    pub last_batch: LastBatch,
    pub multiple_of: u64,
    pub shuffle: Shuffle,
    pub partition: Partition,
}

impl OrderParams {
    pub fn plan(&self, dataset: &Dataset, epoch: u64) -> Result<RankOrder, SamplerError> {
        plan_epoch(&EpochSpec {
            records: dataset.len(),
            shard_starts: dataset.shard_starts(),
            seed: self.seed,
            epoch,
            rank: self.rank,
            world: self.world,
            last_batch: self.last_batch,
            multiple_of: self.multiple_of,
            shuffle: self.shuffle,
            partition: self.partition,
        })
    }
}

/// The orders of the last two epochs asked for.
pub(crate) struct OrderCache {
    params: OrderParams,
    dataset: Arc<Dataset>,
    orders: Vec<Arc<RankOrder>>,
}

impl OrderCache {
    pub fn new(params: OrderParams, dataset: Arc<Dataset>) -> Self {
        OrderCache {
            params,
            dataset,
            orders: Vec::with_capacity(2),
        }
    }

    pub fn get(&mut self, epoch: u64) -> Result<Arc<RankOrder>, SamplerError> {
        if let Some(o) = self.orders.iter().find(|o| o.epoch == epoch) {
            return Ok(Arc::clone(o));
        }
        let order = Arc::new(self.params.plan(&self.dataset, epoch)?);
        if self.orders.len() == 2 {
            self.orders.remove(0);
        }
        self.orders.push(Arc::clone(&order));
        Ok(order)
    }
}

/// Which batches a stream makes.
pub(crate) enum Walk {
    /// Every batch from this position on, in order (a training loop's stream).
    From(Position),
    /// The positions sent on this channel, in the order sent, until it closes (what a worker of
    /// `shardfeed serve` computes for a client). The sender checks each is in range.
    Requested(Receiver<Position>),
}

/// Everything the dispatcher needs.
pub(crate) struct Dispatcher {
    pub orders: OrderCache,
    pub schedule: TransformSchedule,
    pub batch_size: usize,
    pub batches_per_epoch: u64,
    pub walk: Walk,
    /// Stop before this epoch.
    pub end_epoch: Option<u64>,
    pub readahead: usize,
    pub pool_rx: Receiver<Arc<BatchState>>,
    pub pool_tx: Sender<Arc<BatchState>>,
    /// Disconnected when the stream is torn down.
    pub stop_rx: Receiver<()>,
    pub tasks: Sender<Task>,
    pub hints: Option<Sender<Hint>>,
    pub done: Sender<Batch>,
    pub dataset_len: u64,
}

impl Dispatcher {
    fn at_end(&self, p: Position) -> bool {
        self.end_epoch.is_some_and(|end| p.epoch >= end)
    }

    /// Runs until the last epoch is dispatched (or the requests end) or the stream is torn down.
    pub fn run(mut self) {
        let (mut cursor, requests) =
            match std::mem::replace(&mut self.walk, Walk::From(Position::default())) {
                Walk::From(p) => (p, None),
                Walk::Requested(rx) => (Position::default(), Some(rx)),
            };
        let mut ahead = cursor; // next batch to read ahead
        let mut seq = 0u64;
        loop {
            // select! picks at random among ready channels: look for the stop first.
            if self.stop_rx.try_recv() == Err(TryRecvError::Disconnected) {
                return;
            }
            match &requests {
                None if self.at_end(cursor) => return,
                None => self.read_ahead(cursor, &mut ahead),
                Some(rx) => {
                    cursor = select! {
                        recv(rx) -> p => match p {
                            Ok(p) => p,
                            Err(_) => return,
                        },
                        recv(self.stop_rx) -> _ => return,
                    };
                }
            }
            let state = select! {
                recv(self.pool_rx) -> s => match s {
                    Ok(s) => s,
                    Err(_) => return,
                },
                recv(self.stop_rx) -> _ => return,
            };
            if let Err(e) = self.dispatch(&state, cursor, seq) {
                self.fail(state, cursor, seq, e);
                return;
            }
            seq += 1;
            if requests.is_none() {
                cursor = cursor.next(self.batches_per_epoch);
            }
        }
    }

    /// Sends readahead hints up to `readahead` batches past `cursor`. Hints are best effort:
    /// when the readahead thread is behind they are sent later (skipping positions already
    /// dispatched), never waited for.
    fn read_ahead(&mut self, cursor: Position, ahead: &mut Position) {
        let Some(hints) = &self.hints else { return };
        if *ahead < cursor {
            *ahead = cursor;
        }
        let limit = cursor.advance(self.readahead as u64, self.batches_per_epoch);
        while *ahead < limit && !self.at_end(*ahead) {
            let Ok(order) = self.orders.get(ahead.epoch) else {
                return;
            };
            let first = ahead.batch as usize * self.batch_size;
            let len = self.batch_size.min(order.samples.len() - first);
            if hints.try_send(Hint { order, first, len }).is_err() {
                // Behind (or gone): never wait for it; try again after the next batch, skipping
                // positions already dispatched by then.
                return;
            }
            *ahead = ahead.next(self.batches_per_epoch);
        }
    }

    /// Prepares `state` for the batch at `cursor` and queues its samples.
    fn dispatch(
        &mut self,
        state: &Arc<BatchState>,
        cursor: Position,
        seq: u64,
    ) -> Result<(), BatchError> {
        let order = self.orders.get(cursor.epoch)?;
        let first = cursor.batch as usize * self.batch_size;
        let n = self.batch_size.min(order.samples.len() - first);
        let transform = self.schedule.at(cursor.epoch);
        let image_len = transform.output_len();
        let mut buf = state.lock();
        let mut rest = std::mem::take(&mut buf.images);
        if rest.len() < n * image_len {
            // Only when the schedule grows past the size the pool was made for (not possible
            // with a schedule fixed at construction, but never write out of bounds).
            rest = bytes::BytesMut::zeroed(self.batch_size * self.schedule.max_output_len());
        }
        buf.transform = Some(transform);
        buf.position = cursor;
        buf.seq = seq;
        buf.len = n;
        buf.remaining = n;
        buf.dataset_len = self.dataset_len;
        buf.error = None;
        buf.failures.clear();
        buf.slots.clear();
        buf.slots.resize_with(n, || None);
        buf.labels.clear();
        buf.labels.resize(n, 0);
        buf.records.clear();
        buf.positions.clear();
        for s in &order.samples[first..first + n] {
            buf.records.push(s.record);
            buf.positions.push(s.position);
        }
        for slot in 0..n {
            let out = rest.split_to(image_len);
            let task = Task {
                state: Arc::clone(state),
                order: Arc::clone(&order),
                slot,
                index: first + slot,
                transform,
                out,
            };
            // The channel holds a full pool's samples, so this never waits; it fails only
            // when every worker is gone, and then the consumer sees the stream end.
            if self.tasks.send(task).is_err() {
                break;
            }
        }
        buf.tail = rest;
        Ok(())
    }

    /// Delivers `error` as the batch at `cursor`, so the consumer sees it in order.
    fn fail(&self, state: Arc<BatchState>, cursor: Position, seq: u64, error: BatchError) {
        let mut buf = state.lock();
        buf.position = cursor;
        buf.seq = seq;
        buf.len = 0;
        buf.remaining = 0;
        buf.labels.clear();
        buf.records.clear();
        buf.positions.clear();
        buf.failures.clear();
        buf.error = Some((0, error));
        let finished = std::mem::take(&mut *buf);
        drop(buf);
        let _ = self
            .done
            .send(Batch::new(finished, state, self.pool_tx.clone()));
    }
}
