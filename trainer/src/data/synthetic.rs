//! Synthetic, learnable batches made on the device, to measure the trainer alone: loss curves
//! mean something, and no data pipeline sits in the way.

use shardfeed_engine::rng::SplitMix64;
use tch::{Device, Kind, Tensor};

use super::staging::{staging, upload, write_i64};
use super::{DataError, DeviceBatch, DeviceLoader};
use crate::precision::{to_memory_format, MemoryFormat};

/// What a [`SyntheticLoader`] makes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SyntheticConfig {
    /// Images per batch.
    pub batch: usize,
    /// `(height, width)` of every image.
    pub size: (usize, usize),
    /// Number of classes.
    pub classes: usize,
    /// Batches per epoch.
    pub batches_per_epoch: u64,
    /// Seed of the class patterns, the noise and the labels.
    pub seed: u64,
    /// Replica rank: keys the noise and the labels, so replicas (and a validation loader made
    /// with another rank) see other images of the same classes.
    pub rank: usize,
    /// Memory format of the images.
    pub format: MemoryFormat,
    /// Scale of the per-pixel noise (1.0: the class pattern and the noise have about equal
    /// magnitude).
    pub noise: f32,
}

impl Default for SyntheticConfig {
    fn default() -> Self {
        SyntheticConfig {
            batch: 32,
            size: (32, 32),
            classes: 10,
            batches_per_epoch: 50,
            seed: 0,
            rank: 0,
            format: MemoryFormat::Contiguous,
            noise: 1.0,
        }
    }
}

/// Uniform in `[-1, 1)`.
fn symmetric(rng: &mut SplitMix64) -> f32 {
    rng.next_f32() * 2.0 - 1.0
}

/// Synthetic, learnable batches made on the device: each class has a coarse 4x4 colour pattern,
/// upsampled and added to one of a few fixed noise tensors. Labels follow a seeded generator
/// keyed by (seed, rank, epoch, batch), so runs and resumes are exact and replicas differ.
///
/// ```
/// use shardfeed_trainer::data::{DeviceLoader, SyntheticConfig, SyntheticLoader};
/// let config = SyntheticConfig { batch: 4, size: (8, 8), classes: 3, batches_per_epoch: 2, ..Default::default() };
/// let mut loader = SyntheticLoader::new(tch::Device::Cpu, &config)?;
/// loader.start_epoch(0, 0)?;
/// assert_eq!(loader.next_batch()?.expect("a batch").images.size(), vec![4, 3, 8, 8]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
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
    /// Staging for labels (pinned on CUDA), reused three batches later (see [`DeviceLoader`]).
    label_slots: Vec<Tensor>,
}

impl SyntheticLoader {
    /// The batches `config` describes, made on `device`.
    ///
    /// # Errors
    ///
    /// [`DataError::Config`] when the batch size, image size or class count is 0.
    pub fn new(device: Device, config: &SyntheticConfig) -> Result<Self, DataError> {
        let &SyntheticConfig {
            batch,
            size: (height, width),
            classes: num_classes,
            batches_per_epoch,
            seed,
            rank,
            format,
            noise,
        } = config;
        if batch == 0 || num_classes == 0 || height == 0 || width == 0 {
            return Err(DataError::Config(
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

impl DeviceLoader for SyntheticLoader {
    fn batch_size(&self) -> usize {
        self.batch
    }

    fn batches_per_epoch(&self) -> u64 {
        self.batches_per_epoch
    }

    fn start_epoch(&mut self, epoch: u64, skip_batches: u64) -> Result<(), DataError> {
        self.epoch = epoch;
        self.next = skip_batches.min(self.batches_per_epoch);
        Ok(())
    }

    fn next_batch(&mut self) -> Result<Option<DeviceBatch>, DataError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_batches_are_deterministic_per_position_and_rank() {
        let make = |rank| {
            let config = SyntheticConfig {
                batch: 4,
                size: (8, 8),
                classes: 5,
                batches_per_epoch: 3,
                seed: 11,
                rank,
                format: MemoryFormat::ChannelsLast,
                noise: 1.0,
            };
            SyntheticLoader::new(Device::Cpu, &config).unwrap()
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

    #[test]
    fn an_empty_shape_is_refused() {
        let config = SyntheticConfig {
            classes: 0,
            ..SyntheticConfig::default()
        };
        let err = SyntheticLoader::new(Device::Cpu, &config)
            .err()
            .expect("an error");
        assert_eq!(
            err.to_string(),
            "invalid loader configuration: synthetic loader needs a batch size, image size and \
             class count above 0"
        );
    }
}
