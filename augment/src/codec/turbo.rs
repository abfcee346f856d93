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
use std::ptr::NonNull;

use turbojpeg_sys as tj;

use crate::geometry::CropBox;

/// An error from libjpeg-turbo, with its message. Warnings (corrupt data it could have decoded
/// around) are errors too: the decoder is created with `TJPARAM_STOPONWARNING`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TurboError {
    pub(crate) message: String,
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
        let handle = NonNull::new(raw).ok_or_else(|| TurboError {
            message: "tj3Init failed: could not create a TurboJPEG instance".into(),
        })?;
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
        Err(TurboError { message })
    }
}

/// One TurboJPEG decompression instance.
#[derive(Debug)]
pub(crate) struct TurboDecoder {
    inst: Instance,
}

/// Width of an iMCU for each of TurboJPEG's subsampling codes (`tjMCUWidth`).
fn mcu_width(subsampling: i32) -> Option<u32> {
    match subsampling {
        tj::TJSAMP_TJSAMP_444 | tj::TJSAMP_TJSAMP_GRAY | tj::TJSAMP_TJSAMP_440 => Some(8),
        tj::TJSAMP_TJSAMP_441 => Some(8),
        tj::TJSAMP_TJSAMP_422 | tj::TJSAMP_TJSAMP_420 => Some(16),
        tj::TJSAMP_TJSAMP_411 => Some(32),
        _ => None,
    }
}

impl TurboDecoder {
    /// A new decompression instance, strict about corrupt data (a libjpeg warning, such as
    /// premature end of data, is an error), with a bound on the memory a hostile header can make
    /// it allocate.
    pub(crate) fn new() -> Result<Self, TurboError> {
        let inst = Instance::new(tj::TJINIT_TJINIT_DECOMPRESS)?;
        inst.set(tj::TJPARAM_TJPARAM_STOPONWARNING, 1)?;
        // Megabytes libjpeg may allocate for one image (progressive coefficient buffers).
        inst.set(tj::TJPARAM_TJPARAM_MAXMEMORY, 2048)?;
        Ok(TurboDecoder { inst })
    }

    /// Reads the headers of `jpeg` (up to the first scan).
    pub(crate) fn read_header(&mut self, jpeg: &[u8]) -> Result<TurboHeader, TurboError> {
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
            return Err(TurboError {
                message: format!("invalid image size {width}x{height}"),
            });
        };
        if width == 0 || height == 0 {
            return Err(TurboError {
                message: format!("invalid image size {width}x{height}"),
            });
        }
        let colorspace = self.inst.get(tj::TJPARAM_TJPARAM_COLORSPACE);
        Ok(TurboHeader {
            width,
            height,
            mcu_width: mcu_width(self.inst.get(tj::TJPARAM_TJPARAM_SUBSAMP)),
            four_channel: colorspace == tj::TJCS_TJCS_CMYK as i32
                || colorspace == tj::TJCS_TJCS_YCCK as i32,
        })
    }

    /// Decodes `region` (in the coordinates of the image scaled by `scale`; its left edge a
    /// multiple of the scaled iMCU width, see [`align_region`]) of `jpeg` as RGB8 into
    /// `out[..region.width * region.height * 3]`, growing `out` if needed. `header` must be the
    /// result of [`read_header`](Self::read_header) on the same bytes, just before.
    pub(crate) fn decode(
        &mut self,
        jpeg: &[u8],
        scale: Downscale,
        region: CropBox,
        out: &mut Vec<u8>,
    ) -> Result<(), TurboError> {
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
        let to_i32 = |v: u32| i32::try_from(v).unwrap_or(i32::MAX);
        let crop = tj::tjregion {
            x: to_i32(region.left),
            y: to_i32(region.top),
            w: to_i32(region.width),
            h: to_i32(region.height),
        };
        // SAFETY: valid handle; tj3SetCroppingRegion checks the region against the header and
        // scaling factor and fails (handled) when it does not fit.
        let rc = unsafe { tj::tj3SetCroppingRegion(self.inst.handle.as_ptr(), crop) };
        self.inst.check(rc)?;
        let pitch = to_i32(region.width * 3);
        // SAFETY: `out` holds at least `pitch * region.height` bytes, which is all that
        // tj3Decompress8 writes for this cropping region and pixel format; the JPEG slice is
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
        let too_large = || TurboError {
            message: format!("{width}x{height} is too large to encode"),
        };
        let (Ok(w), Ok(h)) = (i32::try_from(width), i32::try_from(height)) else {
            return Err(too_large());
        };
        let pitch = w.checked_mul(3).ok_or_else(too_large)?;
        if pixels.len() != width as usize * height as usize * 3 {
            return Err(TurboError {
                message: format!(
                    "{} bytes of pixels for a {width}x{height} RGB image",
                    pixels.len()
                ),
            });
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
            return Err(TurboError {
                message: "libjpeg-turbo wrote outside the buffer it was given".into(),
            });
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
