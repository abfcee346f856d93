//! A crop-aware JPEG decoder on libjpeg-turbo's TurboJPEG 3 API (`tj3SetCroppingRegion`,
//! `tj3SetScalingFactor`), which is how DALI and tf.data's `decode_and_crop_jpeg` decode less
//! than the whole image.
//!
//! For a crop, libjpeg-turbo entropy-decodes the rows above it without the inverse DCT,
//! upsampling or colour conversion (`jpeg_skip_scanlines`), runs the inverse DCT only for the
//! iMCU columns the crop touches (`jpeg_crop_scanline`), and stops at the crop's last row. Scaling
//! by 1/2, 1/4 or 1/8 happens inside the inverse DCT (a reduced-size IDCT), so a crop much larger
//! than the output is never decoded at full resolution.
//!
//! This is the only `unsafe` code in the crate: a handle that is created once, used by one
//! thread at a time (the type is `Send`, not `Sync`), and destroyed on drop.

use std::ffi::CStr;
use std::fmt;
use std::ptr::NonNull;

use turbojpeg_sys as tj;

use crate::error::ProbeError;
use crate::geometry::CropBox;
use crate::info::ImageFormat;
use crate::limits::{check_scan_bytes, DecodeLimits};

/// Why libjpeg-turbo did not decode (or encode) an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TurboError {
    /// libjpeg-turbo's message. Warnings (corrupt data it could have decoded around) are errors
    /// too: the decoder is created with `TJPARAM_STOPONWARNING`.
    Library(String),
    /// Refused on its header, before any buffer was sized: over the [`DecodeLimits`], or far too
    /// short for its declared size.
    Refused(ProbeError),
}

impl fmt::Display for TurboError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TurboError::Library(message) => f.write_str(message),
            TurboError::Refused(error) => error.fmt(f),
        }
    }
}

fn library(message: impl Into<String>) -> TurboError {
    TurboError::Library(message.into())
}

/// A JPEG's header, as far as the decoder needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TurboHeader {
    pub(crate) width: u32,
    pub(crate) height: u32,
    /// Width of an iMCU in pixels at full scale (8, 16 or 32); `None` when libjpeg-turbo cannot
    /// tell the subsampling, so no crop can be asked for.
    pub(crate) mcu_width: Option<u32>,
    /// CMYK or YCCK: libjpeg-turbo cannot convert these to RGB.
    pub(crate) four_channel: bool,
}

/// A DCT-domain scaling factor `1/denominator`, with `denominator` in {1, 2, 4, 8}: the factors
/// with SIMD-accelerated reduced inverse DCTs in libjpeg-turbo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Downscale {
    pub(crate) denominator: u32,
}

impl Downscale {
    pub(crate) const NONE: Downscale = Downscale { denominator: 1 };

    /// libjpeg-turbo's `TJSCALED`: `ceil(dimension / denominator)`.
    pub(crate) fn apply(self, dimension: u32) -> u32 {
        dimension.div_ceil(self.denominator)
    }
}

/// One TurboJPEG instance (a `tjhandle`), destroyed on drop.
#[derive(Debug)]
struct Instance {
    handle: NonNull<std::ffi::c_void>,
}

// SAFETY: a TurboJPEG instance holds no thread-local state; it may be used from any thread as
// long as it is used by one thread at a time, which `&mut self` on every use guarantees (the type
// is not `Sync`).
unsafe impl Send for Instance {}

impl Drop for Instance {
    fn drop(&mut self) {
        // SAFETY: the handle came from tj3Init and is destroyed exactly once.
        unsafe { tj::tj3Destroy(self.handle.as_ptr()) }
    }
}

impl Instance {
    fn new(kind: tj::TJINIT) -> Result<Self, TurboError> {
        // SAFETY: tj3Init has no preconditions; a null return is handled.
        let raw = unsafe { tj::tj3Init(kind as i32) };
        let handle = NonNull::new(raw)
            .ok_or_else(|| library("tj3Init failed: could not create a TurboJPEG instance"))?;
        Ok(Instance { handle })
    }

    fn set(&self, param: tj::TJPARAM, value: i32) -> Result<(), TurboError> {
        // SAFETY: valid handle; tj3Set checks the parameter.
        let rc = unsafe { tj::tj3Set(self.handle.as_ptr(), param as i32, value) };
        self.check(rc)
    }

    fn get(&self, param: tj::TJPARAM) -> i32 {
        // SAFETY: valid handle; tj3Get returns -1 for unknown or unset parameters.
        unsafe { tj::tj3Get(self.handle.as_ptr(), param as i32) }
    }

    fn check(&self, rc: i32) -> Result<(), TurboError> {
        if rc == 0 {
            return Ok(());
        }
        // SAFETY: tj3GetErrorStr returns a NUL-terminated string owned by the instance, valid
        // until the next call on it; it is copied at once.
        let message = unsafe {
            let text = tj::tj3GetErrorStr(self.handle.as_ptr());
            if text.is_null() {
                "unknown libjpeg-turbo error".to_owned()
            } else {
                CStr::from_ptr(text).to_string_lossy().into_owned()
            }
        };
        Err(TurboError::Library(message))
    }
}

/// One TurboJPEG decompression instance.
#[derive(Debug)]
pub(crate) struct TurboDecoder {
    inst: Instance,
}

/// Width and height of an iMCU for each of TurboJPEG's subsampling codes (`tjMCUWidth`,
/// `tjMCUHeight`).
fn mcu_size(subsampling: i32) -> Option<(u32, u32)> {
    match subsampling {
        tj::TJSAMP_TJSAMP_444 | tj::TJSAMP_TJSAMP_GRAY => Some((8, 8)),
        tj::TJSAMP_TJSAMP_440 => Some((8, 16)),
        tj::TJSAMP_TJSAMP_441 => Some((8, 32)),
        tj::TJSAMP_TJSAMP_422 => Some((16, 8)),
        tj::TJSAMP_TJSAMP_420 => Some((16, 16)),
        tj::TJSAMP_TJSAMP_411 => Some((32, 8)),
        _ => None,
    }
}

/// Whether a frame header (`SOFn`) comes before the first scan or `EOI`, hopping over the
/// segments by their lengths: a few steps, as headers hold a handful of segments.
///
/// `tj3DecompressHeader` succeeds on a tables-only datastream (no frame header) without setting
/// the image's size, so what it then reports is the previous image's; this tells the two apart.
fn declares_a_frame(jpeg: &[u8]) -> bool {
    let mut pos = 2; // past SOI
    loop {
        // A marker: 0xFF, any fill bytes, the code.
        if jpeg.get(pos) != Some(&0xFF) {
            return false;
        }
        while jpeg.get(pos) == Some(&0xFF) {
            pos += 1;
        }
        let Some(&code) = jpeg.get(pos) else {
            return false;
        };
        pos += 1;
        match code {
            0xC0..=0xCF if !matches!(code, 0xC4 | 0xC8 | 0xCC) => return true,
            0xD9 | 0xDA | 0x00 => return false,
            0x01 | 0xD0..=0xD8 => continue, // no length
            _ => {}
        }
        let Some(&[hi, lo]) = jpeg.get(pos..pos + 2) else {
            return false;
        };
        pos += usize::from(u16::from_be_bytes([hi, lo]));
    }
}

/// `TJPARAM_MAXPIXELS` for `limits`: libjpeg-turbo takes an `int`, and 0 means no limit (our own
/// header check still applies then).
fn max_pixels_param(limits: &DecodeLimits) -> i32 {
    i32::try_from(limits.max_pixels).unwrap_or(0).max(0)
}

impl TurboDecoder {
    /// A new decompression instance, strict about corrupt data (a libjpeg warning, such as
    /// premature end of data, is an error), with bounds on the memory a hostile header can make
    /// it allocate: `limits` on the pixels, and on its own intermediate buffers.
    pub(crate) fn new(limits: &DecodeLimits) -> Result<Self, TurboError> {
        let inst = Instance::new(tj::TJINIT_TJINIT_DECOMPRESS)?;
        inst.set(tj::TJPARAM_TJPARAM_STOPONWARNING, 1)?;
        // Megabytes libjpeg may allocate for one image (progressive coefficient buffers).
        inst.set(tj::TJPARAM_TJPARAM_MAXMEMORY, 2048)?;
        let mut decoder = TurboDecoder { inst };
        decoder.set_limits(limits)?;
        Ok(decoder)
    }

    /// Changes the pixel limit. [`read_header`](Self::read_header) checks it itself;
    /// libjpeg-turbo is told too (`TJPARAM_MAXPIXELS`), so `tj3Decompress8`, which reads the
    /// header again, refuses a larger image whatever the bytes it is given.
    pub(crate) fn set_limits(&mut self, limits: &DecodeLimits) -> Result<(), TurboError> {
        self.inst
            .set(tj::TJPARAM_TJPARAM_MAXPIXELS, max_pixels_param(limits))
    }

    /// Reads the headers of `jpeg` (up to the first scan) and checks them against `limits`, and
    /// the file's length against the declared size ([`ProbeError::ScanTooShort`], with the
    /// whole file as an upper bound of the scan data): O(1), before any buffer is sized.
    pub(crate) fn read_header(
        &mut self,
        jpeg: &[u8],
        limits: &DecodeLimits,
    ) -> Result<TurboHeader, TurboError> {
        if !declares_a_frame(jpeg) {
            return Err(library("no frame header (SOF) before the first scan"));
        }
        // SAFETY: the pointer and length describe a live slice; libjpeg-turbo only reads it.
        let rc = unsafe {
            tj::tj3DecompressHeader(self.inst.handle.as_ptr(), jpeg.as_ptr(), jpeg.len() as _)
        };
        self.inst.check(rc)?;
        let (width, height) = (
            self.inst.get(tj::TJPARAM_TJPARAM_JPEGWIDTH),
            self.inst.get(tj::TJPARAM_TJPARAM_JPEGHEIGHT),
        );
        let (Ok(width), Ok(height)) = (u32::try_from(width), u32::try_from(height)) else {
            return Err(library(format!("invalid image size {width}x{height}")));
        };
        // `decode`'s memory-safety argument rests on a non-empty image.
        if width == 0 || height == 0 {
            return Err(library(format!("invalid image size {width}x{height}")));
        }
        limits
            .check_pixels(ImageFormat::Jpeg, width, height)
            .map_err(TurboError::Refused)?;
        let mcu = mcu_size(self.inst.get(tj::TJPARAM_TJPARAM_SUBSAMP));
        // An unknown subsampling gets the largest MCU: the most lenient bound.
        check_scan_bytes(width, height, mcu.unwrap_or((32, 32)), jpeg.len())
            .map_err(TurboError::Refused)?;
        let colorspace = self.inst.get(tj::TJPARAM_TJPARAM_COLORSPACE);
        Ok(TurboHeader {
            width,
            height,
            mcu_width: mcu.map(|(w, _)| w),
            four_channel: colorspace == tj::TJCS_TJCS_CMYK as i32
                || colorspace == tj::TJCS_TJCS_YCCK as i32,
        })
    }

    /// Decodes `region` (in the coordinates of the image scaled by `scale`; its left edge a
    /// multiple of the scaled iMCU width, see [`align_region`]) of `jpeg` as RGB8 into
    /// `out[..region.width * region.height * 3]`, growing `out` if needed. `header` must be the
    /// result of [`read_header`](Self::read_header) on the same bytes, just before: the region
    /// is checked against it before `out` is sized.
    pub(crate) fn decode(
        &mut self,
        jpeg: &[u8],
        header: &TurboHeader,
        scale: Downscale,
        region: CropBox,
        out: &mut Vec<u8>,
    ) -> Result<(), TurboError> {
        // An empty cropping region means "no cropping" to TurboJPEG, which would then write the
        // whole image into a buffer sized for nothing: the memory-safety argument below needs
        // a non-empty region inside the (non-empty, limited) image read_header checked.
        let (scaled_width, scaled_height) = (scale.apply(header.width), scale.apply(header.height));
        if region.width == 0
            || region.height == 0
            || u64::from(region.left) + u64::from(region.width) > u64::from(scaled_width)
            || u64::from(region.top) + u64::from(region.height) > u64::from(scaled_height)
        {
            return Err(library(format!(
                "cropping region {region:?} is empty or outside the {scaled_width}x{scaled_height} \
                 scaled image"
            )));
        }
        // The region lies inside the image, whose sides are at most 65535 (JPEG stores them in
        // 16 bits): all of these fit in an i32.
        let to_i32 = |v: u32| i32::try_from(v).map_err(|_| library("region too large"));
        let crop = tj::tjregion {
            x: to_i32(region.left)?,
            y: to_i32(region.top)?,
            w: to_i32(region.width)?,
            h: to_i32(region.height)?,
        };
        let pitch = to_i32(
            region
                .width
                .checked_mul(3)
                .ok_or_else(|| library("region too large"))?,
        )?;
        let needed = region.width as usize * region.height as usize * 3;
        if out.len() < needed {
            out.resize(needed, 0);
        }
        let factor = tj::tjscalingfactor {
            num: 1,
            denom: scale.denominator as i32,
        };
        // SAFETY: valid handle; the factor is one of TurboJPEG's (1/1, 1/2, 1/4, 1/8).
        let rc = unsafe { tj::tj3SetScalingFactor(self.inst.handle.as_ptr(), factor) };
        self.inst.check(rc)?;
        // SAFETY: valid handle; tj3SetCroppingRegion checks the region against the header and
        // scaling factor and fails (handled) when it does not fit.
        let rc = unsafe { tj::tj3SetCroppingRegion(self.inst.handle.as_ptr(), crop) };
        self.inst.check(rc)?;
        // SAFETY: the cropping region is non-empty (checked above), so tj3Decompress8 writes
        // `region.height` rows of at most `region.width` pixels (it fails, before writing, when
        // the header it reads again from `jpeg` does not fit the region), each at a multiple of
        // `pitch`: at most `pitch * region.height` bytes, which `out` holds. The JPEG slice is
        // only read.
        let rc = unsafe {
            tj::tj3Decompress8(
                self.inst.handle.as_ptr(),
                jpeg.as_ptr(),
                jpeg.len() as _,
                out.as_mut_ptr(),
                pitch,
                tj::TJPF_TJPF_RGB,
            )
        };
        // Leave no cropping region behind for the next image's header checks.
        let none = tj::tjregion {
            x: 0,
            y: 0,
            w: 0,
            h: 0,
        };
        // SAFETY: valid handle; the all-zero region means "no cropping" and always succeeds.
        unsafe { tj::tj3SetCroppingRegion(self.inst.handle.as_ptr(), none) };
        self.inst.check(rc)
    }
}

/// One TurboJPEG compression instance: baseline (sequential) 4:2:0 JPEGs with the standard
/// Huffman tables, as libjpeg (and so Pillow) writes by default.
#[derive(Debug)]
pub(crate) struct TurboEncoder {
    inst: Instance,
}

impl TurboEncoder {
    pub(crate) fn new() -> Result<Self, TurboError> {
        let inst = Instance::new(tj::TJINIT_TJINIT_COMPRESS)?;
        inst.set(tj::TJPARAM_TJPARAM_SUBSAMP, tj::TJSAMP_TJSAMP_420)?;
        inst.set(tj::TJPARAM_TJPARAM_PROGRESSIVE, 0)?;
        inst.set(tj::TJPARAM_TJPARAM_OPTIMIZE, 0)?;
        // Write into the caller's buffer, sized with tj3JPEGBufSize; never reallocate it.
        inst.set(tj::TJPARAM_TJPARAM_NOREALLOC, 1)?;
        Ok(TurboEncoder { inst })
    }

    /// Encodes `pixels` (RGB8, `width * height * 3` bytes, no padding) at `quality` (1..=100)
    /// into `out`, replacing its contents.
    pub(crate) fn encode_rgb(
        &mut self,
        pixels: &[u8],
        width: u32,
        height: u32,
        quality: u8,
        out: &mut Vec<u8>,
    ) -> Result<(), TurboError> {
        let too_large = || library(format!("{width}x{height} is too large to encode"));
        let (Ok(w), Ok(h)) = (i32::try_from(width), i32::try_from(height)) else {
            return Err(too_large());
        };
        let pitch = w.checked_mul(3).ok_or_else(too_large)?;
        if pixels.len() != width as usize * height as usize * 3 {
            return Err(library(format!(
                "{} bytes of pixels for a {width}x{height} RGB image",
                pixels.len()
            )));
        }
        self.inst
            .set(tj::TJPARAM_TJPARAM_QUALITY, i32::from(quality))?;
        // SAFETY: a pure size computation; 0 (an error) is handled below.
        let bound = unsafe { tj::tj3JPEGBufSize(w, h, tj::TJSAMP_TJSAMP_420) };
        let bound = usize::try_from(bound).map_err(|_| too_large())?;
        if bound == 0 {
            return Err(too_large());
        }
        out.clear();
        out.resize(bound, 0);
        let mut buffer = out.as_mut_ptr();
        let mut size = bound as _;
        // SAFETY: `pixels` holds `pitch * h` bytes (checked above) and is only read; `buffer`
        // points to `bound` writable bytes, the most tj3Compress8 writes for this size and
        // subsampling, and TJPARAM_NOREALLOC forbids it to reallocate (so `out` stays the owner).
        let rc = unsafe {
            tj::tj3Compress8(
                self.inst.handle.as_ptr(),
                pixels.as_ptr(),
                w,
                pitch,
                h,
                tj::TJPF_TJPF_RGB,
                &mut buffer,
                &mut size,
            )
        };
        self.inst.check(rc)?;
        let written = usize::try_from(size).map_err(|_| too_large())?;
        if !std::ptr::eq(buffer, out.as_ptr()) || written > bound {
            return Err(library(
                "libjpeg-turbo wrote outside the buffer it was given",
            ));
        }
        out.truncate(written);
        Ok(())
    }
}

/// The region to ask libjpeg-turbo for so that its output holds `wanted` (in scaled
/// coordinates of a `width` x `height` scaled image) with the same pixels a full decode gives.
///
/// TurboJPEG requires the left edge on an iMCU boundary, so it moves down to one. Chroma
/// upsampling treats the edges of the cropped output as image edges: the first pixel of an iMCU
/// reads the previous iMCU's chroma, and the last output pixel reads the chroma of the column
/// after it. So when the wanted region starts exactly on an iMCU boundary, one more iMCU is
/// decoded on the left, and one more column is always decoded on the right. Rows need nothing:
/// libjpeg-turbo's `jpeg_skip_scanlines` keeps the vertical upsampler's context. The test
/// `crops_equal_the_full_decode_bit_for_bit` pins all of this.
pub(crate) fn align_region(wanted: CropBox, width: u32, height: u32, scaled_mcu: u32) -> CropBox {
    let mcu = scaled_mcu.max(1);
    let left = if wanted.left % mcu == 0 {
        wanted.left.saturating_sub(mcu)
    } else {
        wanted.left / mcu * mcu
    };
    let right = (wanted.right() + 1).min(width);
    let bottom = wanted.bottom().min(height);
    CropBox {
        left,
        top: wanted.top,
        width: right - left,
        height: bottom - wanted.top,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{gradient_rgb, jpeg_rgb, patch_sof};

    fn default_limits() -> DecodeLimits {
        DecodeLimits::default()
    }

    #[test]
    fn headers_over_the_limits_are_refused() {
        let jpeg = jpeg_rgb(&gradient_rgb(64, 48), 64, 48);
        let mut decoder = TurboDecoder::new(&default_limits()).expect("instance");
        let header = decoder
            .read_header(&jpeg, &default_limits())
            .expect("valid");
        assert_eq!((header.width, header.height), (64, 48));

        let bomb = patch_sof(jpeg.clone(), 32768, 32768);
        assert_eq!(
            decoder.read_header(&bomb, &default_limits()),
            Err(TurboError::Refused(ProbeError::TooManyPixels {
                format: ImageFormat::Jpeg,
                width: 32768,
                height: 32768,
                max_pixels: crate::limits::DEFAULT_MAX_PIXELS,
            }))
        );
        // Under the pixel limit, but the whole file is too short for 250,000 MCUs.
        let short = patch_sof(jpeg, 8000, 8000);
        assert_eq!(
            decoder.read_header(&short, &default_limits()),
            Err(TurboError::Refused(ProbeError::ScanTooShort {
                width: 8000,
                height: 8000,
                scan_bytes: short.len(),
                // jpeg-encoder's default is 4:4:4: 1000 x 1000 MCUs of 8x8, one byte per 64.
                min_bytes: 1_000_000 / 64,
            }))
        );
    }

    /// libjpeg-turbo is told the limit too, so a decode refuses an image over it even when the
    /// header it was given was read under another limit.
    #[test]
    fn libjpeg_turbo_enforces_the_pixel_limit_itself() {
        let jpeg = jpeg_rgb(&gradient_rgb(64, 48), 64, 48);
        let mut decoder = TurboDecoder::new(&default_limits()).expect("instance");
        let header = decoder
            .read_header(&jpeg, &default_limits())
            .expect("valid");
        let mut out = Vec::new();
        let whole = CropBox::full(64, 48);
        assert_eq!(
            decoder.decode(&jpeg, &header, Downscale::NONE, whole, &mut out),
            Ok(())
        );
        decoder
            .set_limits(&DecodeLimits {
                max_pixels: 64 * 48 - 1,
            })
            .expect("set");
        assert_eq!(
            decoder.decode(&jpeg, &header, Downscale::NONE, whole, &mut out),
            Err(TurboError::Library(
                "tj3Decompress8(): Image is too large".into()
            ))
        );
    }

    /// An empty cropping region means "the whole image" to TurboJPEG: decode must refuse it
    /// rather than let libjpeg-turbo write a whole image into a buffer sized for none.
    #[test]
    fn empty_or_outside_regions_are_refused_before_the_buffer_is_sized() {
        let jpeg = jpeg_rgb(&gradient_rgb(64, 48), 64, 48);
        let mut decoder = TurboDecoder::new(&default_limits()).expect("instance");
        let header = decoder
            .read_header(&jpeg, &default_limits())
            .expect("valid");
        for region in [
            CropBox {
                left: 0,
                top: 0,
                width: 0,
                height: 0,
            },
            CropBox {
                left: 16,
                top: 0,
                width: 0,
                height: 10,
            },
            CropBox {
                left: 0,
                top: 0,
                width: 65,
                height: 48,
            },
            CropBox {
                left: 16,
                top: u32::MAX,
                width: 1,
                height: 1,
            },
        ] {
            let mut out = Vec::new();
            let result = decoder.decode(&jpeg, &header, Downscale::NONE, region, &mut out);
            assert!(
                matches!(result, Err(TurboError::Library(ref m)) if m.contains("cropping region")),
                "{region:?}: {result:?}"
            );
            assert_eq!(out.capacity(), 0, "{region:?}");
        }
        // At 1/2 the image is 32x24.
        let half = Downscale { denominator: 2 };
        let mut out = Vec::new();
        assert!(decoder
            .decode(&jpeg, &header, half, CropBox::full(32, 24), &mut out)
            .is_ok());
        assert!(decoder
            .decode(&jpeg, &header, half, CropBox::full(33, 24), &mut out)
            .is_err());
    }

    /// `tj3DecompressHeader` accepts a tables-only datastream (SOI, tables, EOI) and leaves the
    /// previous image's size in place; read_header must not report it.
    #[test]
    fn a_tables_only_stream_does_not_report_the_previous_size() {
        let jpeg = jpeg_rgb(&gradient_rgb(64, 48), 64, 48);
        let mut decoder = TurboDecoder::new(&default_limits()).expect("instance");
        assert!(decoder.read_header(&jpeg, &default_limits()).is_ok());
        // SOI, then the DQT segment of the same file, then EOI.
        let dqt = jpeg
            .windows(2)
            .position(|w| w == [0xFF, 0xDB])
            .expect("has DQT");
        let length = usize::from(u16::from_be_bytes([jpeg[dqt + 2], jpeg[dqt + 3]]));
        let mut tables_only = vec![0xFF, 0xD8];
        tables_only.extend_from_slice(&jpeg[dqt..dqt + 2 + length]);
        tables_only.extend_from_slice(&[0xFF, 0xD9]);
        let result = decoder.read_header(&tables_only, &default_limits());
        assert!(matches!(result, Err(TurboError::Library(_))), "{result:?}");
    }

    #[test]
    fn frames_are_found_past_other_segments_and_fill_bytes() {
        assert!(declares_a_frame(
            b"\xFF\xD8\xFF\xE0\x00\x04ab\xFF\xFF\xC2\x00"
        ));
        assert!(!declares_a_frame(b"\xFF\xD8\xFF\xE0\x00\x04ab\xFF\xDA\x00"));
        assert!(!declares_a_frame(b"\xFF\xD8\xFF\xC4\x00\x02\xFF\xD9"));
        assert!(!declares_a_frame(b"\xFF\xD8\xFF\xE0\x00\x40"));
        assert!(!declares_a_frame(b"\xFF\xD8\x00"));
        assert!(!declares_a_frame(b"\xFF\xD8"));
    }

    #[test]
    fn regions_align_to_the_imcu_and_keep_a_margin() {
        let r = align_region(
            CropBox {
                left: 37,
                top: 10,
                width: 100,
                height: 50,
            },
            500,
            375,
            16,
        );
        assert_eq!(
            r,
            CropBox {
                left: 32,
                top: 10,
                width: 106,
                height: 50
            }
        );
        let on_boundaries = align_region(
            CropBox {
                left: 32,
                top: 10,
                width: 96,
                height: 50,
            },
            500,
            375,
            16,
        );
        assert_eq!(
            on_boundaries,
            CropBox {
                left: 16,
                top: 10,
                width: 113,
                height: 50
            }
        );
        assert_eq!(r.right(), 138);
        // At the image's edges nothing is added.
        let edge = align_region(CropBox::full(500, 375), 500, 375, 16);
        assert_eq!(edge, CropBox::full(500, 375));
        let corner = align_region(
            CropBox {
                left: 490,
                top: 370,
                width: 10,
                height: 5,
            },
            500,
            375,
            16,
        );
        assert_eq!(
            corner,
            CropBox {
                left: 480,
                top: 370,
                width: 20,
                height: 5
            }
        );
    }

    #[test]
    fn scaled_sizes_round_up() {
        assert_eq!(Downscale { denominator: 2 }.apply(375), 188);
        assert_eq!(Downscale { denominator: 8 }.apply(1), 1);
        assert_eq!(Downscale::NONE.apply(500), 500);
    }
}
