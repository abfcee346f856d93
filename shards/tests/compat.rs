//! Every released format version stays readable: the committed sample dataset of each version
//! (`tests/data/v<major>_<minor>/`, written once by `examples/write_compat_sample.rs`) is opened
//! with today's reader and every field of every record, the manifest and `verify_dataset` are
//! checked against values written here, not recomputed by the code under test.
//!
//! When the format version changes: run the example to add the new version's directory, commit
//! it, and add its expected values here next to the old ones. Never edit an old sample.

use shardfeed_shards::format::{VERSION_MAJOR, VERSION_MINOR};
use shardfeed_shards::{
    verify_dataset, BuildParams, ClassEntry, Dataset, DatasetSpec, DatasetWriter, ImageFormat,
    Manifest, OwnedRecord, ShardEntry, ShardLayout, ShardReader, ShardStream, SkippedInput,
};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

/// One record as the v1.0 sample holds it. The image is pinned by its length, its CRC32C and
/// its first and last bytes.
struct Expected {
    label: Option<u32>,
    width: u32,
    height: u32,
    format: ImageFormat,
    path: &'static str,
    image_len: usize,
    image_crc32c: u32,
    image_head: &'static [u8],
    image_tail: &'static [u8],
}

const JPEG_HEAD: &[u8] = &[0xFF, 0xD8, 0xFF, 0xE0];
const JPEG_EOI: &[u8] = &[0xFF, 0xD9];

/// The records of `v1_0/`, in global order: shard-00000.sfs holds the first three.
const V1_0_RECORDS: [Expected; 6] = [
    Expected {
        label: Some(0),
        width: 16,
        height: 12,
        format: ImageFormat::Jpeg,
        path: "train/n01440764/n01440764_18.JPEG",
        image_len: 773,
        image_crc32c: 0x0ce2_4b6c,
        image_head: JPEG_HEAD,
        image_tail: JPEG_EOI,
    },
    Expected {
        label: Some(1),
        width: 12,
        height: 16,
        format: ImageFormat::Jpeg,
        path: "train/n01443537/n01443537_2.JPEG",
        image_len: 887,
        image_crc32c: 0x9523_d283,
        image_head: JPEG_HEAD,
        image_tail: JPEG_EOI,
    },
    Expected {
        label: Some(2),
        width: 8,
        height: 8,
        format: ImageFormat::Jpeg,
        path: "train/n01484850/n01484850_1.JPEG",
        image_len: 434,
        image_crc32c: 0x0938_c3cf,
        image_head: JPEG_HEAD,
        image_tail: JPEG_EOI,
    },
    Expected {
        label: Some(3),
        width: 10,
        height: 6,
        format: ImageFormat::Png,
        path: "train/n02105855/n02105855_2933.JPEG",
        image_len: 254,
        image_crc32c: 0x25d3_fe7a,
        image_head: b"\x89PNG\r\n\x1a\n",
        image_tail: &[0x60, 0x82],
    },
    Expected {
        label: None,
        width: 9,
        height: 7,
        format: ImageFormat::Jpeg,
        path: "unlabelled/bärenhöhle_01.jpg",
        image_len: 800,
        image_crc32c: 0x3295_3d40,
        image_head: JPEG_HEAD,
        image_tail: JPEG_EOI,
    },
    Expected {
        label: Some(0),
        width: 0,
        height: 0,
        format: ImageFormat::Unknown,
        path: "train/n01440764/empty.bin",
        image_len: 0,
        image_crc32c: 0,
        image_head: b"",
        image_tail: b"",
    },
];

/// (file, records, bytes, whole-file CRC32C, offset of each record) of each v1.0 shard.
const V1_0_SHARDS: [(&str, u64, u64, &str, &[u64]); 2] = [
    ("shard-00000.sfs", 3, 2399, "f59023b4", &[16, 854, 1805]),
    ("shard-00001.sfs", 3, 1352, "a2129258", &[16, 337, 1199]),
];

fn v1_0_manifest() -> Manifest {
    let class = |index: u32, synset: &str, records: u64| ClassEntry {
        index,
        synset: synset.into(),
        records,
    };
    Manifest {
        format: "shardfeed-dataset".into(),
        format_version: "1.0".into(),
        split: "compat-sample".into(),
        records: 6,
        bytes: 3751,
        classes: vec![
            class(0, "n01440764", 2),
            class(1, "n01443537", 1),
            class(2, "n01484850", 1),
            class(3, "n02105855", 1),
        ],
        formats: BTreeMap::from([
            ("jpeg".to_owned(), 4),
            ("png".to_owned(), 1),
            ("unknown".to_owned(), 1),
        ]),
        shards: V1_0_SHARDS
            .iter()
            .map(|&(file, records, bytes, crc, _)| ShardEntry {
                file: file.into(),
                records,
                bytes,
                crc32c: crc.into(),
            })
            .collect(),
        skipped: vec![SkippedInput {
            path: "train/n01443537/n01443537_broken.JPEG".into(),
            reason: "truncated JPEG: no EOI marker (ends inside scan data at byte 311)".into(),
        }],
        params: BuildParams {
            tool: "shardfeed 0.1.0".into(),
            mode: "passthrough".into(),
            max_side: None,
            quality: None,
            target_shard_bytes: None,
            shard_count: Some(2),
            order: "sorted".into(),
            shuffle_seed: 0,
            strict: false,
        },
    }
}

fn check_record(g: usize, got: &OwnedRecord, want: &Expected) {
    assert_eq!(got.label, want.label, "record {g}: label");
    assert_eq!(
        (got.width, got.height),
        (want.width, want.height),
        "record {g}: size"
    );
    assert_eq!(got.format, want.format, "record {g}: format");
    assert_eq!(got.path, want.path, "record {g}: path");
    assert_eq!(got.image.len(), want.image_len, "record {g}: image length");
    assert_eq!(
        crc32c::crc32c(&got.image),
        want.image_crc32c,
        "record {g}: image CRC32C"
    );
    assert!(
        got.image.starts_with(want.image_head),
        "record {g}: image head"
    );
    assert!(
        got.image.ends_with(want.image_tail),
        "record {g}: image tail"
    );
}

#[test]
fn v1_0_sample_reads_every_field_of_every_record() {
    let ds = Dataset::open(data_dir().join("v1_0")).unwrap();
    assert_eq!(ds.len(), 6);
    assert_eq!(ds.num_classes(), 4);
    assert_eq!(ds.shard_starts(), &[0, 3]);
    for (g, want) in V1_0_RECORDS.iter().enumerate() {
        let got = ds.record(g as u64).unwrap().to_owned_record();
        check_record(g, &got, want);
        assert_eq!(
            ds.label(g as u64).unwrap(),
            want.label,
            "record {g}: index label"
        );
    }
    for (s, &(file, records, bytes, _, offsets)) in V1_0_SHARDS.iter().enumerate() {
        let shard = &ds.shards()[s];
        assert_eq!(shard.path().file_name().unwrap(), file);
        assert_eq!((shard.len(), shard.file_len()), (records, bytes));
        assert_eq!(shard.version(), (1, 0));
        for (i, &offset) in offsets.iter().enumerate() {
            let e = shard.entry(i as u64).unwrap();
            assert_eq!(e.offset, offset, "{file} record {i}: offset");
            let meta = shard.meta(i as u64).unwrap();
            let want = &V1_0_RECORDS[s * 3 + i];
            assert_eq!(
                (meta.label, meta.width, meta.height, meta.format),
                (want.label, want.width, want.height, want.format)
            );
            assert_eq!(meta.image_len as usize, want.image_len);
        }
    }
}

#[test]
fn v1_0_sample_manifest_holds_every_key() {
    let dir = data_dir().join("v1_0");
    assert_eq!(Manifest::load(&dir).unwrap(), v1_0_manifest());
    assert_eq!(Dataset::open(&dir).unwrap().manifest(), &v1_0_manifest());
}

#[test]
fn v1_0_sample_verifies_clean() {
    let mut checked = 0;
    let report = verify_dataset(&data_dir().join("v1_0"), |b| checked += b).unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    assert_eq!((report.shards, report.records, report.bytes), (2, 6, 3751));
    // Record bytes: the shards less their headers, indexes and footers.
    assert_eq!(checked, 3751 - 2 * (16 + 8 + 3 * 16 + 40));
}

#[test]
fn v1_0_sample_streams_as_it_reads() {
    let dir = data_dir().join("v1_0");
    let mut g = 0;
    for &(file, ..) in &V1_0_SHARDS {
        let bytes = fs::read(dir.join(file)).unwrap();
        for rec in ShardStream::new(file, &bytes[..]) {
            check_record(g, &rec.unwrap(), &V1_0_RECORDS[g]);
            g += 1;
        }
    }
    assert_eq!(g, 6);
}

/// Every committed version's sample opens and verifies with today's reader, including versions
/// added later whose values are checked by their own tests.
#[test]
fn every_committed_sample_verifies() {
    let mut versions = Vec::new();
    for e in fs::read_dir(data_dir()).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().into_string().unwrap();
        let Some((major, minor)) = name
            .strip_prefix('v')
            .and_then(|v| v.split_once('_'))
            .and_then(|(a, b)| Some((a.parse::<u16>().ok()?, b.parse::<u16>().ok()?)))
        else {
            panic!("{name}: tests/data holds only v<major>_<minor> folders");
        };
        let report = verify_dataset(&e.path(), |_| {}).unwrap();
        assert!(report.is_ok(), "{name}: {:?}", report.problems);
        assert!(report.records > 0, "{name}");
        for s in Dataset::open(e.path()).unwrap().shards() {
            assert_eq!(
                s.version(),
                (major, minor),
                "{name}: {}",
                s.path().display()
            );
        }
        versions.push((major, minor));
    }
    versions.sort();
    assert!(versions.contains(&(1, 0)), "{versions:?}");
    assert!(
        versions.contains(&(VERSION_MAJOR, VERSION_MINOR)),
        "no committed sample of the version this build writes ({VERSION_MAJOR}.{VERSION_MINOR}): \
         run `cargo run -p shardfeed-shards --example write_compat_sample` and commit it"
    );
}

/// Today's writer, given the sample's records, still writes the committed bytes of the version
/// it claims to write: a change of the bytes without a new version number fails here.
#[test]
fn todays_writer_writes_the_committed_sample_of_its_version() {
    assert_eq!(
        (VERSION_MAJOR, VERSION_MINOR),
        (1, 0),
        "the writer's format version changed: point this test at the new version's sample"
    );
    let dir = data_dir().join("v1_0");
    let sample = Dataset::open(&dir).unwrap();
    let m = sample.manifest();
    let out = tempfile::tempdir().unwrap();
    let out = out.path().join("again");
    let mut w = DatasetWriter::create(
        &out,
        DatasetSpec {
            split: m.split.clone(),
            classes: m.classes.iter().map(|c| c.synset.clone()).collect(),
            layout: ShardLayout::Count {
                shards: m.shards.len() as u32,
                inputs: m.records + m.skipped.len() as u64,
            },
            params: m.params.clone(),
            overwrite: false,
        },
    )
    .unwrap();
    // The v1.0 sample's one skipped input came third, between records 1 and 2.
    let mut position = 0;
    for g in 0..sample.len() {
        if position == 2 {
            let s = &m.skipped[0];
            w.skip(position, &s.path, &s.reason).unwrap();
            position += 1;
        }
        w.append(position, &sample.record(g).unwrap()).unwrap();
        position += 1;
    }
    w.finish().unwrap();
    for name in ["manifest.json", V1_0_SHARDS[0].0, V1_0_SHARDS[1].0] {
        assert_eq!(
            fs::read(out.join(name)).unwrap(),
            fs::read(dir.join(name)).unwrap(),
            "{name} differs from the committed v1.0 sample"
        );
    }
    assert_eq!(fs::read_dir(&out).unwrap().count(), 3);
}

#[test]
fn v1_0_sample_shards_open_one_by_one() {
    for &(file, records, ..) in &V1_0_SHARDS {
        let shard = ShardReader::open(data_dir().join("v1_0").join(file)).unwrap();
        assert_eq!(shard.len(), records);
        assert!(shard.records().all(|r| r.is_ok()));
    }
}
