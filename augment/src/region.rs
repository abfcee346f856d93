//! [`RegionDecoder`]: decodes the part of an image that a crop needs, into a buffer it owns and
//! reuses from one image to the next.
//!
//! The contract: [`RegionDecoder::decode`] returns a [`DecodedRegion`] whose pixels cover at
//! least the requested [`CropBox`] (it may cover more, up to the whole image), and says where in
//! the image the buffer starts. Callers must not assume anything else about the buffer's extent.
//!
//! JPEGs go through libjpeg-turbo ([`JpegBackend::Turbo`], the default), which decodes only the
//! rows and iMCU columns a crop touches and can downscale in the DCT domain; everything it cannot
//! crop (CMYK and YCCK JPEGs, which it cannot convert to RGB) and every other format is decoded
//! whole by [`decode_rgb_into`](crate::decode_rgb_into) (zune-jpeg, or the `image` crate). [`JpegBackend::Zune`] decodes
//! every JPEG whole with zune-jpeg: the baseline the benchmarks compare against.
//!
//! Which path an image takes depends on its bytes only, so output never depends on timing.

use crate::codec::turbo::{align_region, Downscale, TurboDecoder, TurboError, TurboHeader};
use crate::decode::decode_rgb_into_with_limits;
use crate::error::{DecodeError, ProbeError};
use crate::geometry::{CropBox, ImageSize, SourceRegion};
use crate::info::ImageFormat;
use crate::limits::DecodeLimits;
use crate::probe::probe_with_limits;

/// Which JPEG decoder a [`RegionDecoder`] uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum JpegBackend {
    /// libjpeg-turbo, crop-aware and DCT-domain downscaling (the default: it decodes less).
    #[default]
    Turbo,
    /// zune-jpeg, whole images only.
    Zune,
}

impl std::str::FromStr for JpegBackend {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "turbo" | "libjpeg-turbo" => Ok(JpegBackend::Turbo),
            "zune" | "zune-jpeg" => Ok(JpegBackend::Zune),
            other => Err(format!(
                "unknown JPEG decoder {other:?}: expected \"turbo\" or \"zune\""
            )),
        }
    }
}

impl std::fmt::Display for JpegBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            JpegBackend::Turbo => "turbo",
            JpegBackend::Zune => "zune",
        })
    }
}

/// Decoded RGB8 pixels of a rectangle of an image that holds the requested region.
///
/// When the decoder downscaled in the DCT domain (`scale_denominator > 1`), the buffer holds the
/// image scaled by `1 / scale_denominator`, and `origin_x`, `origin_y`, `width`, `height` are in
/// those scaled coordinates: buffer pixel `(x, y)` covers image pixels
/// `[(origin_x + x) * d, (origin_x + x + 1) * d)` and likewise for rows.
#[derive(Debug)]
pub struct DecodedRegion<'a> {
    /// RGB8, HWC, `width * height * 3` bytes, no row padding.
    pub pixels: &'a [u8],
    /// Columns in `pixels`.
    pub width: u32,
    /// Rows in `pixels`.
    pub height: u32,
    /// Column (of the scaled image) where `pixels` starts.
    pub origin_x: u32,
    /// Row (of the scaled image) where `pixels` starts.
    pub origin_y: u32,
    /// The whole image's size, unscaled.
    pub image: ImageSize,
    /// 1 (full resolution), 2, 4 or 8.
    pub scale_denominator: u32,
}

impl DecodedRegion<'_> {
    /// `region` (in image coordinates) in this buffer's coordinates, when the buffer holds it at
    /// full resolution.
    pub fn local(&self, region: CropBox) -> Option<CropBox> {
        if self.scale_denominator != 1 {
            return None;
        }
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

    /// `region` (in image coordinates) in this buffer's real-valued coordinates, scaled.
    pub fn local_region(&self, region: SourceRegion) -> SourceRegion {
        let d = f64::from(self.scale_denominator);
        SourceRegion {
            left: region.left / d - f64::from(self.origin_x),
            top: region.top / d - f64::from(self.origin_y),
            width: region.width / d,
            height: region.height / d,
        }
    }
}

/// What to decode of an image: decided by the caller once the image's size is known (see
/// [`RegionDecoder::decode_planned`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegionRequest {
    /// The pixels needed, in image coordinates; they must lie inside the image.
    pub region: CropBox,
    /// `Some((w, h))`: libjpeg-turbo may downscale by 1/2, 1/4 or 1/8 inside the IDCT as far as
    /// the region stays at least `w` x `h` pixels. `None`: full resolution.
    pub at_least: Option<(u32, u32)>,
}

/// Decodes regions of images (any supported format) to RGB8. Keep one per worker thread: it owns
/// its libjpeg-turbo instance and its buffers.
#[derive(Debug, Default)]
pub struct RegionDecoder {
    backend: JpegBackend,
    limits: DecodeLimits,
    /// Created on first use, so that `Default` cannot fail.
    turbo: Option<TurboDecoder>,
    pixels: Vec<u8>,
}

/// What the decoder learnt from a JPEG's headers.
enum JpegPath {
    /// libjpeg-turbo can crop it.
    Crop(TurboHeader),
    /// Decode it whole: CMYK/YCCK, unknown subsampling, a header libjpeg-turbo refused, or the
    /// zune backend.
    Whole,
}

impl RegionDecoder {
    /// A decoder with the default backend and empty buffers; they grow to the largest image seen.
    pub fn new() -> Self {
        Self::default()
    }

    /// A decoder that decodes JPEGs with `backend`.
    pub fn with_backend(backend: JpegBackend) -> Self {
        RegionDecoder {
            backend,
            ..Self::default()
        }
    }

    /// The JPEG backend.
    pub fn backend(&self) -> JpegBackend {
        self.backend
    }

    /// The limits on the images decoded ([`DecodeLimits::default`] unless set).
    pub fn limits(&self) -> DecodeLimits {
        self.limits
    }

    /// Sets the limits on the images decoded: an image over them is a
    /// [`ProbeError::TooManyPixels`], found on its headers before any pixel buffer grows.
    pub fn set_limits(&mut self, limits: DecodeLimits) {
        self.limits = limits;
        if let Some(turbo) = &mut self.turbo {
            if turbo.set_limits(&limits).is_err() {
                // Made afresh, with the new limits, on next use (where a failure is reported).
                self.turbo = None;
            }
        }
    }

    fn turbo(&mut self) -> Result<&mut TurboDecoder, DecodeError> {
        let turbo = match self.turbo.take() {
            Some(turbo) => turbo,
            None => TurboDecoder::new(&self.limits).map_err(turbo_error)?,
        };
        Ok(self.turbo.insert(turbo))
    }

    fn jpeg_path(&mut self, bytes: &[u8]) -> Result<JpegPath, DecodeError> {
        if self.backend == JpegBackend::Zune || ImageFormat::detect(bytes) != ImageFormat::Jpeg {
            return Ok(JpegPath::Whole);
        }
        let limits = self.limits;
        // A header libjpeg-turbo refuses, or one our checks refuse, goes the whole-image way:
        // the marker walk there gives the precise reason.
        Ok(match self.turbo()?.read_header(bytes, &limits) {
            Ok(header) if header.mcu_width.is_some() && !header.four_channel => {
                JpegPath::Crop(header)
            }
            _ => JpegPath::Whole,
        })
    }

    /// The image's size, from its headers (for JPEG; other formats are decoded).
    ///
    /// # Errors
    ///
    /// [`DecodeError::Invalid`] when the input is not a usable image.
    pub fn size(&mut self, bytes: &[u8]) -> Result<ImageSize, DecodeError> {
        if let JpegPath::Crop(header) = self.jpeg_path(bytes)? {
            return Ok(ImageSize {
                width: header.width,
                height: header.height,
            });
        }
        let info = probe_with_limits(bytes, &self.limits)?;
        Ok(ImageSize {
            width: info.width,
            height: info.height,
        })
    }

    /// Decodes at least `region` of the image (`None`: the whole image) at full resolution.
    ///
    /// # Errors
    ///
    /// [`DecodeError::Invalid`] when the input does not decode, [`DecodeError::Region`] when
    /// `region` does not lie inside the image.
    pub fn decode(
        &mut self,
        bytes: &[u8],
        region: Option<CropBox>,
    ) -> Result<DecodedRegion<'_>, DecodeError> {
        let request = |size: ImageSize| RegionRequest {
            region: region.unwrap_or(CropBox::full(size.width, size.height)),
            at_least: None,
        };
        Ok(self.decode_planned(bytes, |size| ((), request(size)))?.1)
    }

    /// Like [`decode`](Self::decode), but libjpeg-turbo may downscale by 1/2, 1/4 or 1/8 in the
    /// DCT domain, as far as the scaled region stays at least `at_least` (width, height) pixels:
    /// the largest saving that never decodes the region below the resolution its output needs.
    /// See [`DecodedRegion`] for the coordinates of a scaled buffer.
    ///
    /// # Errors
    ///
    /// As [`decode`](Self::decode).
    pub fn decode_downscaled(
        &mut self,
        bytes: &[u8],
        region: CropBox,
        at_least: (u32, u32),
    ) -> Result<DecodedRegion<'_>, DecodeError> {
        let request = RegionRequest {
            region,
            at_least: Some(at_least),
        };
        Ok(self.decode_planned(bytes, |_| ((), request))?.1)
    }

    /// Reads the image's size, asks `plan` what to decode (it may also return a value of its
    /// own, such as the plan it made), and decodes that: the headers are read once, and an image
    /// that must be decoded whole to learn its size (non-JPEG formats) is decoded once.
    ///
    /// # Errors
    ///
    /// As [`decode`](Self::decode), for the region `plan` asked for.
    pub fn decode_planned<T>(
        &mut self,
        bytes: &[u8],
        plan: impl FnOnce(ImageSize) -> (T, RegionRequest),
    ) -> Result<(T, DecodedRegion<'_>), DecodeError> {
        let JpegPath::Crop(header) = self.jpeg_path(bytes)? else {
            let image = self.decode_whole(bytes)?;
            let (value, request) = plan(image);
            check_region(request.region, image)?;
            return Ok((value, self.whole(image)));
        };
        let image = ImageSize {
            width: header.width,
            height: header.height,
        };
        let (value, request) = plan(image);
        check_region(request.region, image)?;
        let scale = request
            .at_least
            .map_or(Downscale::NONE, |min| choose_downscale(request.region, min));
        match self.decode_turbo(bytes, header, request.region, scale) {
            Ok(decoded) => {
                let needed = decoded.width as usize * decoded.height as usize * 3;
                let region = DecodedRegion {
                    pixels: &self.pixels[..needed],
                    width: decoded.width,
                    height: decoded.height,
                    origin_x: decoded.left,
                    origin_y: decoded.top,
                    image,
                    scale_denominator: scale.denominator,
                };
                Ok((value, region))
            }
            // libjpeg-turbo refused (corrupt data, or something it does not support): the
            // whole-image path decides, with its precise reasons.
            Err(_) => {
                let image = self.decode_whole(bytes)?;
                check_region(request.region, image)?;
                Ok((value, self.whole(image)))
            }
        }
    }

    /// Decodes the whole image into the buffer (zune-jpeg, or `image` for other formats).
    fn decode_whole(&mut self, bytes: &[u8]) -> Result<ImageSize, DecodeError> {
        let (width, height) = decode_rgb_into_with_limits(bytes, &mut self.pixels, &self.limits)?;
        Ok(ImageSize { width, height })
    }

    /// The buffer as a whole decoded `image`.
    fn whole(&self, image: ImageSize) -> DecodedRegion<'_> {
        DecodedRegion {
            pixels: &self.pixels,
            width: image.width,
            height: image.height,
            origin_x: 0,
            origin_y: 0,
            image,
            scale_denominator: 1,
        }
    }

    /// Decodes `wanted` (image coordinates) through libjpeg-turbo; returns the decoded box in
    /// scaled coordinates.
    fn decode_turbo(
        &mut self,
        bytes: &[u8],
        header: TurboHeader,
        wanted: CropBox,
        scale: Downscale,
    ) -> Result<CropBox, TurboError> {
        let (scaled_width, scaled_height) = (scale.apply(header.width), scale.apply(header.height));
        let d = scale.denominator;
        let left = wanted.left / d;
        let top = wanted.top / d;
        let scaled_wanted = CropBox {
            left,
            top,
            width: wanted.right().div_ceil(d).min(scaled_width) - left,
            height: wanted.bottom().div_ceil(d).min(scaled_height) - top,
        };
        // jpeg_path only chooses this path with a known iMCU width.
        let mcu = header.mcu_width.unwrap_or(8);
        let aligned = align_region(scaled_wanted, scaled_width, scaled_height, scale.apply(mcu));
        let turbo = self
            .turbo
            .as_mut()
            .ok_or_else(|| TurboError::Library("no TurboJPEG instance".into()))?;
        turbo.decode(bytes, &header, scale, aligned, &mut self.pixels)?;
        Ok(aligned)
    }
}

/// The largest of 1/8, 1/4, 1/2 that keeps `region` at least `at_least` pixels wide and tall;
/// no scaling when none does.
fn choose_downscale(region: CropBox, at_least: (u32, u32)) -> Downscale {
    for denominator in [8, 4, 2] {
        let scale = Downscale { denominator };
        // The scaled region is floor(left/d)..ceil(right/d) at least as wide as width / d.
        if region.width / denominator >= at_least.0 && region.height / denominator >= at_least.1 {
            return scale;
        }
    }
    Downscale::NONE
}

fn check_region(region: CropBox, image: ImageSize) -> Result<(), DecodeError> {
    // In u64: a hand-made region may reach past u32::MAX.
    if region.width == 0
        || region.height == 0
        || u64::from(region.left) + u64::from(region.width) > u64::from(image.width)
        || u64::from(region.top) + u64::from(region.height) > u64::from(image.height)
    {
        return Err(DecodeError::Region {
            region,
            width: image.width,
            height: image.height,
        });
    }
    Ok(())
}

fn turbo_error(error: TurboError) -> DecodeError {
    DecodeError::Invalid(match error {
        TurboError::Library(detail) => ProbeError::Decode {
            format: ImageFormat::Jpeg,
            detail,
        },
        TurboError::Refused(error) => error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{encode_with, gradient_rgb, jpeg_rgb, solid};
    use jpeg_encoder::{ColorType, SamplingFactor};

    /// A photo-like image: gradients, stripes and noise, so that every pixel matters.
    fn busy_rgb(width: u32, height: u32) -> Vec<u8> {
        let mut state = 0x9E37_79B9_u64;
        let mut out = Vec::with_capacity((width * height * 3) as usize);
        for y in 0..height {
            for x in 0..width {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1);
                let noise = (state >> 58) as u32;
                out.push(((x * 255 / width) ^ (y % 7 * 9)) as u8);
                out.push(((y * 255 / height) + noise) as u8);
                out.push((((x / 5 + y / 3) % 2) * 200 + noise * 2) as u8);
            }
        }
        out
    }

    fn full_decode(decoder: &mut RegionDecoder, jpeg: &[u8]) -> (u32, u32, Vec<u8>) {
        let d = decoder.decode(jpeg, None).expect("decodes");
        (d.width, d.height, d.pixels.to_vec())
    }

    /// Every crop's pixels equal the same pixels of a full decode: cropping changes what is
    /// computed, never the result.
    #[test]
    fn crops_equal_the_full_decode_bit_for_bit() {
        let (w, h) = (203, 157);
        let pixels = busy_rgb(w, h);
        let variants = [
            encode_with(&pixels, w as u16, h as u16, ColorType::Rgb, |e| {
                e.set_sampling_factor(SamplingFactor::R_4_2_0)
            }),
            encode_with(&pixels, w as u16, h as u16, ColorType::Rgb, |e| {
                e.set_sampling_factor(SamplingFactor::R_4_4_4)
            }),
            encode_with(&pixels, w as u16, h as u16, ColorType::Rgb, |e| {
                e.set_sampling_factor(SamplingFactor::R_4_2_2)
            }),
            encode_with(&pixels, w as u16, h as u16, ColorType::Rgb, |e| {
                e.set_progressive(true)
            }),
            encode_with(&pixels, w as u16, h as u16, ColorType::Rgb, |e| {
                e.set_restart_interval(2)
            }),
            encode_with(
                &pixels[..(w * h) as usize],
                w as u16,
                h as u16,
                ColorType::Luma,
                |_| {},
            ),
        ];
        let mut decoder = RegionDecoder::new();
        for (v, jpeg) in variants.iter().enumerate() {
            let (fw, fh, full) = full_decode(&mut decoder, jpeg);
            assert_eq!((fw, fh), (w, h));
            let mut state = 12345_u64 + v as u64;
            let mut next = |n: u32| {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1442695040888963407);
                ((state >> 33) % u64::from(n)) as u32
            };
            let mut boxes = vec![
                CropBox::full(w, h),
                CropBox {
                    left: 0,
                    top: 0,
                    width: 1,
                    height: 1,
                },
                CropBox {
                    left: w - 1,
                    top: h - 1,
                    width: 1,
                    height: 1,
                },
                CropBox {
                    left: 16,
                    top: 16,
                    width: 16,
                    height: 16,
                },
                CropBox {
                    left: 17,
                    top: 15,
                    width: 31,
                    height: 33,
                },
                CropBox {
                    left: 32,
                    top: 8,
                    width: 64,
                    height: 40,
                },
                CropBox {
                    left: 31,
                    top: 9,
                    width: 65,
                    height: 39,
                },
                CropBox {
                    left: 0,
                    top: 1,
                    width: w,
                    height: h - 1,
                },
            ];
            for _ in 0..40 {
                let bw = 1 + next(w);
                let bh = 1 + next(h);
                boxes.push(CropBox {
                    left: next(w - bw + 1),
                    top: next(h - bh + 1),
                    width: bw,
                    height: bh,
                });
            }
            for b in boxes {
                let region = decoder.decode(jpeg, Some(b)).expect("decodes a crop");
                let local = region.local(b).expect("the buffer holds the crop");
                for row in 0..b.height {
                    let got_start = ((local.top + row) * region.width + local.left) as usize * 3;
                    let want_start = ((b.top + row) * w + b.left) as usize * 3;
                    let len = b.width as usize * 3;
                    assert_eq!(
                        &region.pixels[got_start..got_start + len],
                        &full[want_start..want_start + len],
                        "variant {v}, box {b:?}, row {row}"
                    );
                }
            }
        }
    }

    #[test]
    fn turbo_and_zune_agree_closely_on_whole_images() {
        let jpeg = jpeg_rgb(&gradient_rgb(120, 90), 120, 90);
        let (_, _, turbo) =
            full_decode(&mut RegionDecoder::with_backend(JpegBackend::Turbo), &jpeg);
        let (_, _, zune) = full_decode(&mut RegionDecoder::with_backend(JpegBackend::Zune), &jpeg);
        let worst = turbo.iter().zip(&zune).map(|(a, b)| a.abs_diff(*b)).max();
        assert!(worst <= Some(3), "worst difference {worst:?}");
    }

    #[test]
    fn downscaling_keeps_the_region_at_least_the_asked_size() {
        let jpeg = jpeg_rgb(&busy_rgb(640, 480), 640, 480);
        let mut decoder = RegionDecoder::new();
        let b = CropBox {
            left: 33,
            top: 21,
            width: 500,
            height: 400,
        };
        for (at_least, denominator) in [
            ((224, 224), 1),
            ((200, 160), 2),
            ((100, 100), 4),
            ((60, 50), 8),
        ] {
            let region = decoder
                .decode_downscaled(&jpeg, b, at_least)
                .expect("decodes");
            assert_eq!(region.scale_denominator, denominator, "{at_least:?}");
            let local = region.local_region(SourceRegion {
                left: f64::from(b.left),
                top: f64::from(b.top),
                width: f64::from(b.width),
                height: f64::from(b.height),
            });
            assert!(local.left >= 0.0 && local.top >= 0.0, "{local:?}");
            assert!(local.left + local.width <= f64::from(region.width) + 1e-9);
            assert!(local.top + local.height <= f64::from(region.height) + 1e-9);
            assert!(local.width >= f64::from(at_least.0) && local.height >= f64::from(at_least.1));
        }
    }

    #[test]
    fn cmyk_png_and_zune_backend_fall_back_to_whole_images() {
        let cmyk = encode_with(
            &solid(32, 16, &[0, 255, 255, 0]),
            32,
            16,
            ColorType::Cmyk,
            |_| {},
        );
        let mut decoder = RegionDecoder::new();
        let region = decoder
            .decode(
                &cmyk,
                Some(CropBox {
                    left: 20,
                    top: 4,
                    width: 4,
                    height: 4,
                }),
            )
            .expect("decodes");
        assert_eq!((region.width, region.height, region.origin_x), (32, 16, 0));
        assert!(region
            .pixels
            .chunks_exact(3)
            .all(|p| p[0] > 240 && p[1] < 16 && p[2] < 16));

        let mut png = Vec::new();
        image::RgbImage::from_pixel(5, 4, image::Rgb([1, 2, 3]))
            .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .expect("encodes a PNG");
        let region = decoder
            .decode(
                &png,
                Some(CropBox {
                    left: 1,
                    top: 1,
                    width: 2,
                    height: 2,
                }),
            )
            .expect("decodes");
        assert_eq!((region.width, region.height), (5, 4));
    }

    #[test]
    fn decode_planned_plans_from_the_size_and_returns_the_plan() {
        let jpeg = jpeg_rgb(&gradient_rgb(64, 48), 64, 48);
        let mut png = Vec::new();
        image::RgbImage::from_pixel(9, 7, image::Rgb([4, 5, 6]))
            .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .expect("encodes a PNG");
        let mut decoder = RegionDecoder::new();
        for (bytes, size) in [(&jpeg, (64, 48)), (&png, (9, 7))] {
            let (seen, region) = decoder
                .decode_planned(bytes, |image| {
                    let wanted = CropBox {
                        left: 1,
                        top: 2,
                        width: 5,
                        height: 4,
                    };
                    (
                        image,
                        RegionRequest {
                            region: wanted,
                            at_least: None,
                        },
                    )
                })
                .expect("decodes");
            assert_eq!((seen.width, seen.height), size);
            assert_eq!(region.image, seen);
            assert!(region
                .local(CropBox {
                    left: 1,
                    top: 2,
                    width: 5,
                    height: 4
                })
                .is_some());
        }
        // A plan outside the image is refused.
        let outside = decoder.decode_planned(&png, |image| {
            let region = CropBox {
                left: image.width,
                top: 0,
                width: 1,
                height: 1,
            };
            (
                (),
                RegionRequest {
                    region,
                    at_least: None,
                },
            )
        });
        assert!(matches!(outside, Err(DecodeError::Region { .. })));
    }

    #[test]
    fn bad_input_and_bad_regions_are_errors() {
        let jpeg = jpeg_rgb(&gradient_rgb(32, 32), 32, 32);
        let mut decoder = RegionDecoder::new();
        assert!(matches!(
            decoder.decode(
                &jpeg,
                Some(CropBox {
                    left: 30,
                    top: 0,
                    width: 3,
                    height: 1
                })
            ),
            Err(DecodeError::Region { .. })
        ));
        assert!(matches!(
            decoder.decode(b"", None),
            Err(DecodeError::Invalid(ProbeError::Empty))
        ));
        let cut = &jpeg[..jpeg.len() / 2];
        assert!(matches!(
            decoder.decode(cut, None),
            Err(DecodeError::Invalid(_))
        ));
        assert!(matches!(
            decoder.size(b"GIF89a"),
            Err(DecodeError::Invalid(_))
        ));
        // The decoder is still usable after errors.
        assert!(decoder.decode(&jpeg, None).is_ok());
    }
}
