//! Bounds on what the decoders take on from a file's headers, so that a small hostile file cannot
//! make them allocate gigabytes or spend seconds (a decompression bomb: a 210 KB JPEG whose frame
//! header claims 32768x32768 pixels is 3 GB of RGB).
//!
//! Every check here runs on header fields alone, in O(1), before any pixel buffer is sized:
//!
//! - [`MAX_DIMENSION`] per side, for every format;
//! - [`DecodeLimits::max_pixels`], width x height, for every format and on every decode path
//!   (the marker walk, zune-jpeg, libjpeg-turbo, the `image` crate);
//! - for JPEG, a floor on the entropy-coded data: fewer bytes than one per 64 MCUs of the declared
//!   size cannot be a real image ([`ProbeError::ScanTooShort`] says why).

use crate::error::ProbeError;
use crate::info::ImageFormat;

/// The largest width or height accepted, in pixels, for every format.
///
/// The decoders are told this limit, so a hostile header cannot make them allocate gigabytes.
/// ImageNet's largest images are a few thousand pixels on a side.
pub const MAX_DIMENSION: u32 = 32_768;

/// Bounds on the images a decoder accepts, checked on the headers before any pixel buffer is
/// sized. [`Default`] is what Pillow guards against.
///
/// Set with [`probe_with_limits`](crate::probe_with_limits),
/// [`RegionDecoder::set_limits`](crate::RegionDecoder::set_limits),
/// [`Augmenter::set_decode_limits`](crate::Augmenter::set_decode_limits) or
/// [`Reencoder::set_decode_limits`](crate::Reencoder::set_decode_limits).
///
/// ```
/// use shardfeed_augment::{DecodeLimits, DEFAULT_MAX_PIXELS};
/// assert_eq!(DecodeLimits::default().max_pixels, DEFAULT_MAX_PIXELS);
/// let strict = DecodeLimits { max_pixels: 4096 * 4096 };
/// assert!(strict.max_pixels < DEFAULT_MAX_PIXELS);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DecodeLimits {
    /// The most pixels (width x height, as the headers declare them) an image may have; more is
    /// a [`ProbeError::TooManyPixels`]. An RGB8 decode takes three bytes per pixel, so the
    /// default bounds one image's pixel buffer at 268 MB.
    pub max_pixels: u64,
}

/// The default [`DecodeLimits::max_pixels`]: 89,478,485, Pillow's `Image.MAX_IMAGE_PIXELS`.
///
/// Pillow warns (`DecompressionBombWarning`) above it and refuses above twice it; torchvision's
/// `ImageFolder` runs on Pillow, so an image past this default is one its users are warned about.
/// Here it is refused outright: a loader worker that took it would hold the buffer for good.
/// ImageNet's largest images are a few thousand pixels on a side, far below it.
pub const DEFAULT_MAX_PIXELS: u64 = 89_478_485;

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits {
            max_pixels: DEFAULT_MAX_PIXELS,
        }
    }
}

impl DecodeLimits {
    /// Refuses a declared `width` x `height` over [`max_pixels`](Self::max_pixels).
    pub(crate) fn check_pixels(
        &self,
        format: ImageFormat,
        width: u32,
        height: u32,
    ) -> Result<(), ProbeError> {
        if u64::from(width) * u64::from(height) > self.max_pixels {
            return Err(ProbeError::TooManyPixels {
                format,
                width,
                height,
                max_pixels: self.max_pixels,
            });
        }
        Ok(())
    }
}

/// MCUs per byte of entropy-coded data below which a JPEG is refused.
///
/// Each MCU codes at least one block, and each block of a Huffman-coded scan at least one bit
/// (its DC code; a baseline block also an end-of-block code), so a real image has at least one
/// byte per 8 MCUs. Allowing one per 64 leaves a factor of eight for anything this reasoning
/// misses. The flattest image tried (a solid grey, progressive, optimised Huffman tables) holds
/// 32 times the bound, synthetic photographs and the golden sources far more
/// (`real_images_hold_many_times_the_scan_data_the_bound_asks_for`).
const MCUS_PER_BYTE: u64 = 64;

/// The fewest bytes of scan data accepted for a `width` x `height` JPEG whose MCU is
/// `mcu_width` x `mcu_height` pixels (8 or 16 for the usual subsamplings, at most 32).
pub(crate) fn min_scan_bytes(width: u32, height: u32, mcu_width: u32, mcu_height: u32) -> u64 {
    let columns = u64::from(width.div_ceil(mcu_width.max(1)));
    let rows = u64::from(height.div_ceil(mcu_height.max(1)));
    columns * rows / MCUS_PER_BYTE
}

/// Refuses a JPEG whose `scan_bytes` of entropy-coded data are far too few for its declared size
/// (see [`min_scan_bytes`]).
pub(crate) fn check_scan_bytes(
    width: u32,
    height: u32,
    (mcu_width, mcu_height): (u32, u32),
    scan_bytes: usize,
) -> Result<(), ProbeError> {
    let min_bytes = min_scan_bytes(width, height, mcu_width, mcu_height);
    if (scan_bytes as u64) < min_bytes {
        return Err(ProbeError::ScanTooShort {
            width,
            height,
            scan_bytes,
            min_bytes,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pixel_limit_is_inclusive() {
        let limits = DecodeLimits { max_pixels: 12 };
        assert_eq!(limits.check_pixels(ImageFormat::Png, 4, 3), Ok(()));
        assert_eq!(
            limits.check_pixels(ImageFormat::Png, 13, 1),
            Err(ProbeError::TooManyPixels {
                format: ImageFormat::Png,
                width: 13,
                height: 1,
                max_pixels: 12
            })
        );
        // No overflow at the largest sizes.
        assert!(DecodeLimits::default()
            .check_pixels(ImageFormat::Jpeg, u32::MAX, u32::MAX)
            .is_err());
        assert!(DecodeLimits {
            max_pixels: u64::MAX
        }
        .check_pixels(ImageFormat::Jpeg, u32::MAX, u32::MAX)
        .is_ok());
    }

    #[test]
    fn the_scan_floor_counts_partial_mcus_and_spares_small_images() {
        // 500x375 at 4:2:0: 32 x 24 = 768 MCUs, so 12 bytes.
        assert_eq!(min_scan_bytes(500, 375, 16, 16), 12);
        // Under 64 MCUs nothing is required.
        assert_eq!(min_scan_bytes(64, 56, 8, 8), 0);
        assert_eq!(min_scan_bytes(64, 64, 8, 8), 1);
        assert_eq!(min_scan_bytes(1, 1, 32, 32), 0);
        // The largest JPEG: 65535 x 65535 in 8x8 MCUs.
        assert_eq!(min_scan_bytes(65_535, 65_535, 8, 8), 8192 * 8192 / 64);
        assert_eq!(check_scan_bytes(500, 375, (16, 16), 12), Ok(()));
        assert_eq!(
            check_scan_bytes(500, 375, (16, 16), 11),
            Err(ProbeError::ScanTooShort {
                width: 500,
                height: 375,
                scan_bytes: 11,
                min_bytes: 12
            })
        );
    }
}
