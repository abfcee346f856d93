//! Shared fixtures for the shards crate's tests.
#![allow(dead_code)]

use shardfeed_shards::{
    BuildParams, DatasetSpec, DatasetWriter, ImageFormat, Manifest, OwnedRecord, ShardLayout,
    ShardWriter,
};
use std::path::Path;

/// Deterministic records with every field varied, including no label and an empty image.
pub fn sample_records(n: u32) -> Vec<OwnedRecord> {
    (0..n)
        .map(|i| OwnedRecord {
            label: if i % 7 == 6 { None } else { Some(i % 3) },
            width: 100 + i,
            height: 50 + 2 * i,
            format: ImageFormat::ALL[(i as usize) % ImageFormat::ALL.len()],
            path: format!("train/n{:08}/img_{i}.JPEG", 1000 + i % 3),
            image: (0..(i * 37 % 300)).map(|b| (b * 31 + i) as u8).collect(),
        })
        .collect()
}

pub fn shard_bytes(records: &[OwnedRecord]) -> Vec<u8> {
    let mut w = ShardWriter::new(Vec::new()).unwrap();
    for r in records {
        w.append(&r.as_record()).unwrap();
    }
    w.finish().unwrap().0
}

pub fn params() -> BuildParams {
    BuildParams {
        tool: "shardfeed test".into(),
        mode: "passthrough".into(),
        max_side: None,
        quality: None,
        target_shard_bytes: Some(2000),
        shard_count: None,
        order: "sorted".into(),
        shuffle_seed: 0,
        strict: false,
    }
}

pub fn spec(layout: ShardLayout) -> DatasetSpec {
    DatasetSpec {
        split: "train".into(),
        classes: vec!["n00001000".into(), "n00001001".into(), "n00001002".into()],
        layout,
        params: params(),
        overwrite: false,
    }
}

/// Writes `records` as a dataset in `dir`.
pub fn write_dataset(dir: &Path, records: &[OwnedRecord], layout: ShardLayout) -> Manifest {
    let mut w = DatasetWriter::create(dir, spec(layout)).unwrap();
    for (i, r) in records.iter().enumerate() {
        w.append(i as u64, &r.as_record()).unwrap();
    }
    w.finish().unwrap()
}
