//! Helpers of the trainer's end-to-end tests (`cli.rs`, `multi_process.rs`): the binary with
//! small settings, its JSON-lines log, a tiny dataset, torchrun, and bounded waits.
#![allow(dead_code)]

use std::path::Path;
use std::process::Command;

pub fn train() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_shardfeed-train"));
    c.args(["--device", "cpu", "--threads", "1"]);
    c
}

pub fn tiny(c: &mut Command) -> &mut Command {
    c.args([
        "--data",
        "synthetic",
        "--model",
        "small",
        "--classes",
        "4",
        "--image-size",
        "16",
        "--batch-size",
        "8",
        "--steps-per-epoch",
        "3",
        "--val-batches",
        "1",
        "--lr",
        "5",
        "--warmup-epochs",
        "0.5",
        "--log-every",
        "2",
    ])
}

pub fn events(log: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A small shardfeed dataset (4 classes, 8 training images each, 2 val each) in `dir`.
pub fn tiny_shards(dir: &Path) -> std::path::PathBuf {
    let opts = shardfeed_engine::synth::SynthOptions {
        classes: 4,
        per_class: 8,
        val_per_class: 2,
        ..shardfeed_engine::synth::SynthOptions::default()
    };
    shardfeed_engine::demo::synthetic_dataset_with(dir, &opts, 2).unwrap()
}

pub fn step_losses(log: &Path) -> Vec<(u64, f64)> {
    events(log)
        .iter()
        .filter(|e| e["event"] == "step")
        .map(|e| (e["step"].as_u64().unwrap(), e["loss"].as_f64().unwrap()))
        .collect()
}

/// torchrun from the project's torch venv (`$TORCH_VENV`, else `.venv/torch` at the workspace
/// root), or `None`, saying so, where it is absent.
pub fn torchrun() -> Option<std::path::PathBuf> {
    let venv = std::env::var_os("TORCH_VENV")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/torch"));
    let bin = venv.join("bin").join("torchrun");
    if bin.exists() {
        Some(bin)
    } else {
        eprintln!(
            "skipped: no torchrun at {} (scripts/setup-torch.sh installs it)",
            bin.display()
        );
        None
    }
}

/// Runs `c` to its end, killing it after `limit` (a hung launcher fails the test instead of
/// hanging it; no assertion is made on the time taken).
pub fn output_within(c: &mut Command, limit: std::time::Duration) -> std::process::Output {
    use std::process::Stdio;
    let mut child = c
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "{c:?} still running after {limit:?}; stderr: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}
