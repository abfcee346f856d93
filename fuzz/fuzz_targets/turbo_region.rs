//! Fuzzes the libjpeg-turbo entry: `RegionDecoder` on the turbo backend reading a JPEG's header,
//! then decoding a region of it (cropped, and downscaled in the DCT domain), falling back to the
//! whole-image decoders when libjpeg-turbo refuses.
//!
//! The first 5 input bytes choose the region (left, top, width, height as fractions of the
//! image) and the downscaling; the rest is the file. Checked: no panic; what decodes has
//! `width * height * 3` bytes of pixels covering the region asked for, in an image within the
//! limits whose size agrees with the marker walk's and `size()`'s; and decoding the same bytes
//! again, after another image, gives the same pixels (no state carried from one image to the
//! next: cropping region, scaling factor, header).
#![no_main]

use libfuzzer_sys::fuzz_target;
use shardfeed_augment::{
    probe_with_limits, CropBox, DecodeError, DecodeLimits, ImageSize, JpegBackend, RegionDecoder,
    RegionRequest,
};

/// A valid 123x91 4:2:0 JPEG, decoded between two decodes of the input.
const OTHER: &[u8] = include_bytes!("../../augment/tests/golden/jpeg/rgb-420.jpg");

/// Small enough that a decode takes milliseconds; the limit's own checks are exercised as well.
const LIMITS: DecodeLimits = DecodeLimits {
    max_pixels: 1 << 20,
};

/// What a decode gave, owned.
#[derive(Debug, PartialEq)]
struct Decoded {
    pixels: Vec<u8>,
    width: u32,
    height: u32,
    origin: (u32, u32),
    image: ImageSize,
    scale_denominator: u32,
}

fn decode(
    decoder: &mut RegionDecoder,
    jpeg: &[u8],
    params: [u8; 5],
) -> Result<(RegionRequest, Decoded), DecodeError> {
    let [l, t, w, h, scale] = params;
    let frac = |byte: u8, of: u32| (u64::from(byte) * u64::from(of) / 255) as u32;
    let (request, region) = decoder.decode_planned(jpeg, |image: ImageSize| {
        let left = frac(l, image.width - 1);
        let top = frac(t, image.height - 1);
        let region = CropBox {
            left,
            top,
            width: 1 + frac(w, image.width - left - 1),
            height: 1 + frac(h, image.height - top - 1),
        };
        let at_least = match scale % 4 {
            0 => None,
            k => Some((region.width >> k, region.height >> k)),
        };
        let request = RegionRequest { region, at_least };
        (request, request)
    })?;
    let decoded = Decoded {
        pixels: region.pixels.to_vec(),
        width: region.width,
        height: region.height,
        origin: (region.origin_x, region.origin_y),
        image: region.image,
        scale_denominator: region.scale_denominator,
    };
    Ok((request, decoded))
}

fuzz_target!(|data: &[u8]| {
    let Some((params, rest)) = data.split_first_chunk::<5>() else {
        return;
    };
    // JPEG bytes only: other formats go to the `image` crate, not libjpeg-turbo.
    let mut jpeg = Vec::with_capacity(rest.len() + 3);
    if !rest.starts_with(&[0xFF, 0xD8, 0xFF]) {
        jpeg.extend_from_slice(&[0xFF, 0xD8, 0xFF]);
    }
    jpeg.extend_from_slice(rest);

    let mut decoder = RegionDecoder::with_backend(JpegBackend::Turbo);
    decoder.set_limits(LIMITS);
    let first = decode(&mut decoder, &jpeg, *params);

    if let Ok((request, d)) = &first {
        assert_eq!(d.pixels.len(), d.width as usize * d.height as usize * 3);
        let (w, h) = (d.image.width, d.image.height);
        assert!(w >= 1 && h >= 1 && u64::from(w) * u64::from(h) <= LIMITS.max_pixels);
        assert!([1, 2, 4, 8].contains(&d.scale_denominator));
        // The buffer covers the region asked for, in the scaled image's coordinates.
        let s = d.scale_denominator;
        let r = request.region;
        assert!(d.origin.0 <= r.left / s && d.origin.1 <= r.top / s, "{r:?} {d:?}");
        assert!(d.origin.0 + d.width >= (r.left + r.width).div_ceil(s).min(w.div_ceil(s)));
        assert!(d.origin.1 + d.height >= (r.top + r.height).div_ceil(s).min(h.div_ceil(s)));
        // The same size as the other readers of the header, where they accept the file.
        assert_eq!(decoder.size(&jpeg).ok(), Some(d.image));
        if let Ok(info) = probe_with_limits(&jpeg, &LIMITS) {
            assert_eq!((info.width, info.height), (w, h));
        }
    }

    // Another image in between, then the same bytes: the same result.
    assert!(decoder.decode(OTHER, None).is_ok());
    let again = decode(&mut decoder, &jpeg, *params);
    assert_eq!(first, again);
});
