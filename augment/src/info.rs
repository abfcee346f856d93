//! What an image is, from its first bytes and headers: the container format (from the magic bytes,
//! never the file name), size and colour model.
//!
//! ImageNet is full of files whose extension lies (the training set has a PNG named
//! `n02105855_2933.JPEG`), so the format is always read from the first bytes of the file. The
//! format type is the record format's own (`shardfeed_shards::ImageFormat`), so what a probe finds
//! is what a shard stores.

pub use shardfeed_shards::ImageFormat;

/// What [`probe`](crate::probe) learns about an image.
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
