//! Sample order: which records each rank reads in an epoch, and in which order. Pure: no I/O, no
//! threads, no clock; the order is a function of an [`EpochSpec`] alone, so every rank of a
//! distributed job computes the same global order without talking to the others, and a resumed
//! run sees exactly the order it stopped in.
//!
//! - [`plan_epoch`] → [`RankOrder`]: this rank's [`Sample`]s, each a (global position, record)
//!   pair. The position is the sample's place in the epoch's global order: it is unique even for
//!   the duplicates that padding adds, and it is what seeds the sample's augmentation
//!   (`SampleKey::index`).
//! - [`epoch_order`]: the epoch's global order of record numbers, before it is cut into ranks.
//! - [`Shuffle`]: `Sequential` (evaluation), `Global` (a fresh permutation of all records each
//!   epoch) or `ShardWindow` (for data larger than RAM: shuffle the shards, then the records
//!   within each window of consecutive shards, so each stretch of the epoch reads few shards).
//! - [`LastBatch`]: every rank gets the same number of samples, so no rank of a distributed job
//!   waits forever for a batch another rank never makes: `Drop` leaves out the records that do
//!   not divide evenly, `Pad` repeats records from the start of the order (as PyTorch's
//!   `DistributedSampler` does).
//!
//! [`Partition`] says how the global order is cut into ranks:
//! - `Blocks` (the default): `world` contiguous blocks, rank `r` taking block `r`. With
//!   [`Shuffle::ShardWindow`] each rank therefore reads its own set of shards each epoch.
//! - `GlobalBatches`: the order is cut into global batches of `world * multiple_of` positions,
//!   and rank `r` takes the `r`-th slice of `multiple_of` of each. Global batch `b` of an epoch
//!   is then the same samples (the same positions, so the same augmentations) whatever the
//!   world size, as long as `world * multiple_of` (the global batch) is the same: a job
//!   checkpointed at 4 ranks resumes at 2 or 8 with exactly the batches it would have seen.
//!
//! ```
//! use shardfeed_engine::sampler::{plan_epoch, EpochSpec, LastBatch, Partition, Shuffle};
//!
//! // 10 records in two shards of 5, two ranks.
//! let spec = |rank| EpochSpec {
//!     records: 10,
//!     shard_starts: &[0, 5],
//!     seed: 7,
//!     epoch: 3,
//!     rank,
//!     world: 2,
//!     last_batch: LastBatch::Pad,
//!     multiple_of: 1,
//!     shuffle: Shuffle::Global,
//!     partition: Partition::Blocks,
//! };
//! let (a, b) = (plan_epoch(&spec(0))?, plan_epoch(&spec(1))?);
//! assert_eq!((a.samples.len(), b.samples.len()), (5, 5));
//! let mut all: Vec<u64> = a.samples.iter().chain(&b.samples).map(|s| s.record).collect();
//! all.sort();
//! assert_eq!(all, (0..10).collect::<Vec<_>>());
//! assert_eq!(plan_epoch(&spec(0))?, a, "a pure function of the spec");
//! # Ok::<(), shardfeed_engine::sampler::SamplerError>(())
//! ```

use crate::rng::{mix64, shuffle};

/// How the per-rank sample count is made equal across ranks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LastBatch {
    /// Leave out the last records of the epoch's order (fewer than `world * multiple_of`).
    Drop,
    /// Repeat records from the start of the epoch's order (fewer than `world * multiple_of`
    /// duplicates), so every record is read every epoch.
    #[default]
    Pad,
}

/// The order of records within an epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shuffle {
    /// Record order, every epoch (evaluation).
    Sequential,
    /// A fresh permutation of all records each epoch.
    Global,
    /// Shuffle the shards, then shuffle the records within each group of `window` consecutive
    /// shards (in the shuffled shard order). Each stretch of the epoch then touches `window`
    /// shards only: the choice for data larger than the page cache.
    ShardWindow {
        /// Shards per window, at least 1.
        window: usize,
    },
}

/// How the epoch's global order is shared out among the ranks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Partition {
    /// `world` contiguous blocks, block `rank` for rank `rank`.
    #[default]
    Blocks,
    /// Global batches of `world * multiple_of` consecutive positions; rank `r` takes positions
    /// `r * multiple_of .. (r + 1) * multiple_of` of each. Batch `b` of every rank is a slice
    /// of global batch `b`, which depends on the global batch size only, not on `world`.
    GlobalBatches,
}

/// One sample of a rank's epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Sample {
    /// Place in the epoch's global order, `0..epoch_len`; unique, including padding duplicates.
    pub position: u64,
    /// Global record number in the dataset.
    pub record: u64,
}

/// What an epoch's order depends on, and nothing else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochSpec<'a> {
    /// Records in the dataset, at least 1.
    pub records: u64,
    /// Global number of the first record of each shard (`Dataset::shard_starts`): starts at 0,
    /// never decreases. Only [`Shuffle::ShardWindow`] uses it.
    pub shard_starts: &'a [u64],
    /// The run's seed.
    pub seed: u64,
    /// The epoch.
    pub epoch: u64,
    /// This process's rank, `0..world`.
    pub rank: u32,
    /// Number of ranks, at least 1.
    pub world: u32,
    /// How counts are evened out.
    pub last_batch: LastBatch,
    /// Each rank's count is a multiple of this (the batch size, for full batches only; 1 to
    /// just balance the ranks).
    pub multiple_of: u64,
    /// The order.
    pub shuffle: Shuffle,
    /// How the order is shared out among the ranks.
    pub partition: Partition,
}

/// One rank's samples of one epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RankOrder {
    /// The epoch.
    pub epoch: u64,
    /// This rank's samples, in the order they are read.
    pub samples: Vec<Sample>,
    /// Samples in the epoch over all ranks: `samples.len() * world`. Positions at or past the
    /// dataset's record count are padding duplicates.
    pub epoch_len: u64,
    /// Records in the dataset.
    pub records: u64,
}

impl RankOrder {
    /// True when `sample` is a padding duplicate ([`LastBatch::Pad`]).
    pub fn is_padding(&self, sample: &Sample) -> bool {
        sample.position >= self.records
    }
}

/// Why an epoch cannot be planned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SamplerError {
    /// The dataset holds no records.
    #[error("the dataset holds no records")]
    Empty,
    /// `world` is 0.
    #[error("world size must be at least 1")]
    World,
    /// `rank` is not below `world`.
    #[error("rank {rank} is out of range for world size {world}")]
    Rank {
        /// The rank.
        rank: u32,
        /// The world size.
        world: u32,
    },
    /// `multiple_of` is 0.
    #[error("the per-rank sample count must be a multiple of at least 1")]
    Multiple,
    /// A shard window of 0 shards.
    #[error("a shard window holds at least one shard")]
    Window,
    /// The shard starts do not describe the dataset.
    #[error("shard starts {detail}")]
    ShardStarts {
        /// What is wrong.
        detail: String,
    },
    /// [`LastBatch::Drop`] would leave a rank with nothing.
    #[error(
        "{records} records cannot give each of {world} ranks a multiple of {multiple_of} samples \
         with drop: use pad, a smaller batch or fewer ranks"
    )]
    TooSmall {
        /// Records in the dataset.
        records: u64,
        /// Ranks.
        world: u32,
        /// The granule.
        multiple_of: u64,
    },
}

/// Samples per rank per epoch: `records` evened out to a multiple of `world * multiple_of`.
///
/// # Errors
///
/// [`SamplerError::Empty`], [`World`](SamplerError::World),
/// [`Multiple`](SamplerError::Multiple), or [`TooSmall`](SamplerError::TooSmall) when dropping
/// leaves nothing.
pub fn per_rank_count(
    records: u64,
    world: u32,
    multiple_of: u64,
    last_batch: LastBatch,
) -> Result<u64, SamplerError> {
    if records == 0 {
        return Err(SamplerError::Empty);
    }
    if world == 0 {
        return Err(SamplerError::World);
    }
    if multiple_of == 0 {
        return Err(SamplerError::Multiple);
    }
    let unit = u64::from(world).saturating_mul(multiple_of);
    let units = match last_batch {
        LastBatch::Drop => records / unit,
        LastBatch::Pad => records.div_ceil(unit),
    };
    if units == 0 {
        return Err(SamplerError::TooSmall {
            records,
            world,
            multiple_of,
        });
    }
    Ok(units * multiple_of)
}

/// Domain-separated seeds for the shuffles of one epoch.
fn shuffle_seed(seed: u64, epoch: u64, stream: u64, part: u64) -> u64 {
    let mut k = mix64(seed ^ 0x5341_4D50_4C45_5253); // "SAMPLERS"
    k = mix64(k ^ epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    k = mix64(k ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03));
    mix64(k ^ part.wrapping_mul(0x8CB9_2BA7_2F3D_8DD7))
}

const STREAM_GLOBAL: u64 = 1;
const STREAM_SHARDS: u64 = 2;
const STREAM_WINDOW: u64 = 3;

fn check_shard_starts(starts: &[u64], records: u64) -> Result<(), SamplerError> {
    let bad = |detail: String| Err(SamplerError::ShardStarts { detail });
    match starts.first() {
        None => return bad("are empty: a dataset with records has at least one shard".into()),
        Some(&first) if first != 0 => return bad(format!("begin at {first}, not 0")),
        Some(_) => {}
    }
    if let Some(w) = starts.windows(2).find(|w| w[1] < w[0]) {
        return bad(format!("decrease ({} then {})", w[0], w[1]));
    }
    if let Some(&last) = starts.last() {
        if last > records {
            return bad(format!("go past the {records} records ({last})"));
        }
    }
    Ok(())
}

/// The epoch's global order: every record number exactly once (a permutation of
/// `0..spec.records`), before padding, dropping and the cut into ranks.
///
/// # Errors
///
/// [`SamplerError::Empty`], [`Window`](SamplerError::Window), or
/// [`ShardStarts`](SamplerError::ShardStarts) for [`Shuffle::ShardWindow`].
pub fn epoch_order(spec: &EpochSpec<'_>) -> Result<Vec<u64>, SamplerError> {
    if spec.records == 0 {
        return Err(SamplerError::Empty);
    }
    let n = spec.records;
    match spec.shuffle {
        Shuffle::Sequential => Ok((0..n).collect()),
        Shuffle::Global => {
            let mut order: Vec<u64> = (0..n).collect();
            shuffle(
                &mut order,
                shuffle_seed(spec.seed, spec.epoch, STREAM_GLOBAL, 0),
            );
            Ok(order)
        }
        Shuffle::ShardWindow { window } => {
            if window == 0 {
                return Err(SamplerError::Window);
            }
            check_shard_starts(spec.shard_starts, n)?;
            let starts = spec.shard_starts;
            let end_of = |s: usize| starts.get(s + 1).copied().unwrap_or(n);
            let mut shards: Vec<usize> = (0..starts.len()).collect();
            shuffle(
                &mut shards,
                shuffle_seed(spec.seed, spec.epoch, STREAM_SHARDS, 0),
            );
            let mut order = Vec::with_capacity(n as usize);
            for (w, group) in shards.chunks(window).enumerate() {
                let from = order.len();
                for &s in group {
                    order.extend(starts[s]..end_of(s));
                }
                shuffle(
                    &mut order[from..],
                    shuffle_seed(spec.seed, spec.epoch, STREAM_WINDOW, w as u64),
                );
            }
            Ok(order)
        }
    }
}

/// This rank's samples of the epoch: the global order ([`epoch_order`]) evened out by
/// `last_batch` to `world` times [`per_rank_count`] samples, of which this rank takes its
/// share by `partition`: block `rank`, or slice `rank` of every global batch.
///
/// # Errors
///
/// Any [`SamplerError`]: the spec is checked before anything is computed.
pub fn plan_epoch(spec: &EpochSpec<'_>) -> Result<RankOrder, SamplerError> {
    let per_rank = per_rank_count(spec.records, spec.world, spec.multiple_of, spec.last_batch)?;
    if spec.rank >= spec.world {
        return Err(SamplerError::Rank {
            rank: spec.rank,
            world: spec.world,
        });
    }
    let order = epoch_order(spec)?;
    let n = spec.records;
    let (rank, world, m) = (
        u64::from(spec.rank),
        u64::from(spec.world),
        spec.multiple_of,
    );
    let position_of = |j: u64| match spec.partition {
        Partition::Blocks => rank * per_rank + j,
        // Slice `rank` of global batch `j / m` (`per_rank` is a multiple of `m`).
        Partition::GlobalBatches => (j / m) * m * world + rank * m + j % m,
    };
    let samples = (0..per_rank)
        .map(position_of)
        .map(|position| Sample {
            position,
            // Padding wraps around to the start of the order (more than once for a dataset
            // smaller than the world).
            record: order[(position % n) as usize],
        })
        .collect();
    Ok(RankOrder {
        epoch: spec.epoch,
        samples,
        epoch_len: per_rank * u64::from(spec.world),
        records: n,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::{BTreeMap, BTreeSet};

    fn spec(records: u64, starts: &[u64], world: u32, rank: u32) -> EpochSpec<'_> {
        EpochSpec {
            records,
            shard_starts: starts,
            seed: 11,
            epoch: 0,
            rank,
            world,
            last_batch: LastBatch::Pad,
            multiple_of: 1,
            shuffle: Shuffle::Global,
            partition: Partition::Blocks,
        }
    }

    fn all_ranks(spec: &EpochSpec<'_>) -> Vec<RankOrder> {
        (0..spec.world)
            .map(|rank| plan_epoch(&EpochSpec { rank, ..*spec }).expect("plans"))
            .collect()
    }

    /// Shard starts for `sizes` records per shard.
    fn starts_of(sizes: &[u64]) -> Vec<u64> {
        sizes
            .iter()
            .scan(0, |acc, &s| {
                let start = *acc;
                *acc += s;
                Some(start)
            })
            .collect()
    }

    fn any_spec() -> impl Strategy<Value = (Vec<u64>, u32, u64, LastBatch, Shuffle, u64, u64)> {
        (
            prop::collection::vec(0u64..40, 1..12),
            1u32..9,
            1u64..6,
            prop_oneof![Just(LastBatch::Drop), Just(LastBatch::Pad)],
            prop_oneof![
                Just(Shuffle::Sequential),
                Just(Shuffle::Global),
                (1usize..5).prop_map(|window| Shuffle::ShardWindow { window }),
            ],
            any::<u64>(),
            0u64..1000,
        )
            .prop_filter("at least one record", |(sizes, ..)| {
                sizes.iter().sum::<u64>() > 0
            })
    }

    proptest! {
        #[test]
        fn ranks_get_equal_counts_and_their_union_is_the_epoch(
            (sizes, world, multiple_of, last_batch, shuffle, seed, epoch) in any_spec()
        ) {
            let starts = starts_of(&sizes);
            let records: u64 = sizes.iter().sum();
            let s = EpochSpec {
                records, shard_starts: &starts, seed, epoch, rank: 0, world, last_batch,
                multiple_of, shuffle, partition: Partition::Blocks,
            };
            let unit = u64::from(world) * multiple_of;
            if last_batch == LastBatch::Drop && records < unit {
                prop_assert_eq!(plan_epoch(&s), Err(SamplerError::TooSmall { records, world, multiple_of }));
                return Ok(());
            }
            let ranks = all_ranks(&s);
            let per_rank = ranks[0].samples.len() as u64;
            prop_assert!(ranks.iter().all(|r| r.samples.len() as u64 == per_rank));
            prop_assert_eq!(per_rank % multiple_of, 0);
            let total = per_rank * u64::from(world);
            prop_assert!(ranks.iter().all(|r| r.epoch_len == total));
            // Positions are 0..total, each once, rank by rank.
            let positions: Vec<u64> = ranks.iter().flat_map(|r| r.samples.iter().map(|x| x.position)).collect();
            prop_assert_eq!(positions, (0..total).collect::<Vec<_>>());
            let mut counts: BTreeMap<u64, u64> = BTreeMap::new();
            for r in &ranks {
                for x in &r.samples {
                    *counts.entry(x.record).or_default() += 1;
                    prop_assert!(x.record < records);
                    prop_assert_eq!(r.is_padding(x), x.position >= records);
                }
            }
            match last_batch {
                LastBatch::Drop => {
                    prop_assert!(records - total < unit, "drops fewer than world * multiple");
                    prop_assert_eq!(counts.len() as u64, total, "no record twice");
                }
                LastBatch::Pad => {
                    prop_assert!(total - records < unit, "pads fewer than world * multiple");
                    prop_assert_eq!(counts.len() as u64, records, "every record");
                    // Only the padding positions are extra copies.
                    let extra: u64 = counts.values().map(|c| c - 1).sum();
                    prop_assert_eq!(extra, total - records);
                }
            }
        }

        /// Elastic resume: with global batches, global batch `b` is the same positions and
        /// records whatever the world size, as long as the global batch is the same; each rank
        /// holds a contiguous slice of it, and the union over ranks is the Blocks epoch.
        #[test]
        fn global_batches_do_not_depend_on_the_world_size(
            (sizes, _, _, last_batch, shuffle, seed, epoch) in any_spec(),
            global in prop::sample::select(vec![4u64, 8, 12]),
        ) {
            let starts = starts_of(&sizes);
            let records: u64 = sizes.iter().sum();
            prop_assume!(records >= global);
            // `global` shared out among world sizes 1, 2 and 4 (where it divides).
            let batches = |world: u32| -> Vec<Vec<Sample>> {
                let m = global / u64::from(world);
                let s = EpochSpec {
                    records, shard_starts: &starts, seed, epoch, rank: 0, world, last_batch,
                    multiple_of: m, shuffle, partition: Partition::GlobalBatches,
                };
                let ranks = all_ranks(&s);
                let per_rank = ranks[0].samples.len() / m as usize;
                (0..per_rank).map(|b| {
                    ranks.iter()
                        .flat_map(|r| r.samples[b * m as usize..(b + 1) * m as usize].iter().copied())
                        .collect()
                }).collect()
            };
            let one = batches(1);
            for world in [2u32, 4] {
                if global % u64::from(world) == 0 {
                    prop_assert_eq!(&batches(world), &one, "world {}", world);
                }
            }
            // World 1 is the plain order: global batch b holds positions b*G..(b+1)*G.
            for (b, batch) in one.iter().enumerate() {
                let positions: Vec<u64> = batch.iter().map(|x| x.position).collect();
                prop_assert_eq!(positions, (b as u64 * global..(b as u64 + 1) * global).collect::<Vec<_>>());
            }
        }

        #[test]
        fn the_order_is_a_pure_permutation(
            (sizes, world, multiple_of, last_batch, shuffle, seed, epoch) in any_spec()
        ) {
            let starts = starts_of(&sizes);
            let records: u64 = sizes.iter().sum();
            let s = EpochSpec {
                records, shard_starts: &starts, seed, epoch, rank: world - 1, world, last_batch,
                multiple_of, shuffle, partition: Partition::Blocks,
            };
            let order = epoch_order(&s).expect("orders");
            prop_assert_eq!(&order, &epoch_order(&s).expect("orders"));
            let mut sorted = order.clone();
            sorted.sort_unstable();
            prop_assert_eq!(sorted, (0..records).collect::<Vec<_>>());
            prop_assert_eq!(plan_epoch(&s), plan_epoch(&s));
        }

        #[test]
        fn a_shard_window_reads_few_shards_at_a_time(
            sizes in prop::collection::vec(1u64..30, 1..15),
            window in 1usize..5,
            seed in any::<u64>(),
        ) {
            let starts = starts_of(&sizes);
            let records: u64 = sizes.iter().sum();
            let s = EpochSpec {
                shuffle: Shuffle::ShardWindow { window },
                seed,
                ..spec(records, &starts, 1, 0)
            };
            let order = epoch_order(&s).expect("orders");
            let shard_of = |g: u64| starts.partition_point(|&st| st <= g) - 1;
            // Cut the order where windows end: each window is a run of whole shards.
            let mut at = 0usize;
            while at < order.len() {
                let mut shards = BTreeSet::new();
                let mut len = 0u64;
                let mut end = at;
                // Grow the window until it covers its shards' records exactly.
                loop {
                    shards.insert(shard_of(order[end]));
                    end += 1;
                    let need: u64 = shards.iter().map(|&sh| sizes[sh]).sum();
                    len += 1;
                    if len == need { break; }
                }
                prop_assert!(shards.len() <= window, "{shards:?} in one window of {window}");
                at = end;
            }
        }
    }

    /// Golden values: the epoch orders the project has produced since v0.1. "Reproducible
    /// forever" is a promise to users resuming a run or comparing two; a change of these numbers
    /// (a new shuffle, a different seed derivation) must be a deliberate, documented break.
    #[test]
    fn golden_epoch_orders() {
        let starts = [0, 4, 8, 12];
        let order = |shuffle, epoch| {
            epoch_order(&EpochSpec {
                epoch,
                shuffle,
                ..spec(16, &starts, 1, 0)
            })
            .expect("orders")
        };
        assert_eq!(order(Shuffle::Global, 0), GOLDEN_GLOBAL_EPOCH_0);
        assert_eq!(order(Shuffle::Global, 5), GOLDEN_GLOBAL_EPOCH_5);
        assert_eq!(
            order(Shuffle::ShardWindow { window: 2 }, 1),
            GOLDEN_WINDOW_2_EPOCH_1
        );
        let rank1 = plan_epoch(&EpochSpec {
            epoch: 2,
            ..spec(10, &starts[..3], 3, 1)
        })
        .expect("plans");
        let pairs: Vec<(u64, u64)> = rank1
            .samples
            .iter()
            .map(|s| (s.position, s.record))
            .collect();
        assert_eq!(pairs, GOLDEN_RANK_1_OF_3_EPOCH_2);
    }

    const GOLDEN_GLOBAL_EPOCH_0: [u64; 16] = [6, 15, 13, 8, 1, 4, 0, 11, 7, 5, 14, 12, 3, 9, 2, 10];
    const GOLDEN_GLOBAL_EPOCH_5: [u64; 16] = [12, 6, 4, 2, 0, 7, 3, 10, 5, 1, 13, 15, 8, 14, 11, 9];
    const GOLDEN_WINDOW_2_EPOCH_1: [u64; 16] =
        [13, 12, 0, 15, 14, 1, 2, 3, 5, 11, 10, 6, 8, 4, 7, 9];
    const GOLDEN_RANK_1_OF_3_EPOCH_2: [(u64, u64); 4] = [(4, 9), (5, 5), (6, 0), (7, 3)];

    #[test]
    fn every_epoch_has_a_fresh_permutation() {
        let starts = [0, 100, 200, 300];
        for shuffle in [Shuffle::Global, Shuffle::ShardWindow { window: 2 }] {
            let orders: Vec<Vec<u64>> = (0..4)
                .map(|epoch| {
                    epoch_order(&EpochSpec {
                        epoch,
                        shuffle,
                        ..spec(400, &starts, 1, 0)
                    })
                    .expect("orders")
                })
                .collect();
            for a in 0..orders.len() {
                for b in a + 1..orders.len() {
                    assert_ne!(orders[a], orders[b], "{shuffle:?}: epochs {a} and {b}");
                }
            }
            let other_seed = epoch_order(&EpochSpec {
                seed: 12,
                shuffle,
                ..spec(400, &starts, 1, 0)
            })
            .expect("orders");
            assert_ne!(orders[0], other_seed, "{shuffle:?}: the seed matters");
        }
        let sequential = EpochSpec {
            shuffle: Shuffle::Sequential,
            ..spec(5, &starts[..1], 1, 0)
        };
        assert_eq!(epoch_order(&sequential), Ok(vec![0, 1, 2, 3, 4]));
    }

    #[test]
    fn padding_repeats_the_start_of_the_order_and_is_marked() {
        let s = EpochSpec {
            shuffle: Shuffle::Sequential,
            ..spec(5, &[0], 4, 3)
        };
        // 5 records over 4 ranks: 2 each, 3 duplicates at positions 5..8.
        let r = plan_epoch(&s).expect("plans");
        assert_eq!(
            r.samples,
            [
                Sample {
                    position: 6,
                    record: 1
                },
                Sample {
                    position: 7,
                    record: 2
                }
            ]
        );
        assert!(r.samples.iter().all(|x| r.is_padding(x)));
        // A dataset smaller than the world wraps more than once.
        let tiny = plan_epoch(&EpochSpec {
            shuffle: Shuffle::Sequential,
            ..spec(2, &[0], 5, 4)
        })
        .expect("plans");
        assert_eq!(tiny.samples[0].record, 0);
    }

    #[test]
    fn multiple_of_gives_whole_batches() {
        let pad = plan_epoch(&EpochSpec {
            multiple_of: 4,
            ..spec(10, &[0], 2, 1)
        })
        .expect("plans");
        assert_eq!(pad.samples.len(), 8);
        let drop = plan_epoch(&EpochSpec {
            multiple_of: 4,
            last_batch: LastBatch::Drop,
            ..spec(10, &[0], 2, 1)
        })
        .expect("plans");
        assert_eq!(drop.samples.len(), 4);
    }

    #[test]
    fn bad_specs_are_errors() {
        assert_eq!(plan_epoch(&spec(0, &[0], 1, 0)), Err(SamplerError::Empty));
        assert_eq!(plan_epoch(&spec(5, &[0], 0, 0)), Err(SamplerError::World));
        assert_eq!(
            plan_epoch(&spec(5, &[0], 2, 2)),
            Err(SamplerError::Rank { rank: 2, world: 2 })
        );
        assert_eq!(
            plan_epoch(&EpochSpec {
                multiple_of: 0,
                ..spec(5, &[0], 1, 0)
            }),
            Err(SamplerError::Multiple)
        );
        assert_eq!(
            plan_epoch(&EpochSpec {
                last_batch: LastBatch::Drop,
                ..spec(3, &[0], 4, 0)
            }),
            Err(SamplerError::TooSmall {
                records: 3,
                world: 4,
                multiple_of: 1
            })
        );
        let window = |starts: &'static [u64], window| {
            plan_epoch(&EpochSpec {
                shuffle: Shuffle::ShardWindow { window },
                ..spec(10, starts, 1, 0)
            })
        };
        assert_eq!(window(&[0, 5], 0), Err(SamplerError::Window));
        assert!(matches!(
            window(&[], 1),
            Err(SamplerError::ShardStarts { .. })
        ));
        assert!(matches!(
            window(&[1, 5], 1),
            Err(SamplerError::ShardStarts { .. })
        ));
        assert!(matches!(
            window(&[0, 6, 5], 1),
            Err(SamplerError::ShardStarts { .. })
        ));
        assert!(matches!(
            window(&[0, 11], 1),
            Err(SamplerError::ShardStarts { .. })
        ));
    }
}
