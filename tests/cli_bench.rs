//! End-to-end: `shardfeed bench` on a small synthetic dataset, as a user or a script runs it.

use std::path::{Path, PathBuf};

mod common;
use common::{s, shardfeed};

fn dataset(dir: &Path) -> PathBuf {
    shardfeed_engine::demo::synthetic_dataset(dir, 2, 6).expect("synthetic dataset")
}

fn json(args: &[&str]) -> serde_json::Value {
    let out = shardfeed(args);
    assert!(
        out.status.success(),
        "shardfeed {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON on stdout")
}

#[test]
fn bench_reports_rates_stages_and_memory_as_json() {
    let t = tempfile::tempdir().expect("tempdir");
    let root = dataset(t.path());
    let common = [
        "bench",
        "--size",
        "48",
        "--batch",
        "5",
        "--workers",
        "2",
        "--epochs",
        "2",
    ];
    let mut args: Vec<&str> = common.to_vec();
    args.extend([s(&root), "--json"]);
    let v = json(&args);
    assert_eq!(v["records"], 12);
    assert_eq!(v["batches_per_epoch"], 3);
    assert_eq!(v["transform"], "train");
    let epochs = v["epochs"].as_array().expect("epochs");
    assert_eq!(epochs.len(), 3, "one warm-up and two timed");
    assert_eq!(epochs[0]["warmup"], true);
    assert!(epochs.iter().all(|e| e["images"] == 12));
    assert!(epochs
        .iter()
        .all(|e| e["peak_rss_bytes"].as_u64() > Some(0)));
    let timed = &v["timed"];
    assert_eq!(timed["images"], 24);
    assert!(timed["images_per_sec"].as_f64() > Some(0.0));
    assert!(timed["decode_ms_per_image"].as_f64() > Some(0.0));
    assert!(timed["augment_ms_per_image"].as_f64() > Some(0.0));
    assert!(timed["busy"].as_f64() > Some(0.0));
    assert_eq!(v["failures"], 0);

    // The text summary, and the val split with the val transform.
    let mut args: Vec<&str> = common.to_vec();
    args.extend([s(&root), "--transform", "val"]);
    let out = shardfeed(&args);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("val: 2 images per epoch"), "{text}");
    assert!(text.contains("img/s per worker"), "{text}");
    assert!(text.contains("peak RSS"), "{text}");

    // Decode only, one rank of two.
    let mut args: Vec<&str> = common.to_vec();
    args.extend([
        s(&root),
        "--json",
        "--decode-only",
        "--rank",
        "1",
        "--world",
        "2",
    ]);
    let v = json(&args);
    assert_eq!(v["transform"], "decode only");
    assert_eq!(v["images_per_epoch"], 6);
    assert_eq!(v["timed"]["augment_ms_per_image"], 0.0);
}

#[test]
fn bench_counts_a_corrupt_record_and_strict_names_it() {
    let t = tempfile::tempdir().expect("tempdir");
    let root = dataset(t.path());
    let train = root.join("train");
    let ds = shardfeed_engine::shards::Dataset::open(&train).expect("opens");
    let shard = ds.shards()[1].path().to_owned();
    let e = ds.shards()[1].entry(0).expect("entry");
    drop(ds);
    let mut bytes = std::fs::read(&shard).expect("reads");
    bytes[(e.offset + u64::from(e.len) / 2) as usize] ^= 1;
    std::fs::write(&shard, bytes).expect("writes");

    let args = [
        "bench",
        s(&train),
        "--size",
        "32",
        "--batch",
        "4",
        "--workers",
        "2",
        "--epochs",
        "1",
        "--warmup",
        "0",
    ];
    let out = shardfeed(&[&args[..], &["--json"]].concat());
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(v["failures"], 1);
    assert_eq!(v["epochs"][0]["images"], 12, "replaced, not dropped");
    let f = &v["failed_records"][0];
    assert_eq!(f["shard_record"], 0);
    assert_eq!(f["shard"], s(&shard));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("1 records failed"), "{stderr}");

    let out = shardfeed(&[&args[..], &["--strict"]].concat());
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(s(&shard)), "{stderr}");
    assert!(stderr.contains("record 0 (global record"), "{stderr}");
    assert!(stderr.contains("strict mode"), "{stderr}");
}

#[test]
fn bench_refuses_what_is_not_a_dataset() {
    let t = tempfile::tempdir().expect("tempdir");
    let out = shardfeed(&["bench", s(t.path())]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("manifest.json"), "{stderr}");
}

#[test]
fn max_pixels_reaches_the_loader_and_strict_names_the_limit() {
    let t = tempfile::tempdir().expect("tempdir");
    let train = dataset(t.path()).join("train");
    let args = [
        "bench",
        s(&train),
        "--size",
        "32",
        "--batch",
        "4",
        "--workers",
        "1",
        "--epochs",
        "1",
        "--warmup",
        "0",
        // Every synthetic image is larger than 10x10: each one is refused from its header.
        "--max-pixels",
        "100",
        "--strict",
    ];
    let out = shardfeed(&args);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("more than the limit of 100 pixels"),
        "{stderr}"
    );
    let out = shardfeed(&["bench", s(&train), "--max-pixels", "0"]);
    assert_eq!(out.status.code(), Some(2), "a zero limit is a usage error");
}
