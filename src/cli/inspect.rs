//! `shardfeed inspect DIR` and `shardfeed extract DIR`.

use anyhow::bail;
use clap::Args;
use shardfeed_engine::shards::Dataset;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// A dataset directory (or a directory holding train/ and val/ datasets).
    dir: PathBuf,
    /// List every class with its record count.
    #[arg(long)]
    classes: bool,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, serde::Serialize)]
struct Inspection {
    dir: String,
    split: String,
    format_version: String,
    records: u64,
    bytes: u64,
    shards: usize,
    shard_bytes_min: u64,
    shard_bytes_max: u64,
    classes: usize,
    class_records_min: u64,
    class_records_max: u64,
    class_histogram: Vec<(String, u64)>,
    formats: BTreeMap<String, u64>,
    image_bytes_mean: f64,
    width_mean: f64,
    height_mean: f64,
    common_sizes: Vec<(String, u64)>,
    skipped: usize,
    params: shardfeed_engine::shards::BuildParams,
}

fn inspect_one(dir: &std::path::Path) -> anyhow::Result<Inspection> {
    let ds = Dataset::open(dir)?;
    let m = ds.manifest();
    let mut sizes: BTreeMap<(u32, u32), u64> = BTreeMap::new();
    let (mut w_sum, mut h_sum, mut img_sum) = (0f64, 0f64, 0f64);
    for shard in ds.shards() {
        for i in 0..shard.len() {
            let meta = shard.meta(i)?;
            *sizes.entry((meta.width, meta.height)).or_default() += 1;
            w_sum += f64::from(meta.width);
            h_sum += f64::from(meta.height);
            img_sum += f64::from(meta.image_len);
        }
    }
    let n = (ds.len() as f64).max(1.0);
    let mut common: Vec<(String, u64)> = sizes
        .into_iter()
        .map(|((w, h), c)| (format!("{w}x{h}"), c))
        .collect();
    common.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    common.truncate(5);
    Ok(Inspection {
        dir: dir.display().to_string(),
        split: m.split.clone(),
        format_version: m.format_version.clone(),
        records: m.records,
        bytes: m.bytes,
        shards: m.shards.len(),
        shard_bytes_min: m.shards.iter().map(|s| s.bytes).min().unwrap_or(0),
        shard_bytes_max: m.shards.iter().map(|s| s.bytes).max().unwrap_or(0),
        classes: m.classes.len(),
        class_records_min: m.classes.iter().map(|c| c.records).min().unwrap_or(0),
        class_records_max: m.classes.iter().map(|c| c.records).max().unwrap_or(0),
        class_histogram: m
            .classes
            .iter()
            .map(|c| (c.synset.clone(), c.records))
            .collect(),
        formats: m.formats.clone(),
        image_bytes_mean: img_sum / n,
        width_mean: w_sum / n,
        height_mean: h_sum / n,
        common_sizes: common,
        skipped: m.skipped.len(),
        params: m.params.clone(),
    })
}

pub fn run(a: InspectArgs) -> anyhow::Result<ExitCode> {
    let found: Vec<Inspection> = shardfeed_engine::layout::dataset_dirs(&a.dir)
        .iter()
        .map(|d| inspect_one(d))
        .collect::<anyhow::Result<_>>()?;
    if a.json {
        outln!("{}", serde_json::to_string_pretty(&found)?);
        return Ok(ExitCode::SUCCESS);
    }
    for i in &found {
        outln!("{} ({} split, format {})", i.dir, i.split, i.format_version);
        outln!(
            "  records   {} in {} shards, {} ({} to {} per shard)",
            i.records,
            i.shards,
            super::human_bytes(i.bytes),
            super::human_bytes(i.shard_bytes_min),
            super::human_bytes(i.shard_bytes_max)
        );
        outln!(
            "  classes   {} ({} to {} records per class)",
            i.classes,
            i.class_records_min,
            i.class_records_max
        );
        let formats: Vec<String> = i.formats.iter().map(|(k, v)| format!("{k} {v}")).collect();
        outln!("  formats   {}", formats.join(", "));
        let sizes: Vec<String> = i
            .common_sizes
            .iter()
            .map(|(s, c)| format!("{s} ({c})"))
            .collect();
        outln!(
            "  images    mean {:.0}x{:.0}, {} mean; most common: {}",
            i.width_mean,
            i.height_mean,
            super::human_bytes(i.image_bytes_mean as u64),
            sizes.join(", ")
        );
        let p = &i.params;
        let layout = match (p.target_shard_bytes, p.shard_count) {
            (Some(b), _) => format!("target {} per shard", super::human_bytes(b)),
            (_, Some(n)) => format!("{n} shards"),
            _ => "?".into(),
        };
        let reencode = match (p.max_side, p.quality) {
            (None, None) => String::new(),
            (side, q) => format!(" (max side {side:?}, quality {q:?})"),
        };
        outln!(
            "  made by   {}: {}{reencode}, {layout}, {} order (seed {}){}",
            p.tool,
            p.mode,
            p.order,
            p.shuffle_seed,
            if p.strict { ", strict" } else { "" }
        );
        outln!("  skipped   {} inputs", i.skipped);
        if a.classes {
            outln!("  class histogram:");
            for (k, (s, c)) in i.class_histogram.iter().enumerate() {
                outln!("    {k:>5} {s} {c}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Args)]
pub struct ExtractArgs {
    /// The dataset directory.
    dir: PathBuf,
    /// Global record number.
    #[arg(long, conflicts_with = "path", required_unless_present = "path")]
    index: Option<u64>,
    /// The record's source path, as stored (e.g. train/n01440764/n01440764_10026.JPEG).
    #[arg(long)]
    path: Option<String>,
    /// Output file (default: the source file's name, in the current directory).
    #[arg(long, short)]
    out: Option<PathBuf>,
    /// Overwrite the output file if it exists.
    #[arg(long)]
    force: bool,
}

pub fn extract(a: ExtractArgs) -> anyhow::Result<ExitCode> {
    let ds = Dataset::open(&a.dir)?;
    let g = match (a.index, &a.path) {
        (Some(g), _) => g,
        (None, Some(p)) => match ds.find_path(p)? {
            Some(g) => g,
            None => bail!("{}: no record with source path {p}", a.dir.display()),
        },
        (None, None) => bail!("give --index or --path"),
    };
    let rec = ds.record(g)?;
    let out = match a.out {
        Some(o) => o,
        None => super::files::default_name(rec.path),
    };
    super::files::write_file(&out, rec.image, a.force)?;
    let class = rec
        .label
        .and_then(|l| ds.manifest().classes.get(l as usize))
        .map_or_else(|| "-".to_owned(), |c| format!("{} ({})", c.index, c.synset));
    outln!(
        "record {g}: {} -> {} ({} bytes, {} {}x{}, label {class})",
        rec.path,
        out.display(),
        rec.image.len(),
        rec.format,
        rec.width,
        rec.height
    );
    Ok(ExitCode::SUCCESS)
}
