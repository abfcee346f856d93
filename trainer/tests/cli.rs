//! End-to-end: the `shardfeed-train` binary on the CPU.

use std::path::Path;
use std::process::Command;

fn train() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_shardfeed-train"));
    c.args(["--device", "cpu", "--threads", "1"]);
    c
}

fn tiny(c: &mut Command) -> &mut Command {
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

fn events(log: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn shards_data_is_refused_clearly_until_wired() {
    let out = train().args(["--data", "shards:/data/x"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--data shards:/data/x is not wired yet"),
        "{err}"
    );
    let out = train().args(["--data", "ftp://x"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown data source 'ftp://x'"));
}

#[test]
fn synthetic_run_logs_checkpoints_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("ckpt");
    let log = dir.path().join("train.jsonl");
    let out = tiny(&mut train())
        .args(["--epochs", "2", "--checkpoint-dir"])
        .arg(&ckpt)
        .arg("--log")
        .arg(&log)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("img/s") && stderr.contains("data wait"),
        "{stderr}"
    );
    let ev = events(&log);
    let kinds: Vec<&str> = ev.iter().map(|e| e["event"].as_str().unwrap()).collect();
    assert_eq!(kinds.first(), Some(&"start"));
    assert_eq!(kinds.last(), Some(&"end"));
    assert_eq!(kinds.iter().filter(|k| **k == "step").count(), 6);
    assert_eq!(kinds.iter().filter(|k| **k == "eval").count(), 2);
    assert!(kinds.contains(&"checkpoint") && kinds.contains(&"throughput"));

    // Two more epochs from the checkpoint: steps 7..=12.
    let out = tiny(&mut train())
        .args(["--epochs", "4", "--resume", "--checkpoint-dir"])
        .arg(&ckpt)
        .arg("--log")
        .arg(&log)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("resuming at step 6 (epoch 2, batch 0)"));
    let ev = events(&log);
    let steps: Vec<u64> = ev
        .iter()
        .filter(|e| e["event"] == "step")
        .map(|e| e["step"].as_u64().unwrap())
        .collect();
    assert_eq!(steps, (1..=12).collect::<Vec<_>>());
}

#[test]
fn two_cpu_replicas_run_data_parallel() {
    let out = tiny(&mut train())
        .args([
            "--epochs",
            "1",
            "--replicas",
            "2",
            "--eval-every",
            "1",
            "--checkpoint-every",
            "0",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("2 replica(s), global batch 16"), "{stderr}");
    // Evaluation sums both replicas' validation batches.
    assert!(stderr.contains("(16 images)"), "{stderr}");
}

#[test]
fn bench_mode_prints_images_per_second() {
    let out = tiny(&mut train())
        .args([
            "--epochs",
            "1",
            "--eval-every",
            "0",
            "--checkpoint-every",
            "0",
            "--bench-warmup",
            "1",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.starts_with("shardfeed-train small: 16 images in "),
        "{stdout}"
    );
    assert!(stdout.trim_end().ends_with("img/s"));
}
