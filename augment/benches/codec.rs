//! Per-image cost of the codec functions `shardfeed shard` and the loaders call, on a 500x375
//! photo-like JPEG (ImageNet's most common size), baseline and progressive:
//!
//! - `probe`: the structural check of pass-through sharding (JPEG marker walk, no pixels);
//! - `probe_deep`: `--deep-check` (a full decode);
//! - `decode_rgb_into`: decode into a reused buffer, as the loader's workers do;
//! - `reencode`: decode, shrink to a longer side of 256, encode q90 (`shard --max-side 256`).
//!
//! Run: `cargo bench -p shardfeed-augment --bench codec` (add `-- --quick` for a short run, or
//! a name filter such as `-- probe/`). Throughput is reported in input bytes per second.
//! Results and the machine they came from: docs/BENCHMARKS.md.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use jpeg_encoder::{ColorType, Encoder, SamplingFactor};
use shardfeed_augment::{decode_rgb_into, probe, probe_deep, ReencodeOptions, Reencoder};
use std::hint::black_box;

const WIDTH: u16 = 500;
const HEIGHT: u16 = 375;

/// A 500x375 photo-like JPEG (smooth shapes, a checker pattern and noise) at quality 90, 4:2:0:
/// about 100 KB, as ImageNet's average file.
fn sample_jpeg(progressive: bool) -> Vec<u8> {
    let mut state = 0x2545_F491_4F6C_DD1D_u64;
    let mut noise = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % 48) as i32 - 24
    };
    let mut pixels = Vec::with_capacity(usize::from(WIDTH) * usize::from(HEIGHT) * 3);
    for y in 0..i32::from(HEIGHT) {
        for x in 0..i32::from(WIDTH) {
            let base = [
                (x * 255 / 500) + ((x / 25 + y / 25) % 2) * 40,
                (y * 255 / 375),
                128 + ((x - 250) * (y - 187) / 400) % 100,
            ];
            for channel in base {
                pixels.push((channel + noise()).clamp(0, 255) as u8);
            }
        }
    }
    let mut jpeg = Vec::new();
    let mut encoder = Encoder::new(&mut jpeg, 90);
    encoder.set_sampling_factor(SamplingFactor::R_4_2_0);
    encoder.set_progressive(progressive);
    if let Err(e) = encoder.encode(&pixels, WIDTH, HEIGHT, ColorType::Rgb) {
        panic!("the benchmark's sample JPEG does not encode: {e}");
    }
    jpeg
}

fn codec(c: &mut Criterion) {
    let samples = [
        ("baseline", sample_jpeg(false)),
        ("progressive", sample_jpeg(true)),
    ];
    let to_256 = ReencodeOptions {
        max_side: Some(256),
        quality: 90,
    };
    for (name, jpeg) in &samples {
        // Every function must accept the sample, or the benchmark would time an error path.
        assert!(probe(jpeg).is_ok() && probe_deep(jpeg).is_ok(), "{name}");
    }

    let mut group = c.benchmark_group("probe");
    for (name, jpeg) in &samples {
        group.throughput(Throughput::Bytes(jpeg.len() as u64));
        group.bench_with_input(BenchmarkId::from_parameter(name), jpeg, |b, jpeg| {
            b.iter(|| probe(black_box(jpeg)))
        });
    }
    group.finish();

    let mut group = c.benchmark_group("probe_deep");
    for (name, jpeg) in &samples {
        group.throughput(Throughput::Bytes(jpeg.len() as u64));
        group.bench_with_input(BenchmarkId::from_parameter(name), jpeg, |b, jpeg| {
            b.iter(|| probe_deep(black_box(jpeg)))
        });
    }
    group.finish();

    let mut group = c.benchmark_group("decode_rgb_into");
    for (name, jpeg) in &samples {
        let mut buffer = Vec::new();
        group.throughput(Throughput::Bytes(jpeg.len() as u64));
        group.bench_with_input(BenchmarkId::from_parameter(name), jpeg, |b, jpeg| {
            b.iter(|| decode_rgb_into(black_box(jpeg), &mut buffer).map(|(w, _)| w))
        });
    }
    group.finish();

    let mut group = c.benchmark_group("reencode_256_q90");
    for (name, jpeg) in &samples {
        let mut reencoder = Reencoder::new();
        group.throughput(Throughput::Bytes(jpeg.len() as u64));
        group.bench_with_input(BenchmarkId::from_parameter(name), jpeg, |b, jpeg| {
            b.iter(|| {
                reencoder
                    .reencode(black_box(jpeg), &to_256)
                    .map(|r| r.jpeg.len())
            })
        });
    }
    group.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
