//! Every format but JPEG, through the `image` crate: PNG (ImageNet holds one), GIF, WebP, BMP,
//! TIFF. Rare enough that probing one simply decodes it.

use std::io::Cursor;

use crate::error::ProbeError;
use crate::info::{ColorModel, ImageFormat, ImageInfo};
use crate::limits::{DecodeLimits, MAX_DIMENSION};

/// Decodes a non-JPEG image through the `image` crate, with [`MAX_DIMENSION`] per side and
/// `limits` on the pixel count, both checked on the headers before the pixels are allocated.
pub(crate) fn load(
    bytes: &[u8],
    format: ImageFormat,
    limits: &DecodeLimits,
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
    let mut image_limits = image::Limits::default();
    image_limits.max_image_width = Some(MAX_DIMENSION);
    image_limits.max_image_height = Some(MAX_DIMENSION);
    let mut reader = image::ImageReader::with_format(Cursor::new(bytes), image_format);
    reader.limits(image_limits);
    let image_error = |error: image::ImageError| match error {
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
    };
    // The headers first: the pixel buffer is sized from them.
    let decoder = reader.into_decoder().map_err(image_error)?;
    let (width, height) = image::ImageDecoder::dimensions(&decoder);
    limits.check_pixels(format, width, height)?;
    image::DynamicImage::from_decoder(decoder).map_err(image_error)
}

/// What a decoded image says about itself.
pub(crate) fn info_of(image: &image::DynamicImage, format: ImageFormat) -> ImageInfo {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn png_4x3() -> Vec<u8> {
        let mut png = Vec::new();
        image::RgbImage::new(4, 3)
            .write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png)
            .expect("encodes a PNG");
        png
    }

    #[test]
    fn the_pixel_limit_is_checked_on_the_header() {
        let png = png_4x3();
        assert!(load(&png, ImageFormat::Png, &DecodeLimits { max_pixels: 12 }).is_ok());
        assert_eq!(
            load(&png, ImageFormat::Png, &DecodeLimits { max_pixels: 11 }).map(|i| i.width()),
            Err(ProbeError::TooManyPixels {
                format: ImageFormat::Png,
                width: 4,
                height: 3,
                max_pixels: 11
            })
        );
    }
}
