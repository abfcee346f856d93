//! Fuzzes the JPEG marker walk (`probe` on JPEG bytes): no panic, and what it accepts is a JPEG
//! within the limits, whose answer bytes after `EOI` do not change, and which a pixel limit just
//! under its size refuses, naming that size.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shardfeed_augment::{
    probe, probe_with_limits, DecodeLimits, ImageFormat, ProbeError, DEFAULT_MAX_PIXELS,
    MAX_DIMENSION,
};

fuzz_target!(|data: &[u8]| {
    // The walk only sees JPEG bytes: give every input the magic, so none is spent on the format
    // check.
    let mut bytes = Vec::with_capacity(data.len() + 3);
    if !data.starts_with(&[0xFF, 0xD8, 0xFF]) {
        bytes.extend_from_slice(&[0xFF, 0xD8, 0xFF]);
    }
    bytes.extend_from_slice(data);

    let Ok(info) = probe(&bytes) else {
        return;
    };
    assert_eq!(info.format, ImageFormat::Jpeg);
    let (width, height) = (info.width, info.height);
    assert!((1..=MAX_DIMENSION).contains(&width) && (1..=MAX_DIMENSION).contains(&height));
    let pixels = u64::from(width) * u64::from(height);
    assert!(pixels <= DEFAULT_MAX_PIXELS);

    // The walk stops at the first EOI: nothing after it counts.
    let mut longer = bytes.clone();
    longer.extend_from_slice(b"\xFF\xD9 trailing \xFF\xD8\xFF\xC0");
    assert_eq!(probe(&longer), Ok(info));

    // The frame header is checked against the limit as soon as it is read.
    let under = DecodeLimits {
        max_pixels: pixels - 1,
    };
    assert_eq!(
        probe_with_limits(&bytes, &under),
        Err(ProbeError::TooManyPixels {
            format: ImageFormat::Jpeg,
            width,
            height,
            max_pixels: pixels - 1,
        })
    );
});
