//! End-to-end tests of the loader on small synthetic datasets: determinism whatever the worker
//! count, distributed sample counts, exact resume, failed records, back-pressure, and the
//! transforms.

use shardfeed_engine::augment::{Augmenter, SampleKey, TrainTransform, Transform, ValTransform};
use shardfeed_engine::ingest::{build_params, IngestOptions, Mode, Order, Sharding};
use shardfeed_engine::loader::{
    Batch, BatchError, Loader, LoaderConfig, Position, RecordFailure, TransformSchedule,
};
use shardfeed_engine::sampler::{LastBatch, Shuffle};
use shardfeed_engine::shards::{Dataset, DatasetSpec, DatasetWriter, Record, ShardLayout};
use shardfeed_engine::synth::SynthOptions;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// 3 classes x 10 training images in 3 shards, made once per test run and shared (read-only).
fn data() -> &'static Path {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("loader-tests-v1");
        let root = dir.join("shards");
        if !root.join("train/manifest.json").exists() || !root.join("val/manifest.json").exists() {
            let _ = std::fs::remove_dir_all(&dir);
            let opts = SynthOptions {
                classes: 3,
                per_class: 10,
                val_per_class: 2,
                seed: 3,
                ..SynthOptions::default()
            };
            shardfeed_engine::demo::synthetic_dataset_with(&dir, &opts, 3)
                .expect("synthetic dataset");
        }
        root
    })
}

fn train() -> PathBuf {
    data().join("train")
}

/// A small, quick configuration: 32x32 output, batches of 7 (30 is not a multiple).
fn small(workers: usize) -> LoaderConfig {
    LoaderConfig {
        batch_size: 7,
        workers,
        seed: 42,
        ..LoaderConfig::train(32)
    }
}

/// Everything a batch says, owned.
#[derive(Debug, Clone, PartialEq)]
struct Got {
    position: Position,
    shape: [usize; 4],
    images: Vec<u8>,
    labels: Vec<u32>,
    records: Vec<u64>,
    positions: Vec<u64>,
    failures: Vec<RecordFailure>,
}

impl From<&Batch> for Got {
    fn from(b: &Batch) -> Self {
        Got {
            position: b.position(),
            shape: b.shape(),
            images: b.images().to_vec(),
            labels: b.labels().to_vec(),
            records: b.records().to_vec(),
            positions: b.positions().to_vec(),
            failures: b.failures().to_vec(),
        }
    }
}

fn epoch(loader: &mut Loader, e: u64) -> Vec<Got> {
    loader
        .epoch(e)
        .map(|b| Got::from(&b.expect("a batch")))
        .collect()
}

fn epochs(dir: &Path, config: LoaderConfig, n: u64) -> Vec<Got> {
    let mut loader = Loader::open(dir, config).expect("opens");
    (0..n).flat_map(|e| epoch(&mut loader, e)).collect()
}

#[test]
fn one_worker_and_four_workers_give_identical_bytes() {
    let one = epochs(&train(), small(1), 2);
    let four = epochs(
        &train(),
        LoaderConfig {
            prefetch: 6,
            readahead: 0,
            ..small(4)
        },
        2,
    );
    assert_eq!(one.len(), 10, "5 batches per epoch");
    assert_eq!(one, four);
    // Batches of 7, the last of each epoch short: 30 = 4 * 7 + 2.
    assert_eq!(one[3].shape, [7, 32, 32, 3]);
    assert_eq!(one[4].shape, [2, 32, 32, 3]);
    // Two epochs, two different orders and different crops.
    assert_ne!(one[0].records, one[5].records);
    // Labels are the dataset's.
    let ds = Dataset::open(train()).expect("opens");
    for g in &one {
        for (r, l) in g.records.iter().zip(&g.labels) {
            assert_eq!(ds.label(*r).expect("label"), Some(*l));
        }
    }
}

#[test]
fn each_image_is_the_augmenter_output_for_its_record_and_key() {
    let got = epochs(&train(), small(2), 1);
    let ds = Dataset::open(train()).expect("opens");
    let t = Transform::Train(TrainTransform::new(32));
    let mut aug = Augmenter::new();
    let mut out = vec![0u8; t.output_len()];
    for b in &got {
        for (i, (&r, &p)) in b.records.iter().zip(&b.positions).enumerate() {
            let rec = ds.record(r).expect("record");
            let key = SampleKey {
                seed: 42,
                epoch: 0,
                index: p,
            };
            aug.apply(rec.image, &t, key, &mut out).expect("augments");
            assert_eq!(
                &b.images[i * out.len()..(i + 1) * out.len()],
                &out[..],
                "{i}"
            );
        }
    }
}

#[test]
fn ranks_get_equal_counts_and_their_union_is_the_epoch() {
    let records = Dataset::open(train()).expect("opens").len();
    for (world, last_batch) in [
        (4, LastBatch::Pad),
        (4, LastBatch::Drop),
        (3, LastBatch::Pad),
    ] {
        let mut counts: BTreeMap<u64, u32> = BTreeMap::new();
        let mut per_rank = Vec::new();
        let mut padding = 0;
        for rank in 0..world {
            let config = LoaderConfig {
                rank,
                world,
                last_batch,
                ..small(2)
            };
            let mut loader = Loader::open(train(), config).expect("opens");
            let mut n = 0;
            for b in loader.epoch(1) {
                let b = b.expect("batch");
                n += b.len();
                padding += b.padding();
                for &r in b.records() {
                    *counts.entry(r).or_default() += 1;
                }
            }
            assert_eq!(n as u64, loader.samples_per_epoch());
            per_rank.push(n);
        }
        assert!(
            per_rank.iter().all(|&n| n == per_rank[0]),
            "{world} {last_batch:?}: {per_rank:?}"
        );
        let total = per_rank[0] * world as usize;
        match last_batch {
            LastBatch::Pad => {
                assert_eq!(counts.len() as u64, records, "every record is read");
                assert_eq!(total as u64 - records, padding as u64);
                assert!(padding < world as usize);
            }
            LastBatch::Drop => {
                assert_eq!(counts.len(), total, "no record twice");
                assert!(counts.values().all(|&c| c == 1));
                assert!(records - (total as u64) < u64::from(world));
                assert_eq!(padding, 0);
            }
        }
    }
}

#[test]
fn resume_mid_epoch_equals_the_uninterrupted_run() {
    let config = LoaderConfig {
        epochs: Some(3),
        ..small(2)
    };
    let full = epochs(&train(), config.clone(), 3);
    // A new process resumes at epoch 1, batch 2 and runs to the end.
    let mut resumed = Loader::open(train(), config.clone()).expect("opens");
    let mut got: Vec<Got> = resumed
        .resume(Position::new(1, 2))
        .map(|b| Got::from(&b.expect("batch")))
        .collect();
    got.extend(epoch(&mut resumed, 2));
    assert_eq!(got, full[7..], "from (1, 2) on");
    // The same loader, stopped mid-epoch and resumed where it stopped.
    let mut loader = Loader::open(train(), config).expect("opens");
    let mut first: Vec<Got> = loader
        .epoch(0)
        .take(3)
        .map(|b| Got::from(&b.expect("batch")))
        .collect();
    assert_eq!(loader.next_position(), Some(Position::new(0, 3)));
    first.extend(
        loader
            .resume(Position::new(0, 3))
            .map(|b| Got::from(&b.expect("batch"))),
    );
    assert_eq!(first, full[..5]);
    // Asking for an epoch from its start after stopping mid-way restarts it.
    let again: Vec<Got> = loader
        .epoch(0)
        .map(|b| Got::from(&b.expect("batch")))
        .collect();
    assert_eq!(again, full[..5]);
    // Past the end.
    let err = loader.epoch(3).next().expect("an error").expect_err("past");
    assert!(matches!(
        err,
        BatchError::PastLastEpoch {
            epoch: 3,
            epochs: 3
        }
    ));
    let err = loader
        .resume(Position::new(0, 5))
        .next()
        .expect("an error")
        .expect_err("out of range");
    assert!(matches!(
        err,
        BatchError::BatchOutOfRange {
            batch: 5,
            batches: 5
        }
    ));
}

/// A copy of the train dataset with one byte of global record `g`'s image flipped.
fn with_flipped_byte(dir: &Path, g: u64) -> (PathBuf, PathBuf, u64) {
    let out = dir.join("train");
    std::fs::create_dir_all(&out).expect("mkdir");
    for entry in std::fs::read_dir(train()).expect("lists") {
        let p = entry.expect("entry").path();
        std::fs::copy(&p, out.join(p.file_name().expect("name"))).expect("copies");
    }
    let ds = Dataset::open(&out).expect("opens");
    let (s, local) = ds.locate(g).expect("locates");
    let shard = ds.shards()[s].path().to_owned();
    let e = ds.shards()[s].entry(local).expect("entry");
    drop(ds);
    let mut bytes = std::fs::read(&shard).expect("reads");
    // The image is the end of the record; its middle is image data.
    bytes[(e.offset + u64::from(e.len) * 3 / 4) as usize] ^= 0x40;
    std::fs::write(&shard, bytes).expect("writes");
    (out, shard, local)
}

fn sequential(workers: usize) -> LoaderConfig {
    LoaderConfig {
        shuffle: Shuffle::Sequential,
        ..small(workers)
    }
}

#[test]
fn corrupt_records_are_replaced_counted_and_reported() {
    let t = tempfile::tempdir().expect("tempdir");
    let (dir, shard, local) = with_flipped_byte(t.path(), 9);
    let one = epochs(&dir, sequential(1), 1);
    let mut loader = Loader::open(&dir, sequential(3)).expect("opens");
    let three = epoch(&mut loader, 0);
    assert_eq!(one, three, "replacement does not depend on the workers");
    // Record 9 is sample 9: batch 1, slot 2, replaced by the next record in the order.
    let b = &three[1];
    assert_eq!(b.shape, [7, 32, 32, 3], "the batch keeps its shape");
    assert_eq!(b.records, [7, 8, 10, 10, 11, 12, 13]);
    assert_eq!(b.positions, [7, 8, 9, 10, 11, 12, 13]);
    assert_eq!(b.failures.len(), 1);
    let f = &b.failures[0];
    assert_eq!(
        (f.record, f.position, f.replaced_by, f.epoch),
        (9, 9, Some(10), 0)
    );
    assert_eq!((&f.shard, f.shard_record), (&shard, local));
    assert!(f.reason.contains("checksum mismatch"), "{f}");
    assert_eq!(loader.failures(), std::slice::from_ref(f));
    assert_eq!(loader.metrics().failures, 1);
    // Same record, a different key: another crop of the replacement.
    assert_ne!(b.images[2 * 3072..3 * 3072], b.images[3 * 3072..4 * 3072]);
    // Other batches are untouched.
    let clean = epochs(&train(), sequential(2), 1);
    assert_eq!(clean[0], three[0]);
    assert_eq!(clean[2..], three[2..]);
}

#[test]
fn strict_mode_fails_naming_the_shard_and_record() {
    let t = tempfile::tempdir().expect("tempdir");
    let (dir, shard, local) = with_flipped_byte(t.path(), 9);
    let mut loader = Loader::open(
        &dir,
        LoaderConfig {
            strict: true,
            ..sequential(2)
        },
    )
    .expect("opens");
    let mut it = loader.epoch(0);
    assert!(it.next().expect("batch 0").is_ok());
    let err = it.next().expect("batch 1").expect_err("strict");
    assert!(it.next().is_none(), "the epoch ends after an error");
    drop(it);
    let text = err.to_string();
    assert!(matches!(err, BatchError::Strict(_)), "{text}");
    assert!(text.contains(&shard.display().to_string()), "{text}");
    assert!(
        text.contains(&format!("record {local} (global record 9")),
        "{text}"
    );
    assert!(text.contains("checksum mismatch"), "{text}");
    // The loader can be resumed after an error.
    assert!(loader
        .resume(Position::new(0, 2))
        .next()
        .expect("batch")
        .is_ok());
}

/// A dataset of the train records in order, with record `bad`'s image replaced by `image`.
fn with_image(dir: &Path, bad: u64, image: &[u8]) -> PathBuf {
    let src = Dataset::open(train()).expect("opens");
    let out = dir.join("rewritten");
    let opts = IngestOptions {
        mode: Mode::Passthrough { deep_check: false },
        order: Order::Sorted,
        sharding: Sharding::Count(2),
        strict: false,
        workers: 1,
        overwrite: false,
        limits: Default::default(),
    };
    let mut w = DatasetWriter::create(
        &out,
        DatasetSpec {
            split: "train".into(),
            classes: src
                .manifest()
                .classes
                .iter()
                .map(|c| c.synset.clone())
                .collect(),
            layout: ShardLayout::Count {
                shards: 2,
                inputs: src.len(),
            },
            params: build_params(&opts),
            overwrite: false,
        },
    )
    .expect("creates");
    for g in 0..src.len() {
        let rec = src.record(g).expect("record");
        let rec = Record {
            image: if g == bad { image } else { rec.image },
            ..rec
        };
        w.append(g, &rec).expect("appends");
    }
    w.finish().expect("finishes");
    out
}

#[test]
fn an_undecodable_record_is_replaced_and_a_run_of_them_too() {
    let t = tempfile::tempdir().expect("tempdir");
    let dir = with_image(t.path(), 0, b"this is not an image");
    let got = epochs(&dir, sequential(2), 1);
    assert_eq!(got[0].records[..2], [1, 1]);
    let f = &got[0].failures[0];
    assert_eq!((f.record, f.replaced_by), (0, Some(1)));
    assert!(
        f.source_path
            .as_deref()
            .is_some_and(|p| p.starts_with("train/n")),
        "{f}"
    );
    // Replacement wraps around the end of the order: the last record's replacement is the
    // first that decodes.
    let t2 = tempfile::tempdir().expect("tempdir");
    let last = with_image(t2.path(), 29, &[0xFF, 0xD8, 0xFF]);
    let got = epochs(&last, sequential(2), 1);
    assert_eq!(got[4].records, [28, 0]);
}

#[test]
fn a_slow_consumer_holds_the_workers_at_the_pool_size() {
    let config = LoaderConfig {
        prefetch: 3,
        batch_size: 4,
        ..small(2)
    };
    let mut loader = Loader::open(train(), config).expect("opens");
    let mut held = Vec::new();
    let mut it = loader.epoch(0);
    for _ in 0..3 {
        held.push(it.next().expect("batch").expect("ok"));
        std::thread::sleep(Duration::from_millis(100));
        let m = it.loader().metrics();
        assert!(
            m.samples_filled - m.images <= 3 * 4,
            "filled {} delivered {}",
            m.samples_filled,
            m.images
        );
        assert!(it.loader().free_buffers() <= 3);
    }
    // Every buffer is held by the caller: asking for more is an error, not a hang.
    let err = it.next().expect("an error").expect_err("all held");
    assert!(
        matches!(err, BatchError::AllBuffersHeld { prefetch: 3 }),
        "{err}"
    );
    drop(it);
    held.clear();
    // With the buffers back the loader goes on from where it stopped.
    let rest: Vec<usize> = loader
        .resume(Position::new(0, 3))
        .map(|b| b.expect("batch").len())
        .collect();
    assert_eq!(rest, [4, 4, 4, 4, 2]);
}

#[test]
fn memory_is_a_fixed_pool_across_epochs() {
    let config = LoaderConfig {
        prefetch: 3,
        epochs: Some(4),
        ..small(2)
    };
    let mut loader = Loader::open(train(), config).expect("opens");
    for e in 0..4 {
        let mut it = loader.epoch(e);
        while let Some(b) = it.next() {
            let b = b.expect("batch");
            let m = it.loader().metrics();
            // Filled but not yet delivered: at most the other two buffers' worth.
            assert!(m.samples_filled - m.images <= 2 * 7, "{m:?}");
            drop(b);
        }
    }
    // Every buffer came back once the stream ended, and nothing was filled twice.
    assert_eq!(loader.free_buffers(), 3);
    let m = loader.metrics();
    assert_eq!((m.images, m.samples_filled, m.batches), (120, 120, 20));
}

#[test]
fn the_val_transform_is_deterministic_and_in_order() {
    let val = data().join("val");
    let config = |workers| LoaderConfig {
        batch_size: 4,
        workers,
        ..LoaderConfig::val(32)
    };
    let a = epochs(&val, config(1), 2);
    let b = epochs(&val, config(3), 2);
    assert_eq!(a, b);
    let (e0, e1) = a.split_at(2);
    assert_eq!(e0[0].images, e1[0].images, "the same every epoch");
    assert_eq!(e0[1].images, e1[1].images);
    let records: Vec<u64> = e0.iter().flat_map(|g| g.records.clone()).collect();
    assert_eq!(records, (0..6).collect::<Vec<_>>());
    // The seed changes nothing either.
    let seeded = epochs(
        &val,
        LoaderConfig {
            seed: 99,
            ..config(2)
        },
        1,
    );
    assert_eq!(seeded[..], a[..2]);
    // And it is the val transform of each record.
    let ds = Dataset::open(&val).expect("opens");
    let t = Transform::Val(ValTransform::new(32));
    let mut out = vec![0u8; t.output_len()];
    let key = SampleKey {
        seed: 1,
        epoch: 7,
        index: 8,
    };
    Augmenter::new()
        .apply(ds.record(5).expect("record").image, &t, key, &mut out)
        .expect("augments");
    assert_eq!(&a[1].images[3072..], &out[..]);
}

#[test]
fn progressive_resizing_changes_the_size_between_epochs() {
    let schedule = TransformSchedule::new(Transform::Train(TrainTransform::new(24)))
        .from_epoch(1, Transform::Train(TrainTransform::new(40)));
    let config = LoaderConfig {
        transform: schedule,
        ..small(2)
    };
    let got = epochs(&train(), config, 2);
    assert_eq!(got[0].shape, [7, 24, 24, 3]);
    assert_eq!(got[0].images.len(), 7 * 24 * 24 * 3);
    assert_eq!(got[5].shape, [7, 40, 40, 3]);
    assert_eq!(got[5].images.len(), 7 * 40 * 40 * 3);
}

#[test]
fn full_batches_and_decode_only() {
    let config = LoaderConfig {
        full_batches: true,
        last_batch: LastBatch::Drop,
        decode_only: true,
        ..small(2)
    };
    let mut loader = Loader::open(train(), config).expect("opens");
    assert_eq!(loader.batches_per_epoch(), 4);
    let got = epoch(&mut loader, 0);
    assert!(got.iter().all(|g| g.labels.len() == 7 && g.shape[0] == 7));
    let m = loader.metrics();
    assert_eq!(m.images, 28);
    assert_eq!(m.augment, Duration::ZERO, "decode only");
    assert!(m.decode > Duration::ZERO);
}

#[test]
fn the_loader_can_be_shared_dataset_and_moved_to_a_thread() {
    let ds = Arc::new(Dataset::open(train()).expect("opens"));
    let mut a = Loader::new(Arc::clone(&ds), small(1)).expect("loader");
    let b = Loader::new(ds, small(2)).expect("loader");
    let from_thread = std::thread::spawn(move || {
        let mut b = b;
        epoch(&mut b, 0)
    })
    .join()
    .expect("joins");
    assert_eq!(epoch(&mut a, 0), from_thread);
}

#[test]
fn bad_configurations_are_refused_when_the_loader_is_made() {
    let err = Loader::open(
        train(),
        LoaderConfig {
            rank: 2,
            world: 2,
            ..small(1)
        },
    )
    .expect_err("rank out of range");
    assert!(err.to_string().contains("rank 2 is out of range"), "{err}");
    let err = Loader::open(
        train(),
        LoaderConfig {
            batch_size: 64,
            full_batches: true,
            last_batch: LastBatch::Drop,
            ..small(1)
        },
    )
    .expect_err("too small");
    assert!(err.to_string().contains("30 records"), "{err}");
    let err = Loader::open(data().join("nope"), small(1)).expect_err("no dataset");
    assert!(err.to_string().contains("nope"), "{err}");
}

/// A copy of the train dataset in `dir/train`, to damage.
fn copy_of_train(dir: &Path) -> PathBuf {
    let out = dir.join("train");
    std::fs::create_dir_all(&out).expect("mkdir");
    for entry in std::fs::read_dir(train()).expect("lists") {
        let p = entry.expect("entry").path();
        std::fs::copy(&p, out.join(p.file_name().expect("name"))).expect("copies");
    }
    out
}

/// A shard emptied under a running loader (`truncate`, or `cp` over it, which empties it
/// first) made the next read of its memory map kill the process with SIGBUS ("Bus error",
/// exit 135), naming no file. Now the read fails with an error naming the shard, and the
/// replacement rule does not hide it: the dataset is no longer the one the order was made for.
#[test]
fn a_shard_that_changes_under_the_loader_is_an_error_naming_it_not_a_crash() {
    let t = tempfile::tempdir().expect("tempdir");
    let dir = copy_of_train(t.path());
    // Readahead on: its thread reads the index of the emptied shard too.
    let mut loader = Loader::open(&dir, sequential(2)).expect("opens");
    assert!(loader.config().readahead > 0);
    let shard = loader.dataset().shards()[0].path().to_owned();
    let bytes = loader.dataset().shards()[0].file_len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&shard)
        .expect("opens for writing")
        .set_len(0)
        .expect("empties");
    let err = loader
        .epoch(0)
        .next()
        .expect("a result")
        .expect_err("the shard changed");
    assert!(matches!(err, BatchError::ShardChanged(_)), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "{}: the shard changed while it was open ({bytes} bytes when opened, 0 now): \
             a dataset must not be modified while it is read",
            shard.display()
        )
    );
}

/// A manifest whose class list lost its last class: the loader yielded labels equal to the
/// class count (out of range for any classifier). It now refuses to open the dataset.
#[test]
fn labels_past_the_class_list_are_refused_when_the_loader_opens() {
    let t = tempfile::tempdir().expect("tempdir");
    let dir = copy_of_train(t.path());
    let mut m = shardfeed_engine::shards::Manifest::load(&dir).expect("loads");
    m.classes.pop();
    m.write_atomic(&dir).expect("writes");
    let err = Loader::open(&dir, small(1)).expect_err("refused");
    let msg = err.to_string();
    assert!(
        matches!(err, shardfeed_engine::loader::OpenError::Dataset(_)),
        "{err:?}"
    );
    assert!(
        msg.contains("has label 2, but the manifest lists 2 classes"),
        "{msg}"
    );
    assert!(
        msg.contains(&dir.display().to_string()),
        "names the shard: {msg}"
    );
}
