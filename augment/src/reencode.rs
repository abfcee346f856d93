//! FFCV-style re-encoding: decode, shrink so the longer side fits, encode a baseline RGB JPEG.
//!
//! Storing every image as a bounded-size baseline 4:2:0 JPEG makes training-time decode cost
//! predictable (no 4000-pixel CMYK progressive outliers) and lets one decoder path handle all.

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};

use crate::codec::turbo::TurboEncoder;
use crate::error::DecodeError;
use crate::limits::DecodeLimits;
use crate::region::RegionDecoder;

/// How to re-encode. Checked by [`Reencoder::reencode`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ReencodeOptions {
    /// Shrink images whose longer side exceeds this many pixels so that it becomes exactly this;
    /// `None` keeps every size. Images are never enlarged. Must not be `Some(0)`.
    pub max_side: Option<u32>,
    /// JPEG quality, `1..=100`.
    pub quality: u8,
}

impl Default for ReencodeOptions {
    /// FFCV's defaults for its `RGBImageField`: no size limit, quality 90.
    fn default() -> Self {
        ReencodeOptions {
            max_side: None,
            quality: 90,
        }
    }
}

impl ReencodeOptions {
    /// Checks the options.
    ///
    /// # Errors
    ///
    /// [`DecodeError::InvalidQuality`] or [`DecodeError::InvalidMaxSide`].
    pub fn validate(&self) -> Result<(), DecodeError> {
        if !(1..=100).contains(&self.quality) {
            return Err(DecodeError::InvalidQuality(self.quality));
        }
        if self.max_side == Some(0) {
            return Err(DecodeError::InvalidMaxSide);
        }
        Ok(())
    }

    /// The size an image of `width` x `height` is re-encoded at.
    ///
    /// As Pillow's `Image.thumbnail`: if the longer side exceeds `max_side` it becomes exactly
    /// `max_side`, and the other side is scaled by the same factor and rounded to the nearest
    /// integer (halves up), but kept at least 1. Otherwise the size is unchanged.
    ///
    /// ```
    /// use shardfeed_augment::ReencodeOptions;
    /// let opts = ReencodeOptions { max_side: Some(256), quality: 90 };
    /// assert_eq!(opts.output_size(500, 375), (256, 192));
    /// assert_eq!(opts.output_size(333, 500), (170, 256));
    /// assert_eq!(opts.output_size(200, 100), (200, 100));
    /// ```
    pub fn output_size(&self, width: u32, height: u32) -> (u32, u32) {
        let Some(max_side) = self.max_side else {
            return (width, height);
        };
        let longer = width.max(height);
        if longer <= max_side {
            return (width, height);
        }
        // round(shorter * max_side / longer) in integers: floor((2 * s * m + l) / (2 * l)).
        let scale = |shorter: u32| -> u32 {
            let (s, m, l) = (u64::from(shorter), u64::from(max_side), u64::from(longer));
            let rounded = (2 * s * m + l) / (2 * l);
            // rounded <= max_side because shorter <= longer.
            u32::try_from(rounded).unwrap_or(max_side).max(1)
        };
        if width >= height {
            (max_side, scale(height))
        } else {
            (scale(width), max_side)
        }
    }
}

/// A re-encoded image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reencoded {
    /// A baseline (non-progressive) 4:2:0 RGB JPEG.
    pub jpeg: Vec<u8>,
    /// Its width in pixels.
    pub width: u32,
    /// Its height in pixels.
    pub height: u32,
}

/// Re-encodes images, reusing its resizer and pixel buffers from one image to the next.
///
/// Make one per worker thread. Output is deterministic: the same input and options give the same
/// bytes on a given machine. (fast_image_resize and libjpeg-turbo choose SIMD kernels at run time,
/// so a machine with a different instruction set may round a few pixels differently.)
///
/// ```
/// use shardfeed_augment::{probe, ReencodeOptions, Reencoder};
/// # let mut source = Vec::new();
/// # jpeg_encoder::Encoder::new(&mut source, 90)
/// #     .encode(&vec![120; 600 * 400 * 3], 600, 400, jpeg_encoder::ColorType::Rgb)?;
/// let mut reencoder = Reencoder::new();
/// let opts = ReencodeOptions { max_side: Some(256), quality: 90 };
/// let out = reencoder.reencode(&source, &opts)?;
/// assert_eq!((out.width, out.height), (256, 171));
/// assert!(!probe(&out.jpeg)?.progressive);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Default)]
pub struct Reencoder {
    resizer: Resizer,
    decoder: RegionDecoder,
    resized: Vec<u8>,
    /// Created on first use, so that `Default` cannot fail.
    encoder: Option<TurboEncoder>,
}

impl Reencoder {
    /// A re-encoder with empty buffers; they grow to the largest image seen.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the limits on the images decoded (default: [`DecodeLimits::default`], Pillow's
    /// `MAX_IMAGE_PIXELS`): an image over them fails with
    /// [`ProbeError::TooManyPixels`](crate::ProbeError::TooManyPixels), found on its headers
    /// before any pixel buffer grows.
    pub fn set_decode_limits(&mut self, limits: DecodeLimits) {
        self.decoder.set_limits(limits);
    }

    /// The limits on the images decoded.
    pub fn decode_limits(&self) -> DecodeLimits {
        self.decoder.limits()
    }

    /// Decodes `bytes` (any supported format), shrinks it per `opts.max_side` with an
    /// antialiased bilinear filter, and encodes a baseline 4:2:0 RGB JPEG at `opts.quality`.
    ///
    /// JPEGs are decoded by libjpeg-turbo (strict: corrupt data is an error) and everything is
    /// encoded by libjpeg-turbo with libjpeg's defaults: standard Huffman tables, one
    /// interleaved scan, the quality scaling of the IJG tables — what Pillow writes. CMYK, YCCK
    /// and anything libjpeg-turbo refuses are decoded by zune-jpeg, other formats by `image`.
    ///
    /// # Errors
    ///
    /// [`DecodeError::InvalidQuality`] or [`DecodeError::InvalidMaxSide`] for bad options;
    /// [`DecodeError::Invalid`] when the input does not decode; [`DecodeError::Resize`] or
    /// [`DecodeError::Encode`] should the later steps fail.
    pub fn reencode(
        &mut self,
        bytes: &[u8],
        opts: &ReencodeOptions,
    ) -> Result<Reencoded, DecodeError> {
        opts.validate()?;
        let Reencoder {
            resizer,
            decoder,
            resized,
            encoder,
        } = self;
        let decoded = decoder.decode(bytes, None)?;
        let (width, height) = (decoded.width, decoded.height);
        let (out_width, out_height) = opts.output_size(width, height);

        let pixels: &[u8] = if (out_width, out_height) == (width, height) {
            decoded.pixels
        } else {
            resize(
                resizer,
                decoded.pixels,
                (width, height),
                (out_width, out_height),
                resized,
            )?;
            resized
        };

        let encode_error = |detail: String| DecodeError::Encode { detail };
        let encoder = match encoder {
            Some(e) => e,
            None => encoder.insert(TurboEncoder::new().map_err(|e| encode_error(e.to_string()))?),
        };
        let mut jpeg = Vec::new();
        encoder
            .encode_rgb(pixels, out_width, out_height, opts.quality, &mut jpeg)
            .map_err(|e| encode_error(e.to_string()))?;
        Ok(Reencoded {
            jpeg,
            width: out_width,
            height: out_height,
        })
    }
}

/// Resizes `pixels` (`width` x `height` RGB8) into `out` (`out_width` x `out_height`).
fn resize(
    resizer: &mut Resizer,
    pixels: &[u8],
    (width, height): (u32, u32),
    (out_width, out_height): (u32, u32),
    out: &mut Vec<u8>,
) -> Result<(), DecodeError> {
    let resize_error = |detail: String| DecodeError::Resize { detail };
    out.clear();
    out.resize(out_width as usize * out_height as usize * 3, 0);
    let src = ImageRef::new(width, height, pixels, PixelType::U8x3)
        .map_err(|e| resize_error(e.to_string()))?;
    let mut dst = Image::from_slice_u8(out_width, out_height, out, PixelType::U8x3)
        .map_err(|e| resize_error(e.to_string()))?;
    let options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Bilinear));
    resizer
        .resize(&src, &mut dst, &options)
        .map_err(|e| resize_error(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::decode_rgb;
    use crate::error::ProbeError;
    use crate::info::{ColorModel, ImageFormat, ImageInfo};
    use crate::probe::probe;
    use crate::test_util::{assert_all_near, encode_with, gradient_rgb, jpeg_rgb, solid};

    fn opts(max_side: Option<u32>, quality: u8) -> ReencodeOptions {
        ReencodeOptions { max_side, quality }
    }

    /// The (horizontal, vertical) sampling factors of the first component in the SOF segment.
    fn luma_sampling(jpeg: &[u8]) -> (u8, u8) {
        let sof = jpeg
            .windows(2)
            .position(|w| w == [0xFF, 0xC0])
            .expect("baseline SOF0");
        let factors = jpeg[sof + 11];
        (factors >> 4, factors & 0x0F)
    }

    #[test]
    fn output_size_follows_pillow_thumbnail() {
        let cases = [
            // (max_side, input, expected)
            (256, (500, 375), (256, 192)),
            (256, (375, 500), (192, 256)),
            (256, (500, 500), (256, 256)),
            (256, (256, 100), (256, 100)),
            (256, (10, 10), (10, 10)),
            (256, (100_000, 1), (256, 1)),
            (256, (1, 100_000), (1, 256)),
            (3, (4, 2), (3, 2)), // 1.5 rounds up
            (2, (3, 2), (2, 1)), // 1.33 rounds down
            (500, (4288, 2848), (500, 332)),
            (1, (7, 5), (1, 1)),
        ];
        for (max_side, (w, h), expected) in cases {
            assert_eq!(
                opts(Some(max_side), 90).output_size(w, h),
                expected,
                "{w}x{h} into {max_side}"
            );
        }
        assert_eq!(opts(None, 90).output_size(4288, 2848), (4288, 2848));
    }

    #[test]
    fn output_size_keeps_the_aspect_ratio() {
        for max_side in [1, 7, 64, 256, 500] {
            for w in (1..1200).step_by(37) {
                for h in (1..1200).step_by(41) {
                    let (ow, oh) = opts(Some(max_side), 90).output_size(w, h);
                    assert!(ow.max(oh) == max_side.min(w.max(h)), "{w}x{h} -> {ow}x{oh}");
                    assert!(ow >= 1 && oh >= 1 && ow <= w && oh <= h);
                    let exact = f64::from(w.min(h)) * f64::from(ow.max(oh)) / f64::from(w.max(h));
                    assert!((f64::from(ow.min(oh)) - exact.max(1.0)).abs() <= 0.5 + 1e-9);
                }
            }
        }
    }

    #[test]
    fn options_are_validated() {
        let jpeg = jpeg_rgb(&gradient_rgb(8, 8), 8, 8);
        let mut reencoder = Reencoder::new();
        assert_eq!(
            reencoder.reencode(&jpeg, &opts(None, 0)),
            Err(DecodeError::InvalidQuality(0))
        );
        assert_eq!(
            reencoder.reencode(&jpeg, &opts(None, 101)),
            Err(DecodeError::InvalidQuality(101))
        );
        assert_eq!(
            reencoder.reencode(&jpeg, &opts(Some(0), 90)),
            Err(DecodeError::InvalidMaxSide)
        );
        assert!(reencoder.reencode(&jpeg, &opts(Some(1), 1)).is_ok());
        assert!(reencoder.reencode(&jpeg, &opts(None, 100)).is_ok());
    }

    #[test]
    fn output_is_a_baseline_420_rgb_jpeg_of_the_right_size() {
        let progressive = encode_with(
            &gradient_rgb(300, 200),
            300,
            200,
            jpeg_encoder::ColorType::Rgb,
            |e| e.set_progressive(true),
        );
        let out = Reencoder::new()
            .reencode(&progressive, &opts(Some(120), 85))
            .expect("re-encodes");
        assert_eq!((out.width, out.height), (120, 80));
        assert_eq!(
            probe(&out.jpeg),
            Ok(ImageInfo {
                format: ImageFormat::Jpeg,
                width: 120,
                height: 80,
                color: ColorModel::Rgb,
                progressive: false,
            })
        );
        assert_eq!(luma_sampling(&out.jpeg), (2, 2));
    }

    #[test]
    fn small_images_keep_their_size_and_colour() {
        let jpeg = jpeg_rgb(&solid(50, 30, &[180, 60, 20]), 50, 30);
        let out = Reencoder::new()
            .reencode(&jpeg, &opts(Some(256), 95))
            .expect("re-encodes");
        assert_eq!((out.width, out.height), (50, 30));
        let decoded = decode_rgb(&out.jpeg).expect("decodes");
        assert_all_near(&decoded.pixels, [180, 60, 20], 4);
    }

    #[test]
    fn cmyk_grayscale_and_png_inputs_become_rgb_jpegs() {
        let cmyk = encode_with(
            &solid(64, 40, &[0, 255, 255, 0]),
            64,
            40,
            jpeg_encoder::ColorType::Cmyk,
            |_| {},
        );
        let gray = encode_with(
            &[128; 64 * 40],
            64,
            40,
            jpeg_encoder::ColorType::Luma,
            |_| {},
        );
        let mut png = Vec::new();
        image::DynamicImage::ImageRgb8(image::RgbImage::from_pixel(
            64,
            40,
            image::Rgb([0, 0, 255]),
        ))
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .expect("encode PNG");
        let mut reencoder = Reencoder::new();
        for (input, colour) in [
            (cmyk, [255, 0, 0]),
            (gray, [128, 128, 128]),
            (png, [0, 0, 255]),
        ] {
            let out = reencoder
                .reencode(&input, &opts(Some(32), 95))
                .expect("re-encodes");
            assert_eq!((out.width, out.height), (32, 20));
            let info = probe(&out.jpeg).expect("valid JPEG");
            assert_eq!((info.color, info.progressive), (ColorModel::Rgb, false));
            // Red and blue are hard on 4:2:0 chroma, hence the wider tolerance.
            assert_all_near(&decode_rgb(&out.jpeg).expect("decodes").pixels, colour, 6);
        }
    }

    #[test]
    fn output_is_deterministic() {
        let jpeg = jpeg_rgb(&gradient_rgb(333, 251), 333, 251);
        let options = opts(Some(160), 90);
        let mut reused = Reencoder::new();
        let first = reused.reencode(&jpeg, &options).expect("re-encodes");
        // Something else in between, to dirty the scratch buffers.
        let other = jpeg_rgb(&gradient_rgb(640, 480), 640, 480);
        reused
            .reencode(&other, &opts(Some(400), 70))
            .expect("re-encodes");
        let second = reused.reencode(&jpeg, &options).expect("re-encodes");
        let fresh = Reencoder::new()
            .reencode(&jpeg, &options)
            .expect("re-encodes");
        assert_eq!(first, second);
        assert_eq!(first, fresh);
    }

    #[test]
    fn undecodable_input_is_reported() {
        let jpeg = jpeg_rgb(&gradient_rgb(16, 16), 16, 16);
        let cut = jpeg.len() / 2;
        assert!(matches!(
            Reencoder::new().reencode(&jpeg[..cut], &ReencodeOptions::default()),
            Err(DecodeError::Invalid(ProbeError::Truncated { offset, .. })) if offset == cut
        ));
    }
}
