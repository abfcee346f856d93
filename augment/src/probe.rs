//! Validation of encoded images: [`probe`] (headers and structure, at disk speed) and
//! [`probe_deep`] (the same plus a full pixel decode).
//!
//! JPEG, nearly all of ImageNet, is checked by a marker walk that decodes no pixel (see the
//! `jpeg` module). The other formats are rare, so they are simply decoded through the `image`
//! crate. The format always comes from the magic bytes (see [`ImageFormat::detect`]).

use std::io::Cursor;

use crate::decode::decode_jpeg_into;
use crate::format::ImageFormat;
use crate::jpeg::{self, JpegPart};

/// The largest width or height accepted, in pixels, for every format.
///
/// The decoders are told this limit, so a hostile header cannot make them allocate gigabytes.
/// ImageNet's largest images are a few thousand pixels on a side.
pub const MAX_DIMENSION: u32 = 32_768;

/// What [`probe`] learns about an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ImageInfo {
    /// The container format, from the magic bytes.
    pub format: ImageFormat,
    /// Width in pixels, at least 1.
    pub width: u32,
    /// Height in pixels, at least 1.
    pub height: u32,
    /// The colour model the pixels are stored in.
    pub color: ColorModel,
    /// A progressive JPEG (`SOF2`); always `false` for other formats.
    pub progressive: bool,
}

/// The colour model of the stored pixels, before any conversion to RGB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ColorModel {
    /// One channel.
    Gray,
    /// Three channels: YCbCr or RGB (JPEG), or RGB (other formats).
    Rgb,
    /// Four-channel JPEG, CMYK (no Adobe transform, or transform 0).
    Cmyk,
    /// Four-channel JPEG, YCCK (Adobe transform 2).
    Ycck,
    /// RGB with alpha (non-JPEG formats).
    Rgba,
    /// Gray with alpha (non-JPEG formats).
    GrayAlpha,
    /// Anything else the `image` crate may report.
    Other,
}

/// Why an input is not a usable image. Each variant prints a short reason for a report.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProbeError {
    /// Zero bytes.
    #[error("empty file")]
    Empty,
    /// The first bytes match no supported format.
    #[error("not an image (unrecognised magic bytes {})", hex(magic))]
    NotAnImage {
        /// Up to the first four bytes of the input.
        magic: Vec<u8>,
    },
    /// The JPEG ends before its `EOI` marker.
    #[error("truncated JPEG: no EOI marker (ends {at} at byte {offset})")]
    Truncated {
        /// What was being read when the input ran out.
        at: JpegPart,
        /// The input's length: where it ends.
        offset: usize,
    },
    /// The JPEG's marker structure is broken.
    #[error("malformed JPEG at byte {offset}: {detail}")]
    Malformed {
        /// Byte offset of the marker (or byte) at fault.
        offset: usize,
        /// What is wrong.
        detail: String,
    },
    /// A valid file this crate cannot decode: lossless, arithmetic-coded or 12-bit JPEG, images
    /// over [`MAX_DIMENSION`], or a format feature the `image` crate does not support.
    #[error("unsupported {format}: {detail}")]
    Unsupported {
        /// The detected format.
        format: ImageFormat,
        /// What is not supported.
        detail: String,
    },
    /// The decoder rejected the data (corrupt entropy-coded data, a bad PNG chunk, ...).
    #[error("{format} decode failed: {detail}")]
    Decode {
        /// The detected format.
        format: ImageFormat,
        /// The decoder's message.
        detail: String,
    },
}

/// Validates `bytes` cheaply and returns the image's size and colour model.
///
/// For JPEG this walks the markers and skips over the entropy-coded data without decoding it, so
/// it runs at disk speed; corrupt entropy-coded data with an intact marker structure is only found
/// by [`probe_deep`]. Bytes after `EOI` are allowed. Other formats are fully decoded.
///
/// # Errors
///
/// [`ProbeError::Empty`], [`ProbeError::NotAnImage`], and for JPEG
/// [`ProbeError::Truncated`], [`ProbeError::Malformed`] or [`ProbeError::Unsupported`]; for
/// other formats [`ProbeError::Unsupported`] or [`ProbeError::Decode`].
pub fn probe(bytes: &[u8]) -> Result<ImageInfo, ProbeError> {
    match sniff(bytes)? {
        ImageFormat::Jpeg => jpeg::walk(bytes),
        format => load_other(bytes, format).map(|image| info_of(&image, format)),
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
    let info = probe(bytes)?;
    if info.format == ImageFormat::Jpeg {
        decode_jpeg_into(bytes, &mut Vec::new())?;
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

/// Decodes a non-JPEG image through the `image` crate, with [`MAX_DIMENSION`] as its limit.
pub(crate) fn load_other(
    bytes: &[u8],
    format: ImageFormat,
) -> Result<image::DynamicImage, ProbeError> {
    let image_format = match format {
        ImageFormat::Png => image::ImageFormat::Png,
        ImageFormat::Gif => image::ImageFormat::Gif,
        ImageFormat::Webp => image::ImageFormat::WebP,
        ImageFormat::Bmp => image::ImageFormat::Bmp,
        ImageFormat::Tiff => image::ImageFormat::Tiff,
        ImageFormat::Jpeg | ImageFormat::Unknown => {
            return Err(ProbeError::Unsupported {
                format,
                detail: "not decoded through the image crate".to_owned(),
            })
        }
    };
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_DIMENSION);
    limits.max_image_height = Some(MAX_DIMENSION);
    let mut reader = image::ImageReader::with_format(Cursor::new(bytes), image_format);
    reader.limits(limits);
    reader.decode().map_err(|error| match error {
        image::ImageError::Limits(_) | image::ImageError::Unsupported(_) => {
            ProbeError::Unsupported {
                format,
                detail: error.to_string(),
            }
        }
        _ => ProbeError::Decode {
            format,
            detail: error.to_string(),
        },
    })
}

fn info_of(image: &image::DynamicImage, format: ImageFormat) -> ImageInfo {
    use image::ColorType as C;
    let color = match image.color() {
        C::L8 | C::L16 => ColorModel::Gray,
        C::La8 | C::La16 => ColorModel::GrayAlpha,
        C::Rgb8 | C::Rgb16 | C::Rgb32F => ColorModel::Rgb,
        C::Rgba8 | C::Rgba16 | C::Rgba32F => ColorModel::Rgba,
        _ => ColorModel::Other,
    };
    ImageInfo {
        format,
        width: image.width(),
        height: image.height(),
        color,
        progressive: false,
    }
}

/// Formats bytes as lower-case hex pairs separated by spaces: `3c 68 74 6d`.
fn hex(bytes: &[u8]) -> String {
    let pairs: Vec<String> = bytes.iter().map(|b| format!("{b:02x}")).collect();
    pairs.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{encode_with, gradient_rgb, jpeg_rgb, scan_data_range, solid};
    use jpeg_encoder::{ColorType, SamplingFactor};
    use proptest::prelude::*;

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

    /// jpeg-encoder writes one scan per component when it optimises Huffman tables; zune-jpeg
    /// 0.5.15 decoded such sequential files to wrong pixels without an error. 0.5.16 fixed it:
    /// this pins the fix, for 4:4:4 and 4:2:0.
    #[test]
    fn non_interleaved_sequential_jpeg_decodes_to_the_right_colour() {
        for sampling in [SamplingFactor::R_4_4_4, SamplingFactor::R_4_2_0] {
            let jpeg = encode_with(
                &solid(32, 32, &[180, 60, 20]),
                32,
                32,
                ColorType::Rgb,
                |e| {
                    e.set_optimized_huffman_tables(true);
                    e.set_sampling_factor(sampling);
                },
            );
            assert!(probe(&jpeg).is_ok());
            let img = crate::decode_rgb(&jpeg).unwrap();
            crate::test_util::assert_all_near(&img.pixels, [180, 60, 20], 4);
        }
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
            let _ = crate::decode_rgb(&bytes);
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
            let _ = crate::decode_rgb(&bytes);
        }
    }
}
