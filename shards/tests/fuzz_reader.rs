//! Property tests that fuzz every parser of bytes from outside: [`ShardReader::from_bytes`],
//! [`ShardStream`] and the manifest parser ([`Manifest::parse`], [`Dataset::open`]).
//!
//! Inputs are arbitrary bytes and valid shards or manifests damaged the ways storage and people
//! damage them: bit flips, overwritten bytes, truncations, ranges spliced over others, duplicated
//! or removed, and lengths in the footer, the index or a record that lie, with the checksums
//! around the lie recomputed so the lie reaches the structural checks. Two properties:
//!
//! 1. nothing panics (the harness turns a panic into a failure with the shrunk input);
//! 2. no record whose CRC32C check was skipped is ever returned: every record a reader yields is
//!    found, byte for byte, at the place it was read from, and its stored CRC matches those bytes.
//!    When no record CRC was recomputed, every record yielded is also one that was written.
//!
//! The cargo-fuzz targets in `fuzz/` run the same readers on coverage-guided input.

mod common;

use common::{sample_records, shard_bytes};
use proptest::prelude::*;
use proptest::sample::Index;
use shardfeed_shards::format::{FOOTER_LEN, INDEX_ENTRY_LEN, INDEX_HEADER_LEN, RECORD_FIXED_LEN};
use shardfeed_shards::{
    Dataset, ImageFormat, Manifest, OwnedRecord, ShardReader, ShardStream, ShardWriter,
};
use std::path::Path;

/// A new value for a length or offset field: absolute, or relative to the true value.
#[derive(Debug, Clone, Copy)]
enum Value {
    Abs(u64),
    Delta(i64),
}

impl Value {
    fn apply(self, old: u64) -> u64 {
        match self {
            Value::Abs(v) => v,
            Value::Delta(d) => old.wrapping_add_signed(d),
        }
    }
}

fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => (-40i64..=40).prop_map(Value::Delta),
        1 => prop_oneof![
            Just(0u64),
            Just(u64::from(u32::MAX)),
            Just(u64::MAX),
            Just(u64::MAX / 16),
            any::<u64>(),
        ]
        .prop_map(Value::Abs),
    ]
}

/// A lie told by a field of the footer, the index or a record, with the checksums that cover
/// the field recomputed (for a record, only when `repair_crc`).
#[derive(Debug, Clone)]
enum Lie {
    /// Footer `index_offset` (0) or `record_count` (1); the footer CRC is recomputed.
    Footer { field: u8, value: Value },
    /// Index entry `offset` (0), `record_len` (1) or `label` (2); index and footer CRCs recomputed.
    Index {
        entry: Index,
        field: u8,
        value: Value,
    },
    /// Record `record_len` (0), `path_len` (1), `image_len` (2), `label` (3), `format` (4) or
    /// the reserved `flags` (5).
    Record {
        record: Index,
        field: u8,
        value: Value,
        repair_crc: bool,
    },
}

/// A change to the raw bytes.
#[derive(Debug, Clone)]
enum Edit {
    FlipBit {
        at: Index,
        bit: u8,
    },
    SetByte {
        at: Index,
        value: u8,
    },
    Truncate {
        at: Index,
    },
    /// Copies `len` bytes from `from` over the bytes at `to` (same file length).
    Splice {
        from: Index,
        to: Index,
        len: usize,
    },
    /// Inserts a copy of `len` bytes from `from` at `to` (the file grows).
    Duplicate {
        from: Index,
        to: Index,
        len: usize,
    },
    /// Removes `len` bytes at `from`.
    Remove {
        from: Index,
        len: usize,
    },
}

fn lie() -> impl Strategy<Value = Lie> {
    prop_oneof![
        (0u8..2, value()).prop_map(|(field, value)| Lie::Footer { field, value }),
        (any::<Index>(), 0u8..3, value()).prop_map(|(entry, field, value)| Lie::Index {
            entry,
            field,
            value
        }),
        (any::<Index>(), 0u8..6, value(), any::<bool>()).prop_map(
            |(record, field, value, repair_crc)| Lie::Record {
                record,
                field,
                value,
                repair_crc
            }
        ),
    ]
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<Index>(), 0u8..8).prop_map(|(at, bit)| Edit::FlipBit { at, bit }),
        (any::<Index>(), any::<u8>()).prop_map(|(at, value)| Edit::SetByte { at, value }),
        any::<Index>().prop_map(|at| Edit::Truncate { at }),
        (any::<Index>(), any::<Index>(), 1usize..200).prop_map(|(from, to, len)| Edit::Splice {
            from,
            to,
            len
        }),
        (any::<Index>(), any::<Index>(), 1usize..200).prop_map(|(from, to, len)| Edit::Duplicate {
            from,
            to,
            len
        }),
        (any::<Index>(), 1usize..200).prop_map(|(from, len)| Edit::Remove { from, len }),
    ]
}

fn get_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn put(b: &mut [u8], at: usize, width: usize, v: u64) {
    b[at..at + width].copy_from_slice(&v.to_le_bytes()[..width]);
}

fn get(b: &[u8], at: usize, width: usize) -> u64 {
    let mut a = [0u8; 8];
    a[..width].copy_from_slice(&b[at..at + width]);
    u64::from_le_bytes(a)
}

/// Where the records of an undamaged shard are: (offset, len) of each.
fn layout(bytes: &[u8]) -> (usize, Vec<(usize, usize)>) {
    let shard = ShardReader::from_bytes("layout.sfs", bytes.to_vec()).expect("valid shard");
    let entries = (0..shard.len())
        .map(|i| {
            let e = shard.entry(i).expect("in range");
            (e.offset as usize, e.len as usize)
        })
        .collect::<Vec<_>>();
    let index_offset =
        bytes.len() - FOOTER_LEN - INDEX_HEADER_LEN - entries.len() * INDEX_ENTRY_LEN;
    (index_offset, entries)
}

fn repair_footer_crc(b: &mut [u8]) {
    let f = b.len() - FOOTER_LEN;
    let crc = crc32c::crc32c(&b[f..f + 28]);
    put(b, f + 28, 4, u64::from(crc));
}

/// Tells `lie` in a valid shard. Returns true when it recomputed a record CRC.
fn tell(bytes: &mut [u8], lie: &Lie) -> bool {
    let (index_offset, records) = layout(bytes);
    let footer = bytes.len() - FOOTER_LEN;
    match *lie {
        Lie::Footer { field, value } => {
            let at = footer + 8 * usize::from(field);
            let old = get(bytes, at, 8);
            put(bytes, at, 8, value.apply(old));
            repair_footer_crc(bytes);
            false
        }
        Lie::Index {
            entry,
            field,
            value,
        } => {
            if records.is_empty() {
                return false;
            }
            let e = index_offset + INDEX_HEADER_LEN + entry.index(records.len()) * INDEX_ENTRY_LEN;
            let (at, width) = [(e, 8), (e + 8, 4), (e + 12, 4)][usize::from(field)];
            let old = get(bytes, at, width);
            put(bytes, at, width, value.apply(old));
            let crc = crc32c::crc32c(&bytes[index_offset..footer]);
            put(bytes, footer + 16, 4, u64::from(crc));
            repair_footer_crc(bytes);
            false
        }
        Lie::Record {
            record,
            field,
            value,
            repair_crc,
        } => {
            if records.is_empty() {
                return false;
            }
            let (start, len) = records[record.index(records.len())];
            let (at, width) =
                [(4, 4), (22, 2), (24, 4), (8, 4), (20, 1), (21, 1)][usize::from(field)];
            let old = get(bytes, start + at, width);
            put(bytes, start + at, width, value.apply(old));
            if repair_crc {
                let crc = crc32c::crc32c(&bytes[start..start + len - 4]);
                put(bytes, start + len - 4, 4, u64::from(crc));
            }
            repair_crc
        }
    }
}

fn apply(bytes: &mut Vec<u8>, edit: &Edit) {
    if bytes.is_empty() {
        return;
    }
    let n = bytes.len();
    match *edit {
        Edit::FlipBit { at, bit } => bytes[at.index(n)] ^= 1 << bit,
        Edit::SetByte { at, value } => bytes[at.index(n)] = value,
        Edit::Truncate { at } => bytes.truncate(at.index(n)),
        Edit::Splice { from, to, len } => {
            let (from, to) = (from.index(n), to.index(n));
            let len = len.min(n - from).min(n - to);
            bytes.copy_within(from..from + len, to);
        }
        Edit::Duplicate { from, to, len } => {
            let (from, to) = (from.index(n), to.index(n + 1));
            let copy = bytes[from..(from + len).min(n)].to_vec();
            bytes.splice(to..to, copy);
        }
        Edit::Remove { from, len } => {
            let from = from.index(n);
            bytes.drain(from..(from + len).min(n));
        }
    }
}

/// Checks that `read` is the record encoded at the start of `file` (as the writer would encode
/// it) and that the CRC stored after it matches. Two bytes may differ from the writer's
/// encoding, as the format allows: a format code this build does not know reads as `Unknown`
/// (code 0), and the reserved flags byte is ignored.
fn check_is_encoded_at(read: &OwnedRecord, file: &[u8]) -> Result<(), TestCaseError> {
    let mut w = ShardWriter::new(Vec::new()).expect("in memory");
    w.append(&read.as_record()).expect("fits");
    let (bytes, _) = w.finish().expect("in memory");
    let mut want = bytes[16..16 + read.as_record().encoded_len() as usize].to_vec();
    prop_assert!(file.len() >= want.len(), "shorter than its encoding");
    let got = &file[..want.len()];
    if ImageFormat::from_code(got[20]) == read.format {
        want[20] = got[20];
    }
    want[21] = got[21];
    // Everything but the CRC, which differs when the two bytes above do; then the CRC itself.
    let end = want.len();
    prop_assert_eq!(&want[..end - 4], &got[..end - 4]);
    prop_assert_eq!(get_u32(got, end - 4), crc32c::crc32c(&got[..end - 4]));
    Ok(())
}

/// Property 2 for the random-access reader: each record it returns lies, byte for byte, where
/// the index says, and the CRC stored after it matches its bytes.
fn check_reader(
    bytes: &[u8],
    written: &[OwnedRecord],
    crc_repaired: bool,
) -> Result<(), TestCaseError> {
    let Ok(shard) = ShardReader::from_bytes("fuzz.sfs", bytes.to_vec()) else {
        return Ok(());
    };
    let file = shard.as_bytes();
    for i in 0..shard.len() {
        // Cheap statistics must not panic either.
        let _ = shard.meta(i);
        let _ = shard.label(i);
        let Ok(rec) = shard.record(i) else { continue };
        let e = shard.entry(i)?;
        let start = rec.path.as_ptr() as usize - file.as_ptr() as usize - RECORD_FIXED_LEN;
        prop_assert_eq!(start as u64, e.offset);
        prop_assert_eq!(rec.encoded_len(), u64::from(e.len));
        let owned = rec.to_owned_record();
        check_is_encoded_at(&owned, &file[start..])?;
        if !crc_repaired {
            prop_assert!(
                written.contains(&owned),
                "record {} was never written: {:?}",
                i,
                owned
            );
        }
    }
    Ok(())
}

/// Property 2 for the stream reader: the k-th record it yields is the one encoded at the offset
/// where the previous one ended, with a matching CRC.
fn check_stream(
    bytes: &[u8],
    written: &[OwnedRecord],
    crc_repaired: bool,
) -> Result<(), TestCaseError> {
    let mut at = 16usize;
    for r in ShardStream::new("fuzz.sfs", bytes) {
        let Ok(rec) = r else { break };
        prop_assert!(at <= bytes.len());
        check_is_encoded_at(&rec, &bytes[at..])?;
        let len = rec.as_record().encoded_len() as usize;
        if !crc_repaired {
            prop_assert!(
                written.contains(&rec),
                "streamed a record never written: {:?}",
                rec
            );
        }
        at += len;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    /// Arbitrary bytes, and arbitrary bytes behind a valid header, never panic either reader.
    #[test]
    fn arbitrary_bytes_never_panic_the_readers(
        body in proptest::collection::vec(any::<u8>(), 0..700),
        with_header in any::<bool>(),
    ) {
        let mut bytes = Vec::new();
        if with_header {
            bytes.extend_from_slice(&shard_bytes(&[])[..16]);
        }
        bytes.extend_from_slice(&body);
        check_reader(&bytes, &[], true)?;
        check_stream(&bytes, &[], true)?;
    }

    /// Valid shards with lies and byte edits: no panic, and no record comes back unchecked.
    #[test]
    fn damaged_shards_never_yield_an_unchecked_record(
        n in 0u32..7,
        lies in proptest::collection::vec(lie(), 0..3),
        edits in proptest::collection::vec(edit(), 0..3),
    ) {
        let written = sample_records(n);
        let mut bytes = shard_bytes(&written);
        let mut crc_repaired = false;
        for l in &lies {
            // Each lie is told in a shard that is still structurally whole; later lies are
            // told only while the shard still opens.
            if ShardReader::from_bytes("lie.sfs", bytes.clone()).is_err() {
                break;
            }
            crc_repaired |= tell(&mut bytes, l);
        }
        for e in &edits {
            apply(&mut bytes, e);
        }
        check_reader(&bytes, &written, crc_repaired)?;
        check_stream(&bytes, &written, crc_repaired)?;
    }

    /// The manifest parser on arbitrary bytes never panics.
    #[test]
    fn arbitrary_bytes_never_panic_the_manifest_parser(
        bytes in proptest::collection::vec(any::<u8>(), 0..400),
    ) {
        let _ = Manifest::parse(Path::new("fuzz/manifest.json"), &bytes);
    }

    /// A valid manifest with one JSON value replaced, or bytes edited: never a panic, and what
    /// parses is consistent.
    #[test]
    fn damaged_manifests_never_panic_and_what_parses_is_consistent(
        target in any::<Index>(),
        replacement in json_value(),
        edits in proptest::collection::vec(edit(), 0..2),
    ) {
        let mut value = serde_json::to_value(sample_manifest()).expect("serialisable");
        replace_leaf(&mut value, target, replacement);
        let mut text = serde_json::to_vec_pretty(&value).expect("serialisable");
        for e in &edits {
            apply(&mut text, e);
        }
        if let Ok(m) = Manifest::parse(Path::new("fuzz/manifest.json"), &text) {
            prop_assert_eq!(m.records, m.shards.iter().map(|s| u128::from(s.records)).sum::<u128>() as u64);
            prop_assert!(m.shards.iter().all(|s| !s.file.contains('/') && !s.file.is_empty()));
            prop_assert!(m.classes.iter().enumerate().all(|(i, c)| c.index as usize == i));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// A real dataset directory whose manifest lies: opening and verifying it never panics,
    /// every record read from what opens is one that was written, and `verify` passes exactly
    /// when the manifest still tells the truth about everything it can check against the
    /// shards. When it passes, the dataset opens and reads back every record as written, in
    /// order, with labels inside the class list.
    #[test]
    fn datasets_with_a_lying_manifest_never_panic_or_lie(
        target in any::<Index>(),
        replacement in json_value(),
    ) {
        let dir = tempfile::tempdir().expect("temp dir");
        let written = sample_records(12);
        let truth = common::write_dataset(
            dir.path(),
            &written,
            shardfeed_shards::ShardLayout::TargetBytes(900),
        );
        let path = dir.path().join("manifest.json");
        let mut value: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).expect("manifest")).expect("json");
        replace_leaf(&mut value, target, replacement);
        let text = serde_json::to_vec_pretty(&value).expect("json");
        std::fs::write(&path, &text).expect("write");
        if let Ok(ds) = Dataset::open(dir.path()) {
            for g in 0..ds.len() {
                if let Ok(rec) = ds.record(g) {
                    prop_assert!(written.contains(&rec.to_owned_record()));
                    prop_assert!(rec.label.is_none_or(|l| (l as usize) < ds.num_classes()));
                }
            }
        }
        let told = Manifest::parse(&path, &text).ok().map(|m| Checked::of(&m));
        let truthful = told == Some(Checked::of(&truth));
        let verified = shardfeed_shards::verify_dataset(dir.path(), |_| {});
        let passed = matches!(&verified, Ok(r) if r.is_ok());
        prop_assert_eq!(
            passed,
            truthful,
            "verify: {:?}\nmanifest: {}",
            verified,
            String::from_utf8_lossy(&text)
        );
        if passed {
            let ds = Dataset::open(dir.path()).expect("a verified dataset opens");
            prop_assert_eq!(ds.len(), written.len() as u64);
            for (g, want) in written.iter().enumerate() {
                prop_assert_eq!(&ds.record(g as u64).expect("reads").to_owned_record(), want);
            }
        }
    }
}

/// What `verify_dataset` can check of a manifest against the shards: everything but free text
/// (split, synset ids, skipped inputs, build parameters) and the minor version (which a reader
/// of the same major accepts whatever it is).
#[derive(Debug, PartialEq, Eq)]
struct Checked {
    major: Option<u16>,
    records: u64,
    bytes: u64,
    classes: Vec<(u32, u64)>,
    formats: Vec<(String, u64)>,
    shards: Vec<(String, u64, u64, String)>,
}

impl Checked {
    fn of(m: &Manifest) -> Checked {
        Checked {
            major: m
                .format_version
                .split_once('.')
                .and_then(|(a, _)| a.parse().ok()),
            records: m.records,
            bytes: m.bytes,
            classes: m.classes.iter().map(|c| (c.index, c.records)).collect(),
            // A format with no records is the same as one not listed.
            formats: m
                .formats
                .iter()
                .filter(|(_, &n)| n > 0)
                .map(|(k, &n)| (k.clone(), n))
                .collect(),
            shards: m
                .shards
                .iter()
                .map(|s| (s.file.clone(), s.records, s.bytes, s.crc32c.clone()))
                .collect(),
        }
    }
}

fn sample_manifest() -> Manifest {
    let dir = tempfile::tempdir().expect("temp dir");
    common::write_dataset(
        dir.path(),
        &sample_records(10),
        shardfeed_shards::ShardLayout::TargetBytes(900),
    )
}

/// JSON values a manifest might wrongly hold.
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::{json, Value as J};
    prop_oneof![
        Just(J::Null),
        any::<bool>().prop_map(J::Bool),
        any::<u64>().prop_map(|n| json!(n)),
        Just(json!(u64::MAX)),
        any::<i64>().prop_map(|n| json!(n)),
        Just(json!(-1)),
        Just(json!(1.5)),
        Just(json!(1e300)),
        "[a-z0-9./\\\\-]{0,12}".prop_map(J::String),
        Just(json!("../../etc/passwd")),
        Just(json!("2.0")),
        Just(json!("1.999999999999")),
        Just(json!([])),
        Just(json!({})),
    ]
}

/// Replaces one value of `root` (an object member, an array element, or a whole container),
/// chosen by `target` among all of them.
fn replace_leaf(root: &mut serde_json::Value, target: Index, replacement: serde_json::Value) {
    fn count(v: &serde_json::Value) -> usize {
        1 + match v {
            serde_json::Value::Array(a) => a.iter().map(count).sum(),
            serde_json::Value::Object(o) => o.values().map(count).sum(),
            _ => 0,
        }
    }
    fn walk(v: &mut serde_json::Value, mut k: usize, replacement: serde_json::Value) {
        if k == 0 {
            *v = replacement;
            return;
        }
        k -= 1;
        let children: Vec<&mut serde_json::Value> = match v {
            serde_json::Value::Array(a) => a.iter_mut().collect(),
            serde_json::Value::Object(o) => o.values_mut().collect(),
            _ => return,
        };
        for c in children {
            let n = count(c);
            if k < n {
                return walk(c, k, replacement);
            }
            k -= n;
        }
    }
    let k = target.index(count(root));
    walk(root, k, replacement);
}
