//! `shardfeed bench DIR`: runs the loader as a trainer would (warm-up epochs, then timed
//! epochs), throws the batches away, and reports images/s, per-stage time, worker busy %,
//! consumer wait, queue depth and peak memory per epoch; `--json` for scripts.

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use shardfeed_engine::augment::{
    DecodeLimits, JpegBackend, TrainTransform, Transform, ValTransform, DEFAULT_MAX_PIXELS,
};
use shardfeed_engine::loader::{Loader, LoaderConfig, LoaderMetrics, StreamDigest};
use shardfeed_engine::process::{self, MemoryStats};
use shardfeed_engine::sampler::{LastBatch, Partition, Shuffle};
use shardfeed_engine::shards::Dataset;
use shardfeed_engine::shards::MANIFEST_FILE;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum TransformKind {
    /// RandomResizedCrop + horizontal flip (the train split).
    Train,
    /// Resize to size/0.875 + centre crop (the val split).
    Val,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ShuffleKind {
    /// Record order.
    Sequential,
    /// A fresh permutation of all records each epoch.
    Global,
    /// Shuffle shards, then records within windows of --window shards.
    Window,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LastBatchKind {
    /// Leave out records so that every rank gets the same count.
    Drop,
    /// Repeat records so that every rank gets the same count.
    Pad,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum PartitionKind {
    /// Each rank reads one contiguous block of the epoch.
    Blocks,
    /// Each rank reads its slice of every global batch (world x batch): the batches do not
    /// depend on the world size (needs --full-batches).
    GlobalBatches,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// A dataset directory, or a directory holding train/ and val/ (the transform picks one).
    dir: PathBuf,
    /// The transform.
    #[arg(long, value_enum, default_value = "train")]
    transform: TransformKind,
    /// Output side in pixels.
    #[arg(long, default_value_t = 224)]
    size: u32,
    /// Images per batch.
    #[arg(long, default_value_t = 128)]
    batch: usize,
    /// Worker threads (default: all cores).
    #[arg(long)]
    workers: Option<usize>,
    /// Timed epochs.
    #[arg(long, default_value_t = 3)]
    epochs: u64,
    /// Untimed epochs first (page cache, allocator and buffers warm).
    #[arg(long, default_value_t = 1)]
    warmup: u64,
    /// Batch buffers (batches being filled, ready, or held).
    #[arg(long, default_value_t = 4)]
    prefetch: usize,
    /// Batches read ahead (posix_fadvise); 0 turns readahead off.
    #[arg(long, default_value_t = 8)]
    readahead: usize,
    /// Seed of the order and the augmentations.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Record order (default: global for train, sequential for val).
    #[arg(long, value_enum)]
    shuffle: Option<ShuffleKind>,
    /// Shards per window for --shuffle window.
    #[arg(long, default_value_t = 16)]
    window: usize,
    /// This process's rank.
    #[arg(long, default_value_t = 0)]
    rank: u32,
    /// Number of ranks.
    #[arg(long, default_value_t = 1)]
    world: u32,
    /// How ranks get equal counts.
    #[arg(long, value_enum, default_value = "pad")]
    last_batch: LastBatchKind,
    /// How the epoch is shared out among the ranks.
    #[arg(long, value_enum, default_value = "blocks")]
    partition: PartitionKind,
    /// Round each rank's count to whole batches.
    #[arg(long)]
    full_batches: bool,
    /// Only decode each image in full (no crop, resize or flip): the baseline.
    #[arg(long)]
    decode_only: bool,
    /// Make a record that fails to read or decode fatal instead of replacing it.
    #[arg(long)]
    strict: bool,
    /// JPEG decoder: turbo (libjpeg-turbo, decodes only the crop's region) or zune (zune-jpeg,
    /// whole images).
    #[arg(long, default_value = "turbo")]
    decoder: JpegBackend,
    /// Let libjpeg-turbo downscale crops at least twice the output's size inside the IDCT.
    #[arg(long)]
    dct_downscale: bool,
    /// The most pixels an image's header may declare; more is a failed record (a decompression
    /// bomb), replaced as any other (the default is Pillow's MAX_IMAGE_PIXELS).
    #[arg(long, default_value_t = DEFAULT_MAX_PIXELS, value_parser = clap::value_parser!(u64).range(1..))]
    max_pixels: u64,
    /// Print the results as JSON on stdout (no progress bar).
    #[arg(long)]
    json: bool,
    /// Print a SHA-256 over every delivered batch (labels and pixels, in delivery order, warm-up
    /// included): the same for the same settings whatever the workers, local or remote.
    #[arg(long)]
    digest: bool,
    #[command(flatten)]
    remote: super::serve::RemoteArgs,
}

/// What one epoch measured.
#[derive(Debug, Clone, Copy)]
struct EpochResult {
    epoch: u64,
    warmup: bool,
    metrics: LoaderMetrics,
    memory: MemoryStats,
}

fn dataset_dir(dir: &Path, transform: TransformKind) -> PathBuf {
    if dir.join(MANIFEST_FILE).exists() {
        return dir.to_owned();
    }
    let split = match transform {
        TransformKind::Train => "train",
        TransformKind::Val => "val",
    };
    let sub = dir.join(split);
    if sub.join(MANIFEST_FILE).exists() {
        sub
    } else {
        dir.to_owned() // opening it reports why it is not a dataset
    }
}

fn config(a: &BenchArgs) -> LoaderConfig {
    let base = match a.transform {
        TransformKind::Train => LoaderConfig::train(a.size),
        TransformKind::Val => LoaderConfig::val(a.size),
    };
    let shuffle = match a.shuffle {
        None => base.shuffle,
        Some(ShuffleKind::Sequential) => Shuffle::Sequential,
        Some(ShuffleKind::Global) => Shuffle::Global,
        Some(ShuffleKind::Window) => Shuffle::ShardWindow { window: a.window },
    };
    LoaderConfig {
        transform: match a.transform {
            TransformKind::Train => Transform::Train(TrainTransform::new(a.size)),
            TransformKind::Val => Transform::Val(ValTransform::new(a.size)),
        }
        .into(),
        batch_size: a.batch,
        workers: a.workers.unwrap_or(0),
        prefetch: a.prefetch,
        readahead: a.readahead,
        seed: a.seed,
        shuffle,
        rank: a.rank,
        world: a.world,
        last_batch: match a.last_batch {
            LastBatchKind::Drop => LastBatch::Drop,
            LastBatchKind::Pad => LastBatch::Pad,
        },
        partition: match a.partition {
            PartitionKind::Blocks => Partition::Blocks,
            PartitionKind::GlobalBatches => Partition::GlobalBatches,
        },
        full_batches: a.full_batches,
        strict: a.strict,
        decode_only: a.decode_only,
        epochs: Some(a.warmup + a.epochs),
        decoder: a.decoder,
        dct_downscale: a.dct_downscale,
        decode_limits: DecodeLimits {
            max_pixels: a.max_pixels,
        },
    }
}

fn ms_per_image(d: Duration, m: &LoaderMetrics) -> f64 {
    m.per_sample(d).as_secs_f64() * 1e3
}

pub fn run(a: BenchArgs) -> anyhow::Result<ExitCode> {
    if a.epochs == 0 {
        bail!("--epochs must be at least 1");
    }
    let dir = dataset_dir(&a.dir, a.transform);
    let (mut loader, _local_workers) = if a.remote.enabled() {
        let dataset = Dataset::open(&dir).with_context(|| format!("opening {}", dir.display()))?;
        let client = format!("bench:{}/rank{}", std::process::id(), a.rank);
        let (remote, local) = a.remote.config(&dir, client)?;
        let loader = Loader::remote(Arc::new(dataset), config(&a), remote)
            .with_context(|| format!("opening {}", dir.display()))?;
        (loader, Some(local))
    } else {
        let loader =
            Loader::open(&dir, config(&a)).with_context(|| format!("opening {}", dir.display()))?;
        (loader, None)
    };
    let mut digest = a.digest.then(StreamDigest::default);
    let total = a.warmup + a.epochs;
    let pb = if a.json {
        indicatif::ProgressBar::hidden()
    } else {
        super::progress_bar(
            total * loader.batches_per_epoch(),
            "{spinner} {prefix} [{elapsed_precise}] [{bar:30}] {pos}/{len} batches {msg}",
        )
    };
    let mut results = Vec::with_capacity(total as usize);
    let mut timed_start: Option<(LoaderMetrics, Duration)> = None;
    let mut timed_end = (LoaderMetrics::default(), Duration::ZERO);
    for epoch in 0..total {
        let warmup = epoch < a.warmup;
        pb.set_prefix(if warmup {
            format!("warm-up {}", epoch + 1)
        } else {
            format!("epoch {}", epoch - a.warmup + 1)
        });
        let before = loader.metrics();
        if !warmup && timed_start.is_none() {
            timed_start = Some((before, process::cpu_time().unwrap_or_default()));
        }
        let started = Instant::now();
        let mut images = 0u64;
        let mut batches = loader.epoch(epoch);
        for batch in batches.by_ref() {
            let batch = batch.with_context(|| format!("epoch {epoch}"))?;
            if let Some(d) = digest.as_mut() {
                d.update(&batch);
            }
            images += batch.len() as u64;
            pb.inc(1);
            let secs = started.elapsed().as_secs_f64().max(1e-9);
            pb.set_message(format!("{:.0} img/s", images as f64 / secs));
            drop(batch);
        }
        drop(batches);
        let metrics = loader.metrics().since(&before);
        timed_end = (loader.metrics(), process::cpu_time().unwrap_or_default());
        results.push(EpochResult {
            epoch,
            warmup,
            metrics,
            memory: process::memory().unwrap_or_default(),
        });
    }
    pb.finish_and_clear();
    let (start_metrics, start_cpu) = timed_start.unwrap_or_default();
    let timed = timed_end.0.since(&start_metrics);
    let cpu = timed_end.1.saturating_sub(start_cpu);
    let summary = Summary {
        dir: &dir,
        args: &a,
        loader: &loader,
        results: &results,
        timed,
        cpu,
        digest: digest.map(|d| d.hex()),
    };
    if a.json {
        outln!("{}", serde_json::to_string_pretty(&summary.json())?);
    } else {
        summary.print();
    }
    let failures = loader.metrics().failures;
    if failures > 0 {
        errln!("{failures} records failed to read or decode and were replaced:");
        for f in loader.failures().iter().take(20) {
            errln!("  {f}");
        }
        if failures > 20 {
            errln!("  ... and {} more", failures - 20);
        }
    }
    Ok(ExitCode::SUCCESS)
}

struct Summary<'a> {
    dir: &'a Path,
    args: &'a BenchArgs,
    loader: &'a Loader,
    results: &'a [EpochResult],
    timed: LoaderMetrics,
    cpu: Duration,
    digest: Option<String>,
}

impl Summary<'_> {
    fn what(&self) -> &'static str {
        match (self.args.decode_only, self.args.transform) {
            (true, _) => "decode only",
            (false, TransformKind::Train) => "train",
            (false, TransformKind::Val) => "val",
        }
    }

    fn per_worker(&self) -> f64 {
        self.timed.images_per_sec() / self.loader.workers().max(1) as f64
    }

    fn print_remote(&self) {
        let Some(stats) = self.loader.remote_stats() else {
            return;
        };
        let secs = self
            .results
            .iter()
            .map(|r| r.metrics.elapsed.as_secs_f64())
            .sum::<f64>()
            .max(1e-9);
        outln!(
            "remote: {} workers, {} batches reassigned, {} retried after a failed answer",
            stats.workers.len(),
            stats.reassigned,
            stats.retries
        );
        let t = &self.timed;
        let side = u64::from(self.args.size);
        let gb = (t.images * side * side * 3) as f64 / 1e9;
        outln!(
            "received {:.3} GB/s into batch buffers (timed epochs), {:.3} CPU-seconds per GB",
            gb / t.elapsed.as_secs_f64().max(1e-9),
            self.cpu.as_secs_f64() / gb.max(1e-12),
        );
        outln!(
            "{:>24} {:>8} {:>8} {:>8} {:>6} {:>6} {:>6}",
            "worker",
            "batches",
            "images",
            "img/s",
            "lost",
            "missed",
            "failed"
        );
        for (addr, w) in &stats.workers {
            outln!(
                "{:>24} {:>8} {:>8} {:>8.0} {:>6} {:>6} {:>6}",
                addr,
                w.batches,
                w.images,
                w.images as f64 / secs,
                w.lost,
                w.deadline_misses,
                w.refusals
            );
        }
        for line in &stats.log {
            outln!("  {line}");
        }
    }

    fn per_cpu_second(&self) -> f64 {
        self.timed.images as f64 / self.cpu.as_secs_f64().max(1e-9)
    }

    fn peak_rss(&self) -> u64 {
        self.results
            .iter()
            .map(|r| r.memory.peak_rss)
            .max()
            .unwrap_or(0)
    }

    fn print(&self) {
        let (a, l, t) = (self.args, self.loader, &self.timed);
        outln!(
            "{}: {} images per epoch (rank {}/{}) in {} batches of {}, {} {}x{}, {} workers, prefetch {}",
            self.dir.display(),
            l.samples_per_epoch(),
            a.rank,
            a.world,
            l.batches_per_epoch(),
            a.batch,
            self.what(),
            a.size,
            a.size,
            l.workers(),
            a.prefetch,
        );
        outln!(
            "{:>8} {:>8} {:>9} {:>8} {:>6} {:>9} {:>6} {:>10} {:>10}",
            "epoch",
            "images",
            "time",
            "img/s",
            "busy",
            "waited",
            "queue",
            "peak RSS",
            "anon RSS"
        );
        for r in self.results {
            let m = &r.metrics;
            let name = if r.warmup {
                format!("warm-up{}", r.epoch + 1)
            } else {
                (r.epoch - a.warmup + 1).to_string()
            };
            outln!(
                "{:>8} {:>8} {:>7.2} s {:>8.0} {:>5.0}% {:>7.2} s {:>6.1} {:>10} {:>10}",
                name,
                m.images,
                m.elapsed.as_secs_f64(),
                m.images_per_sec(),
                100.0 * m.busy_fraction(),
                m.consumer_wait.as_secs_f64(),
                m.mean_queue_depth(),
                super::human_bytes(r.memory.peak_rss),
                super::human_bytes(r.memory.rss_anon),
            );
        }
        outln!(
            "timed: {} epochs, {} images in {:.2} s = {:.0} img/s, {:.0} img/s per worker, {:.0} images per CPU-second",
            a.epochs,
            t.images,
            t.elapsed.as_secs_f64(),
            t.images_per_sec(),
            self.per_worker(),
            self.per_cpu_second(),
        );
        outln!(
            "per image (worker time): read {:.3} ms, decode {:.3} ms, augment {:.3} ms; workers {:.0}% busy",
            ms_per_image(t.read, t),
            ms_per_image(t.decode, t),
            ms_per_image(t.augment, t),
            100.0 * t.busy_fraction(),
        );
        outln!(
            "consumer waited {:.2} s ({:.0}% of the time), mean queue depth {:.1} (max {}), readahead {}",
            t.consumer_wait.as_secs_f64(),
            100.0 * t.consumer_wait.as_secs_f64() / t.elapsed.as_secs_f64().max(1e-9),
            t.mean_queue_depth(),
            t.queue_depth_max,
            super::human_bytes(t.readahead_bytes),
        );
        outln!(
            "peak RSS {}; records failed: {}",
            super::human_bytes(self.peak_rss()),
            self.loader.metrics().failures,
        );
        self.print_remote();
        if let Some(d) = &self.digest {
            outln!("digest: {d}");
        }
    }

    fn json(&self) -> serde_json::Value {
        let (a, l, t) = (self.args, self.loader, &self.timed);
        let epochs: Vec<serde_json::Value> = self
            .results
            .iter()
            .map(|r| {
                let m = &r.metrics;
                serde_json::json!({
                    "epoch": r.epoch,
                    "warmup": r.warmup,
                    "images": m.images,
                    "seconds": m.elapsed.as_secs_f64(),
                    "images_per_sec": m.images_per_sec(),
                    "busy": m.busy_fraction(),
                    "consumer_wait_s": m.consumer_wait.as_secs_f64(),
                    "mean_queue_depth": m.mean_queue_depth(),
                    "failures": m.failures,
                    "peak_rss_bytes": r.memory.peak_rss,
                    "rss_bytes": r.memory.rss,
                    "rss_anon_bytes": r.memory.rss_anon,
                    "rss_file_bytes": r.memory.rss_file,
                })
            })
            .collect();
        let failed: Vec<serde_json::Value> = l
            .failures()
            .iter()
            .take(100)
            .map(|f| {
                serde_json::json!({
                    "epoch": f.epoch,
                    "position": f.position,
                    "record": f.record,
                    "shard": f.shard,
                    "shard_record": f.shard_record,
                    "source_path": f.source_path,
                    "reason": f.reason,
                    "replaced_by": f.replaced_by,
                })
            })
            .collect();
        serde_json::json!({
            "dataset": self.dir,
            "records": l.dataset().len(),
            "images_per_epoch": l.samples_per_epoch(),
            "batches_per_epoch": l.batches_per_epoch(),
            "transform": self.what(),
            "size": a.size,
            "batch": a.batch,
            "workers": l.workers(),
            "prefetch": a.prefetch,
            "rank": a.rank,
            "world": a.world,
            "seed": a.seed,
            "epochs": epochs,
            "timed": {
                "epochs": a.epochs,
                "images": t.images,
                "seconds": t.elapsed.as_secs_f64(),
                "images_per_sec": t.images_per_sec(),
                "images_per_sec_per_worker": self.per_worker(),
                "images_per_cpu_sec": self.per_cpu_second(),
                "cpu_seconds": self.cpu.as_secs_f64(),
                "read_ms_per_image": ms_per_image(t.read, t),
                "decode_ms_per_image": ms_per_image(t.decode, t),
                "augment_ms_per_image": ms_per_image(t.augment, t),
                "busy": t.busy_fraction(),
                "consumer_wait_s": t.consumer_wait.as_secs_f64(),
                "mean_queue_depth": t.mean_queue_depth(),
                "max_queue_depth": t.queue_depth_max,
                "readahead_bytes": t.readahead_bytes,
            },
            "peak_rss_bytes": self.peak_rss(),
            "failures": l.metrics().failures,
            "failed_records": failed,
            "digest": self.digest,
            "remote": l.remote_stats().map(|s| serde_json::json!({
                "reassigned": s.reassigned,
                "retries": s.retries,
                "received_gb_per_sec": (self.timed.images * u64::from(a.size).pow(2) * 3) as f64 / 1e9 / self.timed.elapsed.as_secs_f64().max(1e-9),
                "cpu_seconds_per_gb": self.cpu.as_secs_f64() / ((self.timed.images * u64::from(a.size).pow(2) * 3) as f64 / 1e9).max(1e-12),
                "workers": s.workers.iter().map(|(addr, w)| serde_json::json!({
                    "address": addr,
                    "name": w.name,
                    "batches": w.batches,
                    "images": w.images,
                    "bytes": w.bytes,
                    "lost": w.lost,
                    "deadline_misses": w.deadline_misses,
                    "refusals": w.refusals,
                    "connect_failures": w.connect_failures,
                    "last_error": w.last_error,
                })).collect::<Vec<_>>(),
                "log": s.log,
            })),
        })
    }
}
