//! A JPEG marker walk: validates the structure of a JPEG file without decoding any pixel.
//!
//! The walk reads `SOI`, then every marker segment by its declared length (bounds-checked), takes
//! the frame header from `SOFn` and the colour transform from an Adobe `APP14`, and after each
//! `SOS` header skips the entropy-coded data to the next marker (`FF 00` stuffing and `RST0`-`RST7`
//! are part of the data). It repeats over every scan (progressive files have many) until `EOI`;
//! bytes after `EOI` are ignored. The only per-byte work is a search for `0xFF` in the scan data,
//! eight bytes at a time, so the walk runs at memory speed.
//!
//! It works on a `&[u8]` only and never allocates except to describe an error.

use crate::error::{JpegPart, MarkerName, ProbeError};
use crate::info::{ColorModel, ImageFormat, ImageInfo};
use crate::limits::{check_scan_bytes, DecodeLimits, MAX_DIMENSION};

const SOI: u8 = 0xD8;
const EOI: u8 = 0xD9;
const SOS: u8 = 0xDA;
const APP14: u8 = 0xEE;
const TEM: u8 = 0x01;
const SOF2: u8 = 0xC2;

/// The frame header (`SOFn`) fields the walk keeps.
struct Frame {
    marker: u8,
    width: u16,
    height: u16,
    /// Component identifiers; only the first `components` are used.
    ids: [u8; 4],
    components: u8,
    /// The largest horizontal and vertical sampling factors.
    max_sampling: (u8, u8),
}

impl Frame {
    /// The MCU's size in pixels: one block for a single component (its scans are
    /// non-interleaved), else the largest sampling factors' blocks.
    fn mcu_size(&self) -> (u32, u32) {
        if self.components == 1 {
            return (8, 8);
        }
        let (h, v) = self.max_sampling;
        (8 * u32::from(h), 8 * u32::from(v))
    }
}

/// Walks the markers of `bytes`, which must start with `FF D8 FF`.
///
/// Returns the image's header information, or the first structural problem found. A frame
/// header over `limits` stops the walk there; scan data far too short for the declared size is
/// refused at `EOI`.
pub(crate) fn walk(bytes: &[u8], limits: &DecodeLimits) -> Result<ImageInfo, ProbeError> {
    let walked = walk_to_eoi(bytes, limits)?;
    let ImageInfo { width, height, .. } = walked.info;
    check_scan_bytes(width, height, walked.mcu_size, walked.scan_bytes)?;
    Ok(walked.info)
}

/// What the walk found by `EOI`.
struct Walked {
    info: ImageInfo,
    /// The MCU's size in pixels.
    mcu_size: (u32, u32),
    /// Entropy-coded bytes of all scans, restart markers included.
    scan_bytes: usize,
}

/// The walk itself, up to `EOI`, with the pixel limit checked at the frame header.
fn walk_to_eoi(bytes: &[u8], limits: &DecodeLimits) -> Result<Walked, ProbeError> {
    debug_assert_eq!(ImageFormat::detect(bytes), ImageFormat::Jpeg);
    let mut pos = 2; // past SOI
    let mut frame: Option<Frame> = None;
    let mut adobe_transform: Option<u8> = None;
    let mut scans = 0_usize;
    // Entropy-coded bytes of all scans, restart markers included.
    let mut scan_bytes = 0_usize;

    loop {
        let marker_at = pos;
        let marker = read_marker(bytes, &mut pos)?;
        match marker {
            EOI => return finish(frame, adobe_transform, (scans, scan_bytes), marker_at),
            SOI => return Err(malformed(marker_at, "second SOI marker")),
            0xD0..=0xD7 => {
                return Err(malformed(
                    marker_at,
                    format!("{} marker outside scan data", MarkerName(marker)),
                ))
            }
            TEM => continue, // standalone, no length
            _ => {}
        }

        let payload = read_segment(bytes, &mut pos, marker)?;
        match marker {
            0xC0..=0xCF if !matches!(marker, 0xC4 | 0xC8 | 0xCC) => {
                if frame.is_some() {
                    return Err(malformed(marker_at, "more than one SOF (frame header)"));
                }
                let parsed = parse_frame(marker, payload, marker_at)?;
                let (width, height) = (u32::from(parsed.width), u32::from(parsed.height));
                limits.check_pixels(ImageFormat::Jpeg, width, height)?;
                frame = Some(parsed);
            }
            APP14 => {
                if let Some(transform) = parse_adobe(payload, marker_at)? {
                    adobe_transform = Some(transform);
                }
            }
            SOS => {
                let Some(frame) = &frame else {
                    return Err(malformed(marker_at, "SOS (scan) before SOF (frame header)"));
                };
                check_scan_header(frame, payload, marker_at)?;
                let data_start = pos;
                pos = skip_entropy_data(bytes, pos)?;
                scan_bytes += pos - data_start;
                scans += 1;
            }
            // DHT, DQT, DRI, DNL, APPn, COM, and the rest: skipped by their length.
            _ => {}
        }
    }
}

/// Builds the result once `EOI` is reached.
fn finish(
    frame: Option<Frame>,
    adobe_transform: Option<u8>,
    (scans, scan_bytes): (usize, usize),
    eoi_at: usize,
) -> Result<Walked, ProbeError> {
    let Some(frame) = frame else {
        return Err(malformed(eoi_at, "EOI without a SOF (frame header)"));
    };
    if scans == 0 {
        return Err(malformed(eoi_at, "EOI before any SOS (scan)"));
    }
    let color = match (frame.components, adobe_transform) {
        (1, _) => ColorModel::Gray,
        (3, _) => ColorModel::Rgb,
        // Adobe transform 2 is YCCK; 0 or no APP14 at all means plain CMYK (what libjpeg assumes).
        (4, Some(2)) => ColorModel::Ycck,
        (4, _) => ColorModel::Cmyk,
        _ => ColorModel::Other, // rejected by parse_frame
    };
    let info = ImageInfo {
        format: ImageFormat::Jpeg,
        width: u32::from(frame.width),
        height: u32::from(frame.height),
        color,
        progressive: frame.marker == SOF2,
    };
    Ok(Walked {
        info,
        mcu_size: frame.mcu_size(),
        scan_bytes,
    })
}

/// Reads a marker at `*pos`: `0xFF`, any number of `0xFF` fill bytes, then the marker code.
/// Leaves `*pos` just past the code.
fn read_marker(bytes: &[u8], pos: &mut usize) -> Result<u8, ProbeError> {
    let start = *pos;
    match bytes.get(start) {
        None => return Err(truncated(bytes, JpegPart::BeforeMarker)),
        Some(0xFF) => {}
        Some(&other) => {
            return Err(malformed(
                start,
                format!("expected a marker (0xFF), found byte 0x{other:02X}"),
            ))
        }
    }
    let mut i = start + 1;
    loop {
        match bytes.get(i) {
            None => return Err(truncated(bytes, JpegPart::BeforeMarker)),
            Some(0xFF) => i += 1,
            Some(0x00) => return Err(malformed(start, "stuffed 0xFF00 outside scan data")),
            Some(&code) => {
                *pos = i + 1;
                return Ok(code);
            }
        }
    }
}

/// Reads the length of the segment starting at `*pos` and returns its payload (the bytes after
/// the two length bytes), leaving `*pos` just past the segment.
fn read_segment<'a>(bytes: &'a [u8], pos: &mut usize, marker: u8) -> Result<&'a [u8], ProbeError> {
    let start = *pos;
    let Some(&[hi, lo]) = bytes.get(start..start + 2) else {
        return Err(truncated(bytes, JpegPart::Segment { marker, length: 0 }));
    };
    let length = u16::from_be_bytes([hi, lo]);
    if length < 2 {
        return Err(malformed(
            start,
            format!(
                "{} segment length {length} is less than 2",
                MarkerName(marker)
            ),
        ));
    }
    let end = start + usize::from(length);
    let Some(payload) = bytes.get(start + 2..end) else {
        return Err(truncated(bytes, JpegPart::Segment { marker, length }));
    };
    *pos = end;
    Ok(payload)
}

/// Parses a frame header (any `SOFn`); rejects the coding processes zune-jpeg cannot decode.
fn parse_frame(marker: u8, payload: &[u8], at: usize) -> Result<Frame, ProbeError> {
    let name = MarkerName(marker);
    let unsupported = |detail: String| ProbeError::Unsupported {
        format: ImageFormat::Jpeg,
        detail,
    };
    match marker {
        0xC0..=0xC2 => {} // baseline, extended sequential, progressive: all Huffman-coded
        0xC3 => return Err(unsupported(format!("lossless JPEG ({name})"))),
        0xC5..=0xC7 => return Err(unsupported(format!("hierarchical JPEG ({name})"))),
        _ => return Err(unsupported(format!("arithmetic-coded JPEG ({name})"))),
    }

    let [precision, h_hi, h_lo, w_hi, w_lo, components, table @ ..] = payload else {
        return Err(malformed(
            at,
            format!("{name} segment too short ({} bytes)", payload.len()),
        ));
    };
    if table.len() != 3 * usize::from(*components) {
        return Err(malformed(
            at,
            format!(
                "{name} segment has {} bytes of component specs for {components} components",
                table.len()
            ),
        ));
    }
    let height = u16::from_be_bytes([*h_hi, *h_lo]);
    let width = u16::from_be_bytes([*w_hi, *w_lo]);
    if *precision != 8 {
        return Err(unsupported(format!(
            "{precision}-bit samples (only 8-bit JPEG is supported)"
        )));
    }
    if width == 0 {
        return Err(malformed(at, format!("{name} declares a width of 0")));
    }
    if height == 0 {
        return Err(unsupported(
            "height 0 in the frame header (height defined later by a DNL marker)".to_owned(),
        ));
    }
    match components {
        0 => return Err(malformed(at, format!("{name} declares 0 components"))),
        1 | 3 | 4 => {}
        n => return Err(unsupported(format!("{n} colour components"))),
    }
    if u32::from(width) > MAX_DIMENSION || u32::from(height) > MAX_DIMENSION {
        return Err(unsupported(format!(
            "{width}x{height} exceeds the limit of {MAX_DIMENSION} pixels per side"
        )));
    }

    let mut ids = [0_u8; 4];
    let mut max_sampling = (1, 1);
    for (i, spec) in table.chunks_exact(3).enumerate() {
        let (id, sampling, quant_table) = (spec[0], spec[1], spec[2]);
        let (h, v) = (sampling >> 4, sampling & 0x0F);
        if !(1..=4).contains(&h) || !(1..=4).contains(&v) {
            return Err(malformed(
                at,
                format!("component {id} has invalid sampling factors {h}x{v}"),
            ));
        }
        if quant_table > 3 {
            return Err(malformed(
                at,
                format!("component {id} uses quantisation table {quant_table} (max 3)"),
            ));
        }
        if ids[..i].contains(&id) {
            return Err(malformed(at, format!("component id {id} appears twice")));
        }
        ids[i] = id;
        max_sampling = (max_sampling.0.max(h), max_sampling.1.max(v));
    }
    Ok(Frame {
        marker,
        width,
        height,
        ids,
        components: *components,
        max_sampling,
    })
}

/// Returns the colour transform of an Adobe `APP14` segment, or `None` for other `APP14` data.
fn parse_adobe(payload: &[u8], at: usize) -> Result<Option<u8>, ProbeError> {
    // "Adobe", version (2 bytes), flags0 (2), flags1 (2), transform (1).
    match payload {
        [b'A', b'd', b'o', b'b', b'e', _, _, _, _, _, _, transform, ..] => match transform {
            0..=2 => Ok(Some(*transform)),
            other => Err(ProbeError::Unsupported {
                format: ImageFormat::Jpeg,
                detail: format!("Adobe APP14 colour transform {other} at byte {at}"),
            }),
        },
        _ => Ok(None),
    }
}

/// Checks a scan header (`SOS` payload) against the frame.
fn check_scan_header(frame: &Frame, payload: &[u8], at: usize) -> Result<(), ProbeError> {
    let Some((&count, rest)) = payload.split_first() else {
        return Err(malformed(at, "empty SOS segment"));
    };
    if !(1..=4).contains(&count) {
        return Err(malformed(at, format!("scan with {count} components")));
    }
    let selectors_len = 2 * usize::from(count);
    if rest.len() != selectors_len + 3 {
        return Err(malformed(
            at,
            format!("SOS segment length does not match its {count} components"),
        ));
    }
    let frame_ids = &frame.ids[..usize::from(frame.components)];
    for selector in rest[..selectors_len].chunks_exact(2) {
        if !frame_ids.contains(&selector[0]) {
            return Err(malformed(
                at,
                format!(
                    "scan refers to component id {}, not in the frame",
                    selector[0]
                ),
            ));
        }
    }
    let (start, end) = (rest[selectors_len], rest[selectors_len + 1]);
    if frame.marker == SOF2 && (end > 63 || start > end) {
        return Err(malformed(
            at,
            format!("progressive scan with invalid spectral range {start}..={end}"),
        ));
    }
    Ok(())
}

/// Skips entropy-coded data from `pos` and returns the offset of the next marker: of its last
/// `0xFF` if fill bytes precede it. `FF 00` (a stuffed 0xFF) and `RST0`-`RST7` are data.
fn skip_entropy_data(bytes: &[u8], mut pos: usize) -> Result<usize, ProbeError> {
    loop {
        let rest = bytes.get(pos..).unwrap_or_default();
        let Some(ff) = find_ff(rest).map(|i| pos + i) else {
            return Err(truncated(bytes, JpegPart::ScanData));
        };
        match bytes.get(ff + 1) {
            None => return Err(truncated(bytes, JpegPart::ScanData)),
            Some(0x00 | 0xD0..=0xD7) => pos = ff + 2,
            // A fill byte: the byte after it decides (`FF FF 00` is a stuffed 0xFF).
            Some(0xFF) => pos = ff + 1,
            Some(_) => return Ok(ff),
        }
    }
}

/// Index of the first `0xFF` in `data`, testing eight bytes per step.
fn find_ff(data: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let mut chunks = data.chunks_exact(8);
    let mut base = 0;
    for chunk in &mut chunks {
        let word = u64::from_le_bytes(chunk.try_into().expect("chunks_exact yields 8 bytes"));
        // A byte of `!word` is zero exactly where `word` has 0xFF; the classic zero-byte test
        // flags the first such byte correctly (later flags may be spurious, we take the lowest).
        let inverted = !word;
        let zero_bytes = inverted.wrapping_sub(ONES) & !inverted & HIGHS;
        if zero_bytes != 0 {
            return Some(base + (zero_bytes.trailing_zeros() / 8) as usize);
        }
        base += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|&b| b == 0xFF)
        .map(|i| base + i)
}

fn malformed(offset: usize, detail: impl Into<String>) -> ProbeError {
    ProbeError::Malformed {
        offset,
        detail: detail.into(),
    }
}

fn truncated(bytes: &[u8], at: JpegPart) -> ProbeError {
    ProbeError::Truncated {
        at,
        offset: bytes.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn find_ff_finds_the_first_ff_at_every_position() {
        for len in 0..40 {
            for at in 0..len {
                let mut data = vec![0xFE_u8; len];
                data[at] = 0xFF;
                if at + 3 < len {
                    data[at + 3] = 0xFF;
                }
                assert_eq!(find_ff(&data), Some(at), "len {len}, at {at}");
            }
            assert_eq!(find_ff(&vec![0x7F; len]), None);
        }
    }

    #[test]
    fn entropy_skip_treats_stuffing_restarts_and_fill_as_data() {
        let data = b"\x12\xFF\x00\x34\xFF\xD3\x56\xFF\xFF\x00\x78\xFF\xFF\xD9";
        assert_eq!(skip_entropy_data(data, 0), Ok(12));
        assert_eq!(
            skip_entropy_data(&data[..11], 0),
            Err(ProbeError::Truncated {
                at: JpegPart::ScanData,
                offset: 11
            })
        );
    }

    /// Real images, from the flattest (a solid colour, progressive, optimised Huffman tables, at
    /// quality 1) to synthetic photographs and the golden tests' sources, hold many times the
    /// scan data [`check_scan_bytes`] asks for, and at least the floor it is derived from (one
    /// byte per 8 MCUs): the bound refuses no real image.
    #[test]
    fn real_images_hold_many_times_the_scan_data_the_bound_asks_for() {
        use jpeg_encoder::{ColorType, Encoder, SamplingFactor};
        use shardfeed_synth::{render_image, Split};

        fn encode(
            pixels: &[u8],
            (w, h): (u32, u32),
            color: ColorType,
            quality: u8,
            configure: impl FnOnce(&mut Encoder<&mut Vec<u8>>),
        ) -> Vec<u8> {
            let mut out = Vec::new();
            let mut encoder = Encoder::new(&mut out, quality);
            configure(&mut encoder);
            encoder
                .encode(pixels, w as u16, h as u16, color)
                .expect("encodes");
            out
        }
        /// Every layout ImageNet (and synth) holds, at a high and a very low quality.
        fn variants(rgb: &[u8], size: (u32, u32)) -> Vec<Vec<u8>> {
            let gray: Vec<u8> = rgb.chunks_exact(3).map(|p| p[1]).collect();
            let cmyk: Vec<u8> = rgb
                .chunks_exact(3)
                .flat_map(|p| [p[0], p[1], p[2], 0])
                .collect();
            let mut out = Vec::new();
            for quality in [90, 1] {
                for sampling in [SamplingFactor::F_2_2, SamplingFactor::F_1_1] {
                    for (progressive, optimized) in [(false, false), (true, true), (false, true)] {
                        out.push(encode(rgb, size, ColorType::Rgb, quality, |e| {
                            e.set_sampling_factor(sampling);
                            e.set_progressive(progressive);
                            e.set_optimized_huffman_tables(optimized);
                        }));
                    }
                }
                out.push(encode(&gray, size, ColorType::Luma, quality, |e| {
                    e.set_progressive(true);
                    e.set_optimized_huffman_tables(true);
                }));
                out.push(encode(&cmyk, size, ColorType::Cmyk, quality, |_| {}));
            }
            out
        }

        let mut images: Vec<(String, Vec<u8>)> = Vec::new();
        for ((w, h), colours) in [
            ((2048, 1536), &[[128, 128, 128]][..]),
            (
                (500, 375),
                &[[128, 128, 128], [0, 0, 0], [255, 255, 255], [200, 30, 90]][..],
            ),
        ] {
            for colour in colours {
                let rgb = colour.repeat((w * h) as usize);
                for (i, jpeg) in variants(&rgb, (w, h)).into_iter().enumerate() {
                    images.push((format!("flat {colour:?} {w}x{h} variant {i}"), jpeg));
                }
            }
        }
        for k in 1..=8 {
            let image = render_image(k % 10, 10, 3, Split::Train, k);
            let size = (image.width, image.height);
            for (i, jpeg) in variants(&image.data, size).into_iter().enumerate() {
                images.push((format!("synth {k} {size:?} variant {i}"), jpeg));
            }
        }
        let golden = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
        for dir in ["sources", "jpeg"] {
            for entry in std::fs::read_dir(golden.join(dir)).expect("golden files") {
                let path = entry.expect("entry").path();
                let bytes = std::fs::read(&path).expect("readable");
                let name = path.display().to_string();
                if path.extension().is_some_and(|e| e == "jpg") {
                    images.push((name, bytes));
                } else if path.extension().is_some_and(|e| e == "png") && dir == "sources" {
                    let rgb = image::load_from_memory(&bytes).expect("PNG").into_rgb8();
                    let size = rgb.dimensions();
                    for (i, jpeg) in variants(rgb.as_raw(), size).into_iter().enumerate() {
                        images.push((format!("{name} variant {i}"), jpeg));
                    }
                }
            }
        }

        let no_limit = DecodeLimits {
            max_pixels: u64::MAX,
        };
        let mut tightest = (f64::INFINITY, String::new());
        for (name, jpeg) in &images {
            assert!(walk(jpeg, &DecodeLimits::default()).is_ok(), "{name}");
            let walked = walk_to_eoi(jpeg, &no_limit).expect("walks");
            let (w, h) = (walked.info.width, walked.info.height);
            let (mcu_w, mcu_h) = walked.mcu_size;
            let mcus = u64::from(w.div_ceil(mcu_w)) * u64::from(h.div_ceil(mcu_h));
            let bound = crate::limits::min_scan_bytes(w, h, mcu_w, mcu_h);
            let bytes = walked.scan_bytes as u64;
            assert!(8 * bytes >= mcus, "{name}: {bytes} bytes for {mcus} MCUs");
            if bound > 0 {
                let ratio = bytes as f64 / bound as f64;
                if ratio < tightest.0 {
                    tightest = (ratio, name.clone());
                }
            }
        }
        println!(
            "{} images; tightest: {:.1}x the bound ({})",
            images.len(),
            tightest.0,
            tightest.1
        );
        assert!(tightest.0 >= 16.0, "{tightest:?}");
    }

    proptest! {
        #[test]
        fn find_ff_matches_a_naive_search(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            prop_assert_eq!(find_ff(&data), data.iter().position(|&b| b == 0xFF));
        }
    }
}
