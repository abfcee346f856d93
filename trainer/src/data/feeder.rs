//! [`DeviceFeeder`]: any [`HostBatchSource`] of uint8 NHWC host batches + labels (what the
//! shards pipeline produces) turned into device batches. A thread fills staging slots (pinned
//! host memory on CUDA) ahead of the training thread, which copies each one to the device
//! asynchronously (`non_blocking`) and converts uint8 → float and normalises (mean/std) there.

use std::collections::VecDeque;
use std::sync::mpsc;
use std::thread::JoinHandle;

use tch::{Device, Kind, Tensor};

use super::staging::{staging, upload, write_i64};
use super::{
    DataError, DeviceBatch, DeviceLoader, HostBatch, HostBatchSource, ImageStats, Normalizer,
};
use crate::precision::MemoryFormat;

/// A staging slot: one batch of host memory (pinned when the device is CUDA).
/// Slots move between the feeding thread and the training thread through channels, so exactly
/// one thread owns (and writes) a slot at a time.
struct HostSlot {
    images: Tensor,
    labels: Tensor,
    len: usize,
}

type Filled = Result<Option<HostSlot>, DataError>;

/// Turns a [`HostBatchSource`] into a [`DeviceLoader`]: staging slots filled by a feeding thread,
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
        // Slots: two being copied / consumed (see `DeviceLoader::next_batch`), two being filled.
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
    fn stop_worker(&mut self) -> Result<(), DataError> {
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
                .map_err(|_| DataError::FeederGone("the feeding thread panicked".into()))?;
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
) -> Result<(), DataError> {
    let n = batch.labels.len();
    let capacity = slot.labels.numel();
    if n == 0 || n > capacity || batch.images.len() != n * expected {
        return Err(DataError::BadBatch {
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

impl<S: HostBatchSource> DeviceLoader for DeviceFeeder<S> {
    fn batch_size(&self) -> usize {
        self.batch
    }

    fn batches_per_epoch(&self) -> u64 {
        self.batches_per_epoch
    }

    fn start_epoch(&mut self, epoch: u64, skip_batches: u64) -> Result<(), DataError> {
        self.stop_worker()?;
        let mut source = self
            .source
            .take()
            .ok_or_else(|| DataError::FeederGone("the source was lost".into()))?;
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
            .map_err(|e| DataError::FeederGone(format!("cannot start the feeding thread: {e}")))?;
        self.worker = Some(Worker {
            free_tx,
            filled_rx,
            handle,
        });
        Ok(())
    }

    fn next_batch(&mut self) -> Result<Option<DeviceBatch>, DataError> {
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
                return Err(DataError::FeederGone(
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
    use crate::data::{VecHostSource, VecSourceConfig};
    use shardfeed_engine::sampler::plan_epoch;

    fn vec_source(n: usize, batch: usize) -> VecHostSource {
        let (h, w) = (2, 3);
        let mut images = Vec::with_capacity(n * h * w * 3);
        for i in 0..n {
            images.extend(std::iter::repeat_n(i as u8, h * w * 3));
        }
        let config = VecSourceConfig {
            size: (h, w),
            batch,
            seed: 7,
            rank: 0,
            world: 1,
        };
        VecHostSource::new(images, (0..n as u32).collect(), &config).unwrap()
    }

    fn labels_of(b: &DeviceBatch) -> Vec<i64> {
        Vec::<i64>::try_from(&b.labels).unwrap()
    }

    /// The records the engine plans for epoch `epoch` of `n` images (one replica, batches of 4).
    fn planned(n: u64, epoch: u64) -> Vec<i64> {
        let spec = shardfeed_engine::sampler::EpochSpec {
            records: n,
            shard_starts: &[0],
            seed: 7,
            epoch,
            rank: 0,
            world: 1,
            last_batch: shardfeed_engine::sampler::LastBatch::Drop,
            multiple_of: 4,
            shuffle: shardfeed_engine::sampler::Shuffle::Global,
            partition: shardfeed_engine::sampler::Partition::GlobalBatches,
        };
        let plan = plan_epoch(&spec).unwrap();
        plan.samples.iter().map(|s| s.record as i64).collect()
    }

    #[test]
    fn feeder_normalises_on_the_device_and_keeps_pixels_and_labels_together() {
        let stats = ImageStats {
            mean: [10.0, 20.0, 30.0],
            std: [2.0, 4.0, 5.0],
        };
        let src = vec_source(10, 4);
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
        assert_eq!(seen, planned(10, 0));
        // The next epoch has its own order; skipping resumes mid-epoch exactly.
        f.start_epoch(1, 1).unwrap();
        let b = f.next_batch().unwrap().unwrap();
        assert_eq!(labels_of(&b), planned(10, 1)[4..8]);
        assert!(f.next_batch().unwrap().is_none());
        assert!(f.next_batch().unwrap().is_none());
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
        fn start_epoch(&mut self, _: u64, _: u64) -> Result<(), DataError> {
            Ok(())
        }
        fn next_host_batch(&mut self) -> Result<Option<HostBatch<'_>>, DataError> {
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
}
