//! What the training loop eats: the [`Loader`] trait (batches already on the device, normalised
//! float NCHW in the model's memory format) and its implementations.
//!
//! - [`SyntheticLoader`]: batches made on the device from a few fixed tensors (class patterns
//!   plus noise, learnable), to measure the trainer alone.
//! - [`DeviceFeeder`]: any [`HostBatchSource`] of uint8 NHWC host batches + labels (what the
//!   shards pipeline produces) turned into device batches: a thread fills staging slots (pinned
//!   host memory on CUDA) ahead of the training thread, which copies each one to the device
//!   asynchronously (`non_blocking`) and converts uint8 → float and normalises (mean/std) there.
//! - [`VecHostSource`]: a [`HostBatchSource`] over images held in a `Vec<u8>`, seeded shuffle,
//!   partitioned by replica rank; the model for the shards adapter.
//!
//! Positions are `(epoch, batch)`: [`Loader::start_epoch`] with `skip_batches` resumes exactly.
//!
//! ```
//! use shardfeed_trainer::loader::{DeviceFeeder, Loader, VecHostSource, ImageStats};
//! use shardfeed_trainer::precision::MemoryFormat;
//! let (n, h, w) = (8, 4, 4);
//! let src = VecHostSource::new(vec![128u8; n * h * w * 3], (0..n as u32).collect(), h, w, 4, 0, 0, 1)?;
//! let mut loader = DeviceFeeder::new(src, tch::Device::Cpu, ImageStats::IMAGENET, MemoryFormat::Contiguous);
//! loader.start_epoch(0, 0)?;
//! let batch = loader.next_batch()?.expect("a batch");
//! assert_eq!(batch.images.size(), vec![4, 3, 4, 4]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::VecDeque;
use std::sync::mpsc;
use std::thread::JoinHandle;

use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use crate::precision::{to_memory_format, MemoryFormat, ShimError};

/// A loader failed to produce a batch.
#[derive(Debug, thiserror::Error)]
pub enum LoaderError {
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

/// Where a loader is: the next batch it yields is batch `batch` of epoch `epoch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct LoaderPosition {
    /// Epoch, from 0.
    pub epoch: u64,
    /// Batch within the epoch, from 0.
    pub batch: u64,
}

/// A source of device batches, epoch by epoch. The training loop consumes only this trait.
pub trait Loader {
    /// Images per batch on this replica.
    fn batch_size(&self) -> usize;
    /// Batches per epoch on this replica (all replicas see the same number).
    fn batches_per_epoch(&self) -> u64;
    /// Starts epoch `epoch` (its own shuffle), skipping its first `skip_batches` batches (resume).
    fn start_epoch(&mut self, epoch: u64, skip_batches: u64) -> Result<(), LoaderError>;
    /// The next batch of the current epoch, `None` at its end.
    ///
    /// Host staging memory of a batch may be reused two calls later: the caller must have waited
    /// for the step that consumed batch `k` before asking for batch `k + 2` (the trainer does: it
    /// reads each step's loss one step later).
    fn next_batch(&mut self) -> Result<Option<DeviceBatch>, LoaderError>;
}

/// Per-channel mean and standard deviation of pixel values in `[0, 255]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ImageStats {
    /// RGB mean.
    pub mean: [f32; 3],
    /// RGB standard deviation.
    pub std: [f32; 3],
}

impl ImageStats {
    /// torchvision's ImageNet statistics, scaled to `[0, 255]`.
    pub const IMAGENET: ImageStats = ImageStats {
        mean: [0.485 * 255.0, 0.456 * 255.0, 0.406 * 255.0],
        std: [0.229 * 255.0, 0.224 * 255.0, 0.225 * 255.0],
    };
}

/// uint8 NHWC → normalised float NCHW on the device; the constants live there, built once.
pub struct Normalizer {
    mean: Tensor,
    inv_std: Tensor,
    format: MemoryFormat,
}

impl Normalizer {
    /// Constants for `stats` on `device`; output in `format`.
    pub fn new(stats: ImageStats, device: Device, format: MemoryFormat) -> Self {
        let inv: Vec<f32> = stats.std.iter().map(|s| 1.0 / s).collect();
        Normalizer {
            mean: Tensor::from_slice(&stats.mean)
                .view([1, 3, 1, 1])
                .to_device(device),
            inv_std: Tensor::from_slice(&inv)
                .view([1, 3, 1, 1])
                .to_device(device),
            format,
        }
    }

    /// `(x − mean)/std` of a `[B, H, W, 3]` uint8 tensor, as `[B, 3, H, W]` float. The NHWC input
    /// seen as NCHW already has channels-last strides; elementwise ops keep them.
    pub fn normalize(&self, nhwc_u8: &Tensor) -> Result<Tensor, ShimError> {
        let x = nhwc_u8.permute([0, 3, 1, 2]).to_kind(Kind::Float);
        let y = (x - &self.mean) * &self.inv_std;
        to_memory_format(&y, self.format)
    }
}

/// A host tensor for staging copies to `device`: pinned (page-locked) when `device` is CUDA, so
/// the copy can be `non_blocking` and never waits for the GPU's queue; plain memory otherwise.
fn staging(shape: &[i64], kind: Kind, device: Device) -> Tensor {
    let t = Tensor::zeros(shape, (kind, Device::Cpu));
    if device.is_cuda() {
        t.pin_memory(device)
    } else {
        t
    }
}

/// Writes `values` at the start of a dense CPU int64 tensor of at least that many elements.
fn write_i64(dst: &Tensor, values: impl ExactSizeIterator<Item = i64>) {
    assert!(dst.kind() == Kind::Int64 && dst.numel() >= values.len());
    // SAFETY: `dst` is a dense CPU int64 tensor with room for `values.len()` elements (checked
    // above), owned by the caller while it writes.
    let out = unsafe { std::slice::from_raw_parts_mut(dst.data_ptr() as *mut i64, values.len()) };
    for (d, v) in out.iter_mut().zip(values) {
        *d = v;
    }
}

/// `host` on `device`: an asynchronous copy from pinned memory on CUDA; a copy on the CPU too,
/// so the staging memory can be reused at once.
fn upload(host: &Tensor, device: Device) -> Result<Tensor, tch::TchError> {
    host.f_to_device_(device, host.kind(), device.is_cuda(), !device.is_cuda())
}

/// The generator behind shuffles and synthetic data (shardfeed's SplitMix64), so results
/// depend on the seed only (not on libtorch's global generator, shared by all threads).
pub use shardfeed_engine::rng::SplitMix64;

/// Uniform in `[-1, 1)`.
fn symmetric(rng: &mut SplitMix64) -> f32 {
    rng.next_f32() * 2.0 - 1.0
}

/// Fisher–Yates permutation of `0..n` for one (seed, epoch).
pub fn epoch_order(n: usize, seed: u64, epoch: u64) -> Vec<u32> {
    let mut order: Vec<u32> = (0..n as u32).collect();
    let mut rng = SplitMix64::keyed(&[seed, epoch]);
    for i in (1..n).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        order.swap(i, j);
    }
    order
}

/// Which samples of an epoch's order replica `rank` of `world` takes, whole batches only:
/// the contiguous range `[rank·per, (rank+1)·per)` with `per = ⌊n/world/batch⌋·batch`.
pub fn replica_range(n: usize, batch: usize, rank: usize, world: usize) -> std::ops::Range<usize> {
    let per = (n / world.max(1)) / batch.max(1) * batch.max(1);
    rank * per..(rank + 1) * per
}

/// Synthetic, learnable batches made on the device: each class has a coarse 4x4 colour pattern,
/// upsampled and added to one of a few fixed noise tensors. Labels follow a seeded generator
/// keyed by (seed, rank, epoch, batch), so runs and resumes are exact and replicas differ.
pub struct SyntheticLoader {
    device: Device,
    batch: usize,
    size: (i64, i64),
    num_classes: i64,
    batches_per_epoch: u64,
    seed: u64,
    rank: u64,
    prototypes: Tensor,
    noise: Vec<Tensor>,
    format: MemoryFormat,
    epoch: u64,
    next: u64,
    /// Staging for labels (pinned on CUDA), reused three batches later (see [`Loader`]).
    label_slots: Vec<Tensor>,
}

impl SyntheticLoader {
    /// `batches_per_epoch` batches of `batch` images of `height`x`width` in `num_classes`
    /// classes for replica `rank`; `noise` scales the per-pixel noise (1.0: the class pattern
    /// and the noise have about equal magnitude).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        device: Device,
        batch: usize,
        (height, width): (usize, usize),
        num_classes: usize,
        batches_per_epoch: u64,
        seed: u64,
        rank: usize,
        format: MemoryFormat,
        noise: f32,
    ) -> Result<Self, LoaderError> {
        if batch == 0 || num_classes == 0 || height == 0 || width == 0 {
            return Err(LoaderError::Config(
                "synthetic loader needs a batch size, image size and class count above 0".into(),
            ));
        }
        let mut rng = SplitMix64::keyed(&[seed, 0x9707]);
        let protos: Vec<f32> = (0..num_classes * 3 * 16)
            .map(|_| symmetric(&mut rng) * 1.7)
            .collect();
        let prototypes = Tensor::from_slice(&protos)
            .view([num_classes as i64, 3, 4, 4])
            .to_device(device);
        let pool = 2;
        let per = batch * 3 * height * width;
        let mut noise_pool = Vec::with_capacity(pool);
        let mut buf = vec![0f32; per];
        for p in 0..pool {
            // Keyed by rank too: a validation loader made with another rank sees other noise.
            let mut rng = SplitMix64::keyed(&[seed, 0x401e, rank as u64, p as u64]);
            for v in buf.iter_mut() {
                *v = symmetric(&mut rng) * 1.7 * noise;
            }
            let t = Tensor::from_slice(&buf)
                .view([batch as i64, 3, height as i64, width as i64])
                .to_device(device);
            noise_pool.push(to_memory_format(&t, format)?);
        }
        Ok(SyntheticLoader {
            device,
            batch,
            size: (height as i64, width as i64),
            num_classes: num_classes as i64,
            batches_per_epoch,
            seed,
            rank: rank as u64,
            prototypes,
            noise: noise_pool,
            format,
            epoch: 0,
            next: 0,
            label_slots: (0..3)
                .map(|_| staging(&[batch as i64], Kind::Int64, device))
                .collect(),
        })
    }
}

impl Loader for SyntheticLoader {
    fn batch_size(&self) -> usize {
        self.batch
    }

    fn batches_per_epoch(&self) -> u64 {
        self.batches_per_epoch
    }

    fn start_epoch(&mut self, epoch: u64, skip_batches: u64) -> Result<(), LoaderError> {
        self.epoch = epoch;
        self.next = skip_batches.min(self.batches_per_epoch);
        Ok(())
    }

    fn next_batch(&mut self) -> Result<Option<DeviceBatch>, LoaderError> {
        if self.next >= self.batches_per_epoch {
            return Ok(None);
        }
        let mut rng = SplitMix64::keyed(&[self.seed, self.rank, self.epoch, self.next]);
        let slot =
            self.label_slots[(self.next % self.label_slots.len() as u64) as usize].shallow_clone();
        let classes = self.num_classes as u64;
        write_i64(&slot, (0..self.batch).map(|_| rng.below(classes) as i64));
        let noise = &self.noise[rng.below(self.noise.len() as u64) as usize];
        self.next += 1;
        let labels = upload(&slot, self.device)?;
        let pattern = self.prototypes.index_select(0, &labels).upsample_nearest2d(
            [self.size.0, self.size.1],
            None,
            None,
        );
        let images = to_memory_format(&(pattern + noise), self.format)?;
        Ok(Some(DeviceBatch { images, labels }))
    }
}

/// One host batch: `images` is `len·H·W·3` bytes, uint8 RGB NHWC, `labels` has `len` entries.
pub struct HostBatch<'a> {
    /// Pixels, NHWC.
    pub images: &'a [u8],
    /// Class indices.
    pub labels: &'a [u32],
}

/// A producer of uint8 NHWC host batches: what the shards pipeline provides. It runs on the
/// feeder's own thread, so it must be `Send`.
pub trait HostBatchSource: Send + 'static {
    /// `(height, width)` of every image.
    fn image_size(&self) -> (usize, usize);
    /// Images per full batch.
    fn batch_size(&self) -> usize;
    /// Batches per epoch for this replica.
    fn batches_per_epoch(&self) -> u64;
    /// Starts epoch `epoch`, skipping its first `skip_batches` batches.
    fn start_epoch(&mut self, epoch: u64, skip_batches: u64) -> Result<(), LoaderError>;
    /// The next batch, `None` at the end of the epoch. The slices may be reused by the next call.
    fn next_host_batch(&mut self) -> Result<Option<HostBatch<'_>>, LoaderError>;
}

/// Images and labels held in memory, shuffled per epoch with a seed, partitioned by replica.
pub struct VecHostSource {
    images: Vec<u8>,
    labels: Vec<u32>,
    size: (usize, usize),
    batch: usize,
    seed: u64,
    rank: usize,
    world: usize,
    order: Vec<u32>,
    cursor: usize,
    end: usize,
    batch_images: Vec<u8>,
    batch_labels: Vec<u32>,
}

impl VecHostSource {
    /// `labels.len()` images of `height`x`width` RGB in `images`, served to replica `rank` of
    /// `world` in batches of `batch`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        images: Vec<u8>,
        labels: Vec<u32>,
        height: usize,
        width: usize,
        batch: usize,
        seed: u64,
        rank: usize,
        world: usize,
    ) -> Result<Self, LoaderError> {
        let per_image = height * width * 3;
        if images.len() != labels.len() * per_image {
            return Err(LoaderError::Config(format!(
                "{} bytes of images for {} labels of {height}x{width}x3 (want {})",
                images.len(),
                labels.len(),
                labels.len() * per_image
            )));
        }
        if batch == 0 || world == 0 || rank >= world {
            return Err(LoaderError::Config(format!(
                "batch {batch}, rank {rank}, world {world}: need batch > 0 and rank < world"
            )));
        }
        Ok(VecHostSource {
            images,
            labels,
            size: (height, width),
            batch,
            seed,
            rank,
            world,
            order: Vec::new(),
            cursor: 0,
            end: 0,
            batch_images: vec![0; batch * per_image],
            batch_labels: vec![0; batch],
        })
    }
}

impl HostBatchSource for VecHostSource {
    fn image_size(&self) -> (usize, usize) {
        self.size
    }

    fn batch_size(&self) -> usize {
        self.batch
    }

    fn batches_per_epoch(&self) -> u64 {
        (replica_range(self.labels.len(), self.batch, 0, self.world).len() / self.batch) as u64
    }

    fn start_epoch(&mut self, epoch: u64, skip_batches: u64) -> Result<(), LoaderError> {
        self.order = epoch_order(self.labels.len(), self.seed, epoch);
        let range = replica_range(self.labels.len(), self.batch, self.rank, self.world);
        self.cursor = (range.start + skip_batches as usize * self.batch).min(range.end);
        self.end = range.end;
        Ok(())
    }

    fn next_host_batch(&mut self) -> Result<Option<HostBatch<'_>>, LoaderError> {
        if self.cursor + self.batch > self.end {
            return Ok(None);
        }
        let per_image = self.size.0 * self.size.1 * 3;
        for (k, &idx) in self.order[self.cursor..self.cursor + self.batch]
            .iter()
            .enumerate()
        {
            let idx = idx as usize;
            self.batch_images[k * per_image..(k + 1) * per_image]
                .copy_from_slice(&self.images[idx * per_image..(idx + 1) * per_image]);
            self.batch_labels[k] = self.labels[idx];
        }
        self.cursor += self.batch;
        Ok(Some(HostBatch {
            images: &self.batch_images,
            labels: &self.batch_labels,
        }))
    }
}

/// A staging slot: one batch of host memory (pinned when the device is CUDA).
/// Slots move between the feeding thread and the training thread through channels, so exactly
/// one thread owns (and writes) a slot at a time.
struct HostSlot {
    images: Tensor,
    labels: Tensor,
    len: usize,
}

type Filled = Result<Option<HostSlot>, LoaderError>;

/// Turns a [`HostBatchSource`] into a [`Loader`]: staging slots filled by a feeding thread,
/// asynchronous host-to-device copies, uint8 → float and normalisation on the device.
pub struct DeviceFeeder<S: HostBatchSource> {
    source: Option<S>,
    device: Device,
    normalizer: Normalizer,
    batch: usize,
    size: (usize, usize),
    batches_per_epoch: u64,
    free: Vec<HostSlot>,
    in_flight: VecDeque<HostSlot>,
    release_lag: usize,
    worker: Option<Worker<S>>,
}

struct Worker<S> {
    free_tx: mpsc::Sender<HostSlot>,
    filled_rx: mpsc::Receiver<Filled>,
    /// Gives back the source and every slot the thread still held.
    handle: JoinHandle<(S, Vec<HostSlot>)>,
}

impl<S: HostBatchSource> DeviceFeeder<S> {
    /// Feeds `source` to `device`, normalising with `stats`, output in `format`.
    pub fn new(source: S, device: Device, stats: ImageStats, format: MemoryFormat) -> Self {
        let (h, w) = source.image_size();
        let batch = source.batch_size();
        let cuda = device.is_cuda();
        // Slots: two being copied / consumed (see `Loader::next_batch`), two being filled.
        let slots = 4;
        let free = (0..slots)
            .map(|_| HostSlot {
                images: staging(&[batch as i64, h as i64, w as i64, 3], Kind::Uint8, device),
                labels: staging(&[batch as i64], Kind::Int64, device),
                len: 0,
            })
            .collect();
        DeviceFeeder {
            batches_per_epoch: source.batches_per_epoch(),
            source: Some(source),
            device,
            normalizer: Normalizer::new(stats, device, format),
            batch,
            size: (h, w),
            free,
            in_flight: VecDeque::new(),
            release_lag: if cuda { 2 } else { 0 },
            worker: None,
        }
    }

    /// Stops the feeding thread (if any) and takes the source and every slot back.
    fn stop_worker(&mut self) -> Result<(), LoaderError> {
        if let Some(worker) = self.worker.take() {
            drop(worker.free_tx);
            // Drain filled slots so the thread can finish.
            while let Ok(filled) = worker.filled_rx.recv() {
                if let Ok(Some(slot)) = filled {
                    self.free.push(slot);
                }
            }
            let (source, spare) = worker
                .handle
                .join()
                .map_err(|_| LoaderError::FeederGone("the feeding thread panicked".into()))?;
            self.source = Some(source);
            self.free.extend(spare);
        }
        self.free.extend(self.in_flight.drain(..));
        Ok(())
    }
}

fn fill_slot(
    slot: &mut HostSlot,
    batch: HostBatch<'_>,
    expected: usize,
    epoch: u64,
    index: u64,
) -> Result<(), LoaderError> {
    let n = batch.labels.len();
    let capacity = slot.labels.numel();
    if n == 0 || n > capacity || batch.images.len() != n * expected {
        return Err(LoaderError::BadBatch {
            epoch,
            batch: index,
            reason: format!(
                "{} labels and {} image bytes (want 1..={} labels and {} bytes per image)",
                n,
                batch.images.len(),
                capacity,
                expected
            ),
        });
    }
    // SAFETY: the slot's tensor is a dense uint8 CPU tensor of at least `labels.len()·expected`
    // bytes, owned by this thread while it fills it.
    let dst = unsafe {
        std::slice::from_raw_parts_mut(slot.images.data_ptr() as *mut u8, batch.images.len())
    };
    dst.copy_from_slice(batch.images);
    write_i64(&slot.labels, batch.labels.iter().map(|&l| i64::from(l)));
    slot.len = n;
    Ok(())
}

impl<S: HostBatchSource> Loader for DeviceFeeder<S> {
    fn batch_size(&self) -> usize {
        self.batch
    }

    fn batches_per_epoch(&self) -> u64 {
        self.batches_per_epoch
    }

    fn start_epoch(&mut self, epoch: u64, skip_batches: u64) -> Result<(), LoaderError> {
        self.stop_worker()?;
        let mut source = self
            .source
            .take()
            .ok_or_else(|| LoaderError::FeederGone("the source was lost".into()))?;
        source.start_epoch(epoch, skip_batches)?;
        let (free_tx, free_rx) = mpsc::channel::<HostSlot>();
        let (filled_tx, filled_rx) = mpsc::channel::<Filled>();
        for slot in self.free.drain(..) {
            // The receiver is alive: it is moved into the thread below.
            let _ = free_tx.send(slot);
        }
        let expected = self.size.0 * self.size.1 * 3;
        let handle = std::thread::Builder::new()
            .name("shardfeed-feeder".into())
            .spawn(move || {
                let mut index = skip_batches;
                let mut spare = Vec::new();
                while let Ok(mut slot) = free_rx.recv() {
                    let result = match source.next_host_batch() {
                        Ok(Some(batch)) => fill_slot(&mut slot, batch, expected, epoch, index),
                        Ok(None) => {
                            spare.push(slot);
                            let _ = filled_tx.send(Ok(None));
                            break;
                        }
                        Err(e) => Err(e),
                    };
                    index += 1;
                    match result {
                        Ok(()) => {
                            if let Err(mpsc::SendError(Ok(Some(slot)))) =
                                filled_tx.send(Ok(Some(slot)))
                            {
                                spare.push(slot);
                                break;
                            }
                        }
                        Err(e) => {
                            spare.push(slot);
                            let _ = filled_tx.send(Err(e));
                            break;
                        }
                    }
                }
                // Slots handed back but not used this epoch.
                while let Ok(slot) = free_rx.try_recv() {
                    spare.push(slot);
                }
                (source, spare)
            })
            .map_err(|e| {
                LoaderError::FeederGone(format!("cannot start the feeding thread: {e}"))
            })?;
        self.worker = Some(Worker {
            free_tx,
            filled_rx,
            handle,
        });
        Ok(())
    }

    fn next_batch(&mut self) -> Result<Option<DeviceBatch>, LoaderError> {
        let Some(worker) = &self.worker else {
            return Ok(None);
        };
        while self.in_flight.len() > self.release_lag {
            if let Some(slot) = self.in_flight.pop_front() {
                // A thread that already ended hands the slot back in the error.
                if let Err(mpsc::SendError(slot)) = worker.free_tx.send(slot) {
                    self.free.push(slot);
                }
            }
        }
        let filled = match worker.filled_rx.recv() {
            Ok(filled) => filled,
            Err(_) => {
                return Err(LoaderError::FeederGone(
                    "the feeding thread ended without a result".into(),
                ))
            }
        };
        let slot = match filled {
            Ok(Some(slot)) => slot,
            Ok(None) => {
                self.stop_worker()?;
                return Ok(None);
            }
            Err(e) => {
                self.stop_worker()?;
                return Err(e);
            }
        };
        let len = slot.len as i64;
        let on_device = upload(&slot.images.narrow(0, 0, len), self.device)?;
        let labels = upload(&slot.labels.narrow(0, 0, len), self.device)?;
        let images = self.normalizer.normalize(&on_device)?;
        self.in_flight.push_back(slot);
        if self.release_lag == 0 {
            self.free_up_now();
        }
        Ok(Some(DeviceBatch { images, labels }))
    }
}

impl<S: HostBatchSource> DeviceFeeder<S> {
    fn free_up_now(&mut self) {
        if let Some(worker) = &self.worker {
            while let Some(slot) = self.in_flight.pop_front() {
                if let Err(mpsc::SendError(slot)) = worker.free_tx.send(slot) {
                    self.free.push(slot);
                }
            }
        }
    }
}

impl<S: HostBatchSource> Drop for DeviceFeeder<S> {
    fn drop(&mut self) {
        let _ = self.stop_worker();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vec_source(n: usize, batch: usize, rank: usize, world: usize) -> VecHostSource {
        let (h, w) = (2, 3);
        let mut images = Vec::with_capacity(n * h * w * 3);
        for i in 0..n {
            images.extend(std::iter::repeat_n(i as u8, h * w * 3));
        }
        VecHostSource::new(images, (0..n as u32).collect(), h, w, batch, 7, rank, world).unwrap()
    }

    fn labels_of(b: &DeviceBatch) -> Vec<i64> {
        Vec::<i64>::try_from(&b.labels).unwrap()
    }

    #[test]
    fn orders_are_permutations_and_depend_on_epoch() {
        let a = epoch_order(100, 1, 0);
        let mut sorted = a.clone();
        sorted.sort();
        assert_eq!(sorted, (0..100).collect::<Vec<u32>>());
        assert_ne!(a, epoch_order(100, 1, 1));
        assert_eq!(a, epoch_order(100, 1, 0));
    }

    #[test]
    fn replicas_partition_whole_batches() {
        assert_eq!(replica_range(103, 5, 0, 2), 0..50);
        assert_eq!(replica_range(103, 5, 1, 2), 50..100);
        assert_eq!(replica_range(9, 5, 1, 2), 0..0);
    }

    #[test]
    fn feeder_normalises_on_the_device_and_keeps_pixels_and_labels_together() {
        let stats = ImageStats {
            mean: [10.0, 20.0, 30.0],
            std: [2.0, 4.0, 5.0],
        };
        let src = vec_source(10, 4, 0, 1);
        let mut f = DeviceFeeder::new(src, Device::Cpu, stats, MemoryFormat::ChannelsLast);
        assert_eq!(f.batches_per_epoch(), 2);
        f.start_epoch(0, 0).unwrap();
        let mut seen = Vec::new();
        while let Some(b) = f.next_batch().unwrap() {
            assert_eq!(b.images.size(), vec![4, 3, 2, 3]);
            assert!(
                crate::precision::is_memory_format(&b.images, MemoryFormat::ChannelsLast).unwrap()
            );
            for (k, label) in labels_of(&b).into_iter().enumerate() {
                // Every pixel of image `label` is `label`: check channel 1 at (1, 2).
                let v = b.images.double_value(&[k as i64, 1, 1, 2]);
                assert!((v - (label as f64 - 20.0) / 4.0).abs() < 1e-5);
                seen.push(label);
            }
        }
        assert_eq!(seen.len(), 8);
        let order = epoch_order(10, 7, 0);
        assert_eq!(
            seen,
            order[..8].iter().map(|&i| i as i64).collect::<Vec<_>>()
        );
        // The next epoch has its own order; skipping resumes mid-epoch exactly.
        f.start_epoch(1, 1).unwrap();
        let b = f.next_batch().unwrap().unwrap();
        let order1 = epoch_order(10, 7, 1);
        assert_eq!(
            labels_of(&b),
            order1[4..8].iter().map(|&i| i as i64).collect::<Vec<_>>()
        );
        assert!(f.next_batch().unwrap().is_none());
        assert!(f.next_batch().unwrap().is_none());
    }

    #[test]
    fn replicas_get_disjoint_samples() {
        let mut all = Vec::new();
        for rank in 0..2 {
            let mut f = DeviceFeeder::new(
                vec_source(20, 3, rank, 2),
                Device::Cpu,
                ImageStats::IMAGENET,
                MemoryFormat::Contiguous,
            );
            assert_eq!(f.batches_per_epoch(), 3);
            f.start_epoch(2, 0).unwrap();
            while let Some(b) = f.next_batch().unwrap() {
                all.extend(labels_of(&b));
            }
        }
        assert_eq!(all.len(), 18);
        let mut dedup = all.clone();
        dedup.sort();
        dedup.dedup();
        assert_eq!(dedup.len(), 18);
    }

    struct BrokenSource;
    impl HostBatchSource for BrokenSource {
        fn image_size(&self) -> (usize, usize) {
            (2, 2)
        }
        fn batch_size(&self) -> usize {
            2
        }
        fn batches_per_epoch(&self) -> u64 {
            1
        }
        fn start_epoch(&mut self, _: u64, _: u64) -> Result<(), LoaderError> {
            Ok(())
        }
        fn next_host_batch(&mut self) -> Result<Option<HostBatch<'_>>, LoaderError> {
            Ok(Some(HostBatch {
                images: &[0u8; 5],
                labels: &[1, 2],
            }))
        }
    }

    #[test]
    fn a_malformed_host_batch_is_an_error_naming_it() {
        let mut f = DeviceFeeder::new(
            BrokenSource,
            Device::Cpu,
            ImageStats::IMAGENET,
            MemoryFormat::Contiguous,
        );
        f.start_epoch(3, 0).unwrap();
        let err = f.next_batch().err().expect("an error");
        assert!(err.to_string().starts_with("epoch 3, batch 0:"), "{err}");
    }

    #[test]
    fn synthetic_batches_are_deterministic_per_position_and_rank() {
        let make = |rank| {
            SyntheticLoader::new(
                Device::Cpu,
                4,
                (8, 8),
                5,
                3,
                11,
                rank,
                MemoryFormat::ChannelsLast,
                1.0,
            )
            .unwrap()
        };
        let mut a = make(0);
        a.start_epoch(1, 0).unwrap();
        let _ = a.next_batch().unwrap().unwrap();
        let second = a.next_batch().unwrap().unwrap();
        let mut b = make(0);
        b.start_epoch(1, 1).unwrap();
        let resumed = b.next_batch().unwrap().unwrap();
        assert!(second.images.equal(&resumed.images));
        assert!(second.labels.equal(&resumed.labels));
        assert_eq!(second.images.size(), vec![4, 3, 8, 8]);
        let mut c = make(1);
        c.start_epoch(1, 1).unwrap();
        let other = c.next_batch().unwrap().unwrap();
        assert!(!other.images.equal(&resumed.images));
        let _ = a.next_batch().unwrap().unwrap();
        assert!(a.next_batch().unwrap().is_none());
    }
}
