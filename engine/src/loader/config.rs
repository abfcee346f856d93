//! [`LoaderConfig`]: everything a [`Loader`](super::Loader) is told, with the defaults of the
//! usual ImageNet recipes ([`LoaderConfig::train`], [`LoaderConfig::val`]); and
//! [`TransformSchedule`], the transform of each epoch (progressive resizing).

use crate::augment::{
    Augmenter, DecodeLimits, JpegBackend, TrainTransform, Transform, TransformError, ValTransform,
};
use crate::sampler::{LastBatch, Partition, Shuffle};

/// The transform of each epoch: a constant, or steps (`from_epoch`, transform) for progressive
/// resizing as FFCV's ImageNet recipe does (small images early, full size at the end).
///
/// ```
/// use shardfeed_engine::augment::{TrainTransform, Transform};
/// use shardfeed_engine::loader::TransformSchedule;
///
/// let schedule = TransformSchedule::new(Transform::Train(TrainTransform::new(160)))
///     .from_epoch(10, Transform::Train(TrainTransform::new(192)));
/// assert_eq!(schedule.at(9).size(), 160);
/// assert_eq!(schedule.at(10).size(), 192);
/// assert_eq!(schedule.max_output_len(), 192 * 192 * 3);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct TransformSchedule {
    /// (first epoch, transform), sorted by epoch, the first at epoch 0.
    steps: Vec<(u64, Transform)>,
}

impl TransformSchedule {
    /// `transform` for every epoch.
    pub fn new(transform: Transform) -> Self {
        TransformSchedule {
            steps: vec![(0, transform)],
        }
    }

    /// Uses `transform` from `epoch` on (until a later step), replacing any step at that epoch.
    #[must_use]
    pub fn from_epoch(mut self, epoch: u64, transform: Transform) -> Self {
        match self.steps.binary_search_by_key(&epoch, |s| s.0) {
            Ok(i) => self.steps[i].1 = transform,
            Err(i) => self.steps.insert(i, (epoch, transform)),
        }
        self
    }

    /// The transform of `epoch`.
    pub fn at(&self, epoch: u64) -> Transform {
        let i = self.steps.partition_point(|s| s.0 <= epoch);
        // steps[0] is at epoch 0, so i >= 1.
        self.steps[i.saturating_sub(1)].1
    }

    /// The steps, sorted by epoch.
    pub fn steps(&self) -> &[(u64, Transform)] {
        &self.steps
    }

    /// The largest output of any step, in bytes per image: what batch buffers are sized for.
    pub fn max_output_len(&self) -> usize {
        self.steps
            .iter()
            .map(|s| s.1.output_len())
            .max()
            .unwrap_or(0)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        for &(epoch, t) in &self.steps {
            t.validate()
                .map_err(|error| ConfigError::Transform { epoch, error })?;
        }
        Ok(())
    }
}

impl From<Transform> for TransformSchedule {
    fn from(t: Transform) -> Self {
        TransformSchedule::new(t)
    }
}

/// How a [`Loader`](super::Loader) reads, orders, augments and batches. Build one with
/// [`LoaderConfig::train`] or [`LoaderConfig::val`] and change fields with struct-update syntax:
///
/// ```
/// use shardfeed_engine::loader::LoaderConfig;
/// use shardfeed_engine::sampler::LastBatch;
///
/// let config = LoaderConfig { batch_size: 256, rank: 3, world: 8, last_batch: LastBatch::Drop,
///                             ..LoaderConfig::train(224) };
/// assert!(config.validate().is_ok());
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct LoaderConfig {
    /// The transform of each epoch. Default: train, torchvision's `RandomResizedCrop` + flip.
    pub transform: TransformSchedule,
    /// Images per batch (the last batch of an epoch may hold fewer unless
    /// [`full_batches`](Self::full_batches)). Default 256.
    pub batch_size: usize,
    /// Decode-and-augment threads; 0 means one per available core. Default 0.
    pub workers: usize,
    /// Batch buffers, at least 2: batches being filled, ready, or held by the caller together
    /// never exceed it, so memory is `prefetch * batch_size * size² * 3` bytes whatever the
    /// speed of the consumer. Default 4.
    pub prefetch: usize,
    /// How many batches ahead of the workers a readahead thread asks the kernel to read the
    /// records (`posix_fadvise(WILLNEED)`), so a cold page cache does not stall the workers;
    /// 0 turns it off. Default 8.
    pub readahead: usize,
    /// The seed of the order and of every augmentation. Default 0.
    pub seed: u64,
    /// The order of records each epoch. Default [`Shuffle::Global`].
    pub shuffle: Shuffle,
    /// This process's rank in a distributed job. Default 0.
    pub rank: u32,
    /// The number of ranks. Default 1.
    pub world: u32,
    /// How the ranks' counts are evened out. Default [`LastBatch::Pad`].
    pub last_batch: LastBatch,
    /// How the epoch is shared out among the ranks. Default [`Partition::Blocks`];
    /// [`Partition::GlobalBatches`] (needs `full_batches`) makes batch `b` of every rank a
    /// slice of global batch `b`, the same samples whatever the world size.
    pub partition: Partition,
    /// Round each rank's count (by `last_batch`) to whole batches, so every batch holds
    /// `batch_size` images. Default `false` (the last batch may be short).
    pub full_batches: bool,
    /// A record that cannot be read or decoded is an error instead of being replaced.
    /// Default `false`.
    pub strict: bool,
    /// Benchmark baseline: decode every image in full and make no pixels (batches then hold
    /// labels and ids, their images are unspecified). Default `false`.
    pub decode_only: bool,
    /// The stream stops after this many epochs (epochs `0..n`); `None` prefetches into the next
    /// epoch whenever one ends. Default `None`.
    pub epochs: Option<u64>,
    /// The JPEG decoder: libjpeg-turbo, which decodes only the crop's region (default), or
    /// zune-jpeg, which decodes whole images (the baseline it is measured against).
    pub decoder: JpegBackend,
    /// Let libjpeg-turbo downscale large crops inside the inverse DCT while they stay at least
    /// twice the output size (see `Augmenter::set_dct_downscale`). Default `false`: pixels as
    /// torchvision's.
    pub dct_downscale: bool,
    /// What an image's headers may declare: a record over it (a decompression bomb) fails from
    /// its header, before any buffer grows, and is replaced as any failed record. Default:
    /// Pillow's `MAX_IMAGE_PIXELS`.
    pub decode_limits: DecodeLimits,
}

impl LoaderConfig {
    /// The ImageNet training recipe at output size `size`: `RandomResizedCrop(size)` + flip,
    /// a fresh global shuffle each epoch.
    pub fn train(size: u32) -> Self {
        LoaderConfig {
            transform: Transform::Train(TrainTransform::new(size)).into(),
            batch_size: 256,
            workers: 0,
            prefetch: 4,
            readahead: 8,
            seed: 0,
            shuffle: Shuffle::Global,
            rank: 0,
            world: 1,
            last_batch: LastBatch::Pad,
            partition: Partition::Blocks,
            full_batches: false,
            strict: false,
            decode_only: false,
            epochs: None,
            decoder: JpegBackend::Turbo,
            dct_downscale: false,
            decode_limits: DecodeLimits::default(),
        }
    }

    /// The ImageNet evaluation recipe at output size `size`: resize to `size / 0.875`,
    /// centre crop, records in order.
    pub fn val(size: u32) -> Self {
        LoaderConfig {
            transform: Transform::Val(ValTransform::new(size)).into(),
            shuffle: Shuffle::Sequential,
            ..LoaderConfig::train(size)
        }
    }

    /// A worker's augmenter, as this config asks.
    pub fn augmenter(&self) -> Augmenter {
        let mut augmenter = Augmenter::with_backend(self.decoder);
        augmenter.set_dct_downscale(self.dct_downscale);
        augmenter.set_decode_limits(self.decode_limits);
        augmenter
    }

    /// The number of worker threads this config gives.
    pub fn worker_count(&self) -> usize {
        if self.workers == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            self.workers
        }
    }

    /// Checks the numbers (the sampler checks rank and world against the dataset).
    ///
    /// # Errors
    ///
    /// The first [`ConfigError`] found.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.batch_size == 0 {
            return Err(ConfigError::BatchSize);
        }
        if self.prefetch < 2 {
            return Err(ConfigError::Prefetch(self.prefetch));
        }
        if self.workers > MAX_WORKERS {
            return Err(ConfigError::Workers(self.workers));
        }
        if self.epochs == Some(0) {
            return Err(ConfigError::Epochs);
        }
        if self.partition == Partition::GlobalBatches && !self.full_batches {
            return Err(ConfigError::GlobalBatchesNeedFullBatches);
        }
        let buffer = (self.batch_size as u128) * (self.transform.max_output_len() as u128);
        if buffer > MAX_BATCH_BYTES as u128 {
            return Err(ConfigError::BatchTooLarge {
                batch_size: self.batch_size,
                image_bytes: self.transform.max_output_len(),
            });
        }
        self.transform.validate()
    }
}

/// More threads than this is a typo.
const MAX_WORKERS: usize = 4096;
/// One batch buffer at most (64 GiB).
const MAX_BATCH_BYTES: u64 = 64 << 30;

/// Why a [`LoaderConfig`] is not usable.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    /// `batch_size` is 0.
    #[error("batch size must be at least 1")]
    BatchSize,
    /// `prefetch` is below 2.
    #[error("prefetch {0} is too small: at least 2 batch buffers are needed (one being filled, one being read)")]
    Prefetch(usize),
    /// Absurdly many workers.
    #[error("{0} workers is more than the {MAX_WORKERS} this loader allows")]
    Workers(usize),
    /// `epochs` is `Some(0)`.
    #[error("epochs must be at least 1 when given")]
    Epochs,
    /// [`Partition::GlobalBatches`] without `full_batches`.
    #[error("global-batch partitioning needs full batches (every rank's batch b a whole slice of global batch b)")]
    GlobalBatchesNeedFullBatches,
    /// One batch buffer would not fit in memory.
    #[error("a batch of {batch_size} images of {image_bytes} bytes is larger than 64 GiB")]
    BatchTooLarge {
        /// Images per batch.
        batch_size: usize,
        /// Bytes per image.
        image_bytes: usize,
    },
    /// A transform of the schedule is invalid.
    #[error("the transform from epoch {epoch}: {error}")]
    Transform {
        /// The step's first epoch.
        epoch: u64,
        /// What is wrong (part of the message, so not also given as `source()`).
        error: TransformError,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_picks_the_last_step_at_or_before_the_epoch() {
        let t = |s| Transform::Train(TrainTransform::new(s));
        let schedule = TransformSchedule::new(t(128))
            .from_epoch(5, t(192))
            .from_epoch(2, t(160))
            .from_epoch(5, t(176));
        let sizes: Vec<u32> = (0..7).map(|e| schedule.at(e).size()).collect();
        assert_eq!(sizes, [128, 128, 160, 160, 160, 176, 176]);
        assert_eq!(schedule.steps().len(), 3);
        assert_eq!(schedule.max_output_len(), 176 * 176 * 3);
        assert_eq!(
            TransformSchedule::new(t(128)).from_epoch(0, t(64)).at(0),
            t(64)
        );
    }

    #[test]
    fn bad_configs_are_named() {
        let base = LoaderConfig::train(64);
        assert_eq!(base.validate(), Ok(()));
        assert_eq!(LoaderConfig::val(64).validate(), Ok(()));
        let bad = |c: LoaderConfig| c.validate().expect_err("invalid");
        assert_eq!(
            bad(LoaderConfig {
                batch_size: 0,
                ..base.clone()
            }),
            ConfigError::BatchSize
        );
        assert_eq!(
            bad(LoaderConfig {
                prefetch: 1,
                ..base.clone()
            }),
            ConfigError::Prefetch(1)
        );
        assert_eq!(
            bad(LoaderConfig {
                epochs: Some(0),
                ..base.clone()
            }),
            ConfigError::Epochs
        );
        assert!(matches!(
            bad(LoaderConfig {
                batch_size: 1 << 30,
                ..base.clone()
            }),
            ConfigError::BatchTooLarge { .. }
        ));
        let e = bad(LoaderConfig {
            transform: TransformSchedule::new(base.transform.at(0))
                .from_epoch(3, Transform::Train(TrainTransform::new(0))),
            ..base
        });
        assert!(
            e.to_string().starts_with("the transform from epoch 3:"),
            "{e}"
        );
    }
}
