//! `plan::random_resized_crop` draws its boxes from the same distribution as torchvision's
//! `RandomResizedCrop.get_params`.
//!
//! `tests/golden/make_golden.py` sampled 20,000 boxes per image shape with torch's generator
//! (fixed seed) and committed their binned distributions (`tests/golden/crop_distribution.json`):
//! area fraction and log aspect ratio in 200 bins, left and top column by column, and how many
//! boxes came from the fallback. Here the same number of boxes come from
//! [`random_resized_crop_traced`] with the [`SampleRng`] of samples 0..20,000 of a fixed seed, and
//! a two-sample Kolmogorov–Smirnov test compares each measure; a two-proportion z-test compares
//! the fallback rates. Both sides are seeded, so the test is deterministic and cannot flake; the
//! significance level (1e-4 per comparison) only sets how far apart the distributions may be.
//! [`mutated_samplers_are_rejected`] shows the test has the power to catch a changed algorithm.

use std::path::Path;

use serde::Deserialize;
use shardfeed_augment::plan::{random_resized_crop_traced, RandomCrop};
use shardfeed_augment::{CropBox, SampleRng};

/// Significance level of each comparison.
const ALPHA: f64 = 1e-4;
/// |z| above this rejects equal fallback rates (two-sided, about 1e-4).
const MAX_FALLBACK_Z: f64 = 3.9;
/// The seed of our side's samples.
const SEED: u64 = 2026;

#[derive(Debug, Deserialize)]
struct Distributions {
    bins: usize,
    log_ratio_margin: f64,
    cases: Vec<Case>,
}

#[derive(Debug, Clone, Deserialize)]
struct Case {
    name: String,
    width: u32,
    height: u32,
    scale: (f64, f64),
    ratio: (f64, f64),
    samples: u64,
    fallbacks: u64,
    area_fraction_hist: Vec<u64>,
    log_ratio_hist: Vec<u64>,
    left_hist: Vec<u64>,
    top_hist: Vec<u64>,
}

/// The four binned measures and the fallback count of a set of crops.
#[derive(Debug, Clone, PartialEq)]
struct Histograms {
    samples: u64,
    fallbacks: u64,
    area_fraction: Vec<u64>,
    log_ratio: Vec<u64>,
    left: Vec<u64>,
    top: Vec<u64>,
}

impl Histograms {
    fn of_torch(case: &Case) -> Self {
        Histograms {
            samples: case.samples,
            fallbacks: case.fallbacks,
            area_fraction: case.area_fraction_hist.clone(),
            log_ratio: case.log_ratio_hist.clone(),
            left: case.left_hist.clone(),
            top: case.top_hist.clone(),
        }
    }

    /// Bins crops exactly as make_golden.py's `measure_bins` does.
    fn of_crops(
        spec: &Distributions,
        case: &Case,
        crops: impl Iterator<Item = RandomCrop>,
    ) -> Self {
        let bins = spec.bins;
        let mut h = Histograms {
            samples: 0,
            fallbacks: 0,
            area_fraction: vec![0; bins],
            log_ratio: vec![0; bins],
            left: vec![0; case.width as usize],
            top: vec![0; case.height as usize],
        };
        let lo = case.ratio.0.ln() - spec.log_ratio_margin;
        let hi = case.ratio.1.ln() + spec.log_ratio_margin;
        for RandomCrop { crop, try_number } in crops {
            let CropBox {
                left,
                top,
                width: w,
                height: h_,
            } = crop;
            let area = f64::from(w * h_) / (f64::from(case.width) * f64::from(case.height));
            let area_bin = ((area * bins as f64) as usize).min(bins - 1);
            let position = ((f64::from(w) / f64::from(h_)).ln() - lo) / (hi - lo);
            let ratio_bin = ((position * bins as f64).floor().max(0.0) as usize).min(bins - 1);
            h.area_fraction[area_bin] += 1;
            h.log_ratio[ratio_bin] += 1;
            h.left[left as usize] += 1;
            h.top[top as usize] += 1;
            h.samples += 1;
            h.fallbacks += u64::from(try_number.is_none());
        }
        h
    }
}

/// The two-sample Kolmogorov–Smirnov statistic of two histograms over the same bins: the
/// largest gap between their empirical CDFs at a bin edge. (Binning can only lower it, so the
/// test is conservative.)
fn ks_statistic(a: &[u64], b: &[u64]) -> f64 {
    assert_eq!(a.len(), b.len());
    let (na, nb) = (a.iter().sum::<u64>() as f64, b.iter().sum::<u64>() as f64);
    let (mut ca, mut cb, mut d) = (0_u64, 0_u64, 0.0_f64);
    for (x, y) in a.iter().zip(b) {
        ca += x;
        cb += y;
        d = d.max((ca as f64 / na - cb as f64 / nb).abs());
    }
    d
}

/// The KS statistic above which two samples of sizes `n` and `m` are judged to differ at
/// level [`ALPHA`] (the asymptotic critical value).
fn ks_critical(n: u64, m: u64) -> f64 {
    let c = (-(ALPHA / 2.0).ln() / 2.0).sqrt();
    let (n, m) = (n as f64, m as f64);
    c * ((n + m) / (n * m)).sqrt()
}

/// The z statistic of two proportions (0 when both are 0 or 1 alike).
fn two_proportion_z(x1: u64, n1: u64, x2: u64, n2: u64) -> f64 {
    let (p1, p2) = (x1 as f64 / n1 as f64, x2 as f64 / n2 as f64);
    let p = (x1 + x2) as f64 / (n1 + n2) as f64;
    let se = (p * (1.0 - p) * (1.0 / n1 as f64 + 1.0 / n2 as f64)).sqrt();
    if se == 0.0 {
        return if p1 == p2 { 0.0 } else { f64::INFINITY };
    }
    (p1 - p2) / se
}

/// What differs between two sets of histograms, one line per rejected measure.
fn rejections(name: &str, torch: &Histograms, ours: &Histograms) -> Vec<String> {
    let critical = ks_critical(torch.samples, ours.samples);
    let mut out = Vec::new();
    for (measure, a, b) in [
        ("area fraction", &torch.area_fraction, &ours.area_fraction),
        ("log aspect ratio", &torch.log_ratio, &ours.log_ratio),
        ("left", &torch.left, &ours.left),
        ("top", &torch.top, &ours.top),
    ] {
        let d = ks_statistic(a, b);
        println!("{name:30} {measure:17} D = {d:.4} (critical {critical:.4})");
        if d > critical {
            out.push(format!("{name}: {measure}: KS D = {d:.4} > {critical:.4}"));
        }
    }
    let z = two_proportion_z(torch.fallbacks, torch.samples, ours.fallbacks, ours.samples);
    println!(
        "{name:30} fallback rate     torch {:.4}, ours {:.4}, z = {z:.2}",
        torch.fallbacks as f64 / torch.samples as f64,
        ours.fallbacks as f64 / ours.samples as f64
    );
    if z.abs() > MAX_FALLBACK_Z {
        out.push(format!("{name}: fallback rate: z = {z:.2}"));
    }
    out
}

fn distributions() -> Distributions {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/crop_distribution.json");
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&bytes).expect("crop_distribution.json parses")
}

/// Our crops for a case: sample `i` uses the generator of (SEED, epoch 0, index i), as the
/// pipeline does.
fn our_crops(case: &Case) -> impl Iterator<Item = RandomCrop> + '_ {
    (0..case.samples).map(move |index| {
        let mut rng = SampleRng::for_sample(SEED, 0, index);
        random_resized_crop_traced(&mut rng, case.width, case.height, case.scale, case.ratio)
    })
}

#[test]
fn crops_follow_torchvisions_distribution() {
    let spec = distributions();
    assert!(
        spec.cases.len() >= 5,
        "crop_distribution.json lists the shapes"
    );
    let mut failures = Vec::new();
    let mut fallback_seen = false;
    for case in &spec.cases {
        let torch = Histograms::of_torch(case);
        assert_eq!(torch.area_fraction.iter().sum::<u64>(), case.samples);
        let ours = Histograms::of_crops(&spec, case, our_crops(case));
        fallback_seen |= torch.fallbacks > case.samples / 2;
        failures.extend(rejections(&case.name, &torch, &ours));
    }
    assert!(fallback_seen, "a case exercises the fallback");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A RandomResizedCrop with one rule changed, to show the test above would notice.
fn mutant_crop(
    rng: &mut SampleRng,
    width: u32,
    height: u32,
    scale: (f64, f64),
    ratio: (f64, f64),
    mutation: Mutation,
) -> RandomCrop {
    let area = f64::from(width) * f64::from(height);
    let tries = if mutation == Mutation::FiveTries {
        5
    } else {
        10
    };
    for try_number in 1..=tries {
        let target_area = area * rng.uniform(scale.0, scale.1);
        let aspect_ratio = if mutation == Mutation::UniformRatio {
            rng.uniform(ratio.0, ratio.1)
        } else {
            rng.uniform(ratio.0.ln(), ratio.1.ln()).exp()
        };
        let round = |x: f64| {
            if mutation == Mutation::Truncate {
                x.trunc() as i64
            } else {
                x.round_ties_even() as i64
            }
        };
        let w = round((target_area * aspect_ratio).sqrt());
        let h = round((target_area / aspect_ratio).sqrt());
        if 0 < w && w <= i64::from(width) && 0 < h && h <= i64::from(height) {
            let (w, h) = (w as u32, h as u32);
            let top = rng.below(u64::from(height - h) + 1) as u32;
            let left = if mutation == Mutation::LeftAligned {
                0
            } else {
                rng.below(u64::from(width - w) + 1) as u32
            };
            return RandomCrop {
                crop: CropBox {
                    left,
                    top,
                    width: w,
                    height: h,
                },
                try_number: Some(try_number as u8),
            };
        }
    }
    let in_ratio = f64::from(width) / f64::from(height);
    let (w, h) = if mutation == Mutation::WholeImageFallback {
        (width, height)
    } else if in_ratio < ratio.0 {
        (width, (f64::from(width) / ratio.0).round_ties_even() as u32)
    } else if in_ratio > ratio.1 {
        (
            (f64::from(height) * ratio.1).round_ties_even() as u32,
            height,
        )
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mutation {
    /// Aspect ratio uniform instead of log-uniform.
    UniformRatio,
    /// `int(x)` instead of `int(round(x))`.
    Truncate,
    /// Five tries before the fallback instead of ten.
    FiveTries,
    /// Crops always at the left edge.
    LeftAligned,
    /// The fallback takes the whole image, whatever its aspect ratio.
    WholeImageFallback,
}

#[test]
fn mutated_samplers_are_rejected() {
    let spec = distributions();
    for mutation in [
        Mutation::UniformRatio,
        Mutation::Truncate,
        Mutation::FiveTries,
        Mutation::LeftAligned,
        Mutation::WholeImageFallback,
    ] {
        let mut rejected = Vec::new();
        for case in &spec.cases {
            let torch = Histograms::of_torch(case);
            let crops = (0..case.samples).map(|index| {
                let mut rng = SampleRng::for_sample(SEED, 0, index);
                mutant_crop(
                    &mut rng,
                    case.width,
                    case.height,
                    case.scale,
                    case.ratio,
                    mutation,
                )
            });
            let ours = Histograms::of_crops(&spec, case, crops);
            rejected.extend(rejections(&case.name, &torch, &ours));
        }
        println!("{mutation:?}: {rejected:?}");
        assert!(!rejected.is_empty(), "{mutation:?} was not detected");
    }
}
