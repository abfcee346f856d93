//! The training and validation transforms, applied by an [`Augmenter`] straight into a slot of a
//! batch buffer: decode what the crop needs, resize it with fast_image_resize (Pillow's
//! antialiased bilinear filter, as torchvision uses on PIL images), flip.

use std::time::{Duration, Instant};

use fast_image_resize::images::{CroppedImage, Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};

use crate::error::DecodeError;
use crate::geometry::{CropBox, ImageSize, SourceRegion};
use crate::limits::DecodeLimits;
use crate::plan::{center_crop_region, random_resized_crop, AugmentPlan, ResizeSource, SampleRng};
use crate::region::{DecodedRegion, JpegBackend, RegionDecoder, RegionRequest};

/// The largest output side accepted, in pixels.
pub const MAX_OUTPUT_SIZE: u32 = 4096;

/// torchvision's `RandomResizedCrop(size, scale, ratio)` then `RandomHorizontalFlip(p)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrainTransform {
    /// Output side in pixels (square output).
    pub size: u32,
    /// Range of the crop's area as a fraction of the image's (torchvision: `(0.08, 1.0)`).
    pub scale: (f64, f64),
    /// Range of the crop's aspect ratio, width / height (torchvision: `(3/4, 4/3)`).
    pub ratio: (f64, f64),
    /// Probability of a horizontal flip (torchvision: 0.5).
    pub flip_probability: f64,
}

impl TrainTransform {
    /// torchvision's defaults at output size `size`.
    pub fn new(size: u32) -> Self {
        TrainTransform {
            size,
            scale: (0.08, 1.0),
            ratio: (3.0 / 4.0, 4.0 / 3.0),
            flip_probability: 0.5,
        }
    }
}

/// torchvision's `Resize(resize)` (shorter side) then `CenterCrop(size)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ValTransform {
    /// Output side in pixels (square output).
    pub size: u32,
    /// The shorter side before the centre crop (ImageNet: 256 for 224, ratio 0.875).
    pub resize: u32,
}

impl ValTransform {
    /// The usual ImageNet evaluation transform at output size `size`: resize to
    /// `round(size / 0.875)`, then centre-crop `size`.
    pub fn new(size: u32) -> Self {
        ValTransform {
            size,
            resize: (f64::from(size) / 0.875).round() as u32,
        }
    }
}

/// What to do to each image.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Transform {
    /// Random crop and flip.
    Train(TrainTransform),
    /// Deterministic resize and centre crop.
    Val(ValTransform),
}

/// Why a [`Transform`] is not usable.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TransformError {
    /// Output size 0, or too large.
    #[error("invalid output size {0}: must be 1..=4096")]
    Size(u32),
    /// `scale` is not an ordered pair in `(0, +inf)`.
    #[error("invalid scale range {0:?}: need 0 < min <= max")]
    Scale((f64, f64)),
    /// `ratio` is not an ordered pair in `(0, +inf)`.
    #[error("invalid ratio range {0:?}: need 0 < min <= max")]
    Ratio((f64, f64)),
    /// The flip probability is outside `[0, 1]`.
    #[error("invalid flip probability {0}: must be in [0, 1]")]
    FlipProbability(f64),
    /// The resize is smaller than the crop.
    #[error("invalid resize {resize} for a centre crop of {size}: must be at least the crop")]
    Resize {
        /// The shorter side after resizing.
        resize: u32,
        /// The crop.
        size: u32,
    },
}

impl Transform {
    /// Output side in pixels.
    pub fn size(&self) -> u32 {
        match self {
            Transform::Train(t) => t.size,
            Transform::Val(v) => v.size,
        }
    }

    /// Bytes of one output image: `size * size * 3`.
    pub fn output_len(&self) -> usize {
        let side = self.size() as usize;
        side * side * 3
    }

    /// Checks the parameters.
    ///
    /// # Errors
    ///
    /// The first [`TransformError`] found.
    pub fn validate(&self) -> Result<(), TransformError> {
        let size = self.size();
        if !(1..=MAX_OUTPUT_SIZE).contains(&size) {
            return Err(TransformError::Size(size));
        }
        let ordered_positive = |(a, b): (f64, f64)| a > 0.0 && a <= b && b.is_finite();
        match self {
            Transform::Train(t) => {
                if !ordered_positive(t.scale) {
                    return Err(TransformError::Scale(t.scale));
                }
                if !ordered_positive(t.ratio) {
                    return Err(TransformError::Ratio(t.ratio));
                }
                if !(0.0..=1.0).contains(&t.flip_probability) {
                    return Err(TransformError::FlipProbability(t.flip_probability));
                }
            }
            Transform::Val(v) => {
                if v.resize < v.size {
                    return Err(TransformError::Resize {
                        resize: v.resize,
                        size: v.size,
                    });
                }
            }
        }
        Ok(())
    }
}

/// Why one image could not be augmented.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AugmentError {
    /// The image does not decode.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The transform's parameters are invalid.
    #[error(transparent)]
    Transform(#[from] TransformError),
    /// The output slot has the wrong length.
    #[error("output slot holds {actual} bytes, the transform writes {expected}")]
    Slot {
        /// `size * size * 3`.
        expected: usize,
        /// What was passed.
        actual: usize,
    },
    /// fast_image_resize refused the resize.
    #[error("resize failed: {0}")]
    Resize(String),
    /// A plan given to [`Augmenter::apply_plan`] or [`Augmenter::resize_decoded`] does not fit
    /// the image.
    #[error("invalid augment plan {plan:?}: {reason}")]
    Plan {
        /// The plan.
        plan: AugmentPlan,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// What [`Augmenter::apply`] did to one image.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Applied {
    /// The source image's size.
    pub image: ImageSize,
    /// The integer crop (train), or the smallest integer box around the source region (val).
    pub crop: CropBox,
    /// Whether the output was flipped horizontally.
    pub flipped: bool,
}

/// The identity of one sample's randomness: (seed, epoch, index in the epoch's order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SampleKey {
    /// The run's seed.
    pub seed: u64,
    /// The epoch.
    pub epoch: u64,
    /// The sample's index in the epoch (its position in the global order).
    pub index: u64,
}

impl SampleKey {
    /// The random numbers of this sample.
    pub fn rng(&self) -> SampleRng {
        SampleRng::for_sample(self.seed, self.epoch, self.index)
    }
}

/// Applies transforms, one image at a time, into caller-owned output slots. Keep one per worker
/// thread: it owns the decoder, the resizer and their buffers, so the steady state allocates no
/// pixel buffers.
#[derive(Debug, Default)]
pub struct Augmenter {
    decoder: RegionDecoder,
    resizer: Resizer,
    times: StageTimes,
    dct_downscale: bool,
}

/// Time spent in each stage of [`Augmenter::apply`], summed over calls.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StageTimes {
    /// Reading headers and decoding pixels.
    pub decode: Duration,
    /// Resizing and flipping into the output slot.
    pub resize: Duration,
    /// Images counted.
    pub images: u64,
}

impl Transform {
    /// What to do to an image of size `image` for the sample `key`: a pure function, so the same
    /// (transform, size, key) always gives the same plan, whatever thread or machine runs it.
    ///
    /// Train: [`random_resized_crop`] and a flip drawn with probability `flip_probability`, in
    /// torchvision's order, from `key`'s [`SampleRng`]. Val: the region `Resize(resize)` then
    /// `CenterCrop(size)` keep ([`center_crop_region`]), never flipped. The transform should be
    /// valid ([`Transform::validate`]).
    ///
    /// ```
    /// use shardfeed_augment::plan::ResizeSource;
    /// use shardfeed_augment::{ImageSize, SampleKey, Transform, ValTransform};
    ///
    /// let val = Transform::Val(ValTransform::new(224));
    /// let key = SampleKey { seed: 0, epoch: 0, index: 0 };
    /// let plan = val.plan(ImageSize { width: 500, height: 375 }, key);
    /// assert_eq!((plan.size, plan.flip), (224, false));
    /// assert!(matches!(plan.resize, ResizeSource::Region(_)));
    /// ```
    pub fn plan(&self, image: ImageSize, key: SampleKey) -> AugmentPlan {
        match self {
            Transform::Train(t) => {
                let mut rng = key.rng();
                let crop =
                    random_resized_crop(&mut rng, image.width, image.height, t.scale, t.ratio);
                let flip = rng.next_f64() < t.flip_probability;
                AugmentPlan::crop(crop, t.size, flip)
            }
            Transform::Val(v) => {
                let region = center_crop_region(image.width, image.height, v.resize, v.size);
                AugmentPlan::region(region, image, v.size)
            }
        }
    }
}

impl Augmenter {
    /// An augmenter with empty buffers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Lets libjpeg-turbo downscale a crop by 1/2, 1/4 or 1/8 inside the inverse DCT when the
    /// crop stays at least twice the output size (see [`RegionDecoder::decode_downscaled`]): much
    /// less work for crops four or more times larger than the output (large photos, small
    /// outputs). Off by default: the pixels then differ a little from
    /// torchvision's, which resizes from the full-resolution crop.
    pub fn set_dct_downscale(&mut self, enabled: bool) {
        self.dct_downscale = enabled;
    }

    /// Sets the limits on the images decoded (default: [`DecodeLimits::default`], Pillow's
    /// `MAX_IMAGE_PIXELS`): an image over them fails with
    /// [`ProbeError::TooManyPixels`](crate::ProbeError::TooManyPixels), found on its headers
    /// before any pixel buffer grows.
    pub fn set_decode_limits(&mut self, limits: DecodeLimits) {
        self.decoder.set_limits(limits);
    }

    /// A new augmenter with this one's settings (backend, DCT downscaling, decode limits) and
    /// empty buffers: what a worker starts afresh with when a decoder panicked and left its
    /// buffers in any state.
    pub fn renewed(&self) -> Self {
        let mut fresh = Augmenter::with_backend(self.decoder.backend());
        fresh.dct_downscale = self.dct_downscale;
        fresh.decoder.set_limits(self.decoder.limits());
        fresh
    }

    /// An augmenter whose JPEGs go through `backend`.
    pub fn with_backend(backend: JpegBackend) -> Self {
        Augmenter {
            decoder: RegionDecoder::with_backend(backend),
            ..Self::default()
        }
    }

    /// Decodes `image`, applies `transform` with the randomness of `key`, and writes
    /// `size * size * 3` bytes of RGB8 (HWC) into `out`.
    ///
    /// ```
    /// use shardfeed_augment::{Augmenter, SampleKey, TrainTransform, Transform};
    /// # let mut jpeg = Vec::new();
    /// # jpeg_encoder::Encoder::new(&mut jpeg, 90)
    /// #     .encode(&vec![120; 64 * 48 * 3], 64, 48, jpeg_encoder::ColorType::Rgb)?;
    /// let mut augmenter = Augmenter::new();
    /// let train = Transform::Train(TrainTransform::new(32));
    /// let mut batch = vec![0_u8; 4 * train.output_len()];
    /// for (index, slot) in batch.chunks_exact_mut(train.output_len()).enumerate() {
    ///     let key = SampleKey { seed: 7, epoch: 0, index: index as u64 };
    ///     let applied = augmenter.apply(&jpeg, &train, key, slot)?;
    ///     assert!(applied.crop.right() <= 64 && applied.crop.bottom() <= 48);
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`AugmentError::Slot`] when `out` has the wrong length, [`AugmentError::Transform`] for
    /// invalid parameters, [`AugmentError::Decode`] when the image does not decode. `out` is
    /// unspecified after an error.
    pub fn apply(
        &mut self,
        image: &[u8],
        transform: &Transform,
        key: SampleKey,
        out: &mut [u8],
    ) -> Result<Applied, AugmentError> {
        transform.validate()?;
        check_slot(transform.size(), out)?;
        self.decode_and_resize(image, out, |size| transform.plan(size, key))
    }

    /// Carries out a given plan on `image`: decodes `plan.decode`, resizes `plan.resize` onto
    /// the `plan.size` x `plan.size` slot `out`, flips if `plan.flip`. [`Augmenter::apply`] is
    /// `apply_plan` of [`Transform::plan`]; this entry point is for crops chosen elsewhere (a
    /// replay, a golden test against torchvision with its own boxes).
    ///
    /// ```
    /// use shardfeed_augment::plan::AugmentPlan;
    /// use shardfeed_augment::{Augmenter, CropBox};
    /// # let mut jpeg = Vec::new();
    /// # jpeg_encoder::Encoder::new(&mut jpeg, 90)
    /// #     .encode(&vec![120; 64 * 48 * 3], 64, 48, jpeg_encoder::ColorType::Rgb)?;
    /// let crop = CropBox { left: 10, top: 5, width: 30, height: 20 };
    /// let mut out = vec![0_u8; 16 * 16 * 3];
    /// let applied = Augmenter::new().apply_plan(&jpeg, &AugmentPlan::crop(crop, 16, true), &mut out)?;
    /// assert_eq!((applied.crop, applied.flipped), (crop, true));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`AugmentError::Slot`], [`AugmentError::Transform`] for a size outside `1..=4096`,
    /// [`AugmentError::Decode`] when the image does not decode or `plan.decode` is not inside it
    /// ([`DecodeError::Region`]), [`AugmentError::Plan`] when what the resize reads is empty, not
    /// finite, or outside the decoded pixels.
    pub fn apply_plan(
        &mut self,
        image: &[u8],
        plan: &AugmentPlan,
        out: &mut [u8],
    ) -> Result<Applied, AugmentError> {
        check_slot(plan.size, out)?;
        self.decode_and_resize(image, out, |_| *plan)
    }

    /// The resize and flip of `plan` alone, from pixels decoded elsewhere: `decoded` must hold
    /// what `plan.resize` reads. Writes `plan.size * plan.size * 3` bytes into `out`.
    ///
    /// ```
    /// use shardfeed_augment::plan::AugmentPlan;
    /// use shardfeed_augment::{decode_rgb, Augmenter, CropBox, DecodedRegion, ImageSize};
    /// # let mut jpeg = Vec::new();
    /// # jpeg_encoder::Encoder::new(&mut jpeg, 90)
    /// #     .encode(&vec![120; 64 * 48 * 3], 64, 48, jpeg_encoder::ColorType::Rgb)?;
    /// let image = decode_rgb(&jpeg)?;
    /// let decoded = DecodedRegion {
    ///     pixels: &image.pixels,
    ///     width: image.width,
    ///     height: image.height,
    ///     origin_x: 0,
    ///     origin_y: 0,
    ///     scale_denominator: 1,
    ///     image: ImageSize { width: image.width, height: image.height },
    /// };
    /// let plan = AugmentPlan::crop(CropBox::full(64, 48), 24, false);
    /// let mut out = vec![0_u8; 24 * 24 * 3];
    /// Augmenter::new().resize_decoded(&decoded, &plan, &mut out)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`AugmentError::Slot`], [`AugmentError::Transform`] for a size outside `1..=4096`,
    /// [`AugmentError::Plan`] when `decoded` does not hold what the plan reads.
    pub fn resize_decoded(
        &mut self,
        decoded: &DecodedRegion<'_>,
        plan: &AugmentPlan,
        out: &mut [u8],
    ) -> Result<(), AugmentError> {
        check_slot(plan.size, out)?;
        resize_into(&mut self.resizer, decoded, plan, out)
    }

    /// Reads the image's size, makes the plan with `make_plan`, decodes what the plan needs
    /// (the headers read once) and resizes it into `out` (already checked to be the right
    /// length), counting the stage times.
    fn decode_and_resize(
        &mut self,
        image: &[u8],
        out: &mut [u8],
        make_plan: impl FnOnce(ImageSize) -> AugmentPlan,
    ) -> Result<Applied, AugmentError> {
        let started = Instant::now();
        let dct_downscale = self.dct_downscale;
        let (plan, decoded) = self.decoder.decode_planned(image, |size| {
            let plan = make_plan(size);
            let request = decode_request(&plan, dct_downscale);
            (plan, request)
        })?;
        let decoded_at = Instant::now();
        self.times.decode += decoded_at - started;
        let image_size = decoded.image;
        resize_into(&mut self.resizer, &decoded, &plan, out)?;
        self.times.resize += decoded_at.elapsed();
        self.times.images += 1;
        Ok(Applied {
            image: image_size,
            crop: plan.covered_box(),
            flipped: plan.flip,
        })
    }

    /// Decodes the whole image and nothing more (the `--decode-only` baseline); returns its size.
    ///
    /// # Errors
    ///
    /// [`AugmentError::Decode`] when the image does not decode.
    pub fn decode_only(&mut self, image: &[u8]) -> Result<ImageSize, AugmentError> {
        let started = Instant::now();
        let size = self.decoder.decode(image, None)?.image;
        self.times.decode += started.elapsed();
        self.times.images += 1;
        Ok(size)
    }

    /// The time spent per stage since the last call (or since creation), then resets it.
    pub fn take_stage_times(&mut self) -> StageTimes {
        std::mem::take(&mut self.times)
    }
}

/// What the decoder must deliver for `plan`: its decode box, and with `dct_downscale` leave to
/// downscale in the IDCT while the resize source keeps at least twice the output's resolution
/// (so the antialiasing filter still has real pixels to average and the result stays close to
/// the full-resolution path).
fn decode_request(plan: &AugmentPlan, dct_downscale: bool) -> RegionRequest {
    let at_least = dct_downscale.then(|| {
        let (width, height) = match plan.resize {
            ResizeSource::Cropped(crop) => (crop.width, crop.height),
            ResizeSource::Region(r) => (r.width.max(0.0) as u32, r.height.max(0.0) as u32),
        };
        let keep = plan.size.saturating_mul(2);
        (keep.min(width), keep.min(height))
    });
    RegionRequest {
        region: plan.decode,
        at_least,
    }
}

/// Checks an output side and the slot's length.
fn check_slot(size: u32, out: &[u8]) -> Result<(), AugmentError> {
    if !(1..=MAX_OUTPUT_SIZE).contains(&size) {
        return Err(TransformError::Size(size).into());
    }
    let side = size as usize;
    let expected = side * side * 3;
    if out.len() != expected {
        return Err(AugmentError::Slot {
            expected,
            actual: out.len(),
        });
    }
    Ok(())
}

/// Resizes what `plan` reads from `decoded` into `out` (`plan.size` squared RGB8, checked by
/// the caller) with Pillow's antialiased bilinear filter, then flips it if asked. Allocates
/// nothing itself; the resizer keeps its scratch buffer between calls.
fn resize_into(
    resizer: &mut Resizer,
    decoded: &DecodedRegion<'_>,
    plan: &AugmentPlan,
    out: &mut [u8],
) -> Result<(), AugmentError> {
    let invalid = |reason: &'static str| AugmentError::Plan {
        plan: *plan,
        reason,
    };
    let pixel_len = decoded.width as usize * decoded.height as usize * 3;
    let pixels = decoded
        .pixels
        .get(..pixel_len)
        .filter(|p| !p.is_empty())
        .ok_or_else(|| {
            invalid("the decoded pixels are empty or shorter than width * height * 3")
        })?;
    let resize_error = |e: &dyn std::fmt::Display| AugmentError::Resize(e.to_string());
    let src = ImageRef::new(decoded.width, decoded.height, pixels, PixelType::U8x3)
        .map_err(|e| resize_error(&e))?;
    let side = plan.size;
    let mut dst =
        Image::from_slice_u8(side, side, out, PixelType::U8x3).map_err(|e| resize_error(&e))?;
    let bilinear = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Bilinear));
    match plan.resize {
        ResizeSource::Cropped(crop) if decoded.scale_denominator != 1 => {
            // The crop lands on fractional pixels of the downscaled buffer: a view of the whole
            // pixels around it (so the filter reads nothing outside the crop, rounded out to
            // the next scaled pixel), then the fractional box inside that view.
            let local = decoded.local_region(SourceRegion {
                left: f64::from(crop.left),
                top: f64::from(crop.top),
                width: f64::from(crop.width),
                height: f64::from(crop.height),
            });
            if !local.lies_inside(decoded.width, decoded.height) {
                return Err(invalid("the crop is not inside the downscaled pixels"));
            }
            let left = local.left.floor() as u32;
            let top = local.top.floor() as u32;
            let right = ((local.left + local.width).ceil() as u32).min(decoded.width);
            let bottom = ((local.top + local.height).ceil() as u32).min(decoded.height);
            let view = CroppedImage::new(&src, left, top, right - left, bottom - top)
                .map_err(|e| resize_error(&e))?;
            let options = bilinear.crop(
                local.left - f64::from(left),
                local.top - f64::from(top),
                local.width,
                local.height,
            );
            resizer
                .resize(&view, &mut dst, &options)
                .map_err(|e| resize_error(&e))?;
        }
        ResizeSource::Cropped(crop) => {
            let local = decoded
                .local(crop)
                .filter(|c| c.width > 0 && c.height > 0)
                .ok_or_else(|| invalid("the crop is empty or not inside the decoded pixels"))?;
            let view = CroppedImage::new(&src, local.left, local.top, local.width, local.height)
                .map_err(|e| resize_error(&e))?;
            resizer
                .resize(&view, &mut dst, &bilinear)
                .map_err(|e| resize_error(&e))?;
        }
        ResizeSource::Region(region) => {
            let local = decoded.local_region(region);
            if !local.lies_inside(decoded.width, decoded.height) {
                return Err(invalid(
                    "the region is empty, not finite, or not inside the decoded pixels",
                ));
            }
            let options = bilinear.crop(local.left, local.top, local.width, local.height);
            resizer
                .resize(&src, &mut dst, &options)
                .map_err(|e| resize_error(&e))?;
        }
    }
    if plan.flip {
        flip_horizontal(out, side as usize);
    }
    Ok(())
}

/// Mirrors each row of a `side` x `side` RGB8 image in place.
fn flip_horizontal(pixels: &mut [u8], side: usize) {
    for row in pixels.chunks_exact_mut(side * 3) {
        let (mut i, mut j) = (0, side - 1);
        while i < j {
            for c in 0..3 {
                row.swap(i * 3 + c, j * 3 + c);
            }
            i += 1;
            j -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ProbeError;
    use crate::test_util::{assert_all_near, encode_with, gradient_rgb, jpeg_rgb, solid};
    use jpeg_encoder::ColorType;
    use proptest::prelude::*;

    const KEY: SampleKey = SampleKey {
        seed: 5,
        epoch: 2,
        index: 9,
    };

    /// A PNG of `pixels` (RGB8, or gray when `gray`).
    fn png(pixels: &[u8], width: u32, height: u32, gray: bool) -> Vec<u8> {
        let image = if gray {
            image::DynamicImage::ImageLuma8(
                image::GrayImage::from_raw(width, height, pixels.to_vec()).expect("sized"),
            )
        } else {
            image::DynamicImage::ImageRgb8(
                image::RgbImage::from_raw(width, height, pixels.to_vec()).expect("sized"),
            )
        };
        let mut bytes = Vec::new();
        image
            .write_to(
                &mut std::io::Cursor::new(&mut bytes),
                image::ImageFormat::Png,
            )
            .expect("encode PNG");
        bytes
    }

    /// Applies `transform` to `image` with [`KEY`] into a fresh slot.
    fn augment(image: &[u8], transform: Transform) -> Result<(Applied, Vec<u8>), AugmentError> {
        let mut out = vec![0; transform.output_len()];
        let applied = Augmenter::new().apply(image, &transform, KEY, &mut out)?;
        Ok((applied, out))
    }

    fn train(size: u32) -> Transform {
        Transform::Train(TrainTransform::new(size))
    }

    fn val(size: u32) -> Transform {
        Transform::Val(ValTransform::new(size))
    }

    fn crop_inside(applied: &Applied) -> bool {
        let c = applied.crop;
        c.width >= 1
            && c.height >= 1
            && c.right() <= applied.image.width
            && c.bottom() <= applied.image.height
    }

    #[test]
    fn flip_mirrors_rows() {
        let mut px: Vec<u8> = (0..2 * 2 * 3).map(|v| v as u8).collect();
        flip_horizontal(&mut px, 2);
        assert_eq!(px, [3, 4, 5, 0, 1, 2, 9, 10, 11, 6, 7, 8]);
    }

    #[test]
    fn apply_is_a_pure_function_of_the_key() {
        let jpeg = jpeg_rgb(&gradient_rgb(120, 90), 120, 90);
        let t = Transform::Train(TrainTransform::new(32));
        let mut a = Augmenter::new();
        let mut b = Augmenter::new();
        let mut out_a = vec![0; t.output_len()];
        let mut out_b = vec![0; t.output_len()];
        for index in 0..20 {
            let key = SampleKey {
                seed: 3,
                epoch: 1,
                index,
            };
            let applied_a = a.apply(&jpeg, &t, key, &mut out_a).expect("augments");
            let applied_b = b.apply(&jpeg, &t, key, &mut out_b).expect("augments");
            assert_eq!(applied_a, applied_b);
            assert_eq!(out_a, out_b);
        }
    }

    #[test]
    fn val_is_deterministic_and_centred() {
        let jpeg = jpeg_rgb(&gradient_rgb(160, 120), 160, 120);
        let t = Transform::Val(ValTransform::new(64));
        let mut aug = Augmenter::new();
        let mut out = vec![0; t.output_len()];
        let applied = aug
            .apply(
                &jpeg,
                &t,
                SampleKey {
                    seed: 0,
                    epoch: 0,
                    index: 0,
                },
                &mut out,
            )
            .expect("augments");
        assert!(!applied.flipped);
        assert_eq!(
            applied.image,
            ImageSize {
                width: 160,
                height: 120
            }
        );
    }

    #[test]
    fn bad_slots_and_parameters_are_errors() {
        let jpeg = jpeg_rgb(&gradient_rgb(16, 16), 16, 16);
        let mut aug = Augmenter::new();
        let key = SampleKey {
            seed: 0,
            epoch: 0,
            index: 0,
        };
        let t = Transform::Train(TrainTransform::new(8));
        assert_eq!(
            aug.apply(&jpeg, &t, key, &mut [0; 10]),
            Err(AugmentError::Slot {
                expected: 192,
                actual: 10
            })
        );
        let bad = Transform::Train(TrainTransform {
            scale: (0.5, 0.1),
            ..TrainTransform::new(8)
        });
        assert!(matches!(
            aug.apply(&jpeg, &bad, key, &mut [0; 192]),
            Err(AugmentError::Transform(TransformError::Scale(_)))
        ));
        assert!(matches!(
            aug.apply(b"not an image", &t, key, &mut [0; 192]),
            Err(AugmentError::Decode(_))
        ));
    }

    #[test]
    fn grayscale_jpeg_and_png_give_gray_rgb() {
        let luma: Vec<u8> = (0..64 * 48).map(|i| (i % 251) as u8).collect();
        let jpeg = encode_with(&luma, 64, 48, ColorType::Luma, |_| {});
        for image in [jpeg, png(&luma, 64, 48, true)] {
            for transform in [train(32), val(32)] {
                let (_, out) = augment(&image, transform).expect("augments");
                assert!(out.chunks_exact(3).all(|p| p[0] == p[1] && p[1] == p[2]));
            }
        }
    }

    #[test]
    fn cmyk_and_ycck_jpegs_convert_to_rgb() {
        // Ink (0, 255, 255, 0) is pure red in Adobe's convention.
        for color in [ColorType::Cmyk, ColorType::CmykAsYcck] {
            let jpeg = encode_with(&solid(40, 30, &[0, 255, 255, 0]), 40, 30, color, |_| {});
            for transform in [train(24), val(24)] {
                let (_, out) = augment(&jpeg, transform).expect("augments");
                assert_all_near(&out, [255, 0, 0], 3);
            }
        }
    }

    #[test]
    fn png_bytes_in_a_jpeg_named_file_are_decoded_by_their_magic() {
        // ImageNet's n02105855_2933.JPEG is a PNG; the Augmenter never sees names, only bytes.
        let image = png(&solid(30, 20, &[10, 200, 30]), 30, 20, false);
        for transform in [train(16), val(16)] {
            let (applied, out) = augment(&image, transform).expect("augments");
            assert_eq!(
                applied.image,
                ImageSize {
                    width: 30,
                    height: 20
                }
            );
            // A solid image resizes to exactly the same colour.
            assert_all_near(&out, [10, 200, 30], 0);
        }
    }

    #[test]
    fn one_pixel_and_two_by_three_images() {
        let one = png(&[7, 77, 177], 1, 1, false);
        for transform in [train(1), train(224), val(1), val(224)] {
            let (applied, out) = augment(&one, transform).expect("augments");
            assert_eq!(applied.crop, CropBox::full(1, 1));
            assert_all_near(&out, [7, 77, 177], 0);
        }
        let one_jpeg = jpeg_rgb(&[7, 77, 177], 1, 1);
        let (_, out) = augment(&one_jpeg, train(64)).expect("augments");
        assert!(out.chunks_exact(3).all(|p| p == &out[..3]), "uniform");

        let pixels: Vec<u8> = (0..2 * 3 * 3).map(|v| v as u8 * 13).collect();
        let small = png(&pixels, 2, 3, false);
        for transform in [train(1), train(5), train(224), val(3), val(224)] {
            for index in 0..20 {
                let mut out = vec![0; transform.output_len()];
                let key = SampleKey { index, ..KEY };
                let applied = Augmenter::new()
                    .apply(&small, &transform, key, &mut out)
                    .expect("augments");
                assert!(crop_inside(&applied), "{applied:?}");
            }
        }
    }

    #[test]
    fn extreme_aspect_ratios_take_the_fallback_crop() {
        // 1000x4: no crop of 8% or more with ratio <= 4/3 fits 4 rows, so all ten tries fail
        // and torchvision's fallback takes the centre at ratio 4/3: round(4 * 4/3) = 5 columns
        // (and, for 4x1000, round(4 / (3/4)) = 5 rows).
        let wide = jpeg_rgb(&gradient_rgb(1000, 4), 1000, 4);
        let (applied, out) = augment(&wide, train(32)).expect("augments");
        assert_eq!(
            applied.crop,
            CropBox {
                left: 497,
                top: 0,
                width: 5,
                height: 4
            }
        );
        assert_eq!(out.len(), 32 * 32 * 3);
        let tall = jpeg_rgb(&gradient_rgb(4, 1000), 4, 1000);
        let (applied, _) = augment(&tall, train(32)).expect("augments");
        assert_eq!(
            applied.crop,
            CropBox {
                left: 0,
                top: 497,
                width: 4,
                height: 5
            }
        );
        // Val: Resize(256) makes it 64000x256; the centre crop is a sliver of the original.
        for image in [&wide, &tall] {
            let (applied, _) = augment(image, val(224)).expect("augments");
            assert!(crop_inside(&applied), "{applied:?}");
        }
    }

    #[test]
    fn scale_and_ratio_at_their_limits() {
        let jpeg = jpeg_rgb(&gradient_rgb(500, 375), 500, 375);
        let with = |scale, ratio, flip_probability| {
            Transform::Train(TrainTransform {
                size: 16,
                scale,
                ratio,
                flip_probability,
            })
        };
        // The whole area at ratio 1 never fits 500x375: fallback, the centre square.
        let (applied, _) = augment(&jpeg, with((1.0, 1.0), (1.0, 1.0), 0.5)).expect("augments");
        assert_eq!(
            applied.crop,
            CropBox {
                left: 62,
                top: 0,
                width: 375,
                height: 375
            }
        );
        // The whole area at the image's own ratio is the whole image.
        let (applied, _) =
            augment(&jpeg, with((1.0, 1.0), (4.0 / 3.0, 4.0 / 3.0), 0.5)).expect("augments");
        assert_eq!(applied.crop, CropBox::full(500, 375));
        // Vanishing areas round to zero pixels: fallback, the whole image (its ratio is allowed).
        let (applied, _) = augment(&jpeg, with((1e-9, 1e-9), (0.75, 4.0 / 3.0), 0.5)).unwrap();
        assert_eq!(applied.crop, CropBox::full(500, 375));
        // Ratios far beyond the image's: the fallback cuts a one-row strip, never an empty box.
        let (applied, _) = augment(&jpeg, with((0.08, 1.0), (1e6, 1e7), 0.5)).expect("augments");
        assert_eq!((applied.crop.width, applied.crop.height), (500, 1));
        let (applied, _) = augment(&jpeg, with((0.08, 1.0), (1e-7, 1e-6), 0.5)).expect("augments");
        assert_eq!((applied.crop.width, applied.crop.height), (1, 375));
        // Flip probability 0 and 1.
        for index in 0..10 {
            let key = SampleKey { index, ..KEY };
            let mut out = vec![0; 16 * 16 * 3];
            let mut aug = Augmenter::new();
            let never = with((0.08, 1.0), (0.75, 4.0 / 3.0), 0.0);
            let always = with((0.08, 1.0), (0.75, 4.0 / 3.0), 1.0);
            assert!(!aug.apply(&jpeg, &never, key, &mut out).unwrap().flipped);
            assert!(aug.apply(&jpeg, &always, key, &mut out).unwrap().flipped);
        }
    }

    #[test]
    fn invalid_transforms_are_reported() {
        let cases = [
            (
                Transform::Train(TrainTransform {
                    scale: (f64::NAN, 1.0),
                    ..TrainTransform::new(8)
                }),
                "scale",
            ),
            (
                Transform::Train(TrainTransform {
                    ratio: (2.0, 1.0),
                    ..TrainTransform::new(8)
                }),
                "ratio",
            ),
            (
                Transform::Train(TrainTransform {
                    ratio: (0.5, f64::INFINITY),
                    ..TrainTransform::new(8)
                }),
                "ratio",
            ),
            (
                Transform::Train(TrainTransform {
                    flip_probability: 1.5,
                    ..TrainTransform::new(8)
                }),
                "flip",
            ),
            (train(0), "size"),
            (train(MAX_OUTPUT_SIZE + 1), "size"),
            (
                Transform::Val(ValTransform { size: 8, resize: 7 }),
                "resize",
            ),
        ];
        let jpeg = jpeg_rgb(&gradient_rgb(16, 16), 16, 16);
        for (transform, what) in cases {
            let error = augment(&jpeg, transform).expect_err(what);
            assert!(matches!(error, AugmentError::Transform(_)), "{error:?}");
            assert!(error.to_string().contains(what), "{error}");
        }
    }

    #[test]
    fn undecodable_inputs_are_errors_naming_the_reason() {
        let jpeg = jpeg_rgb(&gradient_rgb(32, 32), 32, 32);
        let cut = jpeg.len() - 20;
        let image_png = png(&gradient_rgb(32, 32), 32, 32, false);
        let cases: [(&[u8], &str); 4] = [
            (b"", "empty file"),
            (b"GIF87a but not really", "gif"),
            (&jpeg[..cut], "truncated jpeg"),
            (&image_png[..image_png.len() / 2], "png decode failed"),
        ];
        for (bytes, reason) in cases {
            for transform in [train(8), val(8)] {
                let error = augment(bytes, transform).expect_err(reason);
                assert!(matches!(error, AugmentError::Decode(_)), "{error:?}");
                assert!(error.to_string().to_lowercase().contains(reason), "{error}");
            }
        }
        assert_eq!(
            augment(b"", train(8)).unwrap_err(),
            AugmentError::Decode(DecodeError::Invalid(ProbeError::Empty))
        );
    }

    #[test]
    fn plans_that_do_not_fit_the_image_are_errors() {
        let jpeg = jpeg_rgb(&gradient_rgb(40, 30), 40, 30);
        let mut aug = Augmenter::new();
        let mut out = vec![0; 8 * 8 * 3];
        let outside = CropBox {
            left: 30,
            top: 0,
            width: 20,
            height: 10,
        };
        assert!(matches!(
            aug.apply_plan(&jpeg, &AugmentPlan::crop(outside, 8, false), &mut out),
            Err(AugmentError::Decode(DecodeError::Region { .. }))
        ));
        let empty = CropBox {
            width: 0,
            ..CropBox::full(40, 30)
        };
        assert!(aug
            .apply_plan(&jpeg, &AugmentPlan::crop(empty, 8, false), &mut out)
            .is_err());
        let size = ImageSize {
            width: 40,
            height: 30,
        };
        for region in [
            SourceRegion {
                left: f64::NAN,
                ..SourceRegion::full(40, 30)
            },
            SourceRegion {
                width: -3.0,
                ..SourceRegion::full(40, 30)
            },
            SourceRegion {
                width: f64::INFINITY,
                ..SourceRegion::full(40, 30)
            },
        ] {
            let plan = AugmentPlan {
                resize: ResizeSource::Region(region),
                ..AugmentPlan::region(SourceRegion::full(40, 30), size, 8)
            };
            assert!(
                matches!(
                    aug.apply_plan(&jpeg, &plan, &mut out),
                    Err(AugmentError::Plan { .. })
                ),
                "{region:?}"
            );
        }
        assert_eq!(
            aug.apply_plan(
                &jpeg,
                &AugmentPlan::crop(CropBox::full(40, 30), 9, false),
                &mut out
            ),
            Err(AugmentError::Slot {
                expected: 9 * 9 * 3,
                actual: 8 * 8 * 3
            })
        );
    }

    #[test]
    fn one_augmenter_serves_changing_output_sizes() {
        // Progressive resizing: the same worker's Augmenter goes 160 -> 192 -> 224 and back,
        // and gives what a fresh one gives.
        let jpeg = jpeg_rgb(&gradient_rgb(300, 200), 300, 200);
        let mut reused = Augmenter::new();
        for size in [160, 192, 224, 160] {
            for transform in [train(size), val(size)] {
                let mut out = vec![0; transform.output_len()];
                reused
                    .apply(&jpeg, &transform, KEY, &mut out)
                    .expect("augments");
                let (_, fresh) = augment(&jpeg, transform).expect("augments");
                assert!(out == fresh, "{transform:?}");
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn arbitrary_bytes_never_panic(mut bytes in proptest::collection::vec(any::<u8>(), 0..400),
                                       magic in 0..4_usize,
                                       size in 1..64_u32,
                                       is_train in any::<bool>()) {
            let prefixes: [&[u8]; 4] = [b"", &[0xFF, 0xD8, 0xFF], b"\x89PNG\r\n\x1a\n", b"GIF89a"];
            bytes.splice(0..0, prefixes[magic].iter().copied());
            let transform = if is_train { train(size) } else { val(size) };
            let mut out = vec![0; transform.output_len()];
            let _ = Augmenter::new().apply(&bytes, &transform, KEY, &mut out);
        }

        #[test]
        fn damaged_jpegs_never_panic(cut in any::<prop::sample::Index>(),
                                     flips in proptest::collection::vec(
                                         (any::<prop::sample::Index>(), 0..8_u8), 0..8),
                                     progressive in any::<bool>(),
                                     is_train in any::<bool>()) {
            let mut bytes = encode_with(&gradient_rgb(48, 40), 48, 40, ColorType::Rgb,
                                        |e| e.set_progressive(progressive));
            for (at, bit) in flips {
                let i = at.index(bytes.len());
                bytes[i] ^= 1 << bit;
            }
            bytes.truncate(cut.index(bytes.len() + 1));
            let transform = if is_train { train(24) } else { val(24) };
            let mut out = vec![0; transform.output_len()];
            let _ = Augmenter::new().apply(&bytes, &transform, KEY, &mut out);
        }

        #[test]
        fn any_valid_transform_on_any_small_image_fits(width in 1..40_u32, height in 1..40_u32,
                                                       size in 1..48_u32,
                                                       resize_extra in prop_oneof![0..64_u32, any::<u32>()],
                                                       min_scale in 1e-4..1.0_f64,
                                                       scale_span in 0.0..2.0_f64,
                                                       min_log_ratio in -5.0..5.0_f64,
                                                       log_ratio_span in 0.0..4.0_f64,
                                                       index in any::<u64>()) {
            let image = png(&gradient_rgb(width as usize, height as usize), width, height, false);
            let transforms = [
                Transform::Train(TrainTransform {
                    size,
                    scale: (min_scale, min_scale + scale_span),
                    ratio: (min_log_ratio.exp(), (min_log_ratio + log_ratio_span).exp()),
                    flip_probability: 0.5,
                }),
                Transform::Val(ValTransform { size, resize: size.saturating_add(resize_extra) }),
            ];
            for transform in transforms {
                let mut out = vec![0; transform.output_len()];
                let key = SampleKey { index, ..KEY };
                let applied = Augmenter::new().apply(&image, &transform, key, &mut out);
                let applied = applied.map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert!(crop_inside(&applied), "{:?}", applied);
            }
        }
    }

    #[test]
    fn dct_downscaling_stays_close_to_the_full_resolution_path() {
        let jpeg = jpeg_rgb(&gradient_rgb(800, 600), 800, 600);
        let plans = [
            AugmentPlan::crop(CropBox::full(800, 600), 96, false),
            AugmentPlan::crop(
                CropBox {
                    left: 101,
                    top: 37,
                    width: 517,
                    height: 433,
                },
                64,
                true,
            ),
            Transform::Val(ValTransform::new(64)).plan(
                ImageSize {
                    width: 800,
                    height: 600,
                },
                SampleKey {
                    seed: 0,
                    epoch: 0,
                    index: 0,
                },
            ),
        ];
        let mut exact = Augmenter::new();
        let mut fast = Augmenter::new();
        fast.set_dct_downscale(true);
        for plan in plans {
            let len = plan.size as usize * plan.size as usize * 3;
            let (mut a, mut b) = (vec![0; len], vec![0; len]);
            exact.apply_plan(&jpeg, &plan, &mut a).expect("augments");
            fast.apply_plan(&jpeg, &plan, &mut b).expect("augments");
            let total: u64 = a
                .iter()
                .zip(&b)
                .map(|(x, y)| u64::from(x.abs_diff(*y)))
                .sum();
            let mean = total as f64 / len as f64;
            let worst = a.iter().zip(&b).map(|(x, y)| x.abs_diff(*y)).max();
            assert!(
                mean < 1.0 && worst <= Some(12),
                "{plan:?}: mean {mean}, worst {worst:?}"
            );
        }
    }
}
