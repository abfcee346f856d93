//! Validation of encoded images: [`probe`] (headers and structure, at disk speed) and
//! [`probe_deep`] (the same plus a full pixel decode).
//!
//! JPEG, nearly all of ImageNet, is checked by a marker walk that decodes no pixel (see
//! `codec::jpeg_walk`). The other formats are rare, so they are simply decoded through the `image`
//! crate. The format always comes from the magic bytes (see [`ImageFormat::detect`]).

use crate::codec::{image_rs, jpeg_walk, zune};
use crate::error::ProbeError;
use crate::info::{ImageFormat, ImageInfo};
use crate::limits::DecodeLimits;

/// Validates `bytes` cheaply and returns the image's size and colour model.
///
/// For JPEG this walks the markers and skips over the entropy-coded data without decoding it, so
/// it runs at disk speed; corrupt entropy-coded data with an intact marker structure is only found
/// by [`probe_deep`]. Bytes after `EOI` are allowed. Other formats are fully decoded.
///
/// Images over the default [`DecodeLimits`] are refused from their headers; see
/// [`probe_with_limits`].
///
/// # Errors
///
/// [`ProbeError::Empty`], [`ProbeError::NotAnImage`], [`ProbeError::TooManyPixels`], and for
/// JPEG [`ProbeError::Truncated`], [`ProbeError::Malformed`], [`ProbeError::Unsupported`] or
/// [`ProbeError::ScanTooShort`]; for other formats [`ProbeError::Unsupported`] or
/// [`ProbeError::Decode`].
pub fn probe(bytes: &[u8]) -> Result<ImageInfo, ProbeError> {
    probe_with_limits(bytes, &DecodeLimits::default())
}

/// [`probe`] with the given limits.
///
/// ```
/// use shardfeed_augment::{probe_with_limits, DecodeLimits, ImageFormat, ProbeError};
/// # let mut jpeg = Vec::new();
/// # jpeg_encoder::Encoder::new(&mut jpeg, 90)
/// #     .encode(&[128; 64 * 48 * 3], 64, 48, jpeg_encoder::ColorType::Rgb)?;
/// let limits = DecodeLimits { max_pixels: 1000 };
/// assert_eq!(
///     probe_with_limits(&jpeg, &limits),
///     Err(ProbeError::TooManyPixels {
///         format: ImageFormat::Jpeg,
///         width: 64,
///         height: 48,
///         max_pixels: 1000
///     })
/// );
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
///
/// As [`probe`].
pub fn probe_with_limits(bytes: &[u8], limits: &DecodeLimits) -> Result<ImageInfo, ProbeError> {
    match sniff(bytes)? {
        ImageFormat::Jpeg => jpeg_walk::walk(bytes, limits),
        format => {
            image_rs::load(bytes, format, limits).map(|image| image_rs::info_of(&image, format))
        }
    }
}

/// Like [`probe`], then also decodes every pixel, so corrupt entropy-coded JPEG data is caught.
///
/// Exactly the images that [`decode_rgb`](crate::decode_rgb) decodes pass.
///
/// # Errors
///
/// Everything [`probe`] returns, and [`ProbeError::Decode`] when the pixel decode fails.
pub fn probe_deep(bytes: &[u8]) -> Result<ImageInfo, ProbeError> {
    probe_deep_with_limits(bytes, &DecodeLimits::default())
}

/// [`probe_deep`] with the given limits.
///
/// # Errors
///
/// As [`probe_deep`].
pub fn probe_deep_with_limits(
    bytes: &[u8],
    limits: &DecodeLimits,
) -> Result<ImageInfo, ProbeError> {
    let info = probe_with_limits(bytes, limits)?;
    if info.format == ImageFormat::Jpeg {
        zune::decode_into(bytes, &mut Vec::new(), limits)?;
    }
    Ok(info)
}

/// Detects the format, rejecting empty and unrecognised inputs.
pub(crate) fn sniff(bytes: &[u8]) -> Result<ImageFormat, ProbeError> {
    if bytes.is_empty() {
        return Err(ProbeError::Empty);
    }
    match ImageFormat::detect(bytes) {
        ImageFormat::Unknown => Err(ProbeError::NotAnImage {
            magic: bytes[..bytes.len().min(4)].to_vec(),
        }),
        format => Ok(format),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::JpegPart;
    use crate::info::ColorModel;
    use crate::limits::MAX_DIMENSION;
    use crate::test_util::{encode_with, gradient_rgb, jpeg_rgb, scan_data_range, solid};
    use jpeg_encoder::ColorType;
    use proptest::prelude::*;
    use std::io::Cursor;

    fn truncated(at: JpegPart, offset: usize) -> ProbeError {
        ProbeError::Truncated { at, offset }
    }

    fn assert_malformed(result: Result<ImageInfo, ProbeError>, needle: &str) {
        match result {
            Err(ProbeError::Malformed { detail, .. }) if detail.contains(needle) => {}
            other => panic!("expected Malformed containing {needle:?}, got {other:?}"),
        }
    }

    fn assert_unsupported(result: Result<ImageInfo, ProbeError>, needle: &str) {
        match result {
            Err(ProbeError::Unsupported {
                format: ImageFormat::Jpeg,
                detail,
            }) if detail.contains(needle) => {}
            other => panic!("expected Unsupported containing {needle:?}, got {other:?}"),
        }
    }

    /// Offset of the payload of the first segment with `marker` (just past its length bytes).
    fn segment_payload(jpeg: &[u8], marker: u8) -> usize {
        jpeg.windows(2)
            .position(|w| w == [0xFF, marker])
            .map(|at| at + 4)
            .expect("marker present")
    }

    #[test]
    fn baseline_rgb_jpeg() {
        let jpeg = jpeg_rgb(&gradient_rgb(33, 17), 33, 17);
        let expected = ImageInfo {
            format: ImageFormat::Jpeg,
            width: 33,
            height: 17,
            color: ColorModel::Rgb,
            progressive: false,
        };
        assert_eq!(probe(&jpeg), Ok(expected));
        assert_eq!(probe_deep(&jpeg), Ok(expected));
    }

    #[test]
    fn progressive_jpeg() {
        let jpeg = encode_with(&gradient_rgb(40, 30), 40, 30, ColorType::Rgb, |e| {
            e.set_progressive(true)
        });
        let info = probe(&jpeg).expect("valid progressive JPEG");
        assert!(info.progressive);
        assert_eq!(
            (info.width, info.height, info.color),
            (40, 30, ColorModel::Rgb)
        );
        assert_eq!(probe_deep(&jpeg), Ok(info));
    }

    #[test]
    fn grayscale_jpeg() {
        let jpeg = encode_with(&[90; 24 * 8], 24, 8, ColorType::Luma, |_| {});
        let info = probe_deep(&jpeg).expect("valid grayscale JPEG");
        assert_eq!(
            (info.width, info.height, info.color),
            (24, 8, ColorModel::Gray)
        );
    }

    #[test]
    fn cmyk_and_ycck_jpegs() {
        let cmyk = solid(16, 16, &[10, 20, 30, 40]);
        let jpeg = encode_with(&cmyk, 16, 16, ColorType::Cmyk, |_| {});
        assert_eq!(probe_deep(&jpeg).map(|i| i.color), Ok(ColorModel::Cmyk));
        let jpeg = encode_with(&cmyk, 16, 16, ColorType::CmykAsYcck, |_| {});
        assert_eq!(probe_deep(&jpeg).map(|i| i.color), Ok(ColorModel::Ycck));
    }

    #[test]
    fn restart_interval_jpeg() {
        let jpeg = encode_with(&gradient_rgb(64, 48), 64, 48, ColorType::Rgb, |e| {
            e.set_restart_interval(2)
        });
        assert!(jpeg.windows(2).any(|w| w == [0xFF, 0xD0]), "has RST0");
        let info = probe(&jpeg).expect("valid JPEG with restart markers");
        assert_eq!((info.width, info.height), (64, 48));
        assert_eq!(probe_deep(&jpeg), Ok(info));
    }

    #[test]
    fn png_named_jpeg_is_probed_as_png() {
        let cases = [
            (image::DynamicImage::new_rgb8(7, 5), ColorModel::Rgb),
            (image::DynamicImage::new_rgba8(7, 5), ColorModel::Rgba),
            (image::DynamicImage::new_luma8(7, 5), ColorModel::Gray),
            (
                image::DynamicImage::new_luma_a8(7, 5),
                ColorModel::GrayAlpha,
            ),
        ];
        for (image, color) in cases {
            let mut png = Vec::new();
            image
                .write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png)
                .expect("encode PNG");
            let expected = ImageInfo {
                format: ImageFormat::Png,
                width: 7,
                height: 5,
                color,
                progressive: false,
            };
            assert_eq!(probe(&png), Ok(expected));
            assert_eq!(probe_deep(&png), Ok(expected));
        }
    }

    #[test]
    fn other_formats_round_trip_through_image() {
        let image = image::DynamicImage::new_rgb8(9, 4);
        for (format, ours) in [
            (image::ImageFormat::Bmp, ImageFormat::Bmp),
            (image::ImageFormat::Gif, ImageFormat::Gif),
            (image::ImageFormat::Tiff, ImageFormat::Tiff),
            (image::ImageFormat::WebP, ImageFormat::Webp),
        ] {
            let mut bytes = Vec::new();
            image
                .write_to(&mut Cursor::new(&mut bytes), format)
                .expect("encode");
            let info = probe(&bytes).expect("valid image");
            assert_eq!((info.format, info.width, info.height), (ours, 9, 4));
        }
    }

    #[test]
    fn corrupt_png_is_a_decode_error() {
        let mut png = Vec::new();
        image::DynamicImage::new_rgb8(20, 20)
            .write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png)
            .expect("encode PNG");
        png.truncate(png.len() - 20);
        assert!(matches!(
            probe(&png),
            Err(ProbeError::Decode {
                format: ImageFormat::Png,
                ..
            })
        ));
    }

    #[test]
    fn oversized_png_is_unsupported() {
        let mut png = Vec::new();
        image::DynamicImage::new_luma8(MAX_DIMENSION + 1, 1)
            .write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png)
            .expect("encode PNG");
        assert!(matches!(
            probe(&png),
            Err(ProbeError::Unsupported {
                format: ImageFormat::Png,
                ..
            })
        ));
    }

    #[test]
    fn empty_input() {
        assert_eq!(probe(b""), Err(ProbeError::Empty));
        assert_eq!(probe_deep(b""), Err(ProbeError::Empty));
        assert_eq!(ProbeError::Empty.to_string(), "empty file");
    }

    #[test]
    fn text_is_not_an_image() {
        let error = probe(b"<html><body>404</body></html>").unwrap_err();
        assert_eq!(
            error,
            ProbeError::NotAnImage {
                magic: b"<htm".to_vec()
            }
        );
        assert_eq!(
            error.to_string(),
            "not an image (unrecognised magic bytes 3c 68 74 6d)"
        );
        assert_eq!(
            probe(b"\xFF"),
            Err(ProbeError::NotAnImage { magic: vec![0xFF] })
        );
    }

    #[test]
    fn every_truncation_of_a_jpeg_is_an_error() {
        for jpeg in [
            jpeg_rgb(&gradient_rgb(20, 12), 20, 12),
            encode_with(&gradient_rgb(20, 12), 20, 12, ColorType::Rgb, |e| {
                e.set_progressive(true)
            }),
            encode_with(&gradient_rgb(20, 12), 20, 12, ColorType::Rgb, |e| {
                e.set_restart_interval(1)
            }),
        ] {
            for len in 0..jpeg.len() {
                let prefix = &jpeg[..len];
                let result = probe(prefix);
                match len {
                    0 => assert_eq!(result, Err(ProbeError::Empty)),
                    1 | 2 => assert!(matches!(result, Err(ProbeError::NotAnImage { .. }))),
                    _ => assert!(
                        matches!(result, Err(ProbeError::Truncated { offset, .. }) if offset == len),
                        "length {len}: {result:?}"
                    ),
                }
                assert_eq!(probe_deep(prefix), result, "length {len}");
            }
        }
    }

    #[test]
    fn truncation_messages_say_where_the_file_ends() {
        let jpeg = jpeg_rgb(&gradient_rgb(20, 12), 20, 12);
        let scan = scan_data_range(&jpeg);
        let cut = scan.start + 5;
        assert_eq!(probe(&jpeg[..cut]), Err(truncated(JpegPart::ScanData, cut)));
        assert_eq!(
            probe(&jpeg[..cut]).unwrap_err().to_string(),
            format!("truncated JPEG: no EOI marker (ends inside scan data at byte {cut})")
        );
        // Cut inside the APP0 (JFIF) segment, which jpeg-encoder writes first.
        assert_eq!(
            probe(&jpeg[..10]).unwrap_err().to_string(),
            "truncated JPEG: no EOI marker (ends inside the APP0 segment (declared length 16) at byte 10)"
        );
        // Cut after the APP0 segment, where the next marker should begin.
        assert_eq!(
            probe(&jpeg[..20]),
            Err(truncated(JpegPart::BeforeMarker, 20))
        );
    }

    #[test]
    fn trailing_bytes_after_eoi_are_allowed() {
        let mut jpeg = jpeg_rgb(&gradient_rgb(20, 12), 20, 12);
        let expected = probe(&jpeg).expect("valid");
        jpeg.extend_from_slice(b"\0\0\0garbage\xFF\xD8");
        assert_eq!(probe(&jpeg), Ok(expected));
        assert_eq!(probe_deep(&jpeg), Ok(expected));
    }

    #[test]
    fn segment_length_past_the_end_is_truncation() {
        let mut jpeg = jpeg_rgb(&gradient_rgb(8, 8), 8, 8);
        let app0 = segment_payload(&jpeg, 0xE0);
        jpeg[app0 - 2..app0].copy_from_slice(&[0xFF, 0xF0]);
        assert_eq!(
            probe(&jpeg),
            Err(truncated(
                JpegPart::Segment {
                    marker: 0xE0,
                    length: 0xFFF0
                },
                jpeg.len()
            ))
        );
    }

    #[test]
    fn segment_length_below_two_is_malformed() {
        let mut jpeg = jpeg_rgb(&gradient_rgb(8, 8), 8, 8);
        let app0 = segment_payload(&jpeg, 0xE0);
        jpeg[app0 - 2..app0].copy_from_slice(&[0, 1]);
        assert_malformed(probe(&jpeg), "APP0 segment length 1 is less than 2");
    }

    #[test]
    fn missing_sof_and_missing_scan_are_malformed() {
        assert_malformed(probe(b"\xFF\xD8\xFF\xD9"), "without a SOF");
        let jpeg = jpeg_rgb(&gradient_rgb(8, 8), 8, 8);
        let sos = segment_payload(&jpeg, 0xDA) - 4;
        let mut no_scan = jpeg[..sos].to_vec();
        no_scan.extend_from_slice(b"\xFF\xD9");
        assert_malformed(probe(&no_scan), "EOI before any SOS");
    }

    #[test]
    fn sos_before_sof_is_malformed() {
        let bytes = b"\xFF\xD8\xFF\xDA\x00\x08\x01\x01\x00\x00\x3F\x00\x12\x34\xFF\xD9";
        assert_malformed(probe(bytes), "SOS (scan) before SOF");
        assert_eq!(
            probe(bytes).unwrap_err().to_string(),
            "malformed JPEG at byte 2: SOS (scan) before SOF (frame header)"
        );
    }

    #[test]
    fn garbage_between_segments_is_malformed() {
        let jpeg = jpeg_rgb(&gradient_rgb(8, 8), 8, 8);
        let app0_end = segment_payload(&jpeg, 0xE0) + 14;
        let mut bytes = jpeg[..app0_end].to_vec();
        bytes.push(0x42);
        bytes.extend_from_slice(&jpeg[app0_end..]);
        assert_eq!(
            probe(&bytes),
            Err(ProbeError::Malformed {
                offset: app0_end,
                detail: "expected a marker (0xFF), found byte 0x42".to_owned()
            })
        );
    }

    #[test]
    fn zero_width_is_malformed_and_zero_height_unsupported() {
        let jpeg = jpeg_rgb(&gradient_rgb(8, 8), 8, 8);
        let sof = segment_payload(&jpeg, 0xC0);
        let mut bytes = jpeg.clone();
        bytes[sof + 3..sof + 5].copy_from_slice(&[0, 0]);
        assert_malformed(probe(&bytes), "SOF0 declares a width of 0");
        let mut bytes = jpeg;
        bytes[sof + 1..sof + 3].copy_from_slice(&[0, 0]);
        assert_unsupported(probe(&bytes), "DNL");
    }

    #[test]
    fn unsupported_coding_processes_are_named() {
        let jpeg = jpeg_rgb(&gradient_rgb(8, 8), 8, 8);
        let sof_marker = segment_payload(&jpeg, 0xC0) - 3;
        for (code, needle) in [
            (0xC3, "lossless JPEG (SOF3)"),
            (0xC9, "arithmetic-coded JPEG (SOF9)"),
            (0xCA, "arithmetic-coded JPEG (SOF10)"),
            (0xC5, "hierarchical JPEG (SOF5)"),
        ] {
            let mut bytes = jpeg.clone();
            bytes[sof_marker] = code;
            assert_unsupported(probe(&bytes), needle);
        }
    }

    #[test]
    fn twelve_bit_and_oversized_frames_are_unsupported() {
        let jpeg = jpeg_rgb(&gradient_rgb(8, 8), 8, 8);
        let sof = segment_payload(&jpeg, 0xC0);
        let mut bytes = jpeg.clone();
        bytes[sof] = 12;
        assert_unsupported(probe(&bytes), "12-bit samples");
        let mut bytes = jpeg;
        bytes[sof + 3..sof + 5].copy_from_slice(&40_000_u16.to_be_bytes());
        assert_unsupported(probe(&bytes), "40000x8 exceeds the limit");
    }

    #[test]
    fn probe_deep_catches_an_invalid_huffman_code_that_probe_accepts() {
        let jpeg = jpeg_rgb(&gradient_rgb(64, 64), 64, 64);
        let scan = scan_data_range(&jpeg);
        // A run of stuffed 0xFF bytes is a run of 1 bits: no Huffman code is all ones.
        let mut bytes = jpeg.clone();
        for pair in bytes[scan.start + 10..scan.start + 50].chunks_exact_mut(2) {
            pair.copy_from_slice(&[0xFF, 0x00]);
        }
        assert!(probe(&bytes).is_ok());
        assert!(
            matches!(
                probe_deep(&bytes),
                Err(ProbeError::Decode { format: ImageFormat::Jpeg, ref detail })
                    if detail.contains("Huffman")
            ),
            "{:?}",
            probe_deep(&bytes)
        );
    }

    /// Pins a known gap: zune-jpeg (even in strict mode, and like libjpeg, which only warns) pads a
    /// scan that stops early at a marker with zero bits, so a file whose scan data was cut short
    /// but still ends in EOI decodes "successfully". Catching it needs an entropy-decoding check
    /// of our own; if this test starts failing, the decoder has learnt to report it.
    #[test]
    fn known_gap_scan_cut_short_before_eoi_passes_probe_deep() {
        let jpeg = jpeg_rgb(&gradient_rgb(64, 64), 64, 64);
        let scan = scan_data_range(&jpeg);
        let mut bytes = jpeg[..scan.start + scan.len() / 2].to_vec();
        bytes.extend_from_slice(&jpeg[scan.end..]);
        assert!(probe_deep(&bytes).is_ok());
    }

    fn valid_jpegs() -> Vec<Vec<u8>> {
        let pixels = gradient_rgb(24, 16);
        vec![
            jpeg_rgb(&pixels, 24, 16),
            encode_with(&pixels, 24, 16, ColorType::Rgb, |e| e.set_progressive(true)),
            encode_with(&pixels, 24, 16, ColorType::Rgb, |e| {
                e.set_restart_interval(1)
            }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

        #[test]
        fn random_bytes_never_panic(mut bytes in proptest::collection::vec(any::<u8>(), 0..300),
                                    jpeg_magic in any::<bool>()) {
            if jpeg_magic {
                bytes.splice(0..0, [0xFF, 0xD8, 0xFF]);
            }
            let cheap = probe(&bytes);
            let deep = probe_deep(&bytes);
            // Whatever probe_deep accepts, probe accepts with the same answer.
            if let Ok(info) = deep {
                prop_assert_eq!(cheap, Ok(info));
            }
        }

        #[test]
        fn damaged_jpegs_never_panic(which in 0..3_usize,
                                     cut in any::<prop::sample::Index>(),
                                     flips in proptest::collection::vec(
                                         (any::<prop::sample::Index>(), 0..8_u8), 0..6)) {
            let mut bytes = valid_jpegs().swap_remove(which);
            for (at, bit) in flips {
                let i = at.index(bytes.len());
                bytes[i] ^= 1 << bit;
            }
            bytes.truncate(cut.index(bytes.len() + 1));
            let cheap = probe(&bytes);
            let deep = probe_deep(&bytes);
            if let Ok(info) = deep {
                prop_assert_eq!(cheap, Ok(info));
            }
        }
    }
}
