//! The [`Augmenter`]'s steady state allocates no pixel buffer: once warmed up on the largest
//! image and output size, applying it to more images (and to the output sizes of progressive
//! resizing, 160 → 192 → 224, in turn) makes only the small per-call allocations of the
//! third-party kernels, and our own code adds none.
//!
//! A counting global allocator records, per thread, the allocations made while one call runs:
//! their number, their bytes and the largest one. What the kernels allocate per call is measured
//! here too, each alone: zune-jpeg's `decode_into` (through [`decode_rgb_into`] with a warm
//! buffer) and fast_image_resize's `Resizer::resize` (through [`Augmenter::resize_decoded`]).
//! The bounds are in [`KERNEL_BOUNDS`].

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use jpeg_encoder::{ColorType, Encoder, SamplingFactor};
use shardfeed_augment::{
    decode_rgb_into, Augmenter, DecodedRegion, ImageSize, SampleKey, TrainTransform, Transform,
    ValTransform,
};
use shardfeed_synth::{render_image, Split};

/// Counts the allocations of the current thread while `TRACKING` is on.
struct CountingAllocator;

thread_local! {
    static TRACKING: Cell<bool> = const { Cell::new(false) };
    static COUNT: Cell<u64> = const { Cell::new(0) };
    static BYTES: Cell<u64> = const { Cell::new(0) };
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn record(size: usize) {
    // `try_with`: the allocator may run while thread-locals are being torn down.
    let tracking = TRACKING.try_with(Cell::get).unwrap_or(false);
    if tracking {
        let _ = COUNT.try_with(|c| c.set(c.get() + 1));
        let _ = BYTES.try_with(|b| b.set(b.get() + size as u64));
        let _ = LARGEST.try_with(|l| l.set(l.get().max(size)));
    }
}

// SAFETY: every call is forwarded to the system allocator unchanged; the counters are
// thread-locals with const initialisers, which never allocate.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        record(layout.size());
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        record(layout.size());
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        record(new_size);
        // SAFETY: forwarded with the caller's pointer, layout and size.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded with the caller's pointer and layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// The allocations made by one call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Allocations {
    count: u64,
    bytes: u64,
    largest: usize,
}

impl Allocations {
    fn max(self, other: Allocations) -> Allocations {
        Allocations {
            count: self.count.max(other.count),
            bytes: self.bytes.max(other.bytes),
            largest: self.largest.max(other.largest),
        }
    }
}

/// Runs `f` and returns what it allocated on this thread.
fn allocations_of<T>(f: impl FnOnce() -> T) -> (T, Allocations) {
    COUNT.with(|c| c.set(0));
    BYTES.with(|b| b.set(0));
    LARGEST.with(|l| l.set(0));
    TRACKING.with(|t| t.set(true));
    let result = f();
    TRACKING.with(|t| t.set(false));
    let stats = Allocations {
        count: COUNT.with(Cell::get),
        bytes: BYTES.with(Cell::get),
        largest: LARGEST.with(Cell::get),
    };
    (result, stats)
}

/// Per-call allocations of the kernels, measured on the images below (ImageNet-shaped baseline
/// 4:2:0 JPEGs, 500x375 and others up to 1200 pixels wide) at outputs 160 to 224, with
/// headroom. Measured worst cases:
///
/// - zune-jpeg `decode_into`: 29 allocations, 238 KB in all, the largest 36 KB: decoder state,
///   Huffman and quantisation tables, per-component MCU-row buffers (they scale with the width,
///   not the area).
/// - fast_image_resize `Resizer::resize`: about 2 allocations per output row and column (one
///   small Vec of i16 weights each, 454 at 224) and the f64 weight tables (`side * window`
///   per axis), 65 KB in all, the largest 20 KB.
struct KernelBounds {
    decode_count: u64,
    decode_largest: usize,
    /// Per output side: the count is at most `2 * side + resize_count_extra`.
    resize_count_extra: u64,
    resize_largest: usize,
}

const KERNEL_BOUNDS: KernelBounds = KernelBounds {
    decode_count: 40,
    decode_largest: 64 * 1024,
    resize_count_extra: 16,
    resize_largest: 32 * 1024,
};

/// ImageNet-shaped baseline 4:2:0 JPEGs from the synthetic generator (sizes drawn from
/// ILSVRC2012's distribution, up to 1200 pixels wide).
fn sample_jpegs(count: u32) -> Vec<(Vec<u8>, ImageSize)> {
    (1..=count)
        .map(|k| {
            let image = render_image(k % 10, 10, 3, Split::Train, k);
            let mut jpeg = Vec::new();
            let mut encoder = Encoder::new(&mut jpeg, 90);
            encoder.set_sampling_factor(SamplingFactor::R_4_2_0);
            encoder
                .encode(
                    &image.data,
                    image.width as u16,
                    image.height as u16,
                    ColorType::Rgb,
                )
                .expect("encodes");
            let size = ImageSize {
                width: image.width,
                height: image.height,
            };
            (jpeg, size)
        })
        .collect()
}

fn transforms() -> Vec<Transform> {
    vec![
        Transform::Train(TrainTransform::new(160)),
        Transform::Train(TrainTransform::new(192)),
        Transform::Train(TrainTransform::new(224)),
        Transform::Val(ValTransform::new(224)),
    ]
}

#[test]
fn steady_state_allocates_no_pixel_buffer() {
    let images = sample_jpegs(12);
    let transforms = transforms();
    let largest_output = 224 * 224 * 3;
    let mut slot = vec![0_u8; largest_output];
    let mut augmenter = Augmenter::new();
    let key = |index: u64| SampleKey {
        seed: 11,
        epoch: 0,
        index,
    };

    // Warm up: every image under every transform, so each buffer reaches its largest size.
    for (t, transform) in transforms.iter().enumerate() {
        for (i, (jpeg, _)) in images.iter().enumerate() {
            let out = &mut slot[..transform.output_len()];
            augmenter
                .apply(jpeg, transform, key((t * 1000 + i) as u64), out)
                .expect("augments");
        }
    }

    // What the kernels allocate per call, each alone, with warm buffers.
    let mut decoded = Vec::new();
    let mut decode_alone = Allocations::default();
    let mut resize_alone = Allocations::default();
    for (jpeg, size) in &images {
        decode_rgb_into(jpeg, &mut decoded).expect("decodes");
        let (_, stats) = allocations_of(|| decode_rgb_into(jpeg, &mut decoded).expect("decodes"));
        decode_alone = decode_alone.max(stats);
        let region = DecodedRegion {
            pixels: &decoded,
            width: size.width,
            height: size.height,
            origin_x: 0,
            origin_y: 0,
            scale_denominator: 1,
            image: *size,
        };
        for transform in &transforms {
            let plan = transform.plan(*size, key(5));
            let out = &mut slot[..transform.output_len()];
            let (result, stats) = allocations_of(|| augmenter.resize_decoded(&region, &plan, out));
            result.expect("resizes");
            let bound = 2 * u64::from(transform.size()) + KERNEL_BOUNDS.resize_count_extra;
            assert!(
                stats.count <= bound && stats.largest <= KERNEL_BOUNDS.resize_largest,
                "fast_image_resize allocates more than measured: {stats:?} at {transform:?}"
            );
            resize_alone = resize_alone.max(stats);
        }
    }
    println!("per call, worst case: zune-jpeg decode {decode_alone:?}");
    println!("per call, worst case: fast_image_resize {resize_alone:?}");
    assert!(
        decode_alone.count <= KERNEL_BOUNDS.decode_count
            && decode_alone.largest <= KERNEL_BOUNDS.decode_largest,
        "zune-jpeg allocates more than measured: {decode_alone:?}"
    );

    // Steady state, progressive resizing: 160, then 192, then 224, then val, two epochs.
    let mut worst = Allocations::default();
    let mut index = 0;
    for _epoch in 0..2 {
        for transform in &transforms {
            for (jpeg, size) in &images {
                let out = &mut slot[..transform.output_len()];
                let (result, stats) =
                    allocations_of(|| augmenter.apply(jpeg, transform, key(index), out));
                result.expect("augments");
                index += 1;
                // Our code adds no allocation to the kernels': at most one decode's and one
                // resize's worth, per image.
                assert!(
                    stats.count <= decode_alone.count + resize_alone.count,
                    "{transform:?} on {size:?}: {stats:?} is more than the kernels' \
                     {decode_alone:?} + {resize_alone:?}"
                );
                // And nothing pixel-sized: every allocation is smaller than the smallest
                // decoded image and the smallest output.
                let smallest_pixels = (size.width * size.height * 3) as usize;
                let output_pixels = transform.output_len();
                assert!(
                    stats.largest < smallest_pixels.min(output_pixels) / 2,
                    "{transform:?} on {size:?}: an allocation of {} bytes",
                    stats.largest
                );
                worst = worst.max(stats);
            }
        }
    }
    println!("per image, worst case: Augmenter::apply {worst:?}");
}
