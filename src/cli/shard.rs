//! `shardfeed shard SRC --out DIR`.

use anyhow::{bail, Context};
use clap::Args;
use shardfeed_engine::augment::{DecodeLimits, ReencodeOptions, DEFAULT_MAX_PIXELS};
use shardfeed_engine::ingest::{
    self, escape_controls, FlatLabels, IngestOptions, Mode, Order, Sharding,
};
use shardfeed_engine::shards::{check_output_dir, Dataset};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

#[derive(Debug, Args)]
pub struct ShardArgs {
    /// Input: an ILSVRC2012 root (train/<synset>/*.JPEG, val/…), or one folder of class folders,
    /// or a flat folder with --val-labels.
    src: PathBuf,
    /// Output directory (for an ILSVRC2012 root: DIR/train and DIR/val).
    #[arg(long, short)]
    out: PathBuf,
    /// Target shard size, e.g. 256MiB (a new shard starts before one would pass it).
    #[arg(long, value_parser = super::parse_size, default_value = "256MiB", conflicts_with = "shards")]
    shard_size: u64,
    /// Exact number of shards per split, instead of a target size.
    #[arg(long)]
    shards: Option<u32>,
    /// Re-encode every image as baseline RGB JPEG (FFCV-style); implied by --max-side/--quality.
    #[arg(long)]
    reencode: bool,
    /// Re-encode: the longer side at most this many pixels.
    #[arg(long)]
    max_side: Option<u32>,
    /// Re-encode: JPEG quality, 1-100.
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=100))]
    quality: Option<u8>,
    /// Decode every pixel of every image to check it (slower; the default checks structure).
    #[arg(long)]
    deep_check: bool,
    /// Make unusable inputs fatal instead of skipping and listing them.
    #[arg(long)]
    strict: bool,
    /// The most pixels an image's header may declare; more is skipped as a decompression bomb
    /// (the default is Pillow's MAX_IMAGE_PIXELS).
    #[arg(long, default_value_t = DEFAULT_MAX_PIXELS, value_parser = clap::value_parser!(u64).range(1..))]
    max_pixels: u64,
    /// Keep records in sorted path order instead of shuffling them across shards.
    #[arg(long)]
    no_shuffle: bool,
    /// Seed of the record order.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Worker threads (default: all cores).
    #[arg(long)]
    workers: Option<usize>,
    /// Labels of a flat val folder: the devkit's ILSVRC2012_validation_ground_truth.txt (or a
    /// synset-per-line file), or Kaggle's LOC_val_solution.csv.
    #[arg(long)]
    val_labels: Option<PathBuf>,
    /// With the devkit's ground truth: the synset of each ILSVRC2012_ID, one per line in ID
    /// order (the order of the devkit's meta.mat, not sorted order).
    #[arg(long)]
    synset_map: Option<PathBuf>,
    /// Class list to label with: a dataset directory, a folder of class folders, or a file with
    /// one synset per line (default: the input's own, sorted).
    #[arg(long)]
    classes: Option<PathBuf>,
    /// Replace datasets already in the output directory.
    #[arg(long)]
    force: bool,
}

fn load_classes(path: &Path) -> anyhow::Result<Vec<String>> {
    if path.is_dir() {
        if let Ok(ds) = Dataset::open(path) {
            return Ok(ds
                .manifest()
                .classes
                .iter()
                .map(|c| c.synset.clone())
                .collect());
        }
        let classes = ingest::class_folders(path)?;
        if classes.is_empty() {
            bail!(
                "{}: neither a dataset nor a folder of class folders",
                path.display()
            );
        }
        return Ok(classes);
    }
    let text = std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))?;
    let classes: Vec<String> = text
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect();
    if classes.is_empty() {
        bail!("{}: no classes in the file", path.display());
    }
    Ok(classes)
}

pub fn run(a: ShardArgs) -> anyhow::Result<ExitCode> {
    let labels = match &a.val_labels {
        None => {
            if a.synset_map.is_some() {
                bail!("--synset-map goes with --val-labels");
            }
            None
        }
        Some(p) if p.extension().is_some_and(|e| e.eq_ignore_ascii_case("csv")) => {
            Some(FlatLabels::KaggleCsv(p.clone()))
        }
        Some(p) => Some(FlatLabels::GroundTruth {
            file: p.clone(),
            synset_map: a.synset_map.clone(),
        }),
    };
    let classes = a.classes.as_deref().map(load_classes).transpose()?;
    let mode = if a.reencode || a.max_side.is_some() || a.quality.is_some() {
        if a.deep_check {
            bail!("--deep-check is for pass-through mode: re-encoding decodes every image anyway");
        }
        Mode::Reencode(ReencodeOptions {
            max_side: a.max_side,
            quality: a.quality.unwrap_or(90),
        })
    } else {
        Mode::Passthrough {
            deep_check: a.deep_check,
        }
    };
    let opts = IngestOptions {
        mode,
        order: if a.no_shuffle {
            Order::Sorted
        } else {
            Order::Shuffled(a.seed)
        },
        sharding: match a.shards {
            Some(0) => bail!("--shards must be at least 1"),
            Some(n) => Sharding::Count(n),
            None => Sharding::TargetBytes(a.shard_size),
        },
        strict: a.strict,
        workers: a
            .workers
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
            .max(1),
        overwrite: a.force,
        limits: DecodeLimits {
            max_pixels: a.max_pixels,
        },
    };
    let splits = ingest::discover(&a.src, labels.as_ref(), classes.as_deref())?;

    let cancel = Arc::new(AtomicBool::new(false));
    {
        let cancel = Arc::clone(&cancel);
        // A second Ctrl-C is not needed: the first stops at the next record.
        let _ = ctrlc::set_handler(move || cancel.store(true, Ordering::Relaxed));
    }
    let outs: Vec<PathBuf> = splits
        .iter()
        .map(|split| match &split.out_subdir {
            Some(sub) => a.out.join(sub),
            None => a.out.clone(),
        })
        .collect();
    // Every output folder is checked before the first split deletes anything: with --force, a
    // stranger's file in val/ must not be found only after train's dataset was replaced.
    for out in &outs {
        check_output_dir(out, a.force)?;
    }
    let mut skipped_total = 0;
    for (split, out) in splits.iter().zip(outs) {
        let n = split.inputs.files.len() as u64;
        let pb = super::progress_bar(
            n,
            "{spinner} {prefix} [{elapsed_precise}] [{bar:30}] {pos}/{len} images {per_sec} {msg} ETA {eta}",
        );
        pb.set_prefix(split.name.clone());
        let started = std::time::Instant::now();
        let mut bytes = 0u64;
        let mut tick = 0u64;
        let mut progress = |b: u64| {
            bytes += b;
            tick += 1;
            pb.inc(1);
            if tick % 64 == 0 {
                let secs = started.elapsed().as_secs_f64().max(1e-9);
                pb.set_message(format!("{:.1} MB/s", bytes as f64 / 1e6 / secs));
            }
        };
        let summary = ingest::ingest_split(split, &out, &opts, &mut progress, &cancel)
            .with_context(|| format!("sharding {}", split.dir.display()));
        pb.finish_and_clear();
        let summary = summary?;
        let m = &summary.manifest;
        let secs = summary.elapsed.as_secs_f64().max(1e-9);
        outln!(
            "{}: {} images -> {} shards, {} in {} ({:.1} s, {:.0} images/s, {:.1} MB/s read)",
            split.name,
            m.records,
            m.shards.len(),
            super::human_bytes(m.bytes),
            out.display(),
            secs,
            summary.inputs as f64 / secs,
            summary.bytes_in as f64 / 1e6 / secs,
        );
        let formats: Vec<String> = m.formats.iter().map(|(k, v)| format!("{k} {v}")).collect();
        outln!(
            "  {} classes; formats: {}; mode {}",
            m.classes.len(),
            formats.join(", "),
            m.params.mode
        );
        if !m.skipped.is_empty() {
            outln!("  skipped {} (listed in the manifest):", m.skipped.len());
            for s in &m.skipped {
                // Paths are stored escaped; reasons may quote a file's bytes: one line each.
                outln!(
                    "    {}: {}",
                    escape_controls(&s.path),
                    escape_controls(&s.reason)
                );
            }
        }
        skipped_total += m.skipped.len();
    }
    if skipped_total > 0 {
        errln!("note: {skipped_total} inputs were skipped; --strict makes that an error");
    }
    Ok(ExitCode::SUCCESS)
}
