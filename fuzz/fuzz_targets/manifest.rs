//! Fuzzes the manifest parser: any bytes, no panic; what parses is consistent.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shardfeed_shards::Manifest;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Manifest::parse(Path::new("fuzz/manifest.json"), data) {
        let records: u128 = m.shards.iter().map(|s| u128::from(s.records)).sum();
        assert_eq!(records, u128::from(m.records), "totals checked");
        assert!(m
            .shards
            .iter()
            .all(|s| !s.file.is_empty() && !s.file.contains('/') && !s.file.starts_with('.')));
    }
});
