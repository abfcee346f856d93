//! Bytes: which kind of file an image becomes, and encoding it.
//!
//! Without oddities every image is a baseline RGB JPEG with 4:2:0 chroma
//! subsampling. With oddities, like ILSVRC2012, the kind is drawn from the
//! image's own encoding stream (independent of its pixels):
//!
//! | kind | share | how |
//! |------|-------|-----|
//! | CMYK JPEG | 2% | 4 components, Adobe APP14 (transform 0), inverted samples |
//! | grayscale JPEG | 3% | 1 component, BT.601 luma of the RGB image |
//! | progressive JPEG | 10% of the rest | SOF2, 4 scans |
//! | 4:4:4 sampling | 20% of the colour JPEGs | baseline or progressive |
//! | PNG named `.JPEG` | 1 file | `train/<first class>/<first class>_1.JPEG` |

use jpeg_encoder::{ColorType, Encoder, SamplingFactor};

use crate::render::{RgbBuffer, Split};
use shardfeed_rng::Xoshiro256 as Rng;

/// What file an image is written as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ImageKind {
    /// YCbCr JPEG; `progressive` selects SOF2 over SOF0, `subsample` 4:2:0
    /// over 4:4:4.
    Jpeg {
        /// Progressive (SOF2) instead of baseline (SOF0).
        progressive: bool,
        /// 4:2:0 chroma subsampling instead of 4:4:4.
        subsample: bool,
    },
    /// One-component JPEG.
    Grayscale,
    /// Four-component Adobe CMYK JPEG.
    Cmyk,
    /// A PNG file (still named `.JPEG`).
    Png,
}

impl ImageKind {
    /// The kind used for every image without oddities.
    pub const DEFAULT: ImageKind = ImageKind::Jpeg {
        progressive: false,
        subsample: true,
    };
}

/// Chooses the kind of image `k` of `class` in `split`, drawing from the
/// image's encoding stream `rng`.
pub(crate) fn choose_kind(
    rng: &mut Rng,
    oddities: bool,
    split: Split,
    class: u32,
    k: u32,
) -> ImageKind {
    if !oddities {
        return ImageKind::DEFAULT;
    }
    if split == Split::Train && class == 0 && k == 1 {
        return ImageKind::Png;
    }
    let r = rng.next_f64();
    if r < 0.02 {
        ImageKind::Cmyk
    } else if r < 0.05 {
        ImageKind::Grayscale
    } else {
        ImageKind::Jpeg {
            progressive: rng.chance(0.10),
            subsample: !rng.chance(0.20),
        }
    }
}

/// Why an image could not be encoded.
pub(crate) type EncodeError = Box<dyn std::error::Error + Send + Sync>;

/// Encodes `img` as `kind` at `quality` (1..=100, ignored for PNG) into
/// `out`, replacing its contents. `scratch` holds converted samples.
pub(crate) fn encode(
    img: &RgbBuffer,
    kind: ImageKind,
    quality: u8,
    out: &mut Vec<u8>,
    scratch: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    out.clear();
    let (w, h) = (img.width, img.height);
    if kind == ImageKind::Png {
        use image::ImageEncoder;
        image::codecs::png::PngEncoder::new(&mut *out).write_image(
            &img.data,
            w,
            h,
            image::ExtendedColorType::Rgb8,
        )?;
        return Ok(());
    }
    let (w16, h16) = (u16::try_from(w)?, u16::try_from(h)?);
    let mut enc = Encoder::new(&mut *out, quality);
    match kind {
        ImageKind::Jpeg {
            progressive,
            subsample,
        } => {
            enc.set_sampling_factor(if subsample {
                SamplingFactor::F_2_2
            } else {
                SamplingFactor::F_1_1
            });
            enc.set_progressive(progressive);
            enc.encode(&img.data, w16, h16, ColorType::Rgb)?;
        }
        ImageKind::Grayscale => {
            scratch.clear();
            scratch.extend(img.data.chunks_exact(3).map(|p| luma(p[0], p[1], p[2])));
            enc.set_sampling_factor(SamplingFactor::F_1_1);
            enc.encode(scratch, w16, h16, ColorType::Luma)?;
        }
        ImageKind::Cmyk => {
            scratch.clear();
            scratch.extend(
                img.data
                    .chunks_exact(3)
                    .flat_map(|p| rgb_to_cmyk(p[0], p[1], p[2])),
            );
            enc.set_sampling_factor(SamplingFactor::F_1_1);
            enc.encode(scratch, w16, h16, ColorType::Cmyk)?;
        }
        ImageKind::Png => unreachable!("handled above"),
    }
    Ok(())
}

/// BT.601 luma, rounded, as JPEG's YCbCr uses.
fn luma(r: u8, g: u8, b: u8) -> u8 {
    let y = 19595 * u32::from(r) + 38470 * u32::from(g) + 7471 * u32::from(b);
    ((y + 32768) >> 16) as u8
}

/// Naive RGB to CMYK (no colour management): `K = 255 − max`, and each ink
/// scaled so that `R = (255 − C)(255 − K) / 255` holds again on decoding.
///
/// jpeg-encoder stores `255 − x` for each of C, M, Y, K and writes an Adobe
/// APP14 marker with transform 0: the "inverted CMYK" Photoshop convention
/// that libjpeg, Pillow and zune-jpeg expect for Adobe CMYK files.
fn rgb_to_cmyk(r: u8, g: u8, b: u8) -> [u8; 4] {
    let m = r.max(g).max(b);
    if m == 0 {
        return [0, 0, 0, 255];
    }
    let ink = |c: u8| 255 - ((u32::from(c) * 255 + u32::from(m) / 2) / u32::from(m)) as u8;
    [ink(r), ink(g), ink(b), 255 - m]
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The markers of a JPEG file, up to the first SOS, as `(marker, segment)`.
    pub(crate) fn markers(jpeg: &[u8]) -> Vec<(u8, &[u8])> {
        assert_eq!(&jpeg[..2], &[0xFF, 0xD8], "no SOI");
        let mut out = Vec::new();
        let mut i = 2;
        while i + 4 <= jpeg.len() {
            assert_eq!(jpeg[i], 0xFF, "marker expected at {i}");
            let m = jpeg[i + 1];
            let len = usize::from(u16::from_be_bytes([jpeg[i + 2], jpeg[i + 3]]));
            out.push((m, &jpeg[i + 4..i + 2 + len]));
            if m == 0xDA {
                break;
            }
            i += 2 + len;
        }
        out
    }

    /// `(sof marker, components, [(h, v) per component])` of a JPEG.
    pub(crate) fn frame(jpeg: &[u8]) -> (u8, u8, Vec<(u8, u8)>) {
        let (m, seg) = markers(jpeg)
            .into_iter()
            .find(|(m, _)| matches!(m, 0xC0..=0xC2))
            .expect("no SOF");
        let n = seg[5];
        let factors = (0..usize::from(n))
            .map(|c| (seg[7 + 3 * c] >> 4, seg[7 + 3 * c] & 15))
            .collect();
        (m, n, factors)
    }

    fn gradient() -> RgbBuffer {
        let (w, h) = (40u32, 24u32);
        let mut data = Vec::new();
        for y in 0..h {
            for x in 0..w {
                data.extend([(x * 6) as u8, (y * 10) as u8, 200]);
            }
        }
        RgbBuffer {
            width: w,
            height: h,
            data,
        }
    }

    fn encoded(kind: ImageKind) -> Vec<u8> {
        let (mut out, mut scratch) = (Vec::new(), Vec::new());
        encode(&gradient(), kind, 90, &mut out, &mut scratch).unwrap();
        assert_eq!(
            &out[out.len() - 2..],
            &[0xFF, 0xD9][..],
            "{kind:?} must end with EOI"
        );
        out
    }

    #[test]
    fn every_kind_has_the_promised_frame() {
        let (m, n, f) = frame(&encoded(ImageKind::DEFAULT));
        assert_eq!((m, n), (0xC0, 3));
        assert_eq!(f, [(2, 2), (1, 1), (1, 1)], "4:2:0");

        let kind = ImageKind::Jpeg {
            progressive: true,
            subsample: false,
        };
        let (m, n, f) = frame(&encoded(kind));
        assert_eq!((m, n), (0xC2, 3));
        assert_eq!(f, [(1, 1); 3], "4:4:4");

        let (m, n, _) = frame(&encoded(ImageKind::Grayscale));
        assert_eq!((m, n), (0xC0, 1));

        let cmyk = encoded(ImageKind::Cmyk);
        let (m, n, _) = frame(&cmyk);
        assert_eq!((m, n), (0xC0, 4));
        let adobe = markers(&cmyk)
            .into_iter()
            .find(|(m, seg)| *m == 0xEE && seg.starts_with(b"Adobe"))
            .expect("Adobe APP14");
        assert_eq!(adobe.1.len(), 12);
        assert_eq!(adobe.1[11], 0, "transform 0: CMYK, no colour transform");
    }

    #[test]
    fn png_is_a_png() {
        let (mut out, mut scratch) = (Vec::new(), Vec::new());
        encode(&gradient(), ImageKind::Png, 90, &mut out, &mut scratch).unwrap();
        assert!(out.starts_with(b"\x89PNG\r\n\x1a\n"));
    }

    #[test]
    fn cmyk_inverts_back_to_rgb() {
        for rgb in [
            [0u8, 0, 0],
            [255, 255, 255],
            [200, 30, 90],
            [1, 2, 3],
            [17, 250, 128],
        ] {
            let [c, m, y, k] = rgb_to_cmyk(rgb[0], rgb[1], rgb[2]);
            // What an Adobe-aware decoder computes from the stored (inverted)
            // samples 255-c, ..., 255-k.
            let back = [c, m, y].map(|x| (255 - u32::from(x)) * (255 - u32::from(k)) / 255);
            for (a, b) in back.iter().zip(rgb) {
                assert!(a.abs_diff(u32::from(b)) <= 1, "{rgb:?} -> {back:?}");
            }
        }
    }

    #[test]
    fn kinds_follow_the_promised_shares() {
        let n = 20_000u32;
        let mut counts = std::collections::HashMap::new();
        for k in 1..=n {
            let mut rng =
                crate::render::image_rng(5, Split::Val, 3, k, crate::render::Stream::Encoding);
            let kind = choose_kind(&mut rng, true, Split::Val, 3, k);
            let key = match kind {
                ImageKind::Jpeg {
                    progressive: true, ..
                } => "progressive",
                ImageKind::Jpeg {
                    subsample: false, ..
                } => "444",
                ImageKind::Jpeg { .. } => "420",
                ImageKind::Grayscale => "gray",
                ImageKind::Cmyk => "cmyk",
                ImageKind::Png => "png",
            };
            *counts.entry(key).or_insert(0u32) += 1;
        }
        let frac = |k| f64::from(counts.get(k).copied().unwrap_or(0)) / f64::from(n);
        assert!((frac("cmyk") - 0.02).abs() < 0.005, "{counts:?}");
        assert!((frac("gray") - 0.03).abs() < 0.006, "{counts:?}");
        assert!((frac("progressive") - 0.095).abs() < 0.01, "{counts:?}");
        assert!((frac("444") - 0.171).abs() < 0.015, "{counts:?}");
        assert_eq!(frac("png"), 0.0);

        let mut rng = Rng::new(0);
        assert_eq!(
            choose_kind(&mut rng, true, Split::Train, 0, 1),
            ImageKind::Png
        );
        assert_eq!(
            choose_kind(&mut rng, false, Split::Train, 0, 1),
            ImageKind::DEFAULT
        );
        for k in 1..100 {
            assert_eq!(
                choose_kind(&mut rng, false, Split::Val, 1, k),
                ImageKind::DEFAULT
            );
        }
    }
}
