//! Decompression bombs: small files whose headers claim a huge image. Each is refused from its
//! headers, on every decode path (probe and the deep check, zune-jpeg, the `image` crate,
//! libjpeg-turbo's region decode, the augmenter, the re-encoder), before any pixel buffer is
//! sized; and a JPEG whose scan data is far too short for its declared size is refused before
//! it is decoded. The limit is `DecodeLimits::max_pixels` (default: Pillow's
//! `Image.MAX_IMAGE_PIXELS`).
//!
//! The bombs are what the hardening issue's repro made: a real JPEG (or PNG) with the size in its
//! SOF (or IHDR) patched to 32768x32768, which the decoders used to take at its word (3 GB per
//! decode).

use std::io::Cursor;

use jpeg_encoder::{ColorType, Encoder, SamplingFactor};
use shardfeed_augment::{
    decode_rgb, decode_rgb_into, decode_rgb_into_with_limits, probe, probe_deep,
    probe_deep_with_limits, probe_with_limits, AugmentError, Augmenter, CropBox, DecodeError,
    DecodeLimits, ImageFormat, JpegBackend, ProbeError, ReencodeOptions, Reencoder, RegionDecoder,
    SampleKey, TrainTransform, Transform, ValTransform,
};

/// Pillow's `Image.MAX_IMAGE_PIXELS`, the default limit.
const PILLOW_MAX_IMAGE_PIXELS: u64 = 89_478_485;

const KEY: SampleKey = SampleKey {
    seed: 1,
    epoch: 0,
    index: 0,
};

/// A busy RGB image, so that its JPEG has realistic scan data.
fn busy_rgb(width: u32, height: u32) -> Vec<u8> {
    let mut state = 0x9E37_79B9_u64;
    let mut out = Vec::with_capacity((width * height * 3) as usize);
    for y in 0..height {
        for x in 0..width {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            let noise = (state >> 58) as u32;
            out.extend_from_slice(&[
                ((x * 255 / width) ^ (y % 7 * 9)) as u8,
                ((y * 255 / height) + noise) as u8,
                ((((x / 5 + y / 3) % 2) * 200) + noise * 2) as u8,
            ]);
        }
    }
    out
}

fn jpeg(width: u32, height: u32, configure: impl FnOnce(&mut Encoder<&mut Vec<u8>>)) -> Vec<u8> {
    let mut bytes = Vec::new();
    let mut encoder = Encoder::new(&mut bytes, 90);
    configure(&mut encoder);
    encoder
        .encode(
            &busy_rgb(width, height),
            width as u16,
            height as u16,
            ColorType::Rgb,
        )
        .expect("encodes");
    bytes
}

/// `jpeg` with the frame header (`SOF0` or `SOF2`) patched to declare `width` x `height`.
fn patch_sof(mut jpeg: Vec<u8>, width: u16, height: u16) -> Vec<u8> {
    let sof = jpeg
        .windows(2)
        .position(|w| w == [0xFF, 0xC0] || w == [0xFF, 0xC2])
        .expect("has a SOF");
    // FF Cn, length (2), precision (1), height (2), width (2).
    jpeg[sof + 5..sof + 7].copy_from_slice(&height.to_be_bytes());
    jpeg[sof + 7..sof + 9].copy_from_slice(&width.to_be_bytes());
    jpeg
}

/// The 210 KB-style bomb: a 640x480 baseline 4:2:0 JPEG declaring 32768x32768.
fn jpeg_bomb() -> Vec<u8> {
    patch_sof(
        jpeg(640, 480, |e| e.set_sampling_factor(SamplingFactor::R_4_2_0)),
        32768,
        32768,
    )
}

/// CRC-32 (ISO 3309, as PNG uses), bit by bit.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0_u32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A 64x48 RGB PNG whose IHDR declares `width` x `height`, its CRC fixed so the chunk is valid.
fn png_claiming(width: u32, height: u32) -> Vec<u8> {
    let mut png = Vec::new();
    image::RgbImage::from_raw(64, 48, busy_rgb(64, 48))
        .expect("sized")
        .write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png)
        .expect("encodes a PNG");
    // Signature (8), IHDR length (4), "IHDR" (4), width (4), height (4), 5 more bytes, CRC (4).
    assert_eq!(&png[12..16], b"IHDR");
    png[16..20].copy_from_slice(&width.to_be_bytes());
    png[20..24].copy_from_slice(&height.to_be_bytes());
    let crc = crc32(&png[12..29]);
    png[29..33].copy_from_slice(&crc.to_be_bytes());
    png
}

fn too_many(format: ImageFormat, width: u32, height: u32) -> ProbeError {
    ProbeError::TooManyPixels {
        format,
        width,
        height,
        max_pixels: PILLOW_MAX_IMAGE_PIXELS,
    }
}

fn transforms() -> [Transform; 2] {
    [
        Transform::Train(TrainTransform::new(224)),
        Transform::Val(ValTransform::new(224)),
    ]
}

#[test]
fn the_crafted_files_are_otherwise_valid() {
    // The bombs differ from real images only in the declared size: the same files with their
    // true size decode, so what refuses them is the size check and nothing else.
    let real = jpeg(640, 480, |e| e.set_sampling_factor(SamplingFactor::R_4_2_0));
    assert_eq!(patch_sof(real.clone(), 640, 480), real);
    assert!(probe_deep(&real).is_ok());
    assert_eq!(
        decode_rgb(&png_claiming(64, 48)).map(|i| (i.width, i.height)),
        Ok((64, 48))
    );
    assert_eq!(crc32(b"IEND"), 0xAE42_6082);
}

#[test]
fn probe_and_the_deep_check_refuse_a_jpeg_bomb_from_its_header() {
    let bomb = jpeg_bomb();
    assert!(bomb.len() < 300_000, "a small file: {} bytes", bomb.len());
    let expected = too_many(ImageFormat::Jpeg, 32768, 32768);
    assert_eq!(probe(&bomb), Err(expected.clone()));
    assert_eq!(probe_deep(&bomb), Err(expected.clone()));
    assert_eq!(
        expected.to_string(),
        "jpeg declares 32768x32768 (1073741824 pixels), more than the limit of 89478485 \
         pixels (DecodeLimits::max_pixels)"
    );
}

#[test]
fn progressive_jpeg_bombs_are_refused_too() {
    let bomb = patch_sof(jpeg(64, 48, |e| e.set_progressive(true)), 20_000, 20_000);
    let expected = too_many(ImageFormat::Jpeg, 20_000, 20_000);
    assert_eq!(probe(&bomb), Err(expected.clone()));
    assert_eq!(
        decode_rgb(&bomb),
        Err(DecodeError::Invalid(expected.clone()))
    );
    let mut decoder = RegionDecoder::with_backend(JpegBackend::Turbo);
    assert_eq!(
        decoder.decode(&bomb, None).map(|r| r.width),
        Err(DecodeError::Invalid(expected))
    );
}

#[test]
fn whole_image_decodes_refuse_bombs_without_growing_the_buffer() {
    for (bomb, expected) in [
        (jpeg_bomb(), too_many(ImageFormat::Jpeg, 32768, 32768)),
        (
            png_claiming(32768, 32768),
            too_many(ImageFormat::Png, 32768, 32768),
        ),
    ] {
        let mut out = Vec::new();
        assert_eq!(
            decode_rgb_into(&bomb, &mut out),
            Err(DecodeError::Invalid(expected.clone()))
        );
        assert_eq!(out.capacity(), 0, "no pixel buffer was sized");
        assert_eq!(decode_rgb(&bomb), Err(DecodeError::Invalid(expected)));
    }
}

#[test]
fn png_bombs_are_refused_by_probe_and_the_deep_check() {
    // 32768 is within MAX_DIMENSION on each side: only the pixel count gives it away.
    let bomb = png_claiming(32768, 32768);
    let expected = too_many(ImageFormat::Png, 32768, 32768);
    assert_eq!(probe(&bomb), Err(expected.clone()));
    assert_eq!(probe_deep(&bomb), Err(expected));
    let wide = png_claiming(30_000, 3_000);
    assert_eq!(probe(&wide), Err(too_many(ImageFormat::Png, 30_000, 3_000)));
}

#[test]
fn region_decoders_refuse_bombs_on_both_backends() {
    let jpeg = jpeg_bomb();
    let png = png_claiming(32768, 32768);
    let small = CropBox {
        left: 100,
        top: 100,
        width: 50,
        height: 50,
    };
    for backend in [JpegBackend::Turbo, JpegBackend::Zune] {
        let mut decoder = RegionDecoder::with_backend(backend);
        for (bomb, format) in [(&jpeg, ImageFormat::Jpeg), (&png, ImageFormat::Png)] {
            let expected = DecodeError::Invalid(too_many(format, 32768, 32768));
            for region in [None, Some(small)] {
                let result = decoder.decode(bomb, region).map(|r| r.width);
                assert_eq!(
                    result,
                    Err(expected.clone()),
                    "{backend} {format} {region:?}"
                );
            }
            assert_eq!(decoder.size(bomb), Err(expected.clone()), "{backend}");
            let downscaled = decoder.decode_downscaled(bomb, small, (10, 10));
            assert_eq!(downscaled.map(|r| r.width), Err(expected), "{backend}");
        }
    }
}

#[test]
fn the_augmenter_refuses_bombs_on_both_backends() {
    let jpeg = jpeg_bomb();
    let png = png_claiming(32768, 32768);
    for backend in [JpegBackend::Turbo, JpegBackend::Zune] {
        let mut augmenter = Augmenter::with_backend(backend);
        for transform in transforms() {
            let mut out = vec![0; transform.output_len()];
            for (bomb, format) in [(&jpeg, ImageFormat::Jpeg), (&png, ImageFormat::Png)] {
                assert_eq!(
                    augmenter.apply(bomb, &transform, KEY, &mut out),
                    Err(AugmentError::Decode(DecodeError::Invalid(too_many(
                        format, 32768, 32768
                    )))),
                    "{backend} {format} {transform:?}"
                );
            }
        }
        assert_eq!(
            augmenter.decode_only(&jpeg),
            Err(AugmentError::Decode(DecodeError::Invalid(too_many(
                ImageFormat::Jpeg,
                32768,
                32768
            ))))
        );
    }
}

#[test]
fn the_reencoder_refuses_bombs() {
    let mut reencoder = Reencoder::new();
    for (bomb, format) in [
        (jpeg_bomb(), ImageFormat::Jpeg),
        (png_claiming(32768, 32768), ImageFormat::Png),
    ] {
        let options = ReencodeOptions {
            max_side: Some(256),
            quality: 90,
        };
        assert_eq!(
            reencoder.reencode(&bomb, &options),
            Err(DecodeError::Invalid(too_many(format, 32768, 32768)))
        );
    }
}

/// A real 4:2:0 JPEG of 64x48 (12 MCUs) patched to declare 8000x8000 (250,000 MCUs): under the
/// pixel limit, but its few hundred bytes of scan data could not code 250,000 MCUs.
fn scan_too_short() -> (Vec<u8>, ProbeError) {
    let bytes = patch_sof(
        jpeg(64, 48, |e| e.set_sampling_factor(SamplingFactor::R_4_2_0)),
        8000,
        8000,
    );
    let sos = bytes
        .windows(2)
        .position(|w| w == [0xFF, 0xDA])
        .expect("has SOS");
    let sos_len = usize::from(u16::from_be_bytes([bytes[sos + 2], bytes[sos + 3]]));
    let scan_bytes = bytes.len() - 2 - (sos + 2 + sos_len);
    let error = ProbeError::ScanTooShort {
        width: 8000,
        height: 8000,
        scan_bytes,
        // 500 x 500 MCUs of 16x16, one byte per 64.
        min_bytes: 250_000 / 64,
    };
    (bytes, error)
}

#[test]
fn scan_data_far_too_short_for_the_declared_size_is_refused_before_decoding() {
    let (bytes, expected) = scan_too_short();
    const { assert!(8000 * 8000 < PILLOW_MAX_IMAGE_PIXELS) };
    assert_eq!(probe(&bytes), Err(expected.clone()));
    assert_eq!(probe_deep(&bytes), Err(expected.clone()));
    let mut out = Vec::new();
    assert_eq!(
        decode_rgb_into(&bytes, &mut out),
        Err(DecodeError::Invalid(expected.clone()))
    );
    assert_eq!(out.capacity(), 0, "no pixel buffer was sized");
    let ProbeError::ScanTooShort { scan_bytes, .. } = expected else {
        unreachable!()
    };
    assert_eq!(
        expected.to_string(),
        format!(
            "JPEG declares 8000x8000 but holds only {scan_bytes} bytes of scan data, fewer than \
             the 3906 that any real image of that size has"
        )
    );
}

#[test]
fn the_region_decoders_and_the_augmenter_refuse_short_scans_before_decoding() {
    // libjpeg-turbo's header check bounds the scans by the file's length and hands the file to
    // the marker walk, which gives the exact count: the same error on both backends.
    let (bytes, expected) = scan_too_short();
    for backend in [JpegBackend::Turbo, JpegBackend::Zune] {
        let mut decoder = RegionDecoder::with_backend(backend);
        assert_eq!(
            decoder.decode(&bytes, None).map(|r| r.width),
            Err(DecodeError::Invalid(expected.clone())),
            "{backend}"
        );
        let mut augmenter = Augmenter::with_backend(backend);
        let transform = Transform::Train(TrainTransform::new(64));
        let mut out = vec![0; transform.output_len()];
        assert_eq!(
            augmenter.apply(&bytes, &transform, KEY, &mut out),
            Err(AugmentError::Decode(DecodeError::Invalid(expected.clone()))),
            "{backend}"
        );
    }
}

#[test]
fn the_limit_is_configurable_on_every_entry_point() {
    // A real 64x48 JPEG and PNG: exactly at a limit of 3072 pixels they pass, one under they
    // are refused, naming the limit in force.
    let jpeg = jpeg(64, 48, |_| {});
    let png = png_claiming(64, 48);
    let at = DecodeLimits {
        max_pixels: 64 * 48,
    };
    let under = DecodeLimits {
        max_pixels: 64 * 48 - 1,
    };
    for (bytes, format) in [(&jpeg, ImageFormat::Jpeg), (&png, ImageFormat::Png)] {
        let refused = ProbeError::TooManyPixels {
            format,
            width: 64,
            height: 48,
            max_pixels: 64 * 48 - 1,
        };
        assert!(probe_with_limits(bytes, &at).is_ok());
        assert_eq!(probe_with_limits(bytes, &under), Err(refused.clone()));
        assert!(probe_deep_with_limits(bytes, &at).is_ok());
        assert_eq!(probe_deep_with_limits(bytes, &under), Err(refused.clone()));
        let mut out = Vec::new();
        assert_eq!(
            decode_rgb_into_with_limits(bytes, &mut out, &at),
            Ok((64, 48))
        );
        assert_eq!(
            decode_rgb_into_with_limits(bytes, &mut out, &under),
            Err(DecodeError::Invalid(refused.clone()))
        );

        for backend in [JpegBackend::Turbo, JpegBackend::Zune] {
            let mut decoder = RegionDecoder::with_backend(backend);
            assert_eq!(decoder.limits(), DecodeLimits::default());
            // Used once before the change, so a TurboJPEG instance exists and must follow it.
            assert!(decoder.decode(bytes, None).is_ok());
            decoder.set_limits(under);
            assert_eq!(decoder.limits(), under);
            assert_eq!(
                decoder.decode(bytes, None).map(|r| r.width),
                Err(DecodeError::Invalid(refused.clone())),
                "{backend} {format}"
            );
            decoder.set_limits(at);
            assert!(decoder.decode(bytes, None).is_ok(), "{backend} {format}");

            let transform = Transform::Train(TrainTransform::new(32));
            let mut slot = vec![0; transform.output_len()];
            let mut augmenter = Augmenter::with_backend(backend);
            augmenter.set_decode_limits(under);
            // A worker's replacement augmenter keeps the limits.
            for augmenter in [augmenter.renewed(), augmenter] {
                assert_eq!(
                    augmenter_apply(augmenter, bytes, &transform, &mut slot),
                    Err(AugmentError::Decode(DecodeError::Invalid(refused.clone()))),
                    "{backend} {format}"
                );
            }
        }

        let mut reencoder = Reencoder::new();
        reencoder.set_decode_limits(under);
        assert_eq!(
            reencoder.reencode(bytes, &ReencodeOptions::default()),
            Err(DecodeError::Invalid(refused))
        );
        reencoder.set_decode_limits(at);
        assert!(reencoder
            .reencode(bytes, &ReencodeOptions::default())
            .is_ok());
    }
}

fn augmenter_apply(
    mut augmenter: Augmenter,
    bytes: &[u8],
    transform: &Transform,
    slot: &mut [u8],
) -> Result<(), AugmentError> {
    augmenter.apply(bytes, transform, KEY, slot).map(|_| ())
}

#[test]
fn a_tables_only_stream_after_an_image_is_not_given_its_size() {
    // libjpeg-turbo reports the previous image's size for a stream with tables and no frame.
    let real = jpeg(64, 48, |_| {});
    let dqt = real
        .windows(2)
        .position(|w| w == [0xFF, 0xDB])
        .expect("has DQT");
    let length = usize::from(u16::from_be_bytes([real[dqt + 2], real[dqt + 3]]));
    let mut tables_only = vec![0xFF, 0xD8];
    tables_only.extend_from_slice(&real[dqt..dqt + 2 + length]);
    tables_only.extend_from_slice(&[0xFF, 0xD9]);
    let mut decoder = RegionDecoder::new();
    assert!(decoder.size(&real).is_ok());
    assert!(
        matches!(
            decoder.size(&tables_only),
            Err(DecodeError::Invalid(ProbeError::Malformed { ref detail, .. }))
                if detail.contains("without a SOF")
        ),
        "{:?}",
        decoder.size(&tables_only)
    );
}
