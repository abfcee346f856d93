//! Golden tests against torchvision 0.26 + Pillow 13: the resize path of the [`Augmenter`] and
//! the JPEG decoder, checked against outputs that `tests/golden/make_golden.py` made once and
//! committed (`tests/golden/cases.json` lists them).
//!
//! - Resize: PNG sources (so both sides start from the same pixels), torchvision's
//!   `F.resized_crop(..., BILINEAR, antialias=True)` (+ `hflip`) for given boxes and
//!   `Resize(r)` + `CenterCrop(s)`, on PIL images as its `ImageFolder` pipeline runs them.
//!   Tolerance: [`RESIZE_TOLERANCE`].
//! - JPEG decode: zune-jpeg against Pillow's libjpeg-turbo on small JPEGs Pillow wrote (4:2:0,
//!   4:2:2, 4:4:4, progressive, restart markers, grayscale, CMYK). Tolerance:
//!   [`DECODE_TOLERANCE`].
//!
//! Run with `--nocapture` to see the measured differences of every case.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use shardfeed_augment::{
    decode_rgb, AugmentPlan, Augmenter, CropBox, JpegBackend, RegionDecoder, RgbImage, SampleKey,
    Transform, ValTransform,
};

/// How far two images may be apart, over all channel values of all pixels: the largest absolute
/// difference, the share that differ at all, and the share that differ by more than 1.
#[derive(Debug, Clone, Copy)]
struct Tolerance {
    max_abs_diff: u8,
    share_differing: f64,
    share_off_by_more_than_1: f64,
}

/// fast_image_resize vs Pillow's antialiased bilinear filter. Measured on the 17 cases of
/// cases.json: every value within 1 level, 0 to 22% of values off by 1 (the crops that map
/// pixel centres onto pixel centres agree almost exactly). Both use the same triangle filter,
/// support and normalised weights; they round differently: fast_image_resize keeps 16-bit
/// fixed-point weights (Pillow 22-bit) and runs the vertical pass first for u8 images (Pillow
/// the horizontal one), so an intermediate value can land one level apart. torchvision's own
/// tensor kernel is as far from its PIL one (`torchvision_tensor_vs_pil` in cases.json).
const RESIZE_TOLERANCE: Tolerance = Tolerance {
    max_abs_diff: 1,
    share_differing: 0.25,
    share_off_by_more_than_1: 0.0,
};

/// zune-jpeg vs libjpeg-turbo (Pillow's decoder: islow IDCT, fancy upsampling). Measured on the
/// 7 JPEGs of cases.json: grayscale and CMYK within 1 level; 4:4:4 within 2; 4:2:0 and 4:2:2
/// within 3, with 7.4% (4:2:0) and 4.0% (4:2:2) of values off by more than 1: the chroma
/// upsampling and the IDCT's rounding differ. Progressive and restart-marker files decode
/// exactly like their baseline counterpart.
const DECODE_TOLERANCE: Tolerance = Tolerance {
    max_abs_diff: 3,
    share_differing: 0.25,
    share_off_by_more_than_1: 0.08,
};

#[derive(Debug, Deserialize)]
struct Cases {
    resize_cases: Vec<ResizeCase>,
    jpeg_cases: Vec<JpegCase>,
}

#[derive(Debug, Deserialize)]
struct ResizeCase {
    name: String,
    source: String,
    op: String,
    #[serde(rename = "box")]
    crop: Option<GoldenBox>,
    size: u32,
    flip: Option<bool>,
    resize: Option<u32>,
    expected: String,
}

#[derive(Debug, Clone, Copy, Deserialize)]
struct GoldenBox {
    left: u32,
    top: u32,
    width: u32,
    height: u32,
}

#[derive(Debug, Deserialize)]
struct JpegCase {
    name: String,
    jpeg: String,
    expected: String,
}

/// Measured difference between two images of the same size.
#[derive(Debug, Clone, Copy)]
struct Difference {
    max_abs_diff: u8,
    share_differing: f64,
    share_off_by_more_than_1: f64,
}

impl Difference {
    fn between(ours: &[u8], theirs: &[u8]) -> Self {
        assert_eq!(ours.len(), theirs.len(), "images differ in size");
        let (mut max, mut differing, mut over_one) = (0_u8, 0_usize, 0_usize);
        for (&a, &b) in ours.iter().zip(theirs) {
            let d = a.abs_diff(b);
            max = max.max(d);
            differing += usize::from(d > 0);
            over_one += usize::from(d > 1);
        }
        let n = ours.len().max(1) as f64;
        Difference {
            max_abs_diff: max,
            share_differing: differing as f64 / n,
            share_off_by_more_than_1: over_one as f64 / n,
        }
    }

    fn within(&self, tolerance: Tolerance) -> bool {
        self.max_abs_diff <= tolerance.max_abs_diff
            && self.share_differing <= tolerance.share_differing
            && self.share_off_by_more_than_1 <= tolerance.share_off_by_more_than_1
    }
}

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn read(relative: &str) -> Vec<u8> {
    let path = golden_dir().join(relative);
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn cases() -> Cases {
    serde_json::from_slice(&read("cases.json")).expect("cases.json parses")
}

fn png(relative: &str) -> RgbImage {
    decode_rgb(&read(relative)).unwrap_or_else(|e| panic!("decoding {relative}: {e}"))
}

/// Runs one resize case through the Augmenter: train cases with torchvision's box as a plan,
/// val cases through `Transform::Val` (plan included).
fn augment(augmenter: &mut Augmenter, case: &ResizeCase) -> Vec<u8> {
    let source = read(&case.source);
    let mut out = vec![0; case.size as usize * case.size as usize * 3];
    match case.op.as_str() {
        "train" => {
            let b = case.crop.expect("train case has a box");
            let crop = CropBox {
                left: b.left,
                top: b.top,
                width: b.width,
                height: b.height,
            };
            let flip = case.flip.expect("train case says whether to flip");
            let applied = augmenter
                .apply_plan(&source, &AugmentPlan::crop(crop, case.size, flip), &mut out)
                .unwrap_or_else(|e| panic!("{}: {e}", case.name));
            assert_eq!(
                (applied.crop, applied.flipped),
                (crop, flip),
                "{}",
                case.name
            );
        }
        "val" => {
            let transform = Transform::Val(ValTransform {
                size: case.size,
                resize: case.resize.expect("val case has a resize"),
            });
            let key = SampleKey {
                seed: 0,
                epoch: 0,
                index: 0,
            };
            augmenter
                .apply(&source, &transform, key, &mut out)
                .unwrap_or_else(|e| panic!("{}: {e}", case.name));
        }
        other => panic!("{}: unknown op {other}", case.name),
    }
    out
}

#[test]
fn resize_matches_torchvision_on_pil_images() {
    let cases = cases();
    assert!(cases.resize_cases.len() >= 10, "cases.json lists the cases");
    // One augmenter for all cases, as a worker runs: buffers reused across sizes.
    let mut augmenter = Augmenter::new();
    let mut failures = Vec::new();
    for case in &cases.resize_cases {
        let expected = png(&case.expected);
        assert_eq!((expected.width, expected.height), (case.size, case.size));
        let ours = augment(&mut augmenter, case);
        let diff = Difference::between(&ours, &expected.pixels);
        println!(
            "{:40} max {:3}  differing {:.4}  >1 {:.5}",
            case.name, diff.max_abs_diff, diff.share_differing, diff.share_off_by_more_than_1
        );
        if !diff.within(RESIZE_TOLERANCE) {
            failures.push(format!("{}: {diff:?}", case.name));
        }
    }
    assert!(
        failures.is_empty(),
        "outside {RESIZE_TOLERANCE:?}:\n{}",
        failures.join("\n")
    );
}

#[test]
fn jpeg_decode_matches_libjpeg_turbo() {
    let cases = cases();
    assert!(cases.jpeg_cases.len() >= 5, "cases.json lists the JPEGs");
    let mut failures = Vec::new();
    for case in &cases.jpeg_cases {
        let ours = decode_rgb(&read(&case.jpeg)).unwrap_or_else(|e| panic!("{}: {e}", case.name));
        let expected = png(&case.expected);
        assert_eq!(
            (ours.width, ours.height),
            (expected.width, expected.height),
            "{}",
            case.name
        );
        let diff = Difference::between(&ours.pixels, &expected.pixels);
        println!(
            "{:24} max {:3}  differing {:.4}  >1 {:.5}",
            case.name, diff.max_abs_diff, diff.share_differing, diff.share_off_by_more_than_1
        );
        if !diff.within(DECODE_TOLERANCE) {
            failures.push(format!("{}: {diff:?}", case.name));
        }
    }
    assert!(
        failures.is_empty(),
        "outside {DECODE_TOLERANCE:?}:\n{}",
        failures.join("\n")
    );
}

/// The default training-time decoder is libjpeg-turbo, the library Pillow decodes with: on the
/// YCbCr and grayscale JPEGs it gives exactly Pillow's pixels (same IDCT, same upsampling).
/// CMYK goes through zune-jpeg, within [`DECODE_TOLERANCE`].
#[test]
fn turbo_region_decode_matches_pillow() {
    let cases = cases();
    let mut decoder = RegionDecoder::with_backend(JpegBackend::Turbo);
    for case in &cases.jpeg_cases {
        let bytes = read(&case.jpeg);
        let expected = png(&case.expected);
        let ours = decoder
            .decode(&bytes, None)
            .unwrap_or_else(|e| panic!("{}: {e}", case.name));
        assert_eq!(
            (ours.width, ours.height),
            (expected.width, expected.height),
            "{}",
            case.name
        );
        let diff = Difference::between(ours.pixels, &expected.pixels);
        println!(
            "turbo {:24} max {:3}  differing {:.4}",
            case.name, diff.max_abs_diff, diff.share_differing
        );
        if case.name.contains("cmyk") {
            assert!(diff.within(DECODE_TOLERANCE), "{}: {diff:?}", case.name);
        } else {
            assert_eq!(diff.max_abs_diff, 0, "{}: {diff:?}", case.name);
        }
    }
}

#[test]
fn the_comparison_catches_a_wrong_filter() {
    // The golden check must be able to fail: a nearest-neighbour-like shortcut (taking the
    // crop's top-left pixel block without filtering) is far outside the tolerance.
    let cases = cases();
    let case = cases
        .resize_cases
        .iter()
        .find(|c| c.op == "train" && c.size == 224)
        .expect("a 224 train case");
    let expected = png(&case.expected);
    let source = png(&case.source);
    let b = case.crop.expect("box");
    let side = case.size as usize;
    let mut nearest = vec![0; side * side * 3];
    for y in 0..side {
        for x in 0..side {
            let sx = b.left as usize + x * b.width as usize / side;
            let sy = b.top as usize + y * b.height as usize / side;
            let from = (sy * source.width as usize + sx) * 3;
            nearest[(y * side + x) * 3..][..3].copy_from_slice(&source.pixels[from..from + 3]);
        }
    }
    let diff = Difference::between(&nearest, &expected.pixels);
    assert!(!diff.within(RESIZE_TOLERANCE), "{diff:?}");
}

#[test]
fn progressive_and_restart_jpegs_decode_like_their_baseline() {
    // Same quantised coefficients, stored differently: the pixels must be identical.
    let baseline = decode_rgb(&read("jpeg/rgb-420.jpg")).expect("decodes");
    for variant in ["jpeg/rgb-420-progressive.jpg", "jpeg/rgb-420-restart.jpg"] {
        let decoded = decode_rgb(&read(variant)).expect("decodes");
        assert!(decoded == baseline, "{variant} differs from its baseline");
    }
}
