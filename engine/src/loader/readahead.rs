//! The readahead thread: told which records the workers will need a few batches from now
//! ([`Hint`]), it asks the kernel to start reading them into the page cache
//! (`posix_fadvise(POSIX_FADV_WILLNEED)`, which returns at once and reads in the background), so
//! workers that reach those records find them in memory instead of waiting on the disk.
//!
//! Records of one batch that lie close together in the same shard are advised as one range
//! ([`plan_ranges`], pure), which also covers the [`ShardWindow`](crate::sampler::Shuffle)
//! order, where a batch's records come from a few shards. On systems without `fadvise` the
//! thread does nothing.

use crate::loader::metrics::ReadaheadCounters;
use crate::sampler::RankOrder;
use crossbeam_channel::Receiver;
use shardfeed_shards::Dataset;
use std::fs::File;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Records `first..first + len` of `order` will be needed soon.
pub(crate) struct Hint {
    pub order: Arc<RankOrder>,
    pub first: usize,
    pub len: usize,
}

/// A byte range of one shard file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Extent {
    pub shard: usize,
    pub offset: u64,
    pub len: u64,
}

/// Ranges closer than this are advised as one: reading a small gap costs less than another
/// request on a disk that seeks.
const MERGE_GAP: u64 = 64 << 10;

/// Sorts `extents` and merges those of the same shard that overlap or lie within
/// [`MERGE_GAP`] of each other, in place.
pub(crate) fn plan_ranges(extents: &mut Vec<Extent>) {
    extents.sort_unstable();
    let mut out = 0usize;
    for i in 0..extents.len() {
        let e = extents[i];
        if out > 0 {
            let last = &mut extents[out - 1];
            let end = last.offset + last.len;
            if last.shard == e.shard && e.offset <= end + MERGE_GAP {
                last.len = end.max(e.offset + e.len) - last.offset;
                continue;
            }
        }
        extents[out] = e;
        out += 1;
    }
    extents.truncate(out);
}

/// The thread's loop; ends when the dispatcher hangs up.
pub(crate) fn run(dataset: &Dataset, hints: &Receiver<Hint>, counters: &ReadaheadCounters) {
    let shards = dataset.shards();
    let mut extents: Vec<Extent> = Vec::new();
    while let Ok(hint) = hints.recv() {
        extents.clear();
        for s in &hint.order.samples[hint.first..hint.first + hint.len] {
            let Ok((shard, local)) = dataset.locate(s.record) else {
                continue;
            };
            let Ok(entry) = shards[shard].entry(local) else {
                continue;
            };
            extents.push(Extent {
                shard,
                offset: entry.offset,
                len: u64::from(entry.len),
            });
        }
        plan_ranges(&mut extents);
        for e in &extents {
            // The reader's own open file: no second open, which could find another file at
            // the path (or a FIFO, and block) if the dataset was changed.
            if let Some(f) = shards[e.shard].file() {
                if advise_willneed(f, e.offset, e.len) {
                    counters.bytes.fetch_add(e.len, Ordering::Relaxed);
                }
            }
        }
        counters.batches.fetch_add(1, Ordering::Relaxed);
    }
}

/// Asks the kernel to read `len` bytes at `offset` of `file` into the page cache; true when it
/// accepted.
#[cfg(target_os = "linux")]
fn advise_willneed(file: &File, offset: u64, len: u64) -> bool {
    rustix::fs::fadvise(
        file,
        offset,
        std::num::NonZeroU64::new(len),
        rustix::fs::Advice::WillNeed,
    )
    .is_ok()
}

#[cfg(not(target_os = "linux"))]
fn advise_willneed(_file: &File, _offset: u64, _len: u64) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(shard: usize, offset: u64, len: u64) -> Extent {
        Extent { shard, offset, len }
    }

    #[test]
    fn near_ranges_of_a_shard_merge_and_others_do_not() {
        let mut v = vec![
            e(1, 1_000_000, 100),
            e(0, 500, 100),
            e(0, 0, 100),
            e(0, 300_000, 10),
            e(1, 1_000_050, 200),
            e(2, 0, 1),
        ];
        plan_ranges(&mut v);
        assert_eq!(
            v,
            [
                e(0, 0, 600),
                e(0, 300_000, 10),
                e(1, 1_000_000, 250),
                e(2, 0, 1)
            ]
        );
        let mut empty = Vec::new();
        plan_ranges(&mut empty);
        assert!(empty.is_empty());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_kernel_accepts_the_advice() {
        let mut f = tempfile::NamedTempFile::new().expect("temp file");
        std::io::Write::write_all(&mut f, &[7u8; 8192]).expect("write");
        assert!(advise_willneed(f.as_file(), 0, 8192));
    }
}
