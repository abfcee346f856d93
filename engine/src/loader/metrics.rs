//! What a loader measures about itself: [`LoaderMetrics`], a snapshot of counters that only
//! grow, so the metrics of a stretch of time (an epoch) are the difference of two snapshots
//! ([`LoaderMetrics::since`]).
//!
//! Workers count into their own cache-line-aligned [`WorkerCounters`] (relaxed atomics, one
//! writer each, so counting costs no contention); the consumer counts its waits and the queue
//! depth it finds into [`ConsumerCounters`] on its own thread.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// One worker's counters. Aligned to 128 bytes so two workers never share a cache line.
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct WorkerCounters {
    /// Nanoseconds spent on samples (reading, decoding, augmenting, handing the slot back).
    pub busy_ns: AtomicU64,
    /// Nanoseconds reading records (page faults on the memory map, CRC check).
    pub read_ns: AtomicU64,
    /// Nanoseconds decoding (from the augmenter's stage times).
    pub decode_ns: AtomicU64,
    /// Nanoseconds resizing and flipping (from the augmenter's stage times).
    pub augment_ns: AtomicU64,
    /// Samples filled.
    pub samples: AtomicU64,
}

impl WorkerCounters {
    pub fn add(counter: &AtomicU64, d: Duration) {
        counter.fetch_add(
            u64::try_from(d.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }
}

/// The readahead thread's counters.
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct ReadaheadCounters {
    /// Bytes the kernel was asked to read ahead.
    pub bytes: AtomicU64,
    /// Batches whose records were advised.
    pub batches: AtomicU64,
}

/// Counters kept by the consumer's thread.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct ConsumerCounters {
    pub batches: u64,
    pub samples: u64,
    /// Failed records in the batches delivered (not in batches prefetched but not yet taken,
    /// so the count is the same whatever the timing).
    pub failures: u64,
    pub wait: Duration,
    pub depth_sum: u64,
    pub depth_max: u64,
}

/// A snapshot of a loader's counters since it was created. Durations summed over workers are
/// CPU-side wall time on those threads.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct LoaderMetrics {
    /// Wall time covered.
    pub elapsed: Duration,
    /// Worker threads.
    pub workers: usize,
    /// Batches delivered to the caller.
    pub batches: u64,
    /// Images delivered to the caller.
    pub images: u64,
    /// Samples the workers filled (more than `images` when batches were prefetched and not yet
    /// taken, or thrown away by a restart).
    pub samples_filled: u64,
    /// Time reading records (memory map page faults, CRC), summed over workers.
    pub read: Duration,
    /// Time decoding, summed over workers.
    pub decode: Duration,
    /// Time resizing and flipping, summed over workers.
    pub augment: Duration,
    /// Time the workers spent on samples, summed over workers.
    pub worker_busy: Duration,
    /// Time the caller waited inside `next()` for a batch.
    pub consumer_wait: Duration,
    /// Sum over `next()` calls of the batches ready when the call came (mean: divide by
    /// `batches`).
    pub queue_depth_sum: u64,
    /// The most batches found ready at a `next()` call.
    pub queue_depth_max: u64,
    /// Records that failed to read or decode in the batches delivered so far (each replaced).
    pub failures: u64,
    /// Bytes the readahead thread asked the kernel to read.
    pub readahead_bytes: u64,
    /// Batches whose records the readahead thread advised.
    pub readahead_batches: u64,
}

impl LoaderMetrics {
    /// The counters of the time between `earlier` and `self` (both of the same loader).
    pub fn since(&self, earlier: &LoaderMetrics) -> LoaderMetrics {
        LoaderMetrics {
            elapsed: self.elapsed.saturating_sub(earlier.elapsed),
            workers: self.workers,
            batches: self.batches - earlier.batches,
            images: self.images - earlier.images,
            samples_filled: self.samples_filled - earlier.samples_filled,
            read: self.read.saturating_sub(earlier.read),
            decode: self.decode.saturating_sub(earlier.decode),
            augment: self.augment.saturating_sub(earlier.augment),
            worker_busy: self.worker_busy.saturating_sub(earlier.worker_busy),
            consumer_wait: self.consumer_wait.saturating_sub(earlier.consumer_wait),
            queue_depth_sum: self.queue_depth_sum - earlier.queue_depth_sum,
            // A maximum cannot be differenced; keep the later one.
            queue_depth_max: self.queue_depth_max,
            failures: self.failures - earlier.failures,
            readahead_bytes: self.readahead_bytes - earlier.readahead_bytes,
            readahead_batches: self.readahead_batches - earlier.readahead_batches,
        }
    }

    /// Images delivered per second of wall time.
    pub fn images_per_sec(&self) -> f64 {
        self.images as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The fraction of the workers' wall time spent on samples, `0..=1`.
    pub fn busy_fraction(&self) -> f64 {
        let wall = self.elapsed.as_secs_f64() * self.workers.max(1) as f64;
        (self.worker_busy.as_secs_f64() / wall.max(1e-9)).min(1.0)
    }

    /// Batches ready at a `next()` call, on average.
    pub fn mean_queue_depth(&self) -> f64 {
        self.queue_depth_sum as f64 / self.batches.max(1) as f64
    }

    /// Mean time per filled sample of a stage.
    pub fn per_sample(&self, stage: Duration) -> Duration {
        stage / u32::try_from(self.samples_filled.max(1)).unwrap_or(u32::MAX)
    }
}

/// Sums worker counters into a snapshot.
pub(crate) fn snapshot(
    started: Instant,
    workers: &[WorkerCounters],
    readahead: &ReadaheadCounters,
    consumer: &ConsumerCounters,
) -> LoaderMetrics {
    let sum = |f: fn(&WorkerCounters) -> &AtomicU64| -> u64 {
        workers.iter().map(|w| f(w).load(Ordering::Relaxed)).sum()
    };
    LoaderMetrics {
        elapsed: started.elapsed(),
        workers: workers.len(),
        batches: consumer.batches,
        images: consumer.samples,
        samples_filled: sum(|w| &w.samples),
        read: Duration::from_nanos(sum(|w| &w.read_ns)),
        decode: Duration::from_nanos(sum(|w| &w.decode_ns)),
        augment: Duration::from_nanos(sum(|w| &w.augment_ns)),
        worker_busy: Duration::from_nanos(sum(|w| &w.busy_ns)),
        consumer_wait: consumer.wait,
        queue_depth_sum: consumer.depth_sum,
        queue_depth_max: consumer.depth_max,
        failures: consumer.failures,
        readahead_bytes: readahead.bytes.load(Ordering::Relaxed),
        readahead_batches: readahead.batches.load(Ordering::Relaxed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differences_and_rates() {
        let a = LoaderMetrics {
            elapsed: Duration::from_secs(1),
            workers: 2,
            batches: 1,
            images: 100,
            samples_filled: 100,
            worker_busy: Duration::from_millis(1500),
            queue_depth_sum: 2,
            ..Default::default()
        };
        let b = LoaderMetrics {
            elapsed: Duration::from_secs(3),
            batches: 3,
            images: 500,
            samples_filled: 500,
            worker_busy: Duration::from_millis(5500),
            decode: Duration::from_millis(800),
            queue_depth_sum: 6,
            ..a
        };
        let d = b.since(&a);
        assert_eq!(d.images, 400);
        assert_eq!(d.images_per_sec(), 200.0);
        assert_eq!(d.busy_fraction(), 1.0);
        assert_eq!(d.mean_queue_depth(), 2.0);
        assert_eq!(d.per_sample(d.decode), Duration::from_millis(2));
        assert_eq!(LoaderMetrics::default().images_per_sec(), 0.0);
    }

    #[test]
    fn workers_sum_into_a_snapshot() {
        let workers: Vec<WorkerCounters> = (0..3).map(|_| WorkerCounters::default()).collect();
        for w in &workers {
            WorkerCounters::add(&w.decode_ns, Duration::from_millis(2));
            w.samples.fetch_add(5, Ordering::Relaxed);
        }
        let s = snapshot(
            Instant::now(),
            &workers,
            &ReadaheadCounters::default(),
            &ConsumerCounters::default(),
        );
        assert_eq!(s.workers, 3);
        assert_eq!(s.samples_filled, 15);
        assert_eq!(s.decode, Duration::from_millis(6));
        assert_eq!(std::mem::align_of::<WorkerCounters>(), 128);
    }
}
