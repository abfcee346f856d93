//! The shards pipeline as a trainer loader: [`ShardsSource`] adapts the engine's
//! [`shardfeed_engine::loader::Loader`] (decode and augment on every core, uint8 NHWC batches in a fixed
//! pool of buffers) to [`HostBatchSource`]; wrap it in a [`DeviceFeeder`] to get a
//! [`DeviceLoader`](crate::data::DeviceLoader) the training loop eats.
//!
//! ```no_run
//! use shardfeed_trainer::data::{DeviceFeeder, ImageStats};
//! use shardfeed_trainer::precision::MemoryFormat;
//! use shardfeed_trainer::shards::{ShardsOptions, ShardsSource, Split};
//!
//! let options = ShardsOptions { size: 224, batch: 256, ..ShardsOptions::default() };
//! let source = ShardsSource::open("/data/imagenet-shards/train", Split::Train, &options)?;
//! let loader = DeviceFeeder::new(source, tch::Device::Cuda(0), ImageStats::IMAGENET,
//!                                MemoryFormat::ChannelsLast);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::path::Path;
use std::sync::Arc;

use shardfeed_engine::loader::{Batch, Loader, LoaderConfig, Position};
use shardfeed_engine::remote::RemoteConfig;
use shardfeed_engine::sampler::{LastBatch, Partition};
use shardfeed_engine::shards::Dataset;

use crate::data::{DataError, DeviceFeeder, HostBatch, HostBatchSource};

/// Which recipe a [`ShardsSource`] applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// `RandomResizedCrop` + flip, a fresh shuffle each epoch.
    Train,
    /// Resize + centre crop, records in order.
    Val,
}

/// How a [`ShardsSource`] reads its dataset.
#[derive(Debug, Clone)]
pub struct ShardsOptions {
    /// Output side in pixels.
    pub size: u32,
    /// Images per batch on this replica.
    pub batch: usize,
    /// Seed of the order and the augmentations.
    pub seed: u64,
    /// This replica's rank.
    pub rank: u32,
    /// Number of replicas.
    pub world: u32,
    /// Decode-and-augment threads for this replica (0: every core).
    pub workers: usize,
    /// Take the batches from `shardfeed serve` workers instead (the same bytes).
    pub remote: Option<RemoteConfig>,
    /// Append one JSON line per batch served (`epoch`, `batch`, `rank`, `world`, `records`) to this
    /// file: which samples each rank trained on, for checking elastic resume.
    pub sample_log: Option<std::path::PathBuf>,
}

impl Default for ShardsOptions {
    fn default() -> Self {
        ShardsOptions {
            size: 224,
            batch: 256,
            seed: 0,
            rank: 0,
            world: 1,
            workers: 0,
            remote: None,
            sample_log: None,
        }
    }
}

/// `--sample-log`: the records of every batch, one JSON line each, appended with one write so
/// that the lines of several ranks sharing the file do not interleave.
struct SampleLog {
    file: std::fs::File,
    path: std::path::PathBuf,
    rank: u32,
    world: u32,
}

impl SampleLog {
    fn open(path: &Path, rank: u32, world: u32) -> Result<SampleLog, DataError> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| DataError::Source(format!("sample log {}: {e}", path.display())))?;
        Ok(SampleLog {
            file,
            path: path.to_owned(),
            rank,
            world,
        })
    }

    fn write(&mut self, epoch: u64, batch: u64, records: &[u64]) -> Result<(), DataError> {
        use std::io::Write;
        let mut line = serde_json::json!({
            "epoch": epoch, "batch": batch, "rank": self.rank, "world": self.world,
            "records": records,
        })
        .to_string();
        line.push('\n');
        self.file
            .write_all(line.as_bytes())
            .map_err(|e| DataError::Source(format!("sample log {}: {e}", self.path.display())))
    }
}

/// A shardfeed dataset served as uint8 NHWC host batches.
///
/// Every batch is full (`LastBatch::Drop`, whole batches): each rank gets the same number of
/// batches, so no replica waits at the end of an epoch for another. For evaluation that means
/// fewer than one global batch (`world * batch`) of the val set's records are left out: 80 of
/// ImageNet's 50,000 at 256 images on 1 GPU.
pub struct ShardsSource {
    loader: Loader,
    size: (usize, usize),
    batch: usize,
    epoch: u64,
    next_batch: u64,
    /// The batch whose pixels the last [`HostBatch`] lent out; dropping it gives its buffer back
    /// to the engine's pool.
    held: Option<Batch>,
    sample_log: Option<SampleLog>,
}

impl std::fmt::Debug for ShardsSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardsSource")
            .field("loader", &self.loader)
            .field("epoch", &self.epoch)
            .field("next_batch", &self.next_batch)
            .finish()
    }
}

impl ShardsSource {
    /// Opens the dataset directory `dir` (one split: the folder holding `manifest.json`).
    ///
    /// # Errors
    ///
    /// [`DataError::Source`] naming the directory when it does not open as a dataset, or
    /// [`DataError::Config`] for options the engine refuses.
    pub fn open(
        dir: impl AsRef<Path>,
        split: Split,
        options: &ShardsOptions,
    ) -> Result<Self, DataError> {
        let dir = dir.as_ref();
        let base = match split {
            Split::Train => LoaderConfig::train(options.size),
            Split::Val => LoaderConfig::val(options.size),
        };
        let config = LoaderConfig {
            batch_size: options.batch,
            seed: options.seed,
            rank: options.rank,
            world: options.world,
            workers: options.workers,
            last_batch: LastBatch::Drop,
            // Batch b of every rank is a slice of global batch b, so a checkpoint resumes at
            // another world size with the same global batches (elastic resume).
            partition: Partition::GlobalBatches,
            full_batches: true,
            ..base
        };
        config
            .validate()
            .map_err(|e| DataError::Config(e.to_string()))?;
        let failed =
            |e: &dyn std::fmt::Display| DataError::Source(format!("{}: {e}", dir.display()));
        let loader = match &options.remote {
            None => Loader::open(dir, config).map_err(|e| failed(&e))?,
            Some(remote) => {
                let dataset = Dataset::open(dir).map_err(|e| failed(&e))?;
                Loader::remote(Arc::new(dataset), config, remote.clone()).map_err(|e| failed(&e))?
            }
        };
        if loader.batches_per_epoch() == 0 {
            return Err(DataError::Config(format!(
                "{}: {} records per replica make no whole batch of {}",
                dir.display(),
                loader.samples_per_epoch(),
                options.batch
            )));
        }
        let side = options.size as usize;
        Ok(ShardsSource {
            loader,
            size: (side, side),
            batch: options.batch,
            epoch: 0,
            next_batch: 0,
            held: None,
            sample_log: match &options.sample_log {
                None => None,
                Some(path) => Some(SampleLog::open(path, options.rank, options.world)?),
            },
        })
    }

    /// The number of classes the dataset's manifest lists.
    pub fn num_classes(&self) -> usize {
        self.loader.dataset().num_classes()
    }

    /// The engine underneath (metrics, failures).
    pub fn engine(&self) -> &Loader {
        &self.loader
    }

    /// Wraps it for `device`: staging, asynchronous copies and normalisation with ImageNet's
    /// statistics.
    pub fn into_device_loader(
        self,
        device: tch::Device,
        format: crate::precision::MemoryFormat,
    ) -> DeviceFeeder<ShardsSource> {
        DeviceFeeder::new(self, device, crate::data::ImageStats::IMAGENET, format)
    }
}

impl HostBatchSource for ShardsSource {
    fn image_size(&self) -> (usize, usize) {
        self.size
    }

    fn batch_size(&self) -> usize {
        self.batch
    }

    fn batches_per_epoch(&self) -> u64 {
        self.loader.batches_per_epoch()
    }

    fn start_epoch(&mut self, epoch: u64, skip_batches: u64) -> Result<(), DataError> {
        self.held = None;
        self.epoch = epoch;
        self.next_batch = skip_batches;
        Ok(())
    }

    fn next_host_batch(&mut self) -> Result<Option<HostBatch<'_>>, DataError> {
        // The previous batch's buffer goes back to the engine's pool first.
        self.held = None;
        if self.next_batch >= self.loader.batches_per_epoch() {
            return Ok(None);
        }
        let position = Position::new(self.epoch, self.next_batch);
        // The engine goes on without a pause when it is already producing this position.
        let batch = match self.loader.resume(position).next() {
            None => return Ok(None),
            Some(Err(e)) => {
                return Err(DataError::Source(format!(
                    "{}: {e}",
                    self.loader.dataset().dir().display()
                )))
            }
            Some(Ok(batch)) => batch,
        };
        if batch.len() != self.batch || batch.side() as usize != self.size.0 {
            return Err(DataError::BadBatch {
                epoch: self.epoch,
                batch: self.next_batch,
                reason: format!(
                    "{} images of {}x{}, expected {} of {}x{}",
                    batch.len(),
                    batch.side(),
                    batch.side(),
                    self.batch,
                    self.size.0,
                    self.size.1
                ),
            });
        }
        if let Some(log) = &mut self.sample_log {
            log.write(self.epoch, self.next_batch, batch.records())?;
        }
        self.next_batch += 1;
        let held = self.held.insert(batch);
        Ok(Some(HostBatch {
            images: held.images(),
            labels: held.labels(),
        }))
    }
}
