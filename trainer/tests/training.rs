//! End-to-end training on the CPU: the loss falls, checkpoint → resume continues exactly,
//! stop-on-request checkpoints, and the loop runs on both loader implementations.

use std::sync::atomic::AtomicBool;

use shardfeed_engine::rng::SplitMix64;
use shardfeed_trainer::allreduce::SingleReplica;
use shardfeed_trainer::checkpoint;
use shardfeed_trainer::data::{
    DeviceFeeder, DeviceLoader, ImageStats, SyntheticConfig, SyntheticLoader, VecHostSource,
    VecSourceConfig,
};
use shardfeed_trainer::events::{Collect, Event};
use shardfeed_trainer::lars::LarsConfig;
use shardfeed_trainer::model::{Arch, ModelOptions};
use shardfeed_trainer::precision::{MemoryFormat, Precision};
use shardfeed_trainer::schedule::PolyWarmup;
use shardfeed_trainer::train::{run, Replica, ReplicaConfig, TrainOptions};
use tch::{Device, Tensor};

const SIZE: usize = 16;
const CLASSES: usize = 4;
const BATCH: usize = 16;

/// libtorch's generator is process-wide and tests run on parallel threads: seed + build under a
/// lock so each replica's initial weights depend on its seed only.
static INIT: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn replica(seed: i64, format: MemoryFormat, precision: Precision) -> Replica {
    let _lock = INIT.lock().unwrap_or_else(|e| e.into_inner());
    tch::manual_seed(seed);
    Replica::resnet(
        Device::Cpu,
        Arch::Small,
        CLASSES as i64,
        ModelOptions::default(),
        &ReplicaConfig {
            format,
            precision,
            lars: LarsConfig::default(),
            label_smoothing: 0.1,
        },
    )
    .unwrap()
}

fn synthetic(batches: u64, rank: usize, format: MemoryFormat) -> SyntheticLoader {
    let config = SyntheticConfig {
        batch: BATCH,
        size: (SIZE, SIZE),
        classes: CLASSES,
        batches_per_epoch: batches,
        seed: 3,
        rank,
        format,
        noise: 1.0,
    };
    SyntheticLoader::new(Device::Cpu, &config).unwrap()
}

fn schedule(steps_per_epoch: u64, epochs: u64) -> PolyWarmup {
    PolyWarmup::new(1.0, 1e-4, steps_per_epoch, 0.5, steps_per_epoch * epochs)
}

fn mean(xs: &[(u64, f64)]) -> f64 {
    xs.iter().map(|x| x.1).sum::<f64>() / xs.len() as f64
}

#[test]
fn loss_falls_and_eval_beats_chance_on_synthetic_data() {
    let mut r = replica(0, MemoryFormat::Contiguous, Precision::Fp32);
    let mut train = synthetic(12, 0, MemoryFormat::Contiguous);
    let mut val = synthetic(4, 1, MemoryFormat::Contiguous);
    let opts = TrainOptions {
        epochs: 3,
        eval_every: 3,
        log_every: 5,
        ..Default::default()
    };
    let mut events = Collect::default();
    let summary = run(
        &mut r,
        &mut train,
        Some(&mut val),
        &mut SingleReplica,
        &schedule(12, 3),
        &opts,
        None,
        &mut events,
        &AtomicBool::new(false),
    )
    .unwrap();
    assert_eq!(summary.step, 36);
    let losses = events.losses();
    assert_eq!(losses.len(), 36);
    assert_eq!(losses[0].0, 1);
    let first = mean(&losses[..6]);
    let last = mean(&losses[30..]);
    assert!(last < 0.6 * first, "loss {first:.3} → {last:.3}");
    let eval = summary.last_eval.expect("an evaluation");
    assert_eq!(eval.images, 4 * BATCH as u64);
    assert!(eval.top1 > 0.6, "top-1 {}", eval.top1);
    assert!(eval.top5 >= eval.top1);
    assert!(events
        .0
        .iter()
        .any(|e| matches!(e, Event::Throughput { images_per_sec, .. } if *images_per_sec > 0.0)));
}

#[test]
fn checkpoint_then_resume_gives_the_same_next_losses() {
    let dir = tempfile::tempdir().unwrap();
    let sched = schedule(5, 3);
    let base_opts = TrainOptions {
        epochs: 3,
        eval_every: 0,
        log_every: 100,
        checkpoint_every: 0,
        ..Default::default()
    };
    // Uninterrupted: 15 steps.
    let mut a = replica(7, MemoryFormat::ChannelsLast, Precision::Fp32);
    let mut events_a = Collect::default();
    run(
        &mut a,
        &mut synthetic(5, 0, MemoryFormat::ChannelsLast),
        None,
        &mut SingleReplica,
        &sched,
        &base_opts,
        None,
        &mut events_a,
        &AtomicBool::new(false),
    )
    .unwrap();
    // Interrupted after 7 steps (mid-epoch 1), checkpointed.
    let mut b = replica(7, MemoryFormat::ChannelsLast, Precision::Fp32);
    let opts_b = TrainOptions {
        max_steps: Some(7),
        checkpoint_dir: Some(dir.path().to_owned()),
        ..base_opts.clone()
    };
    let mut events_b = Collect::default();
    let sb = run(
        &mut b,
        &mut synthetic(5, 0, MemoryFormat::ChannelsLast),
        None,
        &mut SingleReplica,
        &sched,
        &opts_b,
        None,
        &mut events_b,
        &AtomicBool::new(false),
    )
    .unwrap();
    assert_eq!(sb.step, 7);
    assert_eq!((sb.position.epoch, sb.position.batch), (1, 2));
    drop(b);
    // A fresh replica (other init seed) resumes from the checkpoint.
    let mut c = replica(99, MemoryFormat::ChannelsLast, Precision::Fp32);
    let point = c.load_checkpoint(dir.path()).unwrap();
    assert_eq!(point.step, 7);
    let mut events_c = Collect::default();
    run(
        &mut c,
        &mut synthetic(5, 0, MemoryFormat::ChannelsLast),
        None,
        &mut SingleReplica,
        &sched,
        &base_opts,
        Some(point),
        &mut events_c,
        &AtomicBool::new(false),
    )
    .unwrap();
    let a = events_a.losses();
    let b = events_b.losses();
    let c = events_c.losses();
    assert_eq!(&a[..7], &b[..], "same start");
    assert_eq!(c.len(), 8);
    for (x, y) in a[7..].iter().zip(&c) {
        assert_eq!(x.0, y.0);
        assert!(
            (x.1 - y.1).abs() <= 1e-6 * x.1.abs(),
            "step {}: {} vs {}",
            x.0,
            x.1,
            y.1
        );
    }
    // The checkpoint of a different model is refused with a clear error.
    let mut other = Replica::resnet(
        Device::Cpu,
        Arch::Small,
        7,
        ModelOptions::default(),
        &ReplicaConfig {
            format: MemoryFormat::Contiguous,
            precision: Precision::Fp32,
            lars: LarsConfig::default(),
            label_smoothing: 0.1,
        },
    )
    .unwrap();
    let err = other.load_checkpoint(dir.path()).unwrap_err().to_string();
    assert!(err.contains("parameters"), "{err}");
}

#[test]
fn a_stop_request_checkpoints_and_returns() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = replica(1, MemoryFormat::Contiguous, Precision::Fp32);
    let stop = AtomicBool::new(true);
    let opts = TrainOptions {
        epochs: 2,
        eval_every: 0,
        checkpoint_dir: Some(dir.path().to_owned()),
        ..Default::default()
    };
    let mut events = Collect::default();
    let s = run(
        &mut r,
        &mut synthetic(4, 0, MemoryFormat::Contiguous),
        None,
        &mut SingleReplica,
        &schedule(4, 2),
        &opts,
        None,
        &mut events,
        &stop,
    )
    .unwrap();
    assert!(s.interrupted);
    assert_eq!(s.step, 1);
    assert!(events
        .0
        .iter()
        .any(|e| matches!(e, Event::Checkpoint { step: 1, .. })));
    assert!(matches!(
        events.0.last(),
        Some(Event::End {
            interrupted: true,
            ..
        })
    ));
    let (meta, _) = shardfeed_trainer::checkpoint::load(dir.path()).unwrap();
    assert_eq!((meta.position.epoch, meta.position.batch), (0, 1));
}

/// Learnable uint8 images in a Vec: class `c` is a bright square in quadrant `c`.
fn host_source(n: usize, rank: usize, world: usize) -> VecHostSource {
    let mut rng = SplitMix64::keyed(&[42]);
    let mut images = vec![0u8; n * SIZE * SIZE * 3];
    let mut labels = Vec::with_capacity(n);
    for i in 0..n {
        let class = (rng.next_u64() % CLASSES as u64) as usize;
        labels.push(class as u32);
        let (qy, qx) = (class / 2, class % 2);
        for y in 0..SIZE {
            for x in 0..SIZE {
                let inside = y / (SIZE / 2) == qy && x / (SIZE / 2) == qx;
                for ch in 0..3 {
                    let noise = (rng.next_u64() % 60) as u8;
                    images[((i * SIZE + y) * SIZE + x) * 3 + ch] =
                        if inside { 170 + noise } else { 40 + noise };
                }
            }
        }
    }
    let config = VecSourceConfig {
        size: (SIZE, SIZE),
        batch: BATCH,
        seed: 5,
        rank,
        world,
    };
    VecHostSource::new(images, labels, &config).unwrap()
}

#[test]
fn the_loop_trains_from_a_host_buffer_loader_too() {
    let mut r = replica(3, MemoryFormat::ChannelsLast, Precision::Bf16);
    let mut train = DeviceFeeder::new(
        host_source(160, 0, 1),
        Device::Cpu,
        ImageStats::IMAGENET,
        MemoryFormat::ChannelsLast,
    );
    assert_eq!(train.batches_per_epoch(), 10);
    let mut val = DeviceFeeder::new(
        host_source(64, 0, 1),
        Device::Cpu,
        ImageStats::IMAGENET,
        MemoryFormat::ChannelsLast,
    );
    let opts = TrainOptions {
        epochs: 3,
        eval_every: 3,
        ..Default::default()
    };
    let mut events = Collect::default();
    let s = run(
        &mut r,
        &mut train,
        Some(&mut val),
        &mut SingleReplica,
        &schedule(10, 3),
        &opts,
        None,
        &mut events,
        &AtomicBool::new(false),
    )
    .unwrap();
    assert_eq!(s.step, 30);
    let losses = events.losses();
    assert!(mean(&losses[24..]) < 0.7 * mean(&losses[..6]), "{losses:?}");
    assert!(s.last_eval.unwrap().top1 > 0.5);
}

/// Each parameter's LARS momentum in logical NCHW order, read straight from the flat buffer.
/// A channels-last conv weight's segment holds it in OHWI order (see flat.rs); this undoes that
/// by hand rather than with the code under test.
fn momentum_nchw(r: &Replica, format: MemoryFormat) -> Vec<(String, Tensor)> {
    r.flat()
        .segments()
        .iter()
        .map(|s| {
            let part = r.lars().momentum().narrow(0, s.offset, s.numel);
            let t = match (format, s.shape.as_slice()) {
                (MemoryFormat::ChannelsLast, &[o, i, h, w]) => {
                    part.view([o, h, w, i]).permute([0, 3, 1, 2]).contiguous()
                }
                _ => part.view(s.shape.as_slice()).copy(),
            };
            (s.name.clone(), t)
        })
        .collect()
}

/// A replica trained 3 steps in `format`, checkpointed into `dir`.
fn trained_and_checkpointed(seed: i64, format: MemoryFormat, dir: &std::path::Path) -> Replica {
    let mut r = replica(seed, format, Precision::Fp32);
    let opts = TrainOptions {
        epochs: 2,
        eval_every: 0,
        checkpoint_every: 0,
        max_steps: Some(3),
        checkpoint_dir: Some(dir.to_owned()),
        ..Default::default()
    };
    run(
        &mut r,
        &mut synthetic(3, 0, format),
        None,
        &mut SingleReplica,
        &schedule(3, 2),
        &opts,
        None,
        &mut Collect::default(),
        &AtomicBool::new(false),
    )
    .unwrap();
    r
}

/// Trains 3 steps in `from`, checkpoints, resumes a fresh replica in `to`: the momentum must be
/// the same, element for element in logical order (a 3x3 conv's OHWI momentum read as OIHW, or
/// the reverse, scrambles it).
fn resume_keeps_the_momentum(from: MemoryFormat, to: MemoryFormat) {
    let dir = tempfile::tempdir().unwrap();
    let a = trained_and_checkpointed(11, from, dir.path());
    let before = momentum_nchw(&a, from);
    let conv = &before
        .iter()
        .find(|(n, _)| n == "layer1.0.conv1.weight")
        .unwrap()
        .1;
    assert!(conv.abs().max().double_value(&[]) > 0.0, "momentum is zero");

    let mut b = replica(12, to, Precision::Fp32);
    let point = b.load_checkpoint(dir.path()).unwrap();
    assert_eq!(point.step, 3);
    let after = momentum_nchw(&b, to);
    assert_eq!(before.len(), after.len());
    for ((name, x), (name_b, y)) in before.iter().zip(&after) {
        assert_eq!(name, name_b);
        let diff = (x - y).abs().max().double_value(&[]);
        assert!(
            x.equal(y),
            "{name}: momentum changed by the {from:?} → {to:?} resume (max |diff| {diff})"
        );
    }
    for (name, (x, y)) in a
        .state_tensors()
        .iter()
        .zip(b.state_tensors())
        .map(|(x, y)| (&x.0, (&x.1, y.1)))
    {
        assert!(x.equal(&y), "{name} changed by the resume");
    }
}

#[test]
fn an_nhwc_checkpoint_resumed_nchw_keeps_the_momentum() {
    resume_keeps_the_momentum(MemoryFormat::ChannelsLast, MemoryFormat::Contiguous);
}

#[test]
fn an_nchw_checkpoint_resumed_nhwc_keeps_the_momentum() {
    resume_keeps_the_momentum(MemoryFormat::Contiguous, MemoryFormat::ChannelsLast);
}

/// Format-1 checkpoints (one flat `lars.momentum` in the writer's layout, see checkpoint.rs) are
/// still read, in the resuming run's layout: exact when it resumes in the format that wrote it.
#[test]
fn a_format_1_checkpoint_still_resumes_in_its_own_memory_format() {
    let dir = tempfile::tempdir().unwrap();
    let a = trained_and_checkpointed(13, MemoryFormat::ChannelsLast, dir.path());
    let (meta, tensors) = checkpoint::load(dir.path()).unwrap();
    assert_eq!(meta.format, checkpoint::CHECKPOINT_FORMAT);
    let mut old: Vec<(String, Tensor)> = tensors
        .into_iter()
        .filter(|(n, _)| !n.starts_with("lars.momentum."))
        .collect();
    old.push(("lars.momentum".into(), a.lars().momentum().copy()));
    checkpoint::save(dir.path(), meta, &old).unwrap();
    let json = dir.path().join("checkpoint.json");
    let text = std::fs::read_to_string(&json).unwrap();
    let mut value: serde_json::Value = serde_json::from_str(&text).unwrap();
    value["format"] = 1.into();
    std::fs::write(&json, serde_json::to_vec(&value).unwrap()).unwrap();

    let mut b = replica(14, MemoryFormat::ChannelsLast, Precision::Fp32);
    assert_eq!(b.load_checkpoint(dir.path()).unwrap().step, 3);
    assert!(b.lars().momentum().equal(a.lars().momentum()));
    assert!(b.flat().weights().equal(a.flat().weights()));
}
