//! The crate's errors: [`ProbeError`] (why an input is not a usable image), [`DecodeError`] (why
//! it could not be decoded or re-encoded), and [`JpegPart`] (where a truncated JPEG ends).
//! Every decoder maps its own errors onto these, so a report reads the same whichever decoder ran.

use std::fmt;

use crate::geometry::CropBox;
use crate::info::ImageFormat;

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
    /// over [`MAX_DIMENSION`](crate::MAX_DIMENSION), or a format feature the `image` crate does not support.
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
    /// The headers declare more pixels than
    /// [`DecodeLimits::max_pixels`](crate::DecodeLimits::max_pixels) allows: a decompression bomb
    /// (a small file claiming a huge image), or an image too large to decode here. Found on the
    /// headers, before any pixel buffer is sized.
    #[error(
        "{format} declares {width}x{height} ({} pixels), more than the limit of {max_pixels} \
         pixels (DecodeLimits::max_pixels)",
        u64::from(*width) * u64::from(*height)
    )]
    TooManyPixels {
        /// The detected format.
        format: ImageFormat,
        /// The declared width.
        width: u32,
        /// The declared height.
        height: u32,
        /// The limit in force.
        max_pixels: u64,
    },
    /// A JPEG holds far less entropy-coded data than any real image of its declared size: a
    /// header patched to claim a larger image, or scans cut away. Found before decoding.
    ///
    /// Every Huffman-coded JPEG spends at least one bit per MCU (a DC code per block), so a
    /// real image has at least `MCUs / 8` bytes of scan data; the bound refuses fewer than
    /// `MCUs / 64`, eight times less, so that no real image comes near it: the flattest image
    /// tried, a solid grey progressive with optimised Huffman tables, holds 32 times the bound.
    #[error(
        "JPEG declares {width}x{height} but holds only {scan_bytes} bytes of scan data, fewer \
         than the {min_bytes} that any real image of that size has"
    )]
    ScanTooShort {
        /// The declared width.
        width: u32,
        /// The declared height.
        height: u32,
        /// The entropy-coded bytes found (all scans, restart markers included); where the scans
        /// were not located, the whole input's length, which can only be more.
        scan_bytes: usize,
        /// The bound: one byte per 64 MCUs of the declared size.
        min_bytes: u64,
    },
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
        region: CropBox,
        /// The image's width.
        width: u32,
        /// The image's height.
        height: u32,
    },
    /// The JPEG encoder (libjpeg-turbo) failed.
    #[error("JPEG encode failed: {detail}")]
    Encode {
        /// libjpeg-turbo's message.
        detail: String,
    },
}

/// Where a truncated JPEG ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JpegPart {
    /// Between two segments, or inside a marker's fill bytes: a marker was expected next.
    BeforeMarker,
    /// Inside a marker segment, or in its two length bytes.
    Segment {
        /// The marker code (the byte after `0xFF`), e.g. `0xE1` for `APP1`.
        marker: u8,
        /// The length the segment declares (0 if the file ends inside the length field).
        length: u16,
    },
    /// Inside the entropy-coded data that follows a scan header.
    ScanData,
}

impl fmt::Display for JpegPart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            JpegPart::BeforeMarker => f.write_str("before a marker"),
            JpegPart::Segment { marker, length: 0 } => {
                write!(f, "inside the {} segment's length", MarkerName(marker))
            }
            JpegPart::Segment { marker, length } => {
                write!(
                    f,
                    "inside the {} segment (declared length {length})",
                    MarkerName(marker)
                )
            }
            JpegPart::ScanData => f.write_str("inside scan data"),
        }
    }
}

/// Displays a marker code by its name in ITU T.81, e.g. `SOF2`, `APP14`, `RST3`: for
/// [`JpegPart`]'s messages here and the marker walk's.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MarkerName(pub(crate) u8);

impl fmt::Display for MarkerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let code = self.0;
        match code {
            0xC4 => f.write_str("DHT"),
            0xC8 => f.write_str("JPG"),
            0xCC => f.write_str("DAC"),
            0xC0..=0xCF => write!(f, "SOF{}", code - 0xC0),
            0xD0..=0xD7 => write!(f, "RST{}", code - 0xD0),
            0xD8 => f.write_str("SOI"),
            0xD9 => f.write_str("EOI"),
            0xDA => f.write_str("SOS"),
            0xDB => f.write_str("DQT"),
            0xDC => f.write_str("DNL"),
            0xDD => f.write_str("DRI"),
            0xDE => f.write_str("DHP"),
            0xDF => f.write_str("EXP"),
            0xE0..=0xEF => write!(f, "APP{}", code - 0xE0),
            0xFE => f.write_str("COM"),
            0x01 => f.write_str("TEM"),
            _ => write!(f, "0xFF{code:02X}"),
        }
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

    #[test]
    fn marker_names_follow_t81() {
        let names = [
            (0xC0, "SOF0"),
            (0xC2, "SOF2"),
            (0xC4, "DHT"),
            (0xCC, "DAC"),
            (0xCF, "SOF15"),
            (0xD3, "RST3"),
            (0xD8, "SOI"),
            (0xD9, "EOI"),
            (0xDA, "SOS"),
            (0xDC, "DNL"),
            (0xE1, "APP1"),
            (0xEE, "APP14"),
            (0xFE, "COM"),
            (0x01, "TEM"),
            (0x42, "0xFF42"),
        ];
        for (code, name) in names {
            assert_eq!(MarkerName(code).to_string(), name);
        }
    }
}
