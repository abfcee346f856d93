//! [`Batch`], what the loader hands out, and the fixed pool of buffers batches live in.
//!
//! A loader owns `prefetch` [`BatchState`]s, made once. Each holds a [`BatchBuf`]: one
//! allocation for the images of a whole batch plus the small per-sample arrays. The dispatcher
//! takes a free state from the [`Pool`] (blocking when there is none: that is the
//! back-pressure), splits the image buffer into one [`BytesMut`] slot per sample (disjoint views
//! of the same allocation, so workers write into the batch in place without locks or `unsafe`),
//! and sends the slots to the workers. The worker that returns the last slot joins the slots
//! back into one buffer (O(1) per slot: they are adjacent) and sends the finished [`Batch`] to
//! the consumer. Dropping a `Batch` puts its buffer back into the pool, so memory never grows.

use crate::augment::Transform;
use crate::loader::error::{BatchError, RecordFailure};
use crate::loader::Position;
use bytes::BytesMut;
use crossbeam_channel::{bounded, Receiver, Sender};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// The contents of a batch buffer. At rest `images` is the whole allocation; during a fill it
/// is split into `slots` (one per sample) and `tail` (the unused rest).
#[derive(Debug, Default)]
pub(crate) struct BatchBuf {
    pub images: BytesMut,
    pub tail: BytesMut,
    pub slots: Vec<Option<BytesMut>>,
    pub labels: Vec<u32>,
    pub records: Vec<u64>,
    pub positions: Vec<u64>,
    pub failures: Vec<RecordFailure>,
    /// The first fatal error, with the slot it came from (the lowest slot wins, so the error
    /// reported does not depend on which worker finished first).
    pub error: Option<(usize, BatchError)>,
    /// Slots not yet handed back.
    pub remaining: usize,
    /// Samples in this batch.
    pub len: usize,
    pub transform: Option<Transform>,
    pub position: Position,
    /// Sequence number in the stream (delivery order).
    pub seq: u64,
    /// Records in the dataset: positions at or past it are padding.
    pub dataset_len: u64,
}

impl BatchBuf {
    fn with_capacity(batch_size: usize, image_bytes: usize) -> Self {
        BatchBuf {
            images: BytesMut::zeroed(batch_size * image_bytes),
            slots: Vec::with_capacity(batch_size),
            labels: Vec::with_capacity(batch_size),
            records: Vec::with_capacity(batch_size),
            positions: Vec::with_capacity(batch_size),
            ..BatchBuf::default()
        }
    }

    /// Bytes per image of the current fill.
    pub fn image_len(&self) -> usize {
        self.transform.map_or(0, |t| t.output_len())
    }

    /// Joins the slots and the tail back into one buffer, in order.
    pub fn rejoin(&mut self) {
        let mut whole = BytesMut::new();
        for slot in self.slots.iter_mut() {
            if let Some(s) = slot.take() {
                // Adjacent views of one allocation: O(1), no copy.
                whole.unsplit(s);
            }
        }
        whole.unsplit(std::mem::take(&mut self.tail));
        self.images = whole;
    }
}

/// One batch buffer and its lock. Shared (by `Arc`) between the dispatcher, the workers filling
/// it, and the `Batch` handed out; recycled through the pool, never reallocated.
#[derive(Debug)]
pub(crate) struct BatchState {
    buf: Mutex<BatchBuf>,
}

impl BatchState {
    /// The buffer. A panic while it was held cannot leave it inconsistent in a way that
    /// matters (the next fill resets every field), so a poisoned lock is used as is.
    pub fn lock(&self) -> MutexGuard<'_, BatchBuf> {
        self.buf.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The fixed set of batch buffers.
#[derive(Debug)]
pub(crate) struct Pool {
    pub free_tx: Sender<Arc<BatchState>>,
    pub free_rx: Receiver<Arc<BatchState>>,
    pub size: usize,
    /// Batches handed to the caller and not yet dropped.
    pub held: Arc<AtomicUsize>,
}

impl Pool {
    /// `size` buffers of `batch_size` images of `image_bytes` each. The memory is zeroed
    /// lazily by the OS (calloc), so pages count only once touched.
    pub fn new(size: usize, batch_size: usize, image_bytes: usize) -> Pool {
        let (free_tx, free_rx) = bounded(size);
        for _ in 0..size {
            let state = Arc::new(BatchState {
                buf: Mutex::new(BatchBuf::with_capacity(batch_size, image_bytes)),
            });
            // The channel holds exactly `size`.
            let _ = free_tx.try_send(state);
        }
        Pool {
            free_tx,
            free_rx,
            size,
            held: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Buffers in the pool now (not being filled, ready, or held).
    pub fn free(&self) -> usize {
        self.free_rx.len()
    }
}

/// A batch of augmented images: `len()` images of `side() x side()` RGB pixels, `uint8`, laid
/// out NHWC (`images()[((n * side + y) * side + x) * 3 + c]`), with their labels and where they
/// came from.
///
/// The images live in one of the loader's fixed buffers; dropping the `Batch` gives the buffer
/// back, so keep a batch only as long as you need it (copy `images()` into pinned memory, then
/// drop it). The loader never makes more than `prefetch` batches at once.
#[derive(Debug)]
pub struct Batch {
    buf: BatchBuf,
    state: Option<Arc<BatchState>>,
    home: Sender<Arc<BatchState>>,
    held: Option<Arc<AtomicUsize>>,
}

impl Batch {
    /// A finished batch: `buf` taken out of `state`, to go back there on drop.
    pub(crate) fn new(
        buf: BatchBuf,
        state: Arc<BatchState>,
        home: Sender<Arc<BatchState>>,
    ) -> Self {
        Batch {
            buf,
            state: Some(state),
            home,
            held: None,
        }
    }

    pub(crate) fn buf(&self) -> &BatchBuf {
        &self.buf
    }

    pub(crate) fn take_error(&mut self) -> Option<BatchError> {
        self.buf.error.take().map(|(_, e)| e)
    }

    /// Counts this batch as held by the caller until it is dropped.
    pub(crate) fn hand_out(&mut self, held: &Arc<AtomicUsize>) {
        held.fetch_add(1, Ordering::AcqRel);
        self.held = Some(Arc::clone(held));
    }

    /// Images in the batch (the batch size, or fewer in an epoch's last batch).
    pub fn len(&self) -> usize {
        self.buf.len
    }

    /// True when the batch holds no image.
    pub fn is_empty(&self) -> bool {
        self.buf.len == 0
    }

    /// The images: `len() * side() * side() * 3` bytes, RGB, NHWC.
    pub fn images(&self) -> &[u8] {
        &self.buf.images[..self.buf.len * self.buf.image_len()]
    }

    /// Image `i` (`side() * side() * 3` bytes, HWC).
    ///
    /// # Panics
    ///
    /// When `i >= len()`.
    pub fn image(&self, i: usize) -> &[u8] {
        assert!(i < self.len(), "image {i} of a batch of {}", self.len());
        let n = self.buf.image_len();
        &self.buf.images[i * n..(i + 1) * n]
    }

    /// The label of each image (class index; `u32::MAX` for a record stored without one).
    pub fn labels(&self) -> &[u32] {
        &self.buf.labels
    }

    /// The side of the square images, in pixels.
    pub fn side(&self) -> u32 {
        self.buf.transform.map_or(0, |t| t.size())
    }

    /// `[len, side, side, 3]`: the shape of `images()` (NHWC).
    pub fn shape(&self) -> [usize; 4] {
        let side = self.side() as usize;
        [self.len(), side, side, 3]
    }

    /// The transform that made the images.
    pub fn transform(&self) -> Option<Transform> {
        self.buf.transform
    }

    /// The epoch.
    pub fn epoch(&self) -> u64 {
        self.buf.position.epoch
    }

    /// The batch's number in its epoch, from 0.
    pub fn index(&self) -> u64 {
        self.buf.position.batch
    }

    /// (epoch, batch index): resuming from `position().next(..)` continues after this batch.
    pub fn position(&self) -> Position {
        self.buf.position
    }

    /// Each image's position in the epoch's global order: the index its augmentation was
    /// seeded with (`SampleKey::index`), unique within the epoch.
    pub fn positions(&self) -> &[u64] {
        &self.buf.positions
    }

    /// The global record each image was made from (a failed record's replacement, where one
    /// was needed).
    pub fn records(&self) -> &[u64] {
        &self.buf.records
    }

    /// True when image `i` is a padding duplicate (its position is past the dataset's records,
    /// added so that every rank has as many samples): leave it out of evaluation metrics.
    pub fn is_padding(&self, i: usize) -> bool {
        self.buf.positions[i] >= self.buf.dataset_len
    }

    /// The number of padding duplicates in the batch.
    pub fn padding(&self) -> usize {
        self.buf
            .positions
            .iter()
            .filter(|&&p| p >= self.buf.dataset_len)
            .count()
    }

    /// Records of this batch that failed and were replaced, by position.
    pub fn failures(&self) -> &[RecordFailure] {
        &self.buf.failures
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        if let Some(state) = self.state.take() {
            *state.lock() = std::mem::take(&mut self.buf);
            // The pool's channel holds every buffer; it only fails once the loader is gone.
            let _ = self.home.try_send(state);
        }
        if let Some(held) = self.held.take() {
            held.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::augment::ValTransform;

    #[test]
    fn slots_split_and_rejoin_without_copying() {
        let mut buf = BatchBuf::with_capacity(4, 12);
        let base = buf.images.as_ptr();
        let mut rest = std::mem::take(&mut buf.images);
        let mut slots: Vec<BytesMut> = (0..3).map(|_| rest.split_to(12)).collect();
        buf.tail = rest;
        for (i, s) in slots.iter_mut().enumerate() {
            s.fill(i as u8 + 1);
        }
        buf.slots = slots.into_iter().map(Some).collect();
        buf.rejoin();
        assert_eq!(buf.images.as_ptr(), base, "same allocation");
        assert_eq!(buf.images.len(), 48);
        assert_eq!(&buf.images[..36], [[1u8; 12], [2; 12], [3; 12]].concat());
        assert!(buf.slots.iter().all(Option::is_none));
    }

    #[test]
    fn dropping_a_batch_returns_its_buffer_to_the_pool() {
        let pool = Pool::new(2, 3, 12);
        assert_eq!(pool.free(), 2);
        let state = pool.free_rx.try_recv().expect("a free buffer");
        let mut buf = std::mem::take(&mut *state.lock());
        buf.len = 2;
        buf.transform = Some(Transform::Val(ValTransform { size: 2, resize: 2 }));
        buf.positions = vec![0, 5];
        buf.dataset_len = 5;
        let mut batch = Batch::new(buf, state, pool.free_tx.clone());
        batch.hand_out(&pool.held);
        assert_eq!(pool.held.load(Ordering::Acquire), 1);
        assert_eq!(batch.images().len(), 24);
        assert_eq!(batch.shape(), [2, 2, 2, 3]);
        assert_eq!(batch.padding(), 1);
        assert!(batch.is_padding(1) && !batch.is_padding(0));
        assert_eq!(pool.free(), 1);
        drop(batch);
        assert_eq!(pool.free(), 2);
        assert_eq!(pool.held.load(Ordering::Acquire), 0);
        let back = pool.free_rx.try_recv().expect("a free buffer");
        assert_eq!(back.lock().images.len(), 36, "the buffer came back whole");
    }
}
