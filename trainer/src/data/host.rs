//! Host batch producers: what a data pipeline implements to feed the trainer through a
//! [`DeviceFeeder`](super::DeviceFeeder).

use super::DataError;

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
    fn start_epoch(&mut self, epoch: u64, skip_batches: u64) -> Result<(), DataError>;
    /// The next batch, `None` at the end of the epoch. The slices may be reused by the next call.
    fn next_host_batch(&mut self) -> Result<Option<HostBatch<'_>>, DataError>;
}
