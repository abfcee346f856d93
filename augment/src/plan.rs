//! Pure planning of what to cut out of an image: torchvision's `RandomResizedCrop` and
//! `Resize` + `CenterCrop`, as functions of the image size and a [`SampleRng`]. Nothing here
//! touches pixels, so every rule can be tested exhaustively.
//!
//! - [`random_resized_crop`] (and [`random_resized_crop_traced`], which also says whether the
//!   fallback was taken) → a [`CropBox`];
//! - [`resized_size`] and [`center_crop_region`] → a [`SourceRegion`];
//! - [`AugmentPlan`]: everything the [`Augmenter`](crate::Augmenter) does to one image (which
//!   pixels to decode, the [`ResizeSource`] to map onto the output, the flip), made by
//!   [`Transform::plan`](crate::Transform::plan) or by hand for a given crop.

use crate::geometry::ImageSize;
// The boxes a plan is made of, also reachable as `plan::CropBox` and `plan::SourceRegion`.
pub use crate::geometry::{CropBox, SourceRegion};

/// The random numbers of one sample's augmentation: [`SampleRng::for_sample`]`(seed, epoch, index)`.
pub type SampleRng = shardfeed_rng::Xoshiro256;

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
    random_resized_crop_traced(rng, width, height, scale, ratio).crop
}

/// A crop from [`random_resized_crop_traced`] and how it was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RandomCrop {
    /// The crop.
    pub crop: CropBox,
    /// The try (1 to 10) whose draw fitted, or `None` when all ten failed and the crop is the
    /// central fallback.
    pub try_number: Option<u8>,
}

/// [`random_resized_crop`], also telling which try succeeded or that the fallback was taken
/// (for statistics: on very elongated images the fallback is common, and it is never random).
///
/// ```
/// use shardfeed_augment::plan::random_resized_crop_traced;
/// use shardfeed_augment::SampleRng;
///
/// let mut rng = SampleRng::for_sample(0, 0, 0);
/// // A crop of at least 8% of a 1000x10 strip with a ratio near 1 never fits: fallback.
/// let crop = random_resized_crop_traced(&mut rng, 1000, 10, (0.08, 1.0), (0.75, 4.0 / 3.0));
/// assert_eq!(crop.try_number, None);
/// assert_eq!((crop.crop.width, crop.crop.height), (13, 10));
/// ```
pub fn random_resized_crop_traced(
    rng: &mut SampleRng,
    width: u32,
    height: u32,
    scale: (f64, f64),
    ratio: (f64, f64),
) -> RandomCrop {
    let area = f64::from(width) * f64::from(height);
    let log_ratio = (ratio.0.ln(), ratio.1.ln());
    for try_number in 1..=10 {
        let target_area = area * rng.uniform(scale.0, scale.1);
        let aspect_ratio = rng.uniform(log_ratio.0, log_ratio.1).exp();
        let w = py_round((target_area * aspect_ratio).sqrt());
        let h = py_round((target_area / aspect_ratio).sqrt());
        if 0 < w && w <= i64::from(width) && 0 < h && h <= i64::from(height) {
            // Both fit in u32: 0 < w <= width, 0 < h <= height.
            let (w, h) = (w as u32, h as u32);
            let top = rng.below(u64::from(height - h) + 1) as u32;
            let left = rng.below(u64::from(width - w) + 1) as u32;
            return RandomCrop {
                crop: CropBox {
                    left,
                    top,
                    width: w,
                    height: h,
                },
                try_number: Some(try_number),
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
    RandomCrop {
        crop: CropBox {
            left: (width - w) / 2,
            top: (height - h) / 2,
            width: w,
            height: h,
        },
        try_number: None,
    }
}

/// The size torchvision's `Resize(size)` (an int: the shorter side) gives a `width` x `height`
/// image: the shorter side becomes `size`, the longer `int(size * long / short)` (truncated).
pub fn resized_size(width: u32, height: u32, size: u32) -> (u32, u32) {
    let (short, long) = (width.min(height), width.max(height));
    let new_long = u64::from(size) * u64::from(long) / u64::from(short.max(1));
    // Saturates where torchvision would make an image wider than memory.
    let new_long = u32::try_from(new_long).unwrap_or(u32::MAX);
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

/// What a resize maps onto the output square.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ResizeSource {
    /// Exactly the pixels of a box, as if it were cut out first: torchvision's `F.resized_crop`
    /// (PIL `crop` then `resize`), so the filter never reads a pixel outside the box.
    Cropped(CropBox),
    /// A real-valued region, with the filter free to read the pixels around it (Pillow's
    /// `resize(size, box=...)`): `Resize` then `CenterCrop` without computing the pixels the crop
    /// throws away.
    Region(SourceRegion),
}

/// Everything done to one image: decode (at least) `decode`, resize `resize` onto a
/// `size` x `size` output, then mirror it if `flip`. A pure value:
/// [`Transform::plan`](crate::Transform::plan) makes it from the image size and the sample's key, and
/// [`Augmenter::apply_plan`](crate::Augmenter::apply_plan) carries it out.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AugmentPlan {
    /// The pixels to decode, in image coordinates; they must hold what `resize` reads.
    pub decode: CropBox,
    /// What the resize maps onto the output.
    pub resize: ResizeSource,
    /// Output side in pixels (square output).
    pub size: u32,
    /// Mirror the output left to right (after the resize, as `RandomHorizontalFlip` does).
    pub flip: bool,
}

impl AugmentPlan {
    /// Cut out exactly `crop`, resize it to `size` x `size`, flip if asked: torchvision's
    /// `F.resized_crop(img, top, left, height, width, [size, size])` then `F.hflip`.
    pub fn crop(crop: CropBox, size: u32, flip: bool) -> Self {
        AugmentPlan {
            decode: crop,
            resize: ResizeSource::Cropped(crop),
            size,
            flip,
        }
    }

    /// Resize `region` of an `image`-sized image onto `size` x `size`, with the filter reading
    /// the pixels around the region as a resize of the whole image would. The region is clipped
    /// to the image (rounding can put its edge a hair outside), and the decode box covers the
    /// filter's support around it.
    pub fn region(region: SourceRegion, image: ImageSize, size: u32) -> Self {
        let (width, height) = (f64::from(image.width), f64::from(image.height));
        let left = region.left.clamp(0.0, width);
        let top = region.top.clamp(0.0, height);
        let region = SourceRegion {
            left,
            top,
            width: region.width.min(width - left),
            height: region.height.min(height - top),
        };
        // The bilinear filter reads up to max(scale, 1) pixels beyond the region on each side;
        // one more for the rounding of its bounds.
        let support_x = (region.width / f64::from(size.max(1))).max(1.0) + 1.0;
        let support_y = (region.height / f64::from(size.max(1))).max(1.0) + 1.0;
        let decode_left = (region.left - support_x).floor().max(0.0) as u32;
        let decode_top = (region.top - support_y).floor().max(0.0) as u32;
        let decode_right = ((region.left + region.width + support_x).ceil().min(width)) as u32;
        let decode_bottom = ((region.top + region.height + support_y).ceil().min(height)) as u32;
        AugmentPlan {
            decode: CropBox {
                left: decode_left.min(image.width.saturating_sub(1)),
                top: decode_top.min(image.height.saturating_sub(1)),
                width: decode_right.saturating_sub(decode_left).max(1),
                height: decode_bottom.saturating_sub(decode_top).max(1),
            },
            resize: ResizeSource::Region(region),
            size,
            flip: false,
        }
    }

    /// The smallest integer box of the image that holds what the resize maps onto the output:
    /// the crop itself, or the pixels a region touches.
    pub fn covered_box(&self) -> CropBox {
        match self.resize {
            ResizeSource::Cropped(crop) => crop,
            ResizeSource::Region(r) => {
                let left = r.left.floor().max(0.0) as u32;
                let top = r.top.floor().max(0.0) as u32;
                let right = ((r.left + r.width).ceil().max(0.0) as u32).max(left + 1);
                let bottom = ((r.top + r.height).ceil().max(0.0) as u32).max(top + 1);
                CropBox {
                    left,
                    top,
                    width: right - left,
                    height: bottom - top,
                }
            }
        }
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
        let mut rng = SampleRng::new(1);
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
