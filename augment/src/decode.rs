//! Decoding any supported image, whole, to 8-bit RGB: [`decode_rgb`] and [`decode_rgb_into`].
//!
//! JPEG goes through zune-jpeg (`codec::zune`), after the marker walk (`codec::jpeg_walk`) has
//! given precise reasons for truncated and unsupported files. Grayscale JPEGs are expanded to RGB;
//! CMYK and YCCK (Adobe) JPEGs are converted by zune-jpeg. The other formats go through the
//! `image` crate (`codec::image_rs`) and `to_rgb8` (alpha is dropped, not composited, as Pillow's
//! `convert("RGB")` does).

use crate::codec::{image_rs, jpeg_walk, zune};
use crate::error::DecodeError;
use crate::info::ImageFormat;
use crate::limits::DecodeLimits;
use crate::probe::sniff;

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
/// Images over the default [`DecodeLimits`] are refused from their headers, before `out` grows;
/// see [`decode_rgb_into_with_limits`].
///
/// # Errors
///
/// As [`decode_rgb`]. On error the contents of `out` are unspecified.
pub fn decode_rgb_into(bytes: &[u8], out: &mut Vec<u8>) -> Result<(u32, u32), DecodeError> {
    decode_rgb_into_with_limits(bytes, out, &DecodeLimits::default())
}

/// [`decode_rgb_into`] with the given limits.
///
/// # Errors
///
/// As [`decode_rgb`]; [`ProbeError::TooManyPixels`](crate::ProbeError::TooManyPixels) for an
/// image over `limits`.
pub fn decode_rgb_into_with_limits(
    bytes: &[u8],
    out: &mut Vec<u8>,
    limits: &DecodeLimits,
) -> Result<(u32, u32), DecodeError> {
    match sniff(bytes)? {
        ImageFormat::Jpeg => {
            // The marker walk costs little next to the decode and gives precise reasons for
            // truncated and unsupported files, before the decoder allocates anything.
            jpeg_walk::walk(bytes, limits)?;
            Ok(zune::decode_into(bytes, out, limits)?)
        }
        format => {
            let rgb = image_rs::load(bytes, format, limits)?.into_rgb8();
            out.clear();
            out.extend_from_slice(rgb.as_raw());
            Ok(rgb.dimensions())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{JpegPart, ProbeError};
    use crate::test_util::{assert_all_near, encode_with, gradient_rgb, jpeg_rgb, solid};
    use jpeg_encoder::{ColorType, SamplingFactor};
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
            let img = decode_rgb(&jpeg).expect("decodes");
            assert_all_near(&img.pixels, [180, 60, 20], 4);
        }
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
