//! Fuzzes the parsers of a flat val folder's label files (`shardfeed_engine::labels`): any
//! bytes, no panic, no allocation sized by a number read from the file; what parses agrees with
//! itself. The input is split at its first NUL byte: the part before is read as a ground-truth
//! file, the part after as a synset mapping, so `resolve_ground_truth` sees real pairs; every
//! parser also reads the whole input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shardfeed_engine::labels::{
    parse_ground_truth, parse_kaggle_solution, parse_synset_mapping, resolve_ground_truth,
    val_image_number, GroundTruth,
};

fuzz_target!(|data: &[u8]| {
    let (truth_bytes, map_bytes) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, data),
    };
    let truth_text = String::from_utf8_lossy(truth_bytes);
    let map_text = String::from_utf8_lossy(map_bytes);
    let whole = String::from_utf8_lossy(data);

    let map = parse_synset_mapping(&map_text);
    if let Ok(m) = &map {
        // Every ID from 1 to the largest has its own line, so there are never more synsets
        // than lines: the mapping is bounded by the file, not by the numbers in it.
        assert!(m.len() <= map_text.lines().count());
        assert!(!m.is_empty());
    }
    let _ = parse_synset_mapping(&whole);

    if let Ok(truth) = parse_ground_truth(&truth_text) {
        let entries = match &truth {
            GroundTruth::Ids(ids) => ids.len(),
            GroundTruth::Synsets(s) => s.len(),
        };
        assert!(entries <= truth_text.lines().count());
        if let Ok(per_image) = resolve_ground_truth(truth, map.as_deref().ok()) {
            assert_eq!(per_image.len(), entries, "one synset per image");
        }
    }
    let _ = parse_ground_truth(&whole);

    if let Ok(m) = parse_kaggle_solution(&whole) {
        assert!(m.len() <= whole.lines().count());
    }
    for line in whole.lines() {
        let _ = val_image_number(line);
    }
});
