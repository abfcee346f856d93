//! [`RegionDecoder`]: decodes the part of an image that a crop needs, into a buffer it owns and
//! reuses from one image to the next.
//!
//! The contract: [`RegionDecoder::decode`] returns a [`DecodedRegion`] whose pixels cover at
//! least the requested [`CropBox`] (it may cover more, up to the whole image), and says where in
//! the image the buffer starts. Callers must not assume anything else about the buffer's extent.

use crate::decode::{decode_rgb_into, DecodeError};
use crate::plan::CropBox;
use crate::probe::probe;

/// The size of an image, from its headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ImageSize {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
}

/// Decoded RGB8 pixels of a rectangle of an image that holds the requested region.
#[derive(Debug)]
pub struct DecodedRegion<'a> {
    /// RGB8, HWC, `width * height * 3` bytes, no row padding.
    pub pixels: &'a [u8],
    /// Columns in `pixels`.
    pub width: u32,
    /// Rows in `pixels`.
    pub height: u32,
    /// Column of the image where `pixels` starts.
    pub origin_x: u32,
    /// Row of the image where `pixels` starts.
    pub origin_y: u32,
    /// The whole image's size.
    pub image: ImageSize,
}

impl DecodedRegion<'_> {
    /// `region` (in image coordinates) in this buffer's coordinates, when the buffer holds it.
    pub fn local(&self, region: CropBox) -> Option<CropBox> {
        let left = region.left.checked_sub(self.origin_x)?;
        let top = region.top.checked_sub(self.origin_y)?;
        (left + region.width <= self.width && top + region.height <= self.height).then_some(
            CropBox {
                left,
                top,
                width: region.width,
                height: region.height,
            },
        )
    }
}

/// Decodes regions of images (any supported format) to RGB8. Keep one per worker thread: it owns
/// its buffers.
#[derive(Debug, Default)]
pub struct RegionDecoder {
    pixels: Vec<u8>,
}

impl RegionDecoder {
    /// A decoder with empty buffers; they grow to the largest image seen.
    pub fn new() -> Self {
        Self::default()
    }

    /// The image's size, from its headers (a JPEG marker walk; other formats are decoded).
    ///
    /// # Errors
    ///
    /// [`DecodeError::Invalid`] when the input is not a usable image.
    pub fn size(&mut self, bytes: &[u8]) -> Result<ImageSize, DecodeError> {
        let info = probe(bytes)?;
        Ok(ImageSize {
            width: info.width,
            height: info.height,
        })
    }

    /// Decodes at least `region` of the image (`None`: the whole image).
    ///
    /// # Errors
    ///
    /// [`DecodeError::Invalid`] when the input does not decode, or when `region` does not lie
    /// inside the image.
    pub fn decode(
        &mut self,
        bytes: &[u8],
        region: Option<CropBox>,
    ) -> Result<DecodedRegion<'_>, DecodeError> {
        let (width, height) = decode_rgb_into(bytes, &mut self.pixels)?;
        let image = ImageSize { width, height };
        if let Some(r) = region {
            if r.width == 0 || r.height == 0 || r.right() > width || r.bottom() > height {
                return Err(DecodeError::Region {
                    region: r,
                    width,
                    height,
                });
            }
        }
        Ok(DecodedRegion {
            pixels: &self.pixels,
            width,
            height,
            origin_x: 0,
            origin_y: 0,
            image,
        })
    }
}
