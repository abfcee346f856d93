//! Criterion benchmarks of the [`Augmenter`] on one core: decode only, the train transform
//! (RandomResizedCrop + flip) at 224 and 160, the val transform (Resize 256 + CenterCrop 224),
//! and the resize alone from already-decoded pixels.
//!
//! Images: the first [`IMAGES`] JPEGs (sorted by path) of `$SHARDFEED_BENCH_PHOTOS/train`, by
//! default `bench-data/photo/train` (made by `scripts/bench-data.sh`; the main checkout's copy
//! when this one has none), the same photographs the peers are measured on; without them,
//! ImageNet-shaped synthetic JPEGs from shardfeed-synth.
//! Each iteration augments every image once, so criterion's throughput is images per second.
//!
//! ```sh
//! SHARDFEED_BENCH_PHOTOS=bench-data/photo cargo bench -p shardfeed-augment --bench augment
//! scripts/bench-augment.sh       # the same, plus Pillow/torchvision on the same images, as ratios
//! ```

use std::hint::black_box;
use std::path::{Path, PathBuf};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use jpeg_encoder::{ColorType, Encoder, SamplingFactor};
use shardfeed_augment::{
    decode_rgb, AugmentPlan, Augmenter, DecodedRegion, ImageSize, RgbImage, SampleKey,
    TrainTransform, Transform, ValTransform,
};
use shardfeed_synth::{render_image, Split};

/// Images per iteration.
const IMAGES: usize = 32;

/// The photographs' folder: `$SHARDFEED_BENCH_PHOTOS`, else the workspace's `bench-data/photo`
/// when it exists, else the team's shared copy in the main checkout.
fn photo_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("SHARDFEED_BENCH_PHOTOS") {
        return PathBuf::from(dir);
    }
    let own = Path::new(env!("CARGO_MANIFEST_DIR")).join("../bench-data/photo");
    let shared = PathBuf::from("/work/main/bench-data/photo");
    if !own.join("train").is_dir() && shared.join("train").is_dir() {
        return shared;
    }
    own
}

/// The first `count` `train/*/*.JPEG` files under `dir`, sorted by path; empty when absent.
fn read_photos(dir: &Path, count: usize) -> Vec<Vec<u8>> {
    let Ok(classes) = std::fs::read_dir(dir.join("train")) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = classes
        .filter_map(Result::ok)
        .filter_map(|class| std::fs::read_dir(class.path()).ok())
        .flatten()
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|e| e == "JPEG"))
        .collect();
    paths.sort();
    paths
        .iter()
        .take(count)
        .filter_map(|path| std::fs::read(path).ok())
        .collect()
}

/// ImageNet-shaped synthetic baseline 4:2:0 JPEGs at quality 90.
fn synthetic_jpegs(count: usize) -> Vec<Vec<u8>> {
    (1..=count as u32)
        .map(|k| {
            let image = render_image(k % 10, 10, 0, Split::Train, k);
            let mut jpeg = Vec::new();
            let mut encoder = Encoder::new(&mut jpeg, 90);
            encoder.set_sampling_factor(SamplingFactor::R_4_2_0);
            encoder
                .encode(
                    &image.data,
                    image.width as u16,
                    image.height as u16,
                    ColorType::Rgb,
                )
                .expect("synthetic image encodes");
            jpeg
        })
        .collect()
}

fn bench_images() -> Vec<Vec<u8>> {
    let dir = photo_dir();
    let photos = read_photos(&dir, IMAGES);
    if photos.len() == IMAGES {
        eprintln!("augment bench: {IMAGES} photographs from {}", dir.display());
        photos
    } else {
        eprintln!(
            "augment bench: no photographs in {} (scripts/bench-data.sh makes them); \
             {IMAGES} synthetic JPEGs instead",
            dir.display()
        );
        synthetic_jpegs(IMAGES)
    }
}

fn key(index: usize) -> SampleKey {
    SampleKey {
        seed: 0,
        epoch: 0,
        index: index as u64,
    }
}

fn augment(c: &mut Criterion) {
    let images = bench_images();
    let mut group = c.benchmark_group("augment");
    group.throughput(Throughput::Elements(images.len() as u64));
    group.sample_size(20);

    let mut augmenter = Augmenter::new();
    group.bench_function("decode_only", |b| {
        b.iter(|| {
            for image in &images {
                black_box(augmenter.decode_only(black_box(image)).expect("decodes"));
            }
        })
    });

    let transforms = [
        ("train_224", Transform::Train(TrainTransform::new(224))),
        ("train_160", Transform::Train(TrainTransform::new(160))),
        ("val_224", Transform::Val(ValTransform::new(224))),
    ];
    let mut slot = vec![0_u8; 224 * 224 * 3];
    for (name, transform) in &transforms {
        let out = &mut slot[..transform.output_len()];
        let mut epoch = 0;
        group.bench_function(*name, |b| {
            b.iter(|| {
                // A new epoch each iteration: fresh crops, as in training.
                epoch += 1;
                for (index, image) in images.iter().enumerate() {
                    let key = SampleKey {
                        epoch,
                        ..key(index)
                    };
                    black_box(
                        augmenter
                            .apply(black_box(image), transform, key, out)
                            .expect("augments"),
                    );
                }
            })
        });
    }

    // The resize (and flip) alone, from pixels decoded beforehand.
    let decoded: Vec<RgbImage> = images
        .iter()
        .map(|image| decode_rgb(image).expect("decodes"))
        .collect();
    for (name, transform) in &transforms {
        let plans: Vec<AugmentPlan> = decoded
            .iter()
            .enumerate()
            .map(|(index, image)| {
                let size = ImageSize {
                    width: image.width,
                    height: image.height,
                };
                transform.plan(size, key(index))
            })
            .collect();
        let out = &mut slot[..transform.output_len()];
        group.bench_function(format!("resize_only_{name}"), |b| {
            b.iter(|| {
                for (image, plan) in decoded.iter().zip(&plans) {
                    let region = DecodedRegion {
                        pixels: &image.pixels,
                        width: image.width,
                        height: image.height,
                        origin_x: 0,
                        origin_y: 0,
                        scale_denominator: 1,
                        image: ImageSize {
                            width: image.width,
                            height: image.height,
                        },
                    };
                    augmenter
                        .resize_decoded(black_box(&region), plan, out)
                        .expect("resizes");
                    black_box(&out);
                }
            })
        });
    }
    group.finish();
}

criterion_group!(benches, augment);
criterion_main!(benches);
