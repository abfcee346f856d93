//! Command-line flags and the subcommands they run.

// Every command prints through these (see `out`): `println!` panics on a closed stdout. They
// come before the `mod` lines so that every command module sees them.

/// `println!` that never panics: a closed stdout silences the rest of the output.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::cli::out::line(format_args!($($arg)*))
    };
}

/// `eprintln!` that never panics.
macro_rules! errln {
    ($($arg:tt)*) => {
        $crate::cli::out::err_line(format_args!($($arg)*))
    };
}

pub mod out;

mod bench;
mod files;
mod health;
mod inspect;
mod serve;
mod shard;
mod synth;
mod verify;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// shardfeed: sharded, verified, memory-mapped ImageNet input pipeline.
#[derive(Debug, Parser)]
#[command(name = "shardfeed", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Turn an image folder (ILSVRC2012 layout) into shards.
    Shard(shard::ShardArgs),
    /// Show what a dataset holds: counts, classes, sizes, formats, version.
    Inspect(inspect::InspectArgs),
    /// Check every checksum and index entry of a dataset.
    Verify(verify::VerifyArgs),
    /// Write one record's image back out as a file.
    Extract(inspect::ExtractArgs),
    /// Generate a deterministic ImageNet-shaped folder of synthetic JPEGs.
    Synth(synth::SynthArgs),
    /// Measure the loader: images/s, time per stage, worker busy %, memory.
    Bench(bench::BenchArgs),
    /// Compute batches for remote clients (trainers, `bench --remote`) on this host's cores.
    Serve(serve::ServeArgs),
    /// Check that a `serve` worker is up: GET /healthz on its --metrics address (exit 0 or 1).
    Health(health::HealthArgs),
}

/// Runs the parsed command; `Ok` carries the exit code (1 when a check found problems).
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Shard(a) => shard::run(a),
        Command::Inspect(a) => inspect::run(a),
        Command::Verify(a) => verify::run(a),
        Command::Extract(a) => inspect::extract(a),
        Command::Synth(a) => synth::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Serve(a) => serve::run(a),
        Command::Health(a) => health::run(a),
    }
}

/// Parses a byte size: `268435456`, `256MiB`, `256M`, `1.5GiB`, `500k`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size such as 256MiB"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        other => return Err(format!("unknown size unit {other:?} in {s:?}")),
    };
    let bytes = n * mult as f64;
    if !(bytes >= 1.0 && bytes < u64::MAX as f64) {
        return Err(format!("{s:?} is not a positive size"));
    }
    Ok(bytes as u64)
}

/// Human-readable bytes in binary units (`91.21 MiB`): indicatif's, as the progress bars print
/// them, so the two never disagree.
pub fn human_bytes(b: u64) -> String {
    indicatif::HumanBytes(b).to_string()
}

/// A progress bar on stderr (hidden when stderr is not a terminal).
pub fn progress_bar(len: u64, template: &str) -> indicatif::ProgressBar {
    let pb = indicatif::ProgressBar::new(len);
    if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
        pb.set_style(style.progress_chars("=> "));
    }
    pb
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_units() {
        assert_eq!(parse_size("256MiB"), Ok(256 << 20));
        assert_eq!(parse_size("256m"), Ok(256 << 20));
        assert_eq!(parse_size("1.5GiB"), Ok(3 << 29));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("0").is_err());
        assert!(parse_size("12 parsecs").is_err());
        assert!(parse_size("MiB").is_err());
    }

    #[test]
    fn bytes_print_in_binary_units() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(3 << 20), "3.00 MiB");
    }
}
