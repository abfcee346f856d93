//! The worker threads: each takes one sample at a time ([`Task`]), reads its record from the
//! memory-mapped shard, decodes and augments it straight into the batch's slot with its own
//! [`Augmenter`] (built before the thread starts and kept across epochs), and hands the slot
//! back. The worker that hands back a batch's last slot finishes the batch and sends it on.
//!
//! A record that cannot be read or decoded is replaced by the next record in this rank's order
//! that can ([`fill_slot`]): a rule that depends on the data alone, never on timing, so batches
//! stay bit-identical whatever the worker count. A panic inside the decoder counts as a decode
//! failure of that record.

use crate::augment::{Augmenter, SampleKey, Transform};
use crate::loader::batch::{Batch, BatchState};
use crate::loader::error::{BatchError, RecordFailure};
use crate::loader::metrics::WorkerCounters;
use crate::sampler::{RankOrder, Sample};
use bytes::BytesMut;
use crossbeam_channel::{Receiver, Sender};
use shardfeed_shards::format::NO_LABEL;
use shardfeed_shards::{Dataset, ShardError};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// How many records after a failed one are tried in its place before giving up.
pub(crate) const MAX_REPLACEMENT_TRIES: usize = 64;

/// One sample to fill.
pub(crate) struct Task {
    pub state: Arc<BatchState>,
    pub order: Arc<RankOrder>,
    /// The slot in the batch.
    pub slot: usize,
    /// The sample's index in `order.samples`.
    pub index: usize,
    pub transform: Transform,
    /// Where the image goes: `transform.output_len()` bytes of the batch buffer.
    pub out: BytesMut,
}

/// What every worker of a stream shares.
pub(crate) struct WorkerContext {
    pub dataset: Arc<Dataset>,
    pub seed: u64,
    pub strict: bool,
    pub decode_only: bool,
    /// Set when the stream is being torn down: remaining tasks are handed back unfilled.
    pub stop: Arc<AtomicBool>,
    /// Where finished batches go.
    pub done: Sender<Batch>,
    /// The pool, where a batch's buffer returns when it is dropped.
    pub pool: Sender<Arc<BatchState>>,
    pub counters: Arc<[WorkerCounters]>,
}

/// A filled slot: the record used, its label, and the failure it replaced, if any.
type Filled = (u64, u32, Option<RecordFailure>);

/// The worker loop; returns the augmenter when the task channel closes.
pub(crate) fn run(
    ctx: &WorkerContext,
    id: usize,
    tasks: &Receiver<Task>,
    mut augmenter: Augmenter,
) -> Augmenter {
    let counters = &ctx.counters[id];
    // The stage times of the previous stream are not this one's.
    augmenter.take_stage_times();
    while let Ok(mut task) = tasks.recv() {
        let result = if ctx.stop.load(Ordering::Relaxed) {
            None
        } else {
            let started = Instant::now();
            let r = fill_slot(ctx, &mut augmenter, &mut task, counters);
            WorkerCounters::add(&counters.busy_ns, started.elapsed());
            counters.samples.fetch_add(1, Ordering::Relaxed);
            Some(r)
        };
        hand_back(ctx, task, result);
    }
    augmenter
}

/// Why one attempt at a record failed.
struct Problem {
    reason: String,
    source_path: Option<String>,
    /// The shard changed under the reader: fatal, never replaced.
    changed: Option<ShardError>,
}

/// Reads `record`, augments it into `out` with the randomness of `key`; returns its label.
fn attempt(
    ctx: &WorkerContext,
    augmenter: &mut Augmenter,
    record: u64,
    transform: &Transform,
    key: SampleKey,
    out: &mut [u8],
    counters: &WorkerCounters,
) -> Result<u32, Problem> {
    let read_started = Instant::now();
    let rec = ctx.dataset.record(record);
    WorkerCounters::add(&counters.read_ns, read_started.elapsed());
    let rec = rec.map_err(|e| Problem {
        reason: e.to_string(),
        source_path: None,
        changed: matches!(e, ShardError::Changed { .. }).then_some(e),
    })?;
    let result = catch_unwind(AssertUnwindSafe(|| {
        if ctx.decode_only {
            augmenter.decode_only(rec.image).map(|_| ())
        } else {
            augmenter.apply(rec.image, transform, key, out).map(|_| ())
        }
    }));
    let times = augmenter.take_stage_times();
    WorkerCounters::add(&counters.decode_ns, times.decode);
    WorkerCounters::add(&counters.augment_ns, times.resize);
    let problem = |reason: String| Problem {
        reason,
        source_path: Some(rec.path.to_owned()),
        changed: None,
    };
    match result {
        Ok(Ok(())) => Ok(rec.label.unwrap_or(NO_LABEL)),
        Ok(Err(e)) => Err(problem(e.to_string())),
        Err(panic) => {
            // Its buffers may be in any state: start afresh.
            *augmenter = augmenter.renewed();
            let what = crate::panic::message(panic.as_ref());
            Err(problem(format!("the decoder panicked: {what}")))
        }
    }
}

/// Where a failed record is, for the report.
fn describe(ctx: &WorkerContext, epoch: u64, sample: Sample, problem: Problem) -> RecordFailure {
    let (shard, shard_record) = match ctx.dataset.locate(sample.record) {
        Ok((s, i)) => (ctx.dataset.shards()[s].path().to_owned(), i),
        Err(_) => (ctx.dataset.dir().to_owned(), sample.record),
    };
    RecordFailure {
        epoch,
        position: sample.position,
        record: sample.record,
        shard,
        shard_record,
        source_path: problem.source_path,
        reason: problem.reason,
        replaced_by: None,
    }
}

/// Fills one slot: the sample's own record, or, when that fails and strict mode is off, the
/// first of the next records in this rank's order (wrapping around) that works, augmented with
/// the sample's own key.
fn fill_slot(
    ctx: &WorkerContext,
    augmenter: &mut Augmenter,
    task: &mut Task,
    counters: &WorkerCounters,
) -> Result<Filled, BatchError> {
    let samples = &task.order.samples;
    let sample = samples[task.index];
    let epoch = task.order.epoch;
    let key = SampleKey {
        seed: ctx.seed,
        epoch,
        index: sample.position,
    };
    let first = attempt(
        ctx,
        augmenter,
        sample.record,
        &task.transform,
        key,
        &mut task.out,
        counters,
    );
    let problem = match first {
        Ok(label) => return Ok((sample.record, label, None)),
        Err(Problem {
            changed: Some(e), ..
        }) => return Err(BatchError::ShardChanged(e)),
        Err(p) => p,
    };
    let mut failure = describe(ctx, epoch, sample, problem);
    if ctx.strict {
        return Err(BatchError::Strict(Box::new(failure)));
    }
    let mut tried = 0;
    for step in 1..samples.len() {
        if tried == MAX_REPLACEMENT_TRIES {
            break;
        }
        let candidate = samples[(task.index + step) % samples.len()].record;
        if candidate == sample.record {
            continue; // a padding duplicate of the same record
        }
        tried += 1;
        match attempt(
            ctx,
            augmenter,
            candidate,
            &task.transform,
            key,
            &mut task.out,
            counters,
        ) {
            Ok(label) => {
                failure.replaced_by = Some(candidate);
                return Ok((candidate, label, Some(failure)));
            }
            Err(Problem {
                changed: Some(e), ..
            }) => return Err(BatchError::ShardChanged(e)),
            Err(_) => {}
        }
    }
    Err(BatchError::NoReplacement {
        failure: Box::new(failure),
        tried,
    })
}

/// Puts the slot back into its batch (`None`: not filled, the stream is stopping); the last
/// slot finishes the batch and sends it to the consumer.
fn hand_back(ctx: &WorkerContext, task: Task, result: Option<Result<Filled, BatchError>>) {
    let Task {
        state, slot, out, ..
    } = task;
    let mut buf = state.lock();
    buf.slots[slot] = Some(out);
    match result {
        Some(Ok((record, label, failure))) => {
            buf.records[slot] = record;
            buf.labels[slot] = label;
            if let Some(f) = failure {
                buf.failures.push(f);
            }
        }
        Some(Err(e)) if buf.error.as_ref().is_none_or(|(s, _)| slot < *s) => {
            buf.error = Some((slot, e));
        }
        Some(Err(_)) | None => {}
    }
    buf.remaining -= 1;
    if buf.remaining > 0 {
        return;
    }
    buf.rejoin();
    // Failures arrive in the order workers met them; report them in sample order.
    buf.failures.sort_unstable_by_key(|f| f.position);
    let finished = std::mem::take(&mut *buf);
    drop(buf);
    let batch = Batch::new(finished, state, ctx.pool.clone());
    // When the consumer is gone the batch is dropped here, which returns its buffer.
    let _ = ctx.done.send(batch);
}
