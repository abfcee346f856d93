//! Small image builders shared by the unit tests.

use std::ops::Range;

use jpeg_encoder::{ColorType, Encoder};

/// Quality of the test JPEGs: high enough that solid colours survive within a few levels.
pub(crate) const TEST_QUALITY: u8 = 95;

/// Encodes `pixels` as a JPEG after letting `configure` adjust the encoder.
pub(crate) fn encode_with(
    pixels: &[u8],
    width: u16,
    height: u16,
    color: ColorType,
    configure: impl FnOnce(&mut Encoder<&mut Vec<u8>>),
) -> Vec<u8> {
    let mut jpeg = Vec::new();
    let mut encoder = Encoder::new(&mut jpeg, TEST_QUALITY);
    configure(&mut encoder);
    encoder
        .encode(pixels, width, height, color)
        .expect("test image encodes");
    jpeg
}

/// A baseline RGB JPEG with default settings.
pub(crate) fn jpeg_rgb(pixels: &[u8], width: u16, height: u16) -> Vec<u8> {
    encode_with(pixels, width, height, ColorType::Rgb, |_| {})
}

/// `width * height` copies of `pixel`.
pub(crate) fn solid(width: usize, height: usize, pixel: &[u8]) -> Vec<u8> {
    pixel.repeat(width * height)
}

/// A smooth RGB test pattern.
pub(crate) fn gradient_rgb(width: usize, height: usize) -> Vec<u8> {
    let mut pixels = Vec::with_capacity(width * height * 3);
    for y in 0..height {
        for x in 0..width {
            pixels.extend_from_slice(&[
                (x * 255 / width.max(1)) as u8,
                (y * 255 / height.max(1)) as u8,
                ((x + y) * 7 % 256) as u8,
            ]);
        }
    }
    pixels
}

/// The entropy-coded data of a single-scan (baseline) JPEG: from the end of the SOS segment to the
/// final EOI.
pub(crate) fn scan_data_range(jpeg: &[u8]) -> Range<usize> {
    let sos = jpeg
        .windows(2)
        .position(|w| w == [0xFF, 0xDA])
        .expect("has SOS");
    let length = usize::from(u16::from_be_bytes([jpeg[sos + 2], jpeg[sos + 3]]));
    assert_eq!(&jpeg[jpeg.len() - 2..], [0xFF, 0xD9], "ends with EOI");
    sos + 2 + length..jpeg.len() - 2
}

/// Asserts every pixel of an RGB buffer is within `tolerance` of `expected` on each channel.
pub(crate) fn assert_all_near(pixels: &[u8], expected: [u8; 3], tolerance: u8) {
    assert_eq!(pixels.len() % 3, 0);
    for (i, pixel) in pixels.chunks_exact(3).enumerate() {
        let close = pixel
            .iter()
            .zip(expected)
            .all(|(&got, want)| got.abs_diff(want) <= tolerance);
        assert!(
            close,
            "pixel {i} is {pixel:?}, expected {expected:?} ± {tolerance}"
        );
    }
}

/// `jpeg` with its frame header (`SOF0` or `SOF2`) patched to declare `width` x `height`: how
/// a decompression bomb is made from a real file.
pub(crate) fn patch_sof(mut jpeg: Vec<u8>, width: u16, height: u16) -> Vec<u8> {
    let sof = jpeg
        .windows(2)
        .position(|w| w == [0xFF, 0xC0] || w == [0xFF, 0xC2])
        .expect("has a SOF");
    // FF Cn, length (2), precision (1), height (2), width (2).
    jpeg[sof + 5..sof + 7].copy_from_slice(&height.to_be_bytes());
    jpeg[sof + 7..sof + 9].copy_from_slice(&width.to_be_bytes());
    jpeg
}
