//! [`VecHostSource`]: images and labels held in memory, served in the engine's epoch order
//! ([`shardfeed_engine::sampler::plan_epoch`]: a fresh global shuffle each epoch, whole batches,
//! each replica its slice of every global batch), so it partitions and resumes exactly as the shards pipeline does.

use shardfeed_engine::sampler::{
    per_rank_count, plan_epoch, EpochSpec, LastBatch, Partition, Shuffle,
};

use super::{DataError, HostBatch, HostBatchSource};

/// How a [`VecHostSource`] serves its images.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VecSourceConfig {
    /// `(height, width)` of every image.
    pub size: (usize, usize),
    /// Images per batch on this replica.
    pub batch: usize,
    /// Seed of the per-epoch shuffle.
    pub seed: u64,
    /// This replica's rank, `0..world`.
    pub rank: usize,
    /// Number of replicas.
    pub world: usize,
}

impl Default for VecSourceConfig {
    fn default() -> Self {
        VecSourceConfig {
            size: (32, 32),
            batch: 32,
            seed: 0,
            rank: 0,
            world: 1,
        }
    }
}

/// Images and labels held in memory, shuffled per epoch with a seed, partitioned by replica.
pub struct VecHostSource {
    images: Vec<u8>,
    labels: Vec<u32>,
    size: (usize, usize),
    batch: usize,
    seed: u64,
    rank: u32,
    world: u32,
    batches_per_epoch: u64,
    /// This replica's records of the current epoch, in order.
    order: Vec<usize>,
    cursor: usize,
    batch_images: Vec<u8>,
    batch_labels: Vec<u32>,
}

impl VecHostSource {
    /// `labels.len()` images of `config.size` RGB in `images`, served to replica `config.rank`
    /// of `config.world` in whole batches of `config.batch`.
    ///
    /// # Errors
    ///
    /// [`DataError::Config`] when the image bytes do not match the labels, the rank is not below
    /// the world size, or there are too few images for one whole batch per replica.
    pub fn new(
        images: Vec<u8>,
        labels: Vec<u32>,
        config: &VecSourceConfig,
    ) -> Result<Self, DataError> {
        let VecSourceConfig {
            size: (height, width),
            batch,
            seed,
            rank,
            world,
        } = *config;
        let per_image = height * width * 3;
        if images.len() != labels.len() * per_image {
            return Err(DataError::Config(format!(
                "{} bytes of images for {} labels of {height}x{width}x3 (want {})",
                images.len(),
                labels.len(),
                labels.len() * per_image
            )));
        }
        let bad_shape = || {
            DataError::Config(format!(
                "batch {batch}, rank {rank}, world {world}: need batch > 0 and rank < world"
            ))
        };
        if batch == 0 || world == 0 || rank >= world {
            return Err(bad_shape());
        }
        let rank = u32::try_from(rank).map_err(|_| bad_shape())?;
        let world = u32::try_from(world).map_err(|_| bad_shape())?;
        let per_rank = per_rank_count(labels.len() as u64, world, batch as u64, LastBatch::Drop)
            .map_err(|e| DataError::Config(format!("{} images: {e}", labels.len())))?;
        Ok(VecHostSource {
            images,
            labels,
            size: (height, width),
            batch,
            seed,
            rank,
            world,
            batches_per_epoch: per_rank / batch as u64,
            order: Vec::new(),
            cursor: 0,
            batch_images: vec![0; batch * per_image],
            batch_labels: vec![0; batch],
        })
    }

    /// The engine's plan of `epoch` for this replica.
    fn spec(&self, epoch: u64) -> EpochSpec<'static> {
        EpochSpec {
            records: self.labels.len() as u64,
            // One "shard": only `Shuffle::ShardWindow` reads the shard starts.
            shard_starts: &[0],
            seed: self.seed,
            epoch,
            rank: self.rank,
            world: self.world,
            last_batch: LastBatch::Drop,
            multiple_of: self.batch as u64,
            shuffle: Shuffle::Global,
            partition: Partition::GlobalBatches,
        }
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
        self.batches_per_epoch
    }

    fn start_epoch(&mut self, epoch: u64, skip_batches: u64) -> Result<(), DataError> {
        let plan = plan_epoch(&self.spec(epoch)).map_err(|e| DataError::Config(e.to_string()))?;
        self.order = plan.samples.iter().map(|s| s.record as usize).collect();
        let skip = usize::try_from(skip_batches)
            .unwrap_or(usize::MAX)
            .saturating_mul(self.batch);
        self.cursor = skip.min(self.order.len());
        Ok(())
    }

    fn next_host_batch(&mut self) -> Result<Option<HostBatch<'_>>, DataError> {
        if self.cursor + self.batch > self.order.len() {
            return Ok(None);
        }
        let per_image = self.size.0 * self.size.1 * 3;
        for (k, &idx) in self.order[self.cursor..self.cursor + self.batch]
            .iter()
            .enumerate()
        {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` one-pixel images whose pixel and label are their index.
    fn source(n: usize, batch: usize, rank: usize, world: usize) -> VecHostSource {
        let config = VecSourceConfig {
            size: (1, 1),
            batch,
            seed: 7,
            rank,
            world,
        };
        let images = (0..n).flat_map(|i| [i as u8; 3]).collect();
        VecHostSource::new(images, (0..n as u32).collect(), &config).unwrap()
    }

    fn epoch(src: &mut VecHostSource, epoch: u64, skip: u64) -> Vec<u32> {
        src.start_epoch(epoch, skip).unwrap();
        let mut seen = Vec::new();
        while let Some(b) = src.next_host_batch().unwrap() {
            assert_eq!(b.images.len(), b.labels.len() * 3);
            assert!(b
                .labels
                .iter()
                .zip(b.images.chunks(3))
                .all(|(&l, px)| px == [l as u8; 3]));
            seen.extend_from_slice(b.labels);
        }
        seen
    }

    #[test]
    fn serves_the_engines_plan_of_each_epoch() {
        let mut src = source(10, 4, 0, 1);
        assert_eq!(src.batches_per_epoch(), 2);
        for e in 0..2 {
            let plan = plan_epoch(&src.spec(e)).unwrap();
            let want: Vec<u32> = plan.samples.iter().map(|s| s.record as u32).collect();
            assert_eq!(want.len(), 8, "whole batches only");
            assert_eq!(epoch(&mut src, e, 0), want);
        }
        assert_ne!(epoch(&mut src, 0, 0), epoch(&mut src, 1, 0));
        // Skipping a batch resumes at the second one.
        let full = epoch(&mut src, 1, 0);
        assert_eq!(epoch(&mut src, 1, 1), full[4..]);
        assert!(epoch(&mut src, 1, 5).is_empty());
    }

    #[test]
    fn replicas_get_disjoint_whole_batches() {
        let mut all = Vec::new();
        for rank in 0..2 {
            let mut src = source(20, 3, rank, 2);
            assert_eq!(src.batches_per_epoch(), 3);
            all.extend(epoch(&mut src, 2, 0));
        }
        assert_eq!(all.len(), 18);
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 18);
    }

    #[test]
    fn too_few_images_for_a_batch_per_replica_is_refused() {
        let config = VecSourceConfig {
            size: (1, 1),
            batch: 5,
            rank: 1,
            world: 2,
            ..VecSourceConfig::default()
        };
        let err = VecHostSource::new(vec![0; 27], (0..9).collect(), &config)
            .err()
            .expect("an error");
        assert_eq!(
            err.to_string(),
            "invalid loader configuration: 9 images: 9 records cannot give each of 2 ranks a \
             multiple of 5 samples with drop: use pad, a smaller batch or fewer ranks"
        );
        let err = VecHostSource::new(
            vec![0; 27],
            (0..9).collect(),
            &VecSourceConfig { rank: 2, ..config },
        )
        .err()
        .expect("an error");
        assert_eq!(
            err.to_string(),
            "invalid loader configuration: batch 5, rank 2, world 2: need batch > 0 and rank < world"
        );
    }
}
