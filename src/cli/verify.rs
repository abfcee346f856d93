//! `shardfeed verify DIR`.

use clap::Args;
use shardfeed_engine::layout::dataset_dirs;
use shardfeed_engine::shards::{verify_dataset, Manifest};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// A dataset directory (or a directory holding train/ and val/ datasets).
    dir: PathBuf,
}

pub fn run(a: VerifyArgs) -> anyhow::Result<ExitCode> {
    let mut bad = 0usize;
    for dir in dataset_dirs(&a.dir) {
        // Only sizes the progress bar: verify_dataset reports a manifest that does not load.
        let total = Manifest::load(&dir).map_or(0, |m| m.bytes);
        let pb = super::progress_bar(
            total,
            "{spinner} verify [{elapsed_precise}] [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
        );
        let report = verify_dataset(&dir, |b| pb.inc(b))?;
        pb.finish_and_clear();
        for p in &report.problems {
            outln!("BAD {}: {p}", p.file.display());
        }
        let bad_records = report
            .problems
            .iter()
            .filter(|p| p.record.is_some())
            .count();
        let bad_shards = report.bad_shards;
        if report.is_ok() {
            outln!(
                "{}: OK, {} shards, {} records, {} checked",
                dir.display(),
                report.shards,
                report.records,
                super::human_bytes(report.bytes)
            );
        } else {
            outln!(
                "{}: FAILED: {} problems in {bad_shards} of {} shards ({bad_records} bad records)",
                dir.display(),
                report.problems.len(),
                report.shards
            );
            bad += report.problems.len();
        }
    }
    Ok(if bad == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
