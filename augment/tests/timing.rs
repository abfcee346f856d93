//! Rough per-image timings of probe vs probe_deep on an ImageNet-sized JPEG.
//!
//! Not a benchmark (no statistics, no assertions): run it in release mode and read the output,
//! `cargo test --release -p shardfeed-augment --test timing -- --ignored --nocapture`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use jpeg_encoder::{ColorType, Encoder, SamplingFactor};
use shardfeed_augment::{decode_rgb_into, probe, probe_deep, ReencodeOptions, Reencoder};

const WIDTH: u16 = 500;
const HEIGHT: u16 = 375;

/// A 500x375 photo-like JPEG (smooth shapes plus noise) at quality 90, 4:2:0, ~100 KB.
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
    encoder
        .encode(&pixels, WIDTH, HEIGHT, ColorType::Rgb)
        .expect("encodes");
    jpeg
}

fn time_per_call(mut f: impl FnMut()) -> Duration {
    // Warm up, then run for about half a second.
    for _ in 0..3 {
        f();
    }
    let start = Instant::now();
    let mut calls = 0_u32;
    while start.elapsed() < Duration::from_millis(500) {
        f();
        calls += 1;
    }
    start.elapsed() / calls
}

#[test]
#[ignore = "timing report; run in release with --ignored --nocapture"]
fn probe_vs_probe_deep_500x375() {
    let mut buffer = Vec::new();
    let mut reencoder = Reencoder::new();
    let to_256 = ReencodeOptions {
        max_side: Some(256),
        quality: 90,
    };
    for progressive in [false, true] {
        let jpeg = sample_jpeg(progressive);
        let probe_time = time_per_call(|| {
            black_box(probe(black_box(&jpeg)).expect("valid"));
        });
        let deep_time = time_per_call(|| {
            black_box(probe_deep(black_box(&jpeg)).expect("valid"));
        });
        let decode_time = time_per_call(|| {
            black_box(decode_rgb_into(black_box(&jpeg), &mut buffer).expect("valid"));
        });
        let reencode_time = time_per_call(|| {
            black_box(
                reencoder
                    .reencode(black_box(&jpeg), &to_256)
                    .expect("valid"),
            );
        });
        let megabytes = jpeg.len() as f64 / 1e6;
        println!(
            "{WIDTH}x{HEIGHT} {} JPEG, {} bytes: probe {:.1} us ({:.0} MB/s), probe_deep {:.2} ms, \
             decode_rgb_into {:.2} ms, reencode to 256 {:.2} ms",
            if progressive { "progressive" } else { "baseline" },
            jpeg.len(),
            probe_time.as_secs_f64() * 1e6,
            megabytes / probe_time.as_secs_f64(),
            deep_time.as_secs_f64() * 1e3,
            decode_time.as_secs_f64() * 1e3,
            reencode_time.as_secs_f64() * 1e3,
        );
    }
}
