//! Pure planning of what to cut out of an image: torchvision's `RandomResizedCrop` and
//! `Resize` + `CenterCrop`, as functions of the image size and a [`SampleRng`]. Nothing here
//! touches pixels, so every rule can be tested exhaustively.

use crate::sample_rng::SampleRng;

/// An integer rectangle of an image, in pixels: columns `left..left + width`, rows
/// `top..top + height`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CropBox {
    /// First column.
    pub left: u32,
    /// First row.
    pub top: u32,
    /// Columns, at least 1.
    pub width: u32,
    /// Rows, at least 1.
    pub height: u32,
}

impl CropBox {
    /// The whole of a `width` x `height` image.
    pub fn full(width: u32, height: u32) -> Self {
        CropBox {
            left: 0,
            top: 0,
            width,
            height,
        }
    }

    /// One past the last column.
    pub fn right(&self) -> u32 {
        self.left + self.width
    }

    /// One past the last row.
    pub fn bottom(&self) -> u32 {
        self.top + self.height
    }
}

/// A rectangle of an image in real-valued pixel coordinates: what a resize maps onto its output.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SourceRegion {
    /// Left edge.
    pub left: f64,
    /// Top edge.
    pub top: f64,
    /// Width, > 0.
    pub width: f64,
    /// Height, > 0.
    pub height: f64,
}

/// `int(round(x))` as Python computes it: round half to even.
fn py_round(x: f64) -> i64 {
    x.round_ties_even() as i64
}

/// torchvision's `RandomResizedCrop.get_params` for a `width` x `height` image: up to ten tries
/// of an area fraction uniform in `scale` and a log-uniform aspect ratio in `ratio`, each kept
/// when it fits; then the fallback (the whole image, or its centre cut to the nearest allowed
/// ratio).
///
/// The draws are made in torchvision's order (area, log-ratio, then the top row, then the left
/// column) from `rng` instead of torch's generator, so the distribution is torchvision's, not
/// its exact numbers. `width` and `height` must be at least 1; `scale` and `ratio` must be
/// ordered pairs of positive numbers (see [`TrainTransform::validate`](crate::TrainTransform)).
pub fn random_resized_crop(
    rng: &mut SampleRng,
    width: u32,
    height: u32,
    scale: (f64, f64),
    ratio: (f64, f64),
) -> CropBox {
    let area = f64::from(width) * f64::from(height);
    let log_ratio = (ratio.0.ln(), ratio.1.ln());
    for _ in 0..10 {
        let target_area = area * rng.uniform(scale.0, scale.1);
        let aspect_ratio = rng.uniform(log_ratio.0, log_ratio.1).exp();
        let w = py_round((target_area * aspect_ratio).sqrt());
        let h = py_round((target_area / aspect_ratio).sqrt());
        if 0 < w && w <= i64::from(width) && 0 < h && h <= i64::from(height) {
            // Both fit in u32: 0 < w <= width, 0 < h <= height.
            let (w, h) = (w as u32, h as u32);
            let top = rng.below(u64::from(height - h) + 1) as u32;
            let left = rng.below(u64::from(width - w) + 1) as u32;
            return CropBox {
                left,
                top,
                width: w,
                height: h,
            };
        }
    }
    // Fallback to a central crop.
    let in_ratio = f64::from(width) / f64::from(height);
    let (min_ratio, max_ratio) = (ratio.0.min(ratio.1), ratio.0.max(ratio.1));
    let (w, h) = if in_ratio < min_ratio {
        let h = py_round(f64::from(width) / min_ratio).clamp(1, i64::from(height)) as u32;
        (width, h)
    } else if in_ratio > max_ratio {
        let w = py_round(f64::from(height) * max_ratio).clamp(1, i64::from(width)) as u32;
        (w, height)
    } else {
        (width, height)
    };
    CropBox {
        left: (width - w) / 2,
        top: (height - h) / 2,
        width: w,
        height: h,
    }
}

/// The size torchvision's `Resize(size)` (an int: the shorter side) gives a `width` x `height`
/// image: the shorter side becomes `size`, the longer `int(size * long / short)` (truncated).
pub fn resized_size(width: u32, height: u32, size: u32) -> (u32, u32) {
    let (short, long) = (width.min(height), width.max(height));
    let new_long = (u64::from(size) * u64::from(long) / u64::from(short.max(1))) as u32;
    if width <= height {
        (size, new_long)
    } else {
        (new_long, size)
    }
}

/// What `Resize(resize)` then `CenterCrop(crop)` keep of a `width` x `height` image, as the region
/// of the original image that the `crop` x `crop` output covers.
///
/// Resizing that region (with the filter free to read pixels around it, as Pillow's `box`
/// argument does) gives the same pixels as resizing the whole image and then cropping, without
/// computing the pixels that the crop throws away. The crop offsets are torchvision's,
/// `int(round((resized - crop) / 2))`. When the resized image is smaller than `crop`
/// (torchvision would pad), the region is clamped to the image and the output is stretched.
pub fn center_crop_region(width: u32, height: u32, resize: u32, crop: u32) -> SourceRegion {
    let (new_w, new_h) = resized_size(width, height, resize);
    let scale_x = f64::from(width) / f64::from(new_w.max(1));
    let scale_y = f64::from(height) / f64::from(new_h.max(1));
    let axis = |new: u32, scale: f64, full: u32| -> (f64, f64) {
        if crop >= new {
            return (0.0, f64::from(full));
        }
        let offset = py_round(f64::from(new - crop) / 2.0) as f64;
        (offset * scale, f64::from(crop) * scale)
    };
    let (left, w) = axis(new_w, scale_x, width);
    let (top, h) = axis(new_h, scale_y, height);
    SourceRegion {
        left,
        top,
        width: w,
        height: h,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_rounding_is_half_to_even() {
        assert_eq!(py_round(0.5), 0);
        assert_eq!(py_round(1.5), 2);
        assert_eq!(py_round(2.5), 2);
        assert_eq!(py_round(2.5000001), 3);
        assert_eq!(py_round(-0.5), 0);
    }

    #[test]
    fn crops_always_fit_inside_the_image() {
        for (width, height) in [(1, 1), (1, 500), (500, 1), (500, 375), (375, 500), (2, 3)] {
            for index in 0..2_000 {
                let mut rng = SampleRng::for_sample(7, 0, index);
                let b =
                    random_resized_crop(&mut rng, width, height, (0.08, 1.0), (0.75, 4.0 / 3.0));
                assert!(b.width >= 1 && b.height >= 1, "{b:?}");
                assert!(
                    b.right() <= width && b.bottom() <= height,
                    "{b:?} in {width}x{height}"
                );
            }
        }
    }

    #[test]
    fn fallback_cuts_the_centre_to_the_nearest_ratio() {
        // scale > 1 never fits, so every try fails and the fallback decides.
        let mut rng = SampleRng::from_seed(1);
        let wide = random_resized_crop(&mut rng, 1000, 100, (2.0, 3.0), (0.75, 4.0 / 3.0));
        assert_eq!(
            wide,
            CropBox {
                left: 433,
                top: 0,
                width: 133,
                height: 100
            }
        );
        let tall = random_resized_crop(&mut rng, 100, 1000, (2.0, 3.0), (0.75, 4.0 / 3.0));
        assert_eq!(
            tall,
            CropBox {
                left: 0,
                top: 433,
                width: 100,
                height: 133
            }
        );
        let square = random_resized_crop(&mut rng, 300, 300, (2.0, 3.0), (0.75, 4.0 / 3.0));
        assert_eq!(square, CropBox::full(300, 300));
    }

    #[test]
    fn resize_keeps_the_aspect_ratio_like_torchvision() {
        assert_eq!(resized_size(500, 375, 256), (341, 256));
        assert_eq!(resized_size(375, 500, 256), (256, 341));
        assert_eq!(resized_size(256, 256, 256), (256, 256));
        assert_eq!(resized_size(100, 50, 256), (512, 256));
    }

    #[test]
    fn center_crop_region_maps_the_crop_back_to_the_source() {
        // 500x375 -> 341x256, crop 224: offsets round((341-224)/2) = 58 (58.5 rounds to even),
        // round(32/2) = 16.
        let r = center_crop_region(500, 375, 256, 224);
        let sx = 500.0 / 341.0;
        let sy = 375.0 / 256.0;
        assert!((r.left - 58.0 * sx).abs() < 1e-9, "{r:?}");
        assert!((r.top - 16.0 * sy).abs() < 1e-9, "{r:?}");
        assert!((r.width - 224.0 * sx).abs() < 1e-9);
        assert!((r.height - 224.0 * sy).abs() < 1e-9);
        // A resized image smaller than the crop keeps the whole axis.
        let small = center_crop_region(100, 100, 128, 224);
        assert_eq!(
            (small.left, small.top, small.width, small.height),
            (0.0, 0.0, 100.0, 100.0)
        );
    }
}
