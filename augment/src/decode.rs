//! Decoding any supported image to 8-bit RGB.
//!
//! JPEG goes through zune-jpeg, in strict mode: its lenient default paints missing or corrupt
//! entropy-coded data grey and reports success, which would hide broken files. Grayscale JPEGs
//! are expanded to RGB; CMYK and YCCK (Adobe) JPEGs are converted by zune-jpeg, which expects the
//! Adobe convention of inverted CMYK samples (what Photoshop writes, and what libjpeg assumes).
//! The other formats go through the `image` crate and `to_rgb8` (alpha is dropped, not composited,
//! as Pillow's `convert("RGB")` does).

use zune_core::bytestream::ZCursor;
use zune_core::colorspace::ColorSpace;
use zune_core::options::DecoderOptions;
use zune_jpeg::errors::DecodeErrors;
use zune_jpeg::JpegDecoder;

use crate::format::ImageFormat;
use crate::jpeg;
use crate::probe::{load_other, sniff, ProbeError, MAX_DIMENSION};

/// A decoded image: 8-bit RGB, row-major, no padding (`pixels.len() == width * height * 3`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RgbImage {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// RGB8 samples in HWC order.
    pub pixels: Vec<u8>,
}

/// Why an image could not be decoded (or, for [`Reencoder`](crate::Reencoder), re-encoded).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The input is not a decodable image: the same reasons [`probe_deep`](crate::probe_deep)
    /// gives.
    #[error(transparent)]
    Invalid(#[from] ProbeError),
    /// [`ReencodeOptions::quality`](crate::ReencodeOptions::quality) is outside `1..=100`.
    #[error("invalid JPEG quality {0}: must be 1..=100")]
    InvalidQuality(u8),
    /// [`ReencodeOptions::max_side`](crate::ReencodeOptions::max_side) is `Some(0)`.
    #[error("invalid max_side 0: must be at least 1")]
    InvalidMaxSide,
    /// The resize step failed.
    #[error("resize failed: {detail}")]
    Resize {
        /// fast_image_resize's message.
        detail: String,
    },
    /// A region to decode does not lie inside the image.
    #[error("region {region:?} does not lie inside the {width}x{height} image")]
    Region {
        /// The region asked for.
        region: crate::plan::CropBox,
        /// The image's width.
        width: u32,
        /// The image's height.
        height: u32,
    },
    /// The JPEG encoder failed.
    #[error("JPEG encode failed: {detail}")]
    Encode {
        /// jpeg-encoder's message.
        detail: String,
    },
}

/// Decodes `bytes` (any supported format) to RGB8.
///
/// # Errors
///
/// [`DecodeError::Invalid`] with the reason, as [`probe_deep`](crate::probe_deep) would give it.
pub fn decode_rgb(bytes: &[u8]) -> Result<RgbImage, DecodeError> {
    let mut pixels = Vec::new();
    let (width, height) = decode_rgb_into(bytes, &mut pixels)?;
    Ok(RgbImage {
        width,
        height,
        pixels,
    })
}

/// Decodes `bytes` to RGB8 into `out`, reusing its allocation, and returns `(width, height)`.
///
/// `out` is cleared and resized to `width * height * 3`; once it has grown to the largest image
/// seen, JPEG decoding allocates nothing here (zune-jpeg still allocates its own scratch space).
/// Other formats are decoded by the `image` crate into a fresh buffer and copied.
///
/// # Errors
///
/// As [`decode_rgb`]. On error the contents of `out` are unspecified.
pub fn decode_rgb_into(bytes: &[u8], out: &mut Vec<u8>) -> Result<(u32, u32), DecodeError> {
    match sniff(bytes)? {
        ImageFormat::Jpeg => {
            // The marker walk costs little next to the decode and gives precise reasons for
            // truncated and unsupported files, before the decoder allocates anything.
            jpeg::walk(bytes)?;
            Ok(decode_jpeg_into(bytes, out)?)
        }
        format => {
            let rgb = load_other(bytes, format)?.into_rgb8();
            out.clear();
            out.extend_from_slice(rgb.as_raw());
            Ok(rgb.dimensions())
        }
    }
}

/// Decodes a JPEG to RGB8 with zune-jpeg into `out`.
pub(crate) fn decode_jpeg_into(bytes: &[u8], out: &mut Vec<u8>) -> Result<(u32, u32), ProbeError> {
    let limit = MAX_DIMENSION as usize;
    let options = DecoderOptions::default()
        .set_strict_mode(true)
        .set_max_width(limit)
        .set_max_height(limit)
        .jpeg_set_out_colorspace(ColorSpace::RGB);
    let mut decoder = JpegDecoder::new_with_options(ZCursor::new(bytes), options);
    decoder.decode_headers().map_err(zune_error)?;
    let (Some((width, height)), Some(size)) = (decoder.dimensions(), decoder.output_buffer_size())
    else {
        return Err(jpeg_decode_error("no image size after reading the headers"));
    };
    // Zero-filled, not just resized: should the decoder ever skip a pixel, the output still
    // cannot depend on the previous image.
    out.clear();
    out.resize(size, 0);
    decoder.decode_into(out).map_err(zune_error)?;
    // Both are at most MAX_DIMENSION, which the decoder enforces.
    let dims = (u32::try_from(width), u32::try_from(height));
    match dims {
        (Ok(width), Ok(height)) => Ok((width, height)),
        _ => Err(jpeg_decode_error("image size does not fit in u32")),
    }
}

/// Maps a zune-jpeg error to a [`ProbeError`], with its message minus zune's `Debug` quoting.
fn zune_error(error: DecodeErrors) -> ProbeError {
    match error {
        DecodeErrors::Unsupported(_) => ProbeError::Unsupported {
            format: ImageFormat::Jpeg,
            detail: error.to_string(),
        },
        DecodeErrors::Format(detail) => jpeg_decode_error(detail),
        DecodeErrors::FormatStatic(detail) => jpeg_decode_error(detail),
        other => jpeg_decode_error(other.to_string()),
    }
}

fn jpeg_decode_error(detail: impl Into<String>) -> ProbeError {
    ProbeError::Decode {
        format: ImageFormat::Jpeg,
        detail: detail.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jpeg::JpegPart;
    use crate::test_util::{assert_all_near, encode_with, gradient_rgb, jpeg_rgb, solid};
    use jpeg_encoder::ColorType;
    use std::io::Cursor;

    const TOLERANCE: u8 = 3;

    /// What an Adobe-convention CMYK JPEG is meant to look like: `255 * (1 - C) * (1 - K)` per
    /// channel, with ink amounts `c, m, y, k` in 0..=255 (the naive conversion Photoshop, libjpeg
    /// users such as Pillow, and zune-jpeg all use without an ICC profile).
    fn cmyk_ink_to_rgb(ink: [u8; 4]) -> [u8; 3] {
        let [c, m, y, k] = ink.map(|v| 255.0 - f64::from(v));
        [c, m, y].map(|v| (v * k / 255.0).round() as u8)
    }

    #[test]
    fn baseline_solid_colour() {
        let jpeg = jpeg_rgb(&solid(24, 16, &[200, 40, 90]), 24, 16);
        let image = decode_rgb(&jpeg).expect("decodes");
        assert_eq!(
            (image.width, image.height, image.pixels.len()),
            (24, 16, 24 * 16 * 3)
        );
        assert_all_near(&image.pixels, [200, 40, 90], TOLERANCE);
    }

    #[test]
    fn progressive_and_restart_solid_colour() {
        let pixels = solid(40, 24, &[30, 160, 220]);
        for jpeg in [
            encode_with(&pixels, 40, 24, ColorType::Rgb, |e| e.set_progressive(true)),
            encode_with(&pixels, 40, 24, ColorType::Rgb, |e| {
                e.set_restart_interval(1)
            }),
        ] {
            let image = decode_rgb(&jpeg).expect("decodes");
            assert_eq!((image.width, image.height), (40, 24));
            assert_all_near(&image.pixels, [30, 160, 220], TOLERANCE);
        }
    }

    #[test]
    fn progressive_gradient_matches_baseline() {
        let pixels = gradient_rgb(48, 32);
        let baseline = decode_rgb(&jpeg_rgb(&pixels, 48, 32)).expect("decodes");
        let progressive = decode_rgb(&encode_with(&pixels, 48, 32, ColorType::Rgb, |e| {
            e.set_progressive(true)
        }))
        .expect("decodes");
        let worst = baseline
            .pixels
            .iter()
            .zip(&progressive.pixels)
            .map(|(a, b)| a.abs_diff(*b))
            .max();
        assert!(worst <= Some(4), "worst difference {worst:?}");
    }

    #[test]
    fn grayscale_is_expanded_to_rgb() {
        let jpeg = encode_with(&[77; 16 * 9], 16, 9, ColorType::Luma, |_| {});
        let image = decode_rgb(&jpeg).expect("decodes");
        assert_eq!(image.pixels.len(), 16 * 9 * 3);
        assert_all_near(&image.pixels, [77, 77, 77], TOLERANCE);
        assert!(image
            .pixels
            .chunks_exact(3)
            .all(|p| p[0] == p[1] && p[1] == p[2]));
    }

    #[test]
    fn cmyk_and_ycck_convert_like_adobe_cmyk() {
        // jpeg-encoder takes ink amounts and stores them inverted with an Adobe APP14 marker
        // (transform 0 for CMYK, 2 for YCCK), as Photoshop does.
        for ink in [
            [0, 0, 0, 0],
            [0, 255, 255, 0],
            [64, 128, 192, 32],
            [200, 10, 90, 120],
        ] {
            let expected = cmyk_ink_to_rgb(ink);
            for color in [ColorType::Cmyk, ColorType::CmykAsYcck] {
                let jpeg = encode_with(&solid(16, 16, &ink), 16, 16, color, |_| {});
                let image = decode_rgb(&jpeg).expect("decodes");
                assert_all_near(&image.pixels, expected, TOLERANCE);
            }
        }
        assert_eq!(cmyk_ink_to_rgb([0, 255, 255, 0]), [255, 0, 0]);
    }

    #[test]
    fn png_is_decoded_exactly_and_alpha_dropped() {
        let mut rgba = image::RgbaImage::new(3, 2);
        for (i, pixel) in rgba.pixels_mut().enumerate() {
            *pixel = image::Rgba([i as u8 * 40, 100, 255 - i as u8, 7]);
        }
        let mut png = Vec::new();
        image::DynamicImage::ImageRgba8(rgba)
            .write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png)
            .expect("encode PNG");
        let image = decode_rgb(&png).expect("decodes");
        assert_eq!((image.width, image.height), (3, 2));
        let expected: Vec<u8> = (0..6_u8).flat_map(|i| [i * 40, 100, 255 - i]).collect();
        assert_eq!(image.pixels, expected);
    }

    #[test]
    fn decode_into_reuses_the_buffer() {
        let big = jpeg_rgb(&gradient_rgb(64, 64), 64, 64);
        let small = jpeg_rgb(&gradient_rgb(20, 10), 20, 10);
        let mut buffer = Vec::new();
        assert_eq!(decode_rgb_into(&big, &mut buffer), Ok((64, 64)));
        let allocation = buffer.as_ptr();
        assert_eq!(decode_rgb_into(&small, &mut buffer), Ok((20, 10)));
        assert_eq!(buffer.len(), 20 * 10 * 3);
        assert_eq!(decode_rgb_into(&big, &mut buffer), Ok((64, 64)));
        assert_eq!(buffer.as_ptr(), allocation);
        assert_eq!(buffer, decode_rgb(&big).expect("decodes").pixels);
    }

    #[test]
    fn failures_are_reported_with_their_reason() {
        assert_eq!(
            decode_rgb(b""),
            Err(DecodeError::Invalid(ProbeError::Empty))
        );
        assert_eq!(
            decode_rgb(b"hello"),
            Err(DecodeError::Invalid(ProbeError::NotAnImage {
                magic: b"hell".to_vec()
            }))
        );
        let jpeg = jpeg_rgb(&gradient_rgb(16, 16), 16, 16);
        let cut = jpeg.len() - 1;
        let error = decode_rgb(&jpeg[..cut]).unwrap_err();
        assert_eq!(
            error,
            DecodeError::Invalid(ProbeError::Truncated {
                at: JpegPart::ScanData,
                offset: cut
            })
        );
        assert_eq!(
            error.to_string(),
            format!("truncated JPEG: no EOI marker (ends inside scan data at byte {cut})")
        );
    }
}
