//! Deterministic, ImageNet-shaped folders of synthetic JPEGs, so that every
//! shardfeed demo and test runs without ImageNet.
//!
//! [`generate`] writes `OUT/train/<synset>/<synset>_<k>.JPEG` and
//! `OUT/val/<synset>/<synset>_<k>.JPEG` (`k` from 1), with image sizes drawn
//! from ILSVRC2012's distribution ([`image_size`]) and, with
//! [`SynthOptions::oddities`], its odd files: CMYK and grayscale JPEGs,
//! progressive JPEGs, 4:4:4 sampling and one PNG named `.JPEG`
//! ([`ImageKind`]).
//!
//! # Determinism
//!
//! Every image has its own random streams, seeded from
//! `(seed, split, class, k)` by [`rng`] (the `shardfeed-rng` crate: SplitMix64 and xoshiro256**,
//! our own code, so no crate update can change them). [`render_image`] is a pure
//! function of those values (and the class count, which sets the hue
//! spacing); a file's bytes depend only on them plus `quality` and
//! `oddities`, so output is byte-identical across runs and thread counts.
//! The pixel maths avoids the platform's `sin`/`exp`, so pixels also match
//! across platforms; the JPEG bytes are jpeg-encoder's, which picks an AVX2
//! or a scalar path at run time.
//!
//! # Class design
//!
//! Classes must stay learnable after `RandomResizedCrop` (scale 0.08–1,
//! ratio 3/4–4/3) and horizontal flips down to 64 px, so every part of an
//! image carries its class. A class is a distinct combination of
//!
//! - a **primary hue** covering ~60–75% of the image: `min(classes, 12)`
//!   evenly spaced hues, so up to 12 classes are separable by colour alone;
//! - a **secondary colour** (a dark shade, or the hue + 50°, 140° or 260°);
//! - a **texture** mixing the two: stripes, 2:1 rectangles or elongated dots;
//! - an **orientation** |θ| of 0°, 30°, 60° or 90°, each image taking +θ or −θ
//!   at random, so a flip (θ → −θ) never turns one class into another;
//! - a **period** of 3.5%, 8% or 18% of the image's short side.
//!
//! That allows [`MAX_CLASSES`] = 1728 classes; see [`design`] for how class
//! numbers map to combinations. Each image adds nuisances: hue ±5°,
//! saturation, brightness and contrast jitter, random texture phase,
//! orientation ±5° and period −15%/+18% jitter, a linear illumination
//! gradient, up to three flat occluders of random colour, and sensor noise. A
//! nearest-class-mean classifier on 16×16 thumbnails of random crops already
//! gets well above 80% on 10 classes (tested below), so a small CNN learns
//! them quickly.
//!
//! # Example
//!
//! ```
//! use shardfeed_synth::{generate, synset_id, SynthOptions};
//!
//! let dir = tempfile::tempdir()?;
//! let out = dir.path().join("imagenet");
//! let opts = SynthOptions { classes: 2, per_class: 3, val_per_class: 1, ..Default::default() };
//! let summary = generate(&out, &opts, &|done| eprintln!("{done} images"))?;
//!
//! assert_eq!(summary.images, 8);
//! assert_eq!(summary.classes, [synset_id(0), synset_id(1)]);
//! let first = out.join("train").join(&summary.classes[0]).join(format!("{}_1.JPEG", summary.classes[0]));
//! assert!(std::fs::read(first)?.starts_with(&[0xFF, 0xD8]));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::path::{Path, PathBuf};

pub mod design;
mod encode;
mod generate;
mod math;
mod render;
pub use shardfeed_rng as rng;

pub use design::{class_style, ClassStyle, MAX_CLASSES};
pub use encode::ImageKind;
pub use render::{image_size, render_image, render_image_into, RgbBuffer, Split};

/// What [`generate`] makes. Field defaults are those of [`Default`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SynthOptions {
    /// Number of classes, `1..=MAX_CLASSES`. Default 10.
    pub classes: u32,
    /// Train images per class, at least 1. Default 100.
    pub per_class: u32,
    /// Val images per class; 0 writes no `val` folder. Default 10.
    pub val_per_class: u32,
    /// Seed of every random choice. Default 0.
    pub seed: u64,
    /// JPEG quality, `1..=100`. Default 90.
    pub quality: u8,
    /// Add ILSVRC2012's odd files (see [`ImageKind`]). Default `false`:
    /// every file is a baseline RGB JPEG with 4:2:0 subsampling.
    pub oddities: bool,
    /// Worker threads; 0 means one per available core. Default 0.
    pub threads: usize,
}

impl Default for SynthOptions {
    fn default() -> Self {
        Self {
            classes: 10,
            per_class: 100,
            val_per_class: 10,
            seed: 0,
            quality: 90,
            oddities: false,
            threads: 0,
        }
    }
}

/// What [`generate`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SynthSummary {
    /// Files written, train and val together.
    pub images: u64,
    /// Their total size in bytes.
    pub bytes: u64,
    /// The synset id of each class, in class order (also sorted order).
    pub classes: Vec<String>,
}

/// Why [`generate`] failed.
#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    /// `classes` was 0.
    #[error("classes must be at least 1")]
    NoClasses,
    /// `classes` was above [`MAX_CLASSES`].
    #[error("at most {max} distinct classes can be made, {classes} were asked for")]
    TooManyClasses {
        /// Requested.
        classes: u32,
        /// [`MAX_CLASSES`].
        max: u32,
    },
    /// `per_class` was 0.
    #[error("per_class must be at least 1")]
    NoImages,
    /// `quality` was outside `1..=100`.
    #[error("JPEG quality must be in 1..=100, got {0}")]
    BadQuality(u8),
    /// The output folder exists and is not empty.
    #[error("output folder {} exists and is not empty", .0.display())]
    OutputNotEmpty(PathBuf),
    /// The output folder could not be listed.
    #[error("cannot read folder {}", path.display())]
    ReadDir {
        /// The folder.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A folder could not be created.
    #[error("cannot create folder {}", path.display())]
    CreateDir {
        /// The folder.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A temporary file could not be written.
    #[error("cannot write {}", path.display())]
    Write {
        /// The temporary file (`<name>.JPEG.tmp`).
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A temporary file could not be renamed into place.
    #[error("cannot rename {} to {}", from.display(), to.display())]
    Rename {
        /// The temporary file.
        from: PathBuf,
        /// The final name.
        to: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The encoder refused an image.
    #[error("cannot encode {}", path.display())]
    Encode {
        /// The file it was meant for.
        path: PathBuf,
        /// The encoder's error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// The fake WordNet id of `class`: `n` and 8 digits, starting at ImageNet's
/// first synset (`n01440764`) in steps of 7919. Distinct, and sorted in class
/// order, for every class below 12,445 (so for all of [`MAX_CLASSES`]).
pub fn synset_id(class: u32) -> String {
    format!("n{:08}", 1_440_764 + u64::from(class) * 7919)
}

/// Writes a synthetic dataset to `out` (created if missing; an existing
/// folder must be empty). Calls `progress` from the worker threads with the
/// number of images written so far, once per image, in increasing order.
///
/// Each file is written as `name.tmp` and renamed, so an interrupted run
/// leaves no partial `.JPEG`. On the first error the workers stop and that
/// error is returned; files already written stay.
pub fn generate(
    out: &Path,
    opts: &SynthOptions,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<SynthSummary, SynthError> {
    generate::generate(out, opts, progress)
}

#[cfg(test)]
mod tests {
    use super::*;
    use shardfeed_rng::Xoshiro256 as Rng;

    #[test]
    fn synset_ids_are_distinct_sorted_and_imagenet_shaped() {
        let ids: Vec<String> = (0..MAX_CLASSES).map(synset_id).collect();
        assert_eq!(ids[0], "n01440764");
        assert!(ids.iter().all(|s| s.len() == 9 && s.starts_with('n')));
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(synset_id(12_444).len(), 9);
    }

    /// A `RandomResizedCrop` box: scale 0.08–1, ratio 3/4–4/3, as torchvision
    /// draws it (with its fallback to the whole image).
    fn random_crop(rng: &mut Rng, w: u32, h: u32) -> (u32, u32, u32, u32) {
        let area = f64::from(w * h);
        for _ in 0..10 {
            let target = area * (0.08 + 0.92 * rng.next_f64());
            let log_ratio =
                (0.75f64).ln() + rng.next_f64() * ((4.0f64 / 3.0).ln() - (0.75f64).ln());
            let ratio = log_ratio.exp();
            let cw = (target * ratio).sqrt().round() as u32;
            let ch = (target / ratio).sqrt().round() as u32;
            if cw > 0 && ch > 0 && cw <= w && ch <= h {
                let x = rng.range_u32(0, w - cw);
                let y = rng.range_u32(0, h - ch);
                return (x, y, cw, ch);
            }
        }
        (0, 0, w, h)
    }

    /// A 16×16 box-averaged thumbnail of a crop, optionally flipped.
    fn thumbnail(img: &RgbBuffer, (x0, y0, cw, ch): (u32, u32, u32, u32), flip: bool) -> Vec<f32> {
        const S: usize = 16;
        let mut sums = vec![[0u32; 3]; S * S];
        let mut counts = vec![0u32; S * S];
        let cols: Vec<usize> = (0..cw as usize)
            .map(|x| {
                let t = x * S / cw as usize;
                if flip {
                    S - 1 - t
                } else {
                    t
                }
            })
            .collect();
        let w = img.width as usize;
        for y in 0..ch as usize {
            let start = ((y0 as usize + y) * w + x0 as usize) * 3;
            let row = &img.data[start..start + cw as usize * 3];
            let base = (y * S / ch as usize) * S;
            for (p, &t) in row.chunks_exact(3).zip(&cols) {
                let cell = &mut sums[base + t];
                cell[0] += u32::from(p[0]);
                cell[1] += u32::from(p[1]);
                cell[2] += u32::from(p[2]);
                counts[base + t] += 1;
            }
        }
        sums.iter()
            .zip(&counts)
            .flat_map(|(s, &n)| s.map(|v| v as f32 / n.max(1) as f32))
            .collect()
    }

    /// Nearest-class-mean accuracy on 16×16 thumbnails of random crops:
    /// class means from `train` images of each class (4 crops each), scored
    /// on `val` images (2 crops each).
    fn ncm_accuracy(seed: u64, classes: u32, train: u32, val: u32) -> f64 {
        let mut rng = Rng::new(seed ^ 0x5EED);
        let crops = |img: &RgbBuffer, rng: &mut Rng, n: usize| -> Vec<Vec<f32>> {
            (0..n)
                .map(|_| {
                    let b = random_crop(rng, img.width, img.height);
                    thumbnail(img, b, rng.chance(0.5))
                })
                .collect()
        };
        let mut means = Vec::new();
        for class in 0..classes {
            let mut sum = vec![0.0f32; 768];
            let mut n = 0.0;
            for k in 1..=train {
                let img = render_image(class, classes, seed, Split::Train, k);
                for t in crops(&img, &mut rng, 4) {
                    sum.iter_mut().zip(&t).for_each(|(s, v)| *s += v);
                    n += 1.0;
                }
            }
            means.push(sum.into_iter().map(|s| s / n).collect::<Vec<f32>>());
        }
        let (mut right, mut total) = (0, 0);
        for class in 0..classes {
            for k in 1..=val {
                let img = render_image(class, classes, seed, Split::Val, k);
                for t in crops(&img, &mut rng, 2) {
                    let dist = |m: &Vec<f32>| {
                        m.iter()
                            .zip(&t)
                            .map(|(a, b)| (a - b) * (a - b))
                            .sum::<f32>()
                    };
                    let best = (0..classes as usize)
                        .min_by(|&a, &b| dist(&means[a]).total_cmp(&dist(&means[b])))
                        .unwrap();
                    right += usize::from(best == class as usize);
                    total += 1;
                }
            }
        }
        right as f64 / total as f64
    }

    /// Learnability through crops: a trivial statistic already separates 10
    /// classes after RandomResizedCrop and flips.
    #[test]
    fn classes_are_separable_through_random_crops() {
        let acc = ncm_accuracy(1, 10, 8, 8);
        eprintln!("nearest-class-mean accuracy through crops: {acc:.3}");
        assert!(acc > 0.8, "accuracy {acc:.3}");
    }

    /// The same over several seeds and sizes; slow in a dev build, so run it
    /// with `cargo test --release -p shardfeed-synth -- --ignored`.
    #[test]
    #[ignore]
    fn separability_report() {
        for classes in [2, 10, 12, 20] {
            let accs: Vec<String> = (0..5)
                .map(|seed| format!("{:.3}", ncm_accuracy(seed, classes, 20, 20)))
                .collect();
            eprintln!(
                "{classes} classes: nearest-class-mean accuracy {}",
                accs.join(" ")
            );
        }
    }
}
