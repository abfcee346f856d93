//! The N-replica logic on the CPU: two replicas on two threads with an in-process averager stay
//! identical, and equal one replica trained on the union of their batches: exactly so without
//! batch norm, and with it (the trainer's ResNets) once that one replica normalises each half of
//! the union batch on its own, as each replica does.

use shardfeed_trainer::allreduce::{GradientAverager, InProcessGroup, SingleReplica};
use shardfeed_trainer::data::{DeviceBatch, DeviceLoader, SyntheticConfig, SyntheticLoader};
use shardfeed_trainer::lars::LarsConfig;
use shardfeed_trainer::model::{Arch, ModelOptions, ResNet};
use shardfeed_trainer::precision::{MemoryFormat, Precision};
use shardfeed_trainer::train::{Replica, ReplicaConfig};
use tch::nn::{self, ModuleT};
use tch::{Device, Kind, Tensor};

/// libtorch's generator is process-wide and replicas/tests run on parallel threads: seed + build
/// under a lock so initial weights and data depend on their seed only.
static INIT: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn small(seed: i64) -> Replica {
    let _lock = INIT.lock().unwrap_or_else(|e| e.into_inner());
    tch::manual_seed(seed);
    Replica::resnet(
        Device::Cpu,
        Arch::Small,
        4,
        ModelOptions::default(),
        &ReplicaConfig {
            format: MemoryFormat::Contiguous,
            precision: Precision::Fp32,
            lars: LarsConfig::default(),
            label_smoothing: 0.1,
        },
    )
    .unwrap()
}

#[test]
fn two_replicas_stay_identical() {
    let handles: Vec<_> = InProcessGroup::new(2)
        .into_iter()
        .map(|mut avg| {
            std::thread::spawn(move || {
                let rank = avg.rank();
                // Different init seeds: sync_from_rank0 must make them equal.
                let mut r = small(100 + rank as i64);
                r.sync_from_rank0(&mut avg).unwrap();
                let config = SyntheticConfig {
                    batch: 8,
                    size: (16, 16),
                    classes: 4,
                    batches_per_epoch: 3,
                    seed: 9,
                    rank,
                    format: MemoryFormat::Contiguous,
                    noise: 1.0,
                };
                let mut loader = SyntheticLoader::new(Device::Cpu, &config).unwrap();
                loader.start_epoch(0, 0).unwrap();
                let mut losses = Vec::new();
                while let Some(b) = loader.next_batch().unwrap() {
                    losses.push(r.train_step(&b, 2.0, &mut avg).unwrap().double_value(&[]));
                }
                (
                    r.flat().weights().copy(),
                    r.lars().momentum().copy(),
                    losses,
                )
            })
        })
        .collect();
    let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let (w0, m0, l0) = &results[0];
    let (w1, m1, l1) = &results[1];
    assert!(w0.equal(w1), "weights differ");
    assert!(m0.equal(m1), "momentum differs");
    // They trained on different data.
    assert_ne!(l0, l1);
}

/// conv → relu → global pool → fc: no batch statistics, so the mean of per-half gradients is the
/// full-batch gradient.
fn no_bn(p: &nn::Path) -> Box<dyn ModuleT> {
    let conv = nn::conv2d(
        p / "conv",
        3,
        8,
        3,
        nn::ConvConfig {
            padding: 1,
            ..Default::default()
        },
    );
    let fc = nn::linear(p / "fc", 8, 4, Default::default());
    Box::new(nn::func_t(move |xs, _train| {
        xs.apply(&conv)
            .relu()
            .mean_dim([2i64, 3].as_slice(), false, Kind::Float)
            .apply(&fc)
    }))
}

fn no_bn_replica() -> Replica {
    let _lock = INIT.lock().unwrap_or_else(|e| e.into_inner());
    tch::manual_seed(5);
    Replica::new(
        Device::Cpu,
        "no-bn",
        4,
        no_bn,
        &ReplicaConfig {
            format: MemoryFormat::Contiguous,
            precision: Precision::Fp32,
            lars: LarsConfig::default(),
            label_smoothing: 0.1,
        },
    )
    .unwrap()
}

fn batches() -> Vec<(Tensor, Tensor)> {
    let _lock = INIT.lock().unwrap_or_else(|e| e.into_inner());
    (0..3)
        .map(|i| {
            tch::manual_seed(1000 + i);
            (
                Tensor::randn([8, 3, 8, 8], (Kind::Float, Device::Cpu)),
                Tensor::randint(4, [8], (Kind::Int64, Device::Cpu)),
            )
        })
        .collect()
}

#[test]
fn two_replicas_equal_one_on_the_union_batch() {
    let data = batches();
    let mut single = no_bn_replica();
    for (x, y) in &data {
        let b = DeviceBatch {
            images: x.shallow_clone(),
            labels: y.shallow_clone(),
        };
        let _ = single.train_step(&b, 3.0, &mut SingleReplica).unwrap();
    }
    let want = single.flat().weights().copy();

    let handles: Vec<_> = InProcessGroup::new(2)
        .into_iter()
        .map(|mut avg| {
            let data: Vec<(Tensor, Tensor)> =
                data.iter().map(|(x, y)| (x.copy(), y.copy())).collect();
            std::thread::spawn(move || {
                let rank = avg.rank() as i64;
                let mut r = no_bn_replica();
                for (x, y) in &data {
                    let b = DeviceBatch {
                        images: x.narrow(0, 4 * rank, 4),
                        labels: y.narrow(0, 4 * rank, 4),
                    };
                    let _ = r.train_step(&b, 3.0, &mut avg).unwrap();
                }
                r.flat().weights().copy()
            })
        })
        .collect();
    for h in handles {
        let got = h.join().unwrap();
        let diff = (&got - &want).abs().max().double_value(&[]);
        assert!(diff < 1e-5, "max |diff| {diff}");
    }
    // And the updates were not trivially zero.
    let mut fresh = no_bn_replica();
    let moved = (fresh.flat().weights() - &want)
        .abs()
        .max()
        .double_value(&[]);
    assert!(moved > 1e-4);
    let _ = &mut fresh;
}

/// The small ResNet, but in training mode each half of the batch goes through the model on its
/// own: batch norm then normalises each half by its own statistics, as each of two replicas does
/// with its half (BN statistics stay per replica, DDP without SyncBatchNorm). The mean loss over
/// the whole batch is the mean of the two halves' mean losses, so the gradient is the mean of the
/// per-half gradients: what the all-reduce gives two replicas.
fn small_per_half_bn(p: &nn::Path) -> Box<dyn ModuleT> {
    let model = ResNet::new(p, Arch::Small, 4, ModelOptions::default());
    Box::new(nn::func_t(move |xs, train| {
        if train {
            let halves = xs.chunk(2, 0);
            Tensor::cat(
                &[
                    model.forward_t(&halves[0], true),
                    model.forward_t(&halves[1], true),
                ],
                0,
            )
        } else {
            model.forward_t(xs, false)
        }
    }))
}

/// One replica trained on the union batches with `build`, from the weights `small(seed)` starts
/// with; returns its weights and momentum.
fn one_replica_on_the_union(
    seed: i64,
    build: fn(&nn::Path) -> Box<dyn ModuleT>,
    data: &[(Tensor, Tensor)],
) -> (Tensor, Tensor) {
    let mut r = {
        let _lock = INIT.lock().unwrap_or_else(|e| e.into_inner());
        tch::manual_seed(seed);
        Replica::new(Device::Cpu, "small", 4, build, &ReplicaConfig::default()).unwrap()
    };
    assert!(
        r.flat().weights().equal(small(seed).flat().weights()),
        "not the same start"
    );
    for (x, y) in data {
        let b = DeviceBatch {
            images: x.shallow_clone(),
            labels: y.shallow_clone(),
        };
        let _ = r.train_step(&b, 3.0, &mut SingleReplica).unwrap();
    }
    (r.flat().weights().copy(), r.lars().momentum().copy())
}

/// The trainer's model (batch norm included), two replicas on two threads, each on its half of
/// every batch: after 3 steps both hold the very same weights and momentum (bit for bit), and
/// these equal, within 1e-5 (float summation order only: the all-reduce adds two half-gradients,
/// the single replica's backward accumulates them), those of one replica on the union batch with
/// per-half batch norm. One replica with BN over the whole union batch differs by far more: the
/// comparison sees BN semantics.
#[test]
fn two_replicas_with_batch_norm_match_one_replica_on_the_union_batch() {
    const TOL: f64 = 1e-5;
    let data = batches();
    let handles: Vec<_> = InProcessGroup::new(2)
        .into_iter()
        .map(|mut avg| {
            let data: Vec<(Tensor, Tensor)> =
                data.iter().map(|(x, y)| (x.copy(), y.copy())).collect();
            std::thread::spawn(move || {
                let rank = avg.rank() as i64;
                // Different init seeds: sync_from_rank0 must make them rank 0's (seed 40).
                let mut r = small(40 + rank);
                r.sync_from_rank0(&mut avg).unwrap();
                for (x, y) in &data {
                    let b = DeviceBatch {
                        images: x.narrow(0, 4 * rank, 4),
                        labels: y.narrow(0, 4 * rank, 4),
                    };
                    let _ = r.train_step(&b, 3.0, &mut avg).unwrap();
                }
                (r.flat().weights().copy(), r.lars().momentum().copy())
            })
        })
        .collect();
    let results: Vec<(Tensor, Tensor)> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let (w0, m0) = &results[0];
    let (w1, m1) = &results[1];
    assert!(w0.equal(w1), "the replicas' weights differ");
    assert!(m0.equal(m1), "the replicas' momentum differs");

    let max_diff = |a: &Tensor, b: &Tensor| (a - b).abs().max().double_value(&[]);
    let (w, m) = one_replica_on_the_union(40, small_per_half_bn, &data);
    let diff = max_diff(w0, &w);
    assert!(diff < TOL, "weights: max |diff| {diff}");
    let diff = max_diff(m0, &m);
    assert!(diff < TOL, "momentum: max |diff| {diff}");
    // The weights did move, and BN over the whole union batch is another computation.
    let moved = max_diff(small(40).flat().weights(), &w);
    assert!(moved > 1e-3, "moved {moved}");
    let (w_full_bn, _) = one_replica_on_the_union(
        40,
        |p| Box::new(ResNet::new(p, Arch::Small, 4, ModelOptions::default())),
        &data,
    );
    let diff = max_diff(w0, &w_full_bn);
    assert!(diff > 100.0 * TOL, "whole-batch BN: max |diff| {diff}");
}
