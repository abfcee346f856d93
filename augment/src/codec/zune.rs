//! JPEG to RGB8 with zune-jpeg, whole images only: what decodes CMYK and YCCK JPEGs (which
//! libjpeg-turbo cannot convert to RGB), every JPEG of [`JpegBackend::Zune`](crate::JpegBackend),
//! and any JPEG libjpeg-turbo refused (so the error keeps zune-jpeg's precise reason).
//!
//! Strict mode: zune-jpeg's lenient default paints missing or corrupt entropy-coded data grey and
//! reports success, which would hide broken files. CMYK and YCCK samples are taken in the Adobe
//! convention (inverted, what Photoshop writes and what libjpeg assumes).

use zune_core::bytestream::ZCursor;
use zune_core::colorspace::ColorSpace;
use zune_core::options::DecoderOptions;
use zune_jpeg::errors::DecodeErrors;
use zune_jpeg::JpegDecoder;

use crate::error::ProbeError;
use crate::info::ImageFormat;
use crate::limits::{DecodeLimits, MAX_DIMENSION};

/// Decodes a JPEG to RGB8 with zune-jpeg into `out`, refusing an image over `limits` from its
/// headers, before `out` is sized. (The callers run the marker walk first, which also refuses
/// scan data far too short for the declared size.)
pub(crate) fn decode_into(
    bytes: &[u8],
    out: &mut Vec<u8>,
    limits: &DecodeLimits,
) -> Result<(u32, u32), ProbeError> {
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
    // Both are at most MAX_DIMENSION, which the decoder enforces.
    let (Ok(width), Ok(height)) = (u32::try_from(width), u32::try_from(height)) else {
        return Err(jpeg_decode_error("image size does not fit in u32"));
    };
    limits.check_pixels(ImageFormat::Jpeg, width, height)?;
    // Zero-filled, not just resized: should the decoder ever skip a pixel, the output still
    // cannot depend on the previous image.
    out.clear();
    out.resize(size, 0);
    decoder.decode_into(out).map_err(zune_error)?;
    Ok((width, height))
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
    use crate::test_util::{gradient_rgb, jpeg_rgb, patch_sof};

    /// Without the marker walk in front: zune-jpeg's own path refuses a bomb from its headers.
    #[test]
    fn a_bomb_is_refused_before_the_buffer_is_sized() {
        let bomb = patch_sof(jpeg_rgb(&gradient_rgb(64, 48), 64, 48), 32768, 32768);
        let mut out = Vec::new();
        assert_eq!(
            decode_into(&bomb, &mut out, &DecodeLimits::default()),
            Err(ProbeError::TooManyPixels {
                format: ImageFormat::Jpeg,
                width: 32768,
                height: 32768,
                max_pixels: crate::limits::DEFAULT_MAX_PIXELS,
            })
        );
        assert_eq!(out.capacity(), 0);
    }

    #[test]
    fn the_limit_is_the_one_given() {
        let jpeg = jpeg_rgb(&gradient_rgb(64, 48), 64, 48);
        let mut out = Vec::new();
        let exact = DecodeLimits {
            max_pixels: 64 * 48,
        };
        assert_eq!(decode_into(&jpeg, &mut out, &exact), Ok((64, 48)));
        let under = DecodeLimits {
            max_pixels: 64 * 48 - 1,
        };
        assert!(matches!(
            decode_into(&jpeg, &mut out, &under),
            Err(ProbeError::TooManyPixels { max_pixels, .. }) if max_pixels == 64 * 48 - 1
        ));
    }
}
