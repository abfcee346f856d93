//! The reference the Python tests compare with: runs the engine's `Loader` from Rust, with no
//! Python in the process, and prints one SHA-256 per epoch over every batch's bytes (images,
//! NHWC, then labels as little-endian u32s), as JSON lines. `python/tests/test_digest.py`
//! computes the same over what `shardfeed.Loader` hands to Python.
//!
//! ```text
//! cargo run --release -p shardfeed-python --example engine_digest -- DATASET \
//!     --batch 8 --transform train --size 64 --seed 0 --rank 0 --world 1 --last-batch pad \
//!     --epochs 2 --workers 2
//! ```

use sha2::{Digest, Sha256};
use shardfeed_engine::augment::{TrainTransform, Transform, ValTransform};
use shardfeed_engine::loader::{Loader, LoaderConfig};
use shardfeed_engine::sampler::LastBatch;
use std::collections::HashMap;
use std::process::ExitCode;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("engine_digest: {e}");
            ExitCode::from(2)
        }
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = args
        .next()
        .ok_or("usage: engine_digest DATASET [--key value]...")?;
    let mut opts: HashMap<String, String> = HashMap::new();
    while let Some(k) = args.next() {
        let key = k
            .strip_prefix("--")
            .ok_or_else(|| format!("expected --key, got {k:?}"))?;
        let v = args
            .next()
            .ok_or_else(|| format!("--{key} needs a value"))?;
        opts.insert(key.to_owned(), v);
    }
    let get = |k: &str, default: &str| opts.get(k).cloned().unwrap_or_else(|| default.into());
    let size: u32 = get("size", "224").parse()?;
    let val = match get("transform", "train").as_str() {
        "train" => false,
        "val" => true,
        other => return Err(format!("--transform train|val, not {other}").into()),
    };
    let base = if val {
        LoaderConfig::val(size)
    } else {
        LoaderConfig::train(size)
    };
    let config = LoaderConfig {
        transform: if val {
            Transform::Val(ValTransform::new(size))
        } else {
            Transform::Train(TrainTransform::new(size))
        }
        .into(),
        batch_size: get("batch", "128").parse()?,
        workers: get("workers", "0").parse()?,
        seed: get("seed", "0").parse()?,
        rank: get("rank", "0").parse()?,
        world: get("world", "1").parse()?,
        last_batch: match get("last-batch", "pad").as_str() {
            "pad" => LastBatch::Pad,
            "drop" => LastBatch::Drop,
            other => return Err(format!("--last-batch pad|drop, not {other}").into()),
        },
        ..base
    };
    let epochs: u64 = get("epochs", "1").parse()?;
    let mut loader = Loader::open(&dir, config)?;
    for epoch in 0..epochs {
        let mut h = Sha256::new();
        let mut batches = 0u64;
        let mut images = 0u64;
        for batch in loader.epoch(epoch) {
            let batch = batch?;
            h.update(batch.images());
            for l in batch.labels() {
                h.update(l.to_le_bytes());
            }
            batches += 1;
            images += batch.len() as u64;
        }
        println!(
            "{{\"epoch\": {epoch}, \"batches\": {batches}, \"images\": {images}, \"sha256\": \"{:x}\"}}",
            h.finalize()
        );
    }
    Ok(())
}
