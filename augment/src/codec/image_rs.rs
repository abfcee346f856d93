//! Every format but JPEG, through the `image` crate: PNG (ImageNet holds one), GIF, WebP, BMP,
//! TIFF. Rare enough that probing one simply decodes it.

use std::io::Cursor;

use crate::error::ProbeError;
use crate::info::{ColorModel, ImageFormat, ImageInfo};
use crate::limits::MAX_DIMENSION;

/// Decodes a non-JPEG image through the `image` crate, with [`MAX_DIMENSION`] as its limit.
pub(crate) fn load(bytes: &[u8], format: ImageFormat) -> Result<image::DynamicImage, ProbeError> {
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
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_DIMENSION);
    limits.max_image_height = Some(MAX_DIMENSION);
    let mut reader = image::ImageReader::with_format(Cursor::new(bytes), image_format);
    reader.limits(limits);
    reader.decode().map_err(|error| match error {
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
    })
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
