//! `shardfeed synth OUT`.

use clap::Args;
use shardfeed_engine::synth::{generate, SynthOptions};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct SynthArgs {
    /// Output folder (OUT/train/<synset>/*.JPEG, OUT/val/<synset>/*.JPEG); must be new or empty.
    out: PathBuf,
    /// Number of classes.
    #[arg(long, default_value_t = 10)]
    classes: u32,
    /// Train images per class.
    #[arg(long, default_value_t = 100)]
    per_class: u32,
    /// Val images per class.
    #[arg(long, default_value_t = 10)]
    val_per_class: u32,
    /// Seed: the same seed gives byte-identical files.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// JPEG quality, 1-100.
    #[arg(long, default_value_t = 90, value_parser = clap::value_parser!(u8).range(1..=100))]
    quality: u8,
    /// Mix in what ILSVRC2012 really holds: CMYK, grayscale and progressive JPEGs, a PNG named .JPEG.
    #[arg(long)]
    oddities: bool,
    /// Worker threads (default: all cores).
    #[arg(long, default_value_t = 0)]
    workers: usize,
}

pub fn run(a: SynthArgs) -> anyhow::Result<ExitCode> {
    let opts = SynthOptions {
        classes: a.classes,
        per_class: a.per_class,
        val_per_class: a.val_per_class,
        seed: a.seed,
        quality: a.quality,
        oddities: a.oddities,
        threads: a.workers,
    };
    let total = u64::from(a.classes) * u64::from(a.per_class + a.val_per_class);
    let pb = super::progress_bar(
        total,
        "{spinner} synth [{elapsed_precise}] [{bar:30}] {pos}/{len} images {per_sec} ETA {eta}",
    );
    let started = std::time::Instant::now();
    let summary = generate(&a.out, &opts, &|n| pb.inc(n));
    pb.finish_and_clear();
    let summary = summary?;
    outln!(
        "synth: {} images of {} classes, {} in {} ({:.1} s)",
        summary.images,
        summary.classes.len(),
        super::human_bytes(summary.bytes),
        a.out.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}
