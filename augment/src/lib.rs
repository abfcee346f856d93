//! Image probing, decoding and re-encoding for shardfeed.
//!
//! ImageNet's files are not all what their `.JPEG` names say: there are CMYK and grayscale JPEGs,
//! progressive JPEGs, a PNG, and in the wild truncated or empty files. This crate tells them apart
//! and turns each into RGB pixels or a uniform baseline JPEG, reporting anything unusable with a
//! reason instead of panicking.
//!
//! - [`ImageFormat`]: the container format, from the magic bytes (never the file name).
//! - [`probe`] → [`ImageInfo`] (size, [`ColorModel`], progressive): cheap validation. JPEG is
//!   checked by a marker walk that decodes no pixel, so it runs at disk speed. [`probe_deep`] adds a
//!   full decode, which also catches corrupt entropy-coded data. Failures are a [`ProbeError`],
//!   whose `Display` is a short reason for a report (`"empty file"`,
//!   `"truncated JPEG: no EOI marker (ends inside scan data at byte 5123)"`, ...).
//! - [`decode_rgb`] → [`RgbImage`] (RGB8, HWC), and [`decode_rgb_into`], which reuses the caller's
//!   buffer. CMYK, YCCK and grayscale JPEGs come out as RGB too. Failures are a [`DecodeError`].
//! - [`DecodeLimits`]: what a file's headers may ask for (default: Pillow's `MAX_IMAGE_PIXELS`,
//!   89,478,485 pixels). Every decode path checks them on the headers, before any pixel buffer is
//!   sized, so a decompression bomb (a small file declaring a huge image) is a
//!   [`ProbeError::TooManyPixels`], not gigabytes of memory.
//! - [`Reencoder`]: FFCV-style re-encoding to a baseline 4:2:0 RGB JPEG whose longer side is at
//!   most [`ReencodeOptions::max_side`]; it owns its resizer and buffers, so keep one per thread.
//!
//! Training-time augmentation, torchvision's semantics written into caller-owned batch slots:
//!
//! - [`Transform`]: [`TrainTransform`] (`RandomResizedCrop` + horizontal flip) or
//!   [`ValTransform`] (`Resize` + `CenterCrop`); the output size may change between calls
//!   (progressive resizing).
//! - [`Transform::plan`] → [`AugmentPlan`]: a pure function of the image size and the sample's
//!   [`SampleKey`] (seed, epoch, index → [`SampleRng`]); the crop rules live in [`plan`].
//! - [`Augmenter`]: carries a plan out (decode the region with its [`RegionDecoder`], resize with
//!   Pillow's antialiased bilinear filter, flip) into an RGB8 HWC slot, allocating no pixel
//!   buffer in steady state. Keep one per worker thread. Failures are an [`AugmentError`].
//! - [`RegionDecoder`] decodes only what a crop needs: JPEGs through libjpeg-turbo's crop-aware
//!   decoder ([`JpegBackend::Turbo`], the default), or whole through zune-jpeg
//!   ([`JpegBackend::Zune`]).
//!
//! All functions work on `&[u8]`; reading files is the caller's business.
//!
//! # Example
//!
//! ```
//! use jpeg_encoder::{ColorType, Encoder};
//! use shardfeed_augment::{decode_rgb, probe, ColorModel, ImageFormat, ProbeError};
//!
//! // A tiny 16x8 grey JPEG.
//! let mut jpeg = Vec::new();
//! Encoder::new(&mut jpeg, 90).encode(&[128; 16 * 8 * 3], 16, 8, ColorType::Rgb)?;
//!
//! let info = probe(&jpeg)?;
//! assert_eq!((info.format, info.width, info.height), (ImageFormat::Jpeg, 16, 8));
//! assert_eq!(info.color, ColorModel::Rgb);
//! assert!(!info.progressive);
//!
//! let image = decode_rgb(&jpeg)?;
//! assert_eq!(image.pixels.len(), 16 * 8 * 3);
//!
//! // A file cut short is reported, not decoded into grey.
//! let error = probe(&jpeg[..jpeg.len() - 10]).unwrap_err();
//! assert!(matches!(error, ProbeError::Truncated { .. }));
//! assert!(error.to_string().starts_with("truncated JPEG: no EOI marker"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

// Modules depend on each other in one direction only (docs/ARCHITECTURE.md draws it):
// geometry, info → error → limits → codec::* → probe → decode → region → transform, reencode;
// plan needs only geometry. The public API is re-exported here.
mod codec;
mod decode;
mod error;
mod geometry;
mod info;
mod limits;
pub mod plan;
mod probe;
mod reencode;
mod region;
mod transform;

#[cfg(test)]
mod test_util;

pub use decode::{decode_rgb, decode_rgb_into, decode_rgb_into_with_limits, RgbImage};
pub use error::{DecodeError, JpegPart, ProbeError};
pub use geometry::{CropBox, ImageSize, SourceRegion};
pub use info::{ColorModel, ImageFormat, ImageInfo};
pub use limits::{DecodeLimits, DEFAULT_MAX_PIXELS, MAX_DIMENSION};
pub use plan::{AugmentPlan, RandomCrop, ResizeSource, SampleRng};
pub use probe::{probe, probe_deep, probe_deep_with_limits, probe_with_limits};
pub use reencode::{ReencodeOptions, Reencoded, Reencoder};
pub use region::{DecodedRegion, JpegBackend, RegionDecoder, RegionRequest};
pub use transform::{
    Applied, AugmentError, Augmenter, SampleKey, StageTimes, TrainTransform, Transform,
    TransformError, ValTransform, MAX_OUTPUT_SIZE,
};
