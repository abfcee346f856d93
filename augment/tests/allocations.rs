//! The [`Augmenter`]'s steady state allocates no pixel buffer: once warmed up on the largest
//! image and output size, applying it to more images (and to the output sizes of progressive
//! resizing, 160 → 192 → 224, in turn) makes only the small per-call allocations of the
//! third-party kernels, and our own code adds none. On both JPEG backends, and in C too.
//!
//! Two counters record, per thread, the allocations made while one call runs (their number,
//! their bytes and the largest one):
//!
//! - Rust's: a counting global allocator.
//! - C's: libjpeg-turbo is C, linked statically, and allocates with `malloc`/`calloc`, which no
//!   global allocator sees. This test binary defines `malloc`, `calloc`, `realloc`,
//!   `posix_memalign`, `aligned_alloc` and `free` itself: the static link resolves every call in
//!   the binary to them (libjpeg-turbo's, and Rust's `System` allocator's), and they forward to
//!   the C library's, found with `dlsym(RTLD_NEXT)`. A call made from inside the Rust allocator
//!   is not counted again as C.
//!
//! What the kernels allocate per call is measured here too, each alone: zune-jpeg's
//! `decode_into` (through [`decode_rgb_into`] with a warm buffer), libjpeg-turbo's decode
//! (through a warm [`RegionDecoder`]) and fast_image_resize's `Resizer::resize` (through
//! [`Augmenter::resize_decoded`]). The bounds are in [`KERNEL_BOUNDS`].

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::ffi::{c_char, c_int, c_void};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering};

use jpeg_encoder::{ColorType, Encoder, SamplingFactor};
use shardfeed_augment::{
    decode_rgb_into, Augmenter, DecodedRegion, ImageSize, JpegBackend, RegionDecoder, SampleKey,
    TrainTransform, Transform, ValTransform,
};
use shardfeed_synth::{render_image, Split};

/// Counts the Rust allocations of the current thread while `TRACKING` is on.
struct CountingAllocator;

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

/// The allocations of one call, in Rust and in C.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Measured {
    rust: Allocations,
    c: Allocations,
}

impl Measured {
    fn max(self, other: Measured) -> Measured {
        Measured {
            rust: self.rust.max(other.rust),
            c: self.c.max(other.c),
        }
    }

    fn largest(&self) -> usize {
        self.rust.largest.max(self.c.largest)
    }
}

thread_local! {
    static TRACKING: Cell<bool> = const { Cell::new(false) };
    /// Set while the Rust allocator runs, so that the C allocation it makes is not counted twice.
    static IN_RUST_ALLOCATOR: Cell<bool> = const { Cell::new(false) };
    static RUST: Cell<Allocations> = const { Cell::new(Allocations { count: 0, bytes: 0, largest: 0 }) };
    static C: Cell<Allocations> = const { Cell::new(Allocations { count: 0, bytes: 0, largest: 0 }) };
}

/// Adds an allocation of `size` bytes to `counter` if tracking. Thread-locals with const
/// initialisers and no destructor never allocate, so this is safe to call from `malloc`;
/// `try_with` because it may run while a thread's locals are being torn down.
fn record(counter: &'static std::thread::LocalKey<Cell<Allocations>>, size: usize) {
    if TRACKING.try_with(Cell::get).unwrap_or(false) {
        let _ = counter.try_with(|c| {
            let a = c.get();
            c.set(Allocations {
                count: a.count + 1,
                bytes: a.bytes + size as u64,
                largest: a.largest.max(size),
            });
        });
    }
}

/// Runs `f` on the system allocator with the C counter off.
fn in_rust_allocator<T>(f: impl FnOnce() -> T) -> T {
    let outer = IN_RUST_ALLOCATOR
        .try_with(|r| r.replace(true))
        .unwrap_or(false);
    let result = f();
    let _ = IN_RUST_ALLOCATOR.try_with(|r| r.set(outer));
    result
}

// SAFETY: every call is forwarded to the system allocator unchanged; the counters are
// thread-locals with const initialisers, which never allocate.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        record(&RUST, layout.size());
        // SAFETY: forwarded with the caller's layout.
        in_rust_allocator(|| unsafe { System.alloc(layout) })
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        record(&RUST, layout.size());
        // SAFETY: forwarded with the caller's layout.
        in_rust_allocator(|| unsafe { System.alloc_zeroed(layout) })
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        record(&RUST, new_size);
        // SAFETY: forwarded with the caller's pointer, layout and size.
        in_rust_allocator(|| unsafe { System.realloc(ptr, layout, new_size) })
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded with the caller's pointer and layout.
        in_rust_allocator(|| unsafe { System.dealloc(ptr, layout) })
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// The C allocation functions of this binary: counted, then forwarded to the C library's.
mod c_allocator {
    use super::*;

    extern "C" {
        fn dlsym(handle: *mut c_void, symbol: *const c_char) -> *mut c_void;
    }
    /// glibc's `RTLD_NEXT`: the next definition after this object's.
    const RTLD_NEXT: *mut c_void = -1_isize as *mut c_void;

    type Malloc = unsafe extern "C" fn(usize) -> *mut c_void;
    type Calloc = unsafe extern "C" fn(usize, usize) -> *mut c_void;
    type Realloc = unsafe extern "C" fn(*mut c_void, usize) -> *mut c_void;
    type Free = unsafe extern "C" fn(*mut c_void);
    type PosixMemalign = unsafe extern "C" fn(*mut *mut c_void, usize, usize) -> c_int;
    type AlignedAlloc = unsafe extern "C" fn(usize, usize) -> *mut c_void;

    static MALLOC: AtomicPtr<c_void> = AtomicPtr::new(std::ptr::null_mut());
    static CALLOC: AtomicPtr<c_void> = AtomicPtr::new(std::ptr::null_mut());
    static REALLOC: AtomicPtr<c_void> = AtomicPtr::new(std::ptr::null_mut());
    static FREE: AtomicPtr<c_void> = AtomicPtr::new(std::ptr::null_mut());
    static POSIX_MEMALIGN: AtomicPtr<c_void> = AtomicPtr::new(std::ptr::null_mut());
    static ALIGNED_ALLOC: AtomicPtr<c_void> = AtomicPtr::new(std::ptr::null_mut());
    /// Set while `dlsym` runs: it may allocate, and those allocations come from `ARENA`.
    static RESOLVING: AtomicBool = AtomicBool::new(false);

    /// Bootstrap memory for allocations made while the real functions are being looked up:
    /// zeroed, handed out in 16-byte aligned pieces, each after a 16-byte header holding its
    /// size, never reused.
    const ARENA_SIZE: usize = 1 << 16;
    #[repr(C, align(16))]
    struct Arena([u8; ARENA_SIZE]);
    static mut ARENA: Arena = Arena([0; ARENA_SIZE]);
    static ARENA_USED: AtomicUsize = AtomicUsize::new(0);

    fn arena_range() -> (usize, usize) {
        let start = std::ptr::addr_of!(ARENA) as usize;
        (start, start + ARENA_SIZE)
    }

    fn in_arena(ptr: *mut c_void) -> bool {
        let (start, end) = arena_range();
        (start..end).contains(&(ptr as usize))
    }

    fn arena_alloc(size: usize) -> *mut c_void {
        let needed = 16 + size.div_ceil(16) * 16;
        let at = ARENA_USED.fetch_add(needed, Ordering::Relaxed);
        if at + needed > ARENA_SIZE {
            return std::ptr::null_mut();
        }
        let (start, _) = arena_range();
        let header = (start + at) as *mut usize;
        // SAFETY: `header..header + needed` lies inside ARENA, was never handed out, and is
        // 16-byte aligned; only this call writes it.
        unsafe {
            header.write(size);
            header.cast::<u8>().add(16).cast()
        }
    }

    /// The C library's `name`, looked up once; null while a lookup is under way on any thread
    /// (the caller then uses the arena).
    fn real(slot: &AtomicPtr<c_void>, name: &std::ffi::CStr) -> *mut c_void {
        let found = slot.load(Ordering::Acquire);
        if !found.is_null() || RESOLVING.swap(true, Ordering::AcqRel) {
            return found;
        }
        // SAFETY: RTLD_NEXT and a NUL-terminated name are what dlsym takes.
        let found = unsafe { dlsym(RTLD_NEXT, name.as_ptr()) };
        slot.store(found, Ordering::Release);
        RESOLVING.store(false, Ordering::Release);
        found
    }

    fn count(size: usize) {
        if !IN_RUST_ALLOCATOR.try_with(Cell::get).unwrap_or(true) {
            record(&C, size);
        }
    }

    #[no_mangle]
    pub unsafe extern "C" fn malloc(size: usize) -> *mut c_void {
        let f = real(&MALLOC, c"malloc");
        if f.is_null() {
            return arena_alloc(size);
        }
        count(size);
        // SAFETY: `f` is the C library's malloc.
        unsafe { std::mem::transmute::<*mut c_void, Malloc>(f)(size) }
    }

    #[no_mangle]
    pub unsafe extern "C" fn calloc(n: usize, size: usize) -> *mut c_void {
        let f = real(&CALLOC, c"calloc");
        let Some(total) = n.checked_mul(size) else {
            return std::ptr::null_mut();
        };
        if f.is_null() {
            return arena_alloc(total); // the arena is zeroed and never reused
        }
        count(total);
        // SAFETY: `f` is the C library's calloc.
        unsafe { std::mem::transmute::<*mut c_void, Calloc>(f)(n, size) }
    }

    #[no_mangle]
    pub unsafe extern "C" fn realloc(ptr: *mut c_void, size: usize) -> *mut c_void {
        if in_arena(ptr) {
            // SAFETY: `ptr` came from arena_alloc, whose header holds its size.
            let old = unsafe { ptr.cast::<usize>().sub(2).read() };
            // SAFETY: malloc as above.
            let new = unsafe { malloc(size) };
            if !new.is_null() {
                // SAFETY: both blocks hold at least the bytes copied.
                unsafe {
                    std::ptr::copy_nonoverlapping(ptr.cast::<u8>(), new.cast(), old.min(size))
                };
            }
            return new;
        }
        let f = real(&REALLOC, c"realloc");
        if f.is_null() {
            return std::ptr::null_mut();
        }
        count(size);
        // SAFETY: `f` is the C library's realloc, and `ptr` came from the C library.
        unsafe { std::mem::transmute::<*mut c_void, Realloc>(f)(ptr, size) }
    }

    #[no_mangle]
    pub unsafe extern "C" fn posix_memalign(
        out: *mut *mut c_void,
        align: usize,
        size: usize,
    ) -> c_int {
        let f = real(&POSIX_MEMALIGN, c"posix_memalign");
        if f.is_null() {
            return 12; // ENOMEM
        }
        count(size);
        // SAFETY: `f` is the C library's posix_memalign, with the caller's arguments.
        unsafe { std::mem::transmute::<*mut c_void, PosixMemalign>(f)(out, align, size) }
    }

    #[no_mangle]
    pub unsafe extern "C" fn aligned_alloc(align: usize, size: usize) -> *mut c_void {
        let f = real(&ALIGNED_ALLOC, c"aligned_alloc");
        if f.is_null() {
            return std::ptr::null_mut();
        }
        count(size);
        // SAFETY: `f` is the C library's aligned_alloc, with the caller's arguments.
        unsafe { std::mem::transmute::<*mut c_void, AlignedAlloc>(f)(align, size) }
    }

    #[no_mangle]
    pub unsafe extern "C" fn free(ptr: *mut c_void) {
        if ptr.is_null() || in_arena(ptr) {
            return;
        }
        let f = real(&FREE, c"free");
        if !f.is_null() {
            // SAFETY: `f` is the C library's free, and `ptr` came from the C library.
            unsafe { std::mem::transmute::<*mut c_void, Free>(f)(ptr) }
        }
    }
}

/// Runs `f` and returns what it allocated on this thread, in Rust and in C.
fn allocations_of<T>(f: impl FnOnce() -> T) -> (T, Measured) {
    RUST.with(|c| c.set(Allocations::default()));
    C.with(|c| c.set(Allocations::default()));
    TRACKING.with(|t| t.set(true));
    let result = f();
    TRACKING.with(|t| t.set(false));
    let measured = Measured {
        rust: RUST.with(Cell::get),
        c: C.with(Cell::get),
    };
    (result, measured)
}

/// Per-call allocations of the kernels, measured on the images below (ImageNet-shaped baseline
/// 4:2:0 JPEGs, 500x375 and others up to 1200 pixels wide) at outputs 160 to 224, with
/// headroom. Measured worst cases:
///
/// - zune-jpeg `decode_into`: 29 allocations, 238 KB in all, the largest 36 KB: decoder state,
///   Huffman and quantisation tables, per-component MCU-row buffers (they scale with the width,
///   not the area).
/// - libjpeg-turbo's decode (C, whole images and crops alike): 9 allocations, 85 KB in all, the
///   largest 23 KB: its memory manager's pools, iMCU-row sample buffers (width-sized), the
///   output row pointers. Nothing in Rust: the pixel buffer is the decoder's, reused.
/// - fast_image_resize `Resizer::resize`: about 2 allocations per output row and column (one
///   small Vec of i16 weights each, 454 at 224) and the f64 weight tables (`side * window`
///   per axis), 65 KB in all, the largest 20 KB.
struct KernelBounds {
    decode_count: u64,
    decode_largest: usize,
    turbo_c_count: u64,
    turbo_c_largest: usize,
    /// Per output side: the count is at most `2 * side + resize_count_extra`.
    resize_count_extra: u64,
    resize_largest: usize,
}

const KERNEL_BOUNDS: KernelBounds = KernelBounds {
    decode_count: 40,
    decode_largest: 64 * 1024,
    turbo_c_count: 16,
    turbo_c_largest: 64 * 1024,
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
fn the_c_counter_sees_c_allocations_and_only_those() {
    extern "C" {
        fn malloc(size: usize) -> *mut c_void;
        fn free(ptr: *mut c_void);
    }
    // A Rust allocation is Rust's alone, although the system allocator calls malloc for it.
    let (v, stats) = allocations_of(|| vec![7_u8; 5000]);
    drop(v);
    assert_eq!(stats.rust.count, 1);
    assert_eq!(stats.c, Allocations::default());
    // malloc called from anywhere else is C's.
    let (_, stats) = allocations_of(|| {
        // SAFETY: a plain malloc/free pair. black_box keeps an optimising build (the crate is
        // opt-level 2 in dev too) from eliding the pair.
        unsafe { free(std::hint::black_box(malloc(777))) }
    });
    assert_eq!(
        stats.c,
        Allocations {
            count: 1,
            bytes: 777,
            largest: 777
        }
    );
    assert_eq!(stats.rust.count, 0);
    // And libjpeg-turbo's own allocations are seen: a first decode sets up its decompressor.
    let (jpeg, size) = sample_jpegs(1).remove(0);
    let mut decoder = RegionDecoder::with_backend(JpegBackend::Turbo);
    let (result, stats) = allocations_of(|| decoder.decode(&jpeg, None).map(|r| r.width));
    assert_eq!(result, Ok(size.width));
    assert!(stats.c.count > 0, "{stats:?}");
    // The pixel buffer is Rust's: libjpeg-turbo writes into it.
    assert!(
        stats.rust.largest >= (size.width * size.height * 3) as usize,
        "{stats:?}"
    );
}

#[test]
fn steady_state_allocates_no_pixel_buffer() {
    for backend in [JpegBackend::Turbo, JpegBackend::Zune] {
        steady_state(backend);
    }
}

fn steady_state(backend: JpegBackend) {
    let images = sample_jpegs(12);
    let transforms = transforms();
    let largest_output = 224 * 224 * 3;
    let mut slot = vec![0_u8; largest_output];
    let mut augmenter = Augmenter::with_backend(backend);
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
    let mut turbo = RegionDecoder::with_backend(JpegBackend::Turbo);
    for (jpeg, _) in &images {
        turbo.decode(jpeg, None).expect("decodes");
    }
    let mut decode_alone = Measured::default();
    let mut resize_alone = Measured::default();
    for (jpeg, size) in &images {
        decode_rgb_into(jpeg, &mut decoded).expect("decodes");
        let (_, stats) = match backend {
            JpegBackend::Zune => allocations_of(|| decode_rgb_into(jpeg, &mut decoded).map(|_| ())),
            JpegBackend::Turbo => allocations_of(|| turbo.decode(jpeg, None).map(|_| ())),
        };
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
                stats.rust.count <= bound
                    && stats.rust.largest <= KERNEL_BOUNDS.resize_largest
                    && stats.c == Allocations::default(),
                "fast_image_resize allocates more than measured: {stats:?} at {transform:?}"
            );
            resize_alone = resize_alone.max(stats);
        }
    }
    println!("{backend}: per call, worst case: decode {decode_alone:?}");
    println!("{backend}: per call, worst case: fast_image_resize {resize_alone:?}");
    let within = match backend {
        JpegBackend::Zune => {
            decode_alone.rust.count <= KERNEL_BOUNDS.decode_count
                && decode_alone.rust.largest <= KERNEL_BOUNDS.decode_largest
                && decode_alone.c == Allocations::default()
        }
        JpegBackend::Turbo => {
            decode_alone.c.count <= KERNEL_BOUNDS.turbo_c_count
                && decode_alone.c.largest <= KERNEL_BOUNDS.turbo_c_largest
                && decode_alone.rust == Allocations::default()
        }
    };
    assert!(
        within,
        "{backend} decoding allocates more than measured: {decode_alone:?}"
    );

    // Steady state, progressive resizing: 160, then 192, then 224, then val, two epochs.
    let mut worst = Measured::default();
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
                // resize's worth per image, in Rust and in C.
                assert!(
                    stats.rust.count <= decode_alone.rust.count + resize_alone.rust.count
                        && stats.c.count <= decode_alone.c.count,
                    "{backend}, {transform:?} on {size:?}: {stats:?} is more than the kernels' \
                     {decode_alone:?} + {resize_alone:?}"
                );
                // And nothing pixel-sized, in Rust or in C: every allocation is smaller than
                // the smallest decoded image and the smallest output.
                let smallest_pixels = (size.width * size.height * 3) as usize;
                let output_pixels = transform.output_len();
                assert!(
                    stats.largest() < smallest_pixels.min(output_pixels) / 2,
                    "{backend}, {transform:?} on {size:?}: an allocation of {} bytes ({stats:?})",
                    stats.largest()
                );
                worst = worst.max(stats);
            }
        }
    }
    println!("{backend}: per image, worst case: Augmenter::apply {worst:?}");
}
