//! End-to-end: the `shardfeed-train` binary on the CPU.

mod common;

use common::*;
use std::path::Path;
use std::process::Command;

fn shards_run(data: &Path, epochs: &str) -> Command {
    let mut c = train();
    c.arg("--data")
        .arg(format!("shards:{}", data.display()))
        .args([
            "--model",
            "small",
            "--image-size",
            "32",
            "--batch-size",
            "8",
            "--workers",
            "2",
            "--lr",
            "2",
            "--warmup-epochs",
            "0.5",
            "--log-every",
            "1",
            "--epochs",
            epochs,
        ]);
    c
}

#[test]
fn shards_data_trains_evaluates_and_resumes_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let data = tiny_shards(dir.path());

    // Uninterrupted: two epochs of 4 steps, evaluated on the 8 val images after each.
    let log_a = dir.path().join("a.jsonl");
    let out = shards_run(&data, "2")
        .arg("--log-file")
        .arg(&log_a)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("4 steps/epoch"), "{stderr}");
    assert!(stderr.contains("(8 images)"), "{stderr}");
    let a = step_losses(&log_a);
    assert_eq!(a.len(), 8);

    // The same two-epoch run stopped after 6 steps (mid-epoch), checkpointed, then resumed:
    // the same batches, the same losses.
    let ckpt = dir.path().join("ckpt");
    let log_b = dir.path().join("b.jsonl");
    for max_steps in ["6", "8"] {
        let out = shards_run(&data, "2")
            .args(["--max-steps", max_steps])
            .arg("--checkpoint-dir")
            .arg(&ckpt)
            .arg("--resume")
            .arg("--log-file")
            .arg(&log_b)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let b = step_losses(&log_b);
    assert_eq!(b, a, "resumed run differs from the uninterrupted one");
}

#[test]
fn bad_data_sources_are_refused_naming_them() {
    let out = train()
        .args(["--data", "shards:/no/such/shards"])
        .output()
        .unwrap();
    // A usage or I/O error: 2, as for the `shardfeed` CLI.
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/no/such/shards"), "{err}");
    let out = train().args(["--data", "ftp://x"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown data source 'ftp://x'"));
}

/// The first line of the binary's stderr and its exit code.
fn failure(c: &mut Command) -> (Option<i32>, String) {
    let out = c.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    let line = err
        .lines()
        .find(|l| l.contains("error"))
        .unwrap_or_default();
    (out.status.code(), line.to_owned())
}

#[test]
fn usage_and_io_errors_exit_2_naming_what_is_wrong() {
    let bare = || Command::new(env!("CARGO_BIN_EXE_shardfeed-train"));
    let (code, err) = failure(bare().args(["--device", "tpu"]));
    assert_eq!(
        (code, err.as_str()),
        (
            Some(2),
            "shardfeed-train: error: --device tpu: expected cpu, cuda or cuda:N"
        )
    );
    let (code, err) = failure(bare().args(["--device", "cpu", "--replicas", "0"]));
    assert_eq!(
        (code, err.as_str()),
        (
            Some(2),
            "shardfeed-train: error: --replicas must be at least 1"
        )
    );
    // A log file that cannot be created.
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("no-such-dir").join("train.jsonl");
    let out = tiny(&mut train())
        .args(["--epochs", "1", "--log-file"])
        .arg(&log)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("cannot open the log {}", log.display())),
        "{err}"
    );
}

#[test]
fn a_diverged_run_exits_1() {
    // Not a usage error: the run started and failed.
    let out = train()
        .args(["--model", "small", "--classes", "4", "--image-size", "16"])
        .args([
            "--batch-size",
            "8",
            "--steps-per-epoch",
            "3",
            "--epochs",
            "1",
        ])
        .args(["--lr", "1e30", "--warmup-epochs", "0", "--eval-every", "0"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("training diverged"), "{err}");
}

#[test]
fn synthetic_run_logs_checkpoints_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("ckpt");
    let log = dir.path().join("train.jsonl");
    let out = tiny(&mut train())
        .args(["--epochs", "2", "--checkpoint-dir"])
        .arg(&ckpt)
        .arg("--log-file")
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
        .arg("--log-file")
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

/// The flags and plumbing of `--replicas` (the binary writes rank 0's state only): that the
/// replicas end with identical weights, equal to one replica on the union batch with per-half
/// batch norm, is checked in tests/data_parallel.rs on the same replica code.
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

/// Every option string of `cmd` (long, short and aliases, `--help` and `--version` included), as
/// torchrun's parser sees them after the training program's name.
fn option_strings(mut cmd: clap::Command) -> Vec<String> {
    cmd.build();
    let mut out = Vec::new();
    for arg in cmd.get_arguments() {
        let longs = arg
            .get_long()
            .into_iter()
            .chain(arg.get_all_aliases().unwrap_or_default());
        out.extend(longs.map(|l| format!("--{l}")));
        let shorts = arg.get_short().into_iter();
        out.extend(
            shorts
                .chain(arg.get_all_short_aliases().unwrap_or_default())
                .map(|s| format!("-{s}")),
        );
    }
    out
}

/// torchrun (argparse, abbreviations allowed) reads the training program's arguments too: any
/// flag of ours that is an ambiguous prefix of its options (`--log` of `--log-dir` and
/// `--logs-specs`, ...) makes the whole launch fail before our binary starts. torchrun's own parser must accept every flag,
/// including flags added later (the list comes from clap).
#[test]
fn every_flag_passes_torchruns_parser() {
    let Some(torchrun) = torchrun() else { return };
    let flags = option_strings(shardfeed_trainer::launch::command());
    for expected in ["--data", "--checkpoint-dir", "--help", "--version"] {
        assert!(
            flags.iter().any(|f| f == expected),
            "{expected} in {flags:?}"
        );
    }
    // `/bin/true` stands in for the training program: only the parse is under test. One local
    // process, rendezvous on loopback (--standalone).
    let out = output_within(
        Command::new(torchrun)
            .args([
                "--no-python",
                "--standalone",
                "--nnodes",
                "1",
                "--nproc-per-node",
                "1",
            ])
            .arg("/bin/true")
            .args(&flags),
        std::time::Duration::from_secs(300),
    );
    assert!(
        out.status.success(),
        "torchrun refused our flags {flags:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Not a test of its own: when `SHARDFEED_TEST_SERVE` names a dataset, this test binary runs as
/// a `shardfeed serve` worker for [`remote_workers_train_exactly_as_local_cores_even_when_one_dies`]
/// (a process of its own, so that it can be killed).
#[test]
fn serve_worker_process() {
    let Ok(dir) = std::env::var("SHARDFEED_TEST_SERVE") else {
        return;
    };
    let server = shardfeed_serve::Server::start(shardfeed_serve::ServeConfig {
        listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        workers: 1,
        log: false,
        ..shardfeed_serve::ServeConfig::new(dir)
    })
    .unwrap();
    // The test harness may capture stdout: the address goes to the file the parent named.
    let addr_file = std::env::var("SHARDFEED_TEST_SERVE_ADDR").unwrap();
    let tmp = format!("{addr_file}.tmp");
    std::fs::write(&tmp, server.local_addr().to_string()).unwrap();
    std::fs::rename(&tmp, &addr_file).unwrap();
    server.wait();
}

/// A worker process (this test binary as [`serve_worker_process`]); killed when dropped.
struct TestWorker {
    child: std::process::Child,
    addr: String,
}

impl TestWorker {
    fn start(data: &Path, addr_file: &Path) -> TestWorker {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["serve_worker_process", "--exact", "--test-threads", "1"])
            .env("SHARDFEED_TEST_SERVE", data)
            .env("SHARDFEED_TEST_SERVE_ADDR", addr_file)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let started = std::time::Instant::now();
        let addr = loop {
            if let Ok(a) = std::fs::read_to_string(addr_file) {
                break a;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("the worker process ended: {status}");
            }
            assert!(
                started.elapsed() < std::time::Duration::from_secs(60),
                "no worker address"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        };
        TestWorker { child, addr }
    }
}

impl Drop for TestWorker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn remote_workers_train_exactly_as_local_cores_even_when_one_dies() {
    let dir = tempfile::tempdir().unwrap();
    let data = tiny_shards(dir.path());
    let local_log = dir.path().join("local.jsonl");
    let out = shards_run(&data, "4")
        .arg("--log-file")
        .arg(&local_log)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let local = step_losses(&local_log);
    assert_eq!(local.len(), 16);

    let mut victim = TestWorker::start(&data, &dir.path().join("victim.addr"));
    let other = TestWorker::start(&data, &dir.path().join("other.addr"));
    let remote_log = dir.path().join("remote.jsonl");
    let run = shards_run(&data, "4")
        .args(["--remote", &format!("{},{}", victim.addr, other.addr)])
        .arg("--log-file")
        .arg(&remote_log)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Kill one worker once training has begun.
    let started = std::time::Instant::now();
    while std::fs::read_to_string(&remote_log).map_or(0, |t| t.matches("\"step\"").count()) < 3 {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(120),
            "no step logged"
        );
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    let _ = victim.child.kill();
    let _ = victim.child.wait();
    let out = run.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("{} lost", victim.addr)),
        "the kill landed mid-run: {stderr}"
    );
    assert_eq!(
        step_losses(&remote_log),
        local,
        "losses with remote workers, one killed"
    );
}
