//! Writes the committed sample dataset of the format version this build writes:
//! `shards/tests/data/v<major>_<minor>/` (two shards and a manifest, about 5 KB).
//!
//! Run it once per released format version, then commit the directory; `tests/compat.rs`
//! keeps every committed version readable forever (tantivy's `columnar/src/compat_tests.rs`
//! is the model). It refuses to replace a sample that exists: a released sample never changes.
//!
//! ```sh
//! cargo run -p shardfeed-shards --example write_compat_sample            # into shards/tests/data
//! cargo run -p shardfeed-shards --example write_compat_sample -- /tmp/x  # elsewhere, to compare
//! ```
//!
//! The records cover what the format must keep: baseline, progressive, grayscale and CMYK JPEGs,
//! a PNG named `.JPEG` (as ILSVRC2012 holds one), a record with no label, a non-ASCII path, an
//! empty image of unknown format, a skipped input, and records dealt into two shards. Everything
//! is made here from fixed pixel patterns; the JPEG bytes are jpeg-encoder's, so regenerating on
//! another CPU or with another jpeg-encoder may give other image bytes: the committed files,
//! not this program, are the reference.

use image::codecs::png::PngEncoder;
use image::ImageEncoder;
use jpeg_encoder::{ColorType, Encoder, SamplingFactor};
use shardfeed_shards::format::{VERSION_MAJOR, VERSION_MINOR};
use shardfeed_shards::{
    BuildParams, DatasetSpec, DatasetWriter, ImageFormat, OwnedRecord, ShardLayout,
};
use std::error::Error;
use std::path::PathBuf;
use std::process::ExitCode;

/// The classes of the sample, in label (sorted) order.
const CLASSES: [&str; 4] = ["n01440764", "n01443537", "n01484850", "n02105855"];

/// A smooth pattern of `channels` bytes per pixel, different for each `salt`.
fn pattern(width: usize, height: usize, channels: usize, salt: usize) -> Vec<u8> {
    let mut pixels = Vec::with_capacity(width * height * channels);
    for y in 0..height {
        for x in 0..width {
            for c in 0..channels {
                pixels.push(((x * 17 + y * 29 + c * 61 + salt * 37) % 256) as u8);
            }
        }
    }
    pixels
}

fn jpeg(
    width: u16,
    height: u16,
    color: ColorType,
    configure: impl FnOnce(&mut Encoder<&mut Vec<u8>>),
    salt: usize,
) -> Result<Vec<u8>, Box<dyn Error>> {
    let channels = match color {
        ColorType::Luma => 1,
        ColorType::Cmyk => 4,
        _ => 3,
    };
    let pixels = pattern(usize::from(width), usize::from(height), channels, salt);
    let mut out = Vec::new();
    let mut encoder = Encoder::new(&mut out, 75);
    configure(&mut encoder);
    encoder.encode(&pixels, width, height, color)?;
    Ok(out)
}

fn png(width: u32, height: u32, salt: usize) -> Result<Vec<u8>, Box<dyn Error>> {
    let pixels = pattern(width as usize, height as usize, 3, salt);
    let mut out = Vec::new();
    PngEncoder::new(&mut out).write_image(
        &pixels,
        width,
        height,
        image::ExtendedColorType::Rgb8,
    )?;
    Ok(out)
}

/// One input of the sample: a record, or a skipped input with its reason.
enum Input {
    Stored(OwnedRecord),
    Skipped {
        path: &'static str,
        reason: &'static str,
    },
}

fn record(label: Option<u32>, (width, height): (u32, u32), path: &str, image: Vec<u8>) -> Input {
    Input::Stored(OwnedRecord {
        label,
        width,
        height,
        format: ImageFormat::detect(&image),
        path: path.to_owned(),
        image,
    })
}

fn inputs() -> Result<Vec<Input>, Box<dyn Error>> {
    Ok(vec![
        record(
            Some(0),
            (16, 12),
            "train/n01440764/n01440764_18.JPEG",
            jpeg(
                16,
                12,
                ColorType::Rgb,
                |e| e.set_sampling_factor(SamplingFactor::R_4_2_0),
                0,
            )?,
        ),
        record(
            Some(1),
            (12, 16),
            "train/n01443537/n01443537_2.JPEG",
            jpeg(12, 16, ColorType::Rgb, |e| e.set_progressive(true), 1)?,
        ),
        Input::Skipped {
            path: "train/n01443537/n01443537_broken.JPEG",
            reason: "truncated JPEG: no EOI marker (ends inside scan data at byte 311)",
        },
        record(
            Some(2),
            (8, 8),
            "train/n01484850/n01484850_1.JPEG",
            jpeg(8, 8, ColorType::Luma, |_| {}, 2)?,
        ),
        record(
            Some(3),
            (10, 6),
            "train/n02105855/n02105855_2933.JPEG",
            png(10, 6, 3)?,
        ),
        record(
            None,
            (9, 7),
            "unlabelled/bärenhöhle_01.jpg",
            jpeg(9, 7, ColorType::Cmyk, |_| {}, 4)?,
        ),
        record(Some(0), (0, 0), "train/n01440764/empty.bin", Vec::new()),
    ])
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn Error>> {
    let root = std::env::args_os().nth(1).map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data"),
        PathBuf::from,
    );
    let out = root.join(format!("v{VERSION_MAJOR}_{VERSION_MINOR}"));
    if out.exists() {
        return Err(format!(
            "{} exists: a released sample never changes (give another folder to compare)",
            out.display()
        )
        .into());
    }
    let inputs = inputs()?;
    let spec = DatasetSpec {
        split: "compat-sample".into(),
        classes: CLASSES.iter().map(|c| (*c).to_owned()).collect(),
        layout: ShardLayout::Count {
            shards: 2,
            inputs: inputs.len() as u64,
        },
        params: BuildParams {
            tool: "shardfeed 0.1.0".into(),
            mode: "passthrough".into(),
            max_side: None,
            quality: None,
            target_shard_bytes: None,
            shard_count: Some(2),
            order: "sorted".into(),
            shuffle_seed: 0,
            strict: false,
        },
        overwrite: false,
    };
    let mut writer = DatasetWriter::create(&out, spec)?;
    for (position, input) in inputs.iter().enumerate() {
        match input {
            Input::Stored(r) => writer.append(position as u64, &r.as_record())?,
            Input::Skipped { path, reason } => writer.skip(position as u64, path, reason)?,
        }
    }
    let manifest = writer.finish()?;
    println!(
        "{}: {} records in {} shards, {} bytes",
        out.display(),
        manifest.records,
        manifest.shards.len(),
        manifest.bytes
    );
    Ok(())
}
