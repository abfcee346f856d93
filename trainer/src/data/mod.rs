//! What the training loop eats: the [`DeviceLoader`] trait (batches already on the device,
//! normalised float NCHW in the model's memory format) and its implementations, one job per
//! file.
//!
//! | file | main types | job |
//! | --- | --- | --- |
//! | `mod.rs` | [`DeviceLoader`], [`DeviceBatch`], [`DataError`] | the trait the loop consumes |
//! | [`synthetic`] | [`SyntheticLoader`], [`SyntheticConfig`] | learnable batches made on the device (measures the trainer alone) |
//! | [`host`] | [`HostBatchSource`], [`HostBatch`] | the trait of uint8 NHWC host batch producers (the shards pipeline) |
//! | [`memory`] | [`VecHostSource`], [`VecSourceConfig`] | a host source over images in a `Vec<u8>`, in the engine's epoch order |
//! | [`feeder`] | [`DeviceFeeder`] | any host source onto the device: staging slots, asynchronous copies, normalisation |
//! | [`normalize`] | [`ImageStats`], [`Normalizer`] | uint8 NHWC → normalised float NCHW on the device |
//! | `staging.rs` | (crate-private) | pinned host tensors and uploads shared by the loaders |
//!
//! Positions are the engine's [`Position`] `(epoch, batch)`, and sample orders are the engine's
//! ([`shardfeed_engine::sampler`]): [`DeviceLoader::start_epoch`] with `skip_batches` resumes
//! exactly.
//!
//! ```
//! use shardfeed_trainer::data::{DeviceFeeder, DeviceLoader, ImageStats, VecHostSource, VecSourceConfig};
//! use shardfeed_trainer::precision::MemoryFormat;
//! let (n, h, w) = (8, 4, 4);
//! let config = VecSourceConfig { size: (h, w), batch: 4, ..VecSourceConfig::default() };
//! let src = VecHostSource::new(vec![128u8; n * h * w * 3], (0..n as u32).collect(), &config)?;
//! let mut loader = DeviceFeeder::new(src, tch::Device::Cpu, ImageStats::IMAGENET, MemoryFormat::Contiguous);
//! loader.start_epoch(0, 0)?;
//! let batch = loader.next_batch()?.expect("a batch");
//! assert_eq!(batch.images.size(), vec![4, 3, 4, 4]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod feeder;
pub mod host;
pub mod memory;
pub mod normalize;
mod staging;
pub mod synthetic;

use tch::Tensor;

use crate::precision::ShimError;

pub use feeder::DeviceFeeder;
pub use host::{HostBatch, HostBatchSource};
pub use memory::{VecHostSource, VecSourceConfig};
pub use normalize::{ImageStats, Normalizer};
/// Where a loader is: the next batch it yields is batch `batch` of epoch `epoch` (the engine's
/// resume point, also what checkpoints record).
pub use shardfeed_engine::loader::Position;
pub use synthetic::{SyntheticConfig, SyntheticLoader};

/// A loader failed to produce a batch.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The source's data is not what it claims (names the batch).
    #[error("epoch {epoch}, batch {batch}: {reason}")]
    BadBatch {
        /// Epoch of the batch.
        epoch: u64,
        /// Batch index within the epoch.
        batch: u64,
        /// What is wrong.
        reason: String,
    },
    /// A source was configured inconsistently.
    #[error("invalid loader configuration: {0}")]
    Config(String),
    /// The underlying source failed (shards pipeline I/O, decode, ...).
    #[error("source: {0}")]
    Source(String),
    /// The feeding thread stopped unexpectedly.
    #[error("the feeding thread stopped: {0}")]
    FeederGone(String),
    /// A libtorch call failed.
    #[error(transparent)]
    Torch(#[from] tch::TchError),
    /// A memory-format conversion failed.
    #[error(transparent)]
    Shim(#[from] ShimError),
}

/// A batch on the training device.
pub struct DeviceBatch {
    /// `[B, 3, H, W]` float, normalised, in the loader's memory format.
    pub images: Tensor,
    /// `[B]` int64 class indices.
    pub labels: Tensor,
}

/// A source of device batches, epoch by epoch. The training loop consumes only this trait.
///
/// (Not to be confused with the engine's `shardfeed_engine::loader::Loader`, which makes uint8
/// host batches; [`crate::shards`] adapts that one to [`HostBatchSource`].)
pub trait DeviceLoader {
    /// Images per batch on this replica.
    fn batch_size(&self) -> usize;
    /// Batches per epoch on this replica (all replicas see the same number).
    fn batches_per_epoch(&self) -> u64;
    /// Starts epoch `epoch` (its own shuffle), skipping its first `skip_batches` batches (resume).
    fn start_epoch(&mut self, epoch: u64, skip_batches: u64) -> Result<(), DataError>;
    /// The next batch of the current epoch, `None` at its end.
    ///
    /// Host staging memory of a batch may be reused two calls later: the caller must have waited
    /// for the step that consumed batch `k` before asking for batch `k + 2` (the trainer does: it
    /// reads each step's loss one step later).
    fn next_batch(&mut self) -> Result<Option<DeviceBatch>, DataError>;
}
