//! Issue 12 changed how a CPU step handles gradients and LARS (autograd's own gradients instead
//! of accumulating into the zeroed flat buffer; the fused LARS instead of tensor ops). These
//! tests pin that the numbers did not change: replicas trained with the new path and with the
//! old one ([`StepPath::TensorOps`], still what CUDA runs) from the same weights on the same
//! batches, in fp32, in both memory formats, with one replica and with two data-parallel ones.
//!
//! The documented tolerance: weights and momentum equal within 1e-6 relative (elementwise,
//! `|a − b| ≤ 1e-6·(|b| + 1e-6)`) after every step. Why it can differ at all: the fused step's
//! f64 norms add the squares in another order than libtorch's, which may move a trust ratio by
//! one fp32 ulp (6e-8 relative); the gradients themselves are the same values (a stolen
//! gradient `g` against `0 + g` accumulated into a zeroed buffer), and the update is the same
//! fp32 operations in the same order. Measured on this project's CPU: bit for bit equal.

use shardfeed_trainer::allreduce::{GradientAverager, InProcessGroup, SingleReplica};
use shardfeed_trainer::data::{DeviceLoader, SyntheticConfig, SyntheticLoader};
use shardfeed_trainer::flat::GradLocation;
use shardfeed_trainer::lars::LarsConfig;
use shardfeed_trainer::model::{Arch, ModelOptions};
use shardfeed_trainer::precision::{MemoryFormat, Precision};
use shardfeed_trainer::train::{Replica, ReplicaConfig, StepPath};
use tch::{Device, Tensor};

/// The documented tolerance (see the file's comment).
const REL_TOL: f64 = 1e-6;

static INIT: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn small(seed: i64, format: MemoryFormat, path: StepPath) -> Replica {
    let _lock = INIT.lock().unwrap_or_else(|e| e.into_inner());
    tch::manual_seed(seed);
    let mut r = Replica::resnet(
        Device::Cpu,
        Arch::Small,
        4,
        ModelOptions::default(),
        &ReplicaConfig {
            format,
            precision: Precision::Fp32,
            lars: LarsConfig::default(),
            label_smoothing: 0.1,
        },
    )
    .unwrap();
    r.set_step_path(path);
    r
}

fn loader(rank: usize, format: MemoryFormat) -> SyntheticLoader {
    let config = SyntheticConfig {
        batch: 8,
        size: (16, 16),
        classes: 4,
        batches_per_epoch: 6,
        seed: 21,
        rank,
        format,
        noise: 1.0,
    };
    let mut l = SyntheticLoader::new(Device::Cpu, &config).unwrap();
    l.start_epoch(0, 0).unwrap();
    l
}

/// Largest `|a − b| / (|b| + 1e-6)`.
fn max_rel(a: &Tensor, b: &Tensor) -> f64 {
    ((a - b).abs() / (b.abs() + 1e-6)).max().double_value(&[])
}

/// Trains `r` on `rank`'s batches; after each step, its weights and momentum.
fn trajectory(
    mut r: Replica,
    rank: usize,
    format: MemoryFormat,
    avg: &mut dyn GradientAverager,
) -> Vec<(Tensor, Tensor, f64)> {
    let mut l = loader(rank, format);
    let mut out = Vec::new();
    let mut step = 0;
    while let Some(b) = l.next_batch().unwrap() {
        // A large rate so that differences would grow, not fade.
        let lr = 2.0 + step as f64;
        let loss = r.train_step(&b, lr, avg).unwrap().double_value(&[]);
        out.push((r.flat().weights().copy(), r.lars().momentum().copy(), loss));
        step += 1;
    }
    out
}

fn assert_same(new: &[(Tensor, Tensor, f64)], old: &[(Tensor, Tensor, f64)], what: &str) {
    assert_eq!(new.len(), old.len());
    for (step, ((w_new, m_new, l_new), (w_old, m_old, l_old))) in new.iter().zip(old).enumerate() {
        let (dw, dm) = (max_rel(w_new, w_old), max_rel(m_new, m_old));
        assert!(
            dw <= REL_TOL && dm <= REL_TOL,
            "{what}, step {step}: weights differ by {dw:e}, momentum by {dm:e} (relative)"
        );
        assert!(
            (l_new - l_old).abs() <= REL_TOL * l_old.abs(),
            "{what}, step {step}: loss {l_new} vs {l_old}"
        );
    }
}

#[test]
fn one_replica_trains_the_same_on_the_new_and_the_old_cpu_step() {
    for format in [MemoryFormat::Contiguous, MemoryFormat::ChannelsLast] {
        let new = small(31, format, StepPath::Auto);
        let old = small(31, format, StepPath::TensorOps);
        assert!(new.flat().weights().equal(old.flat().weights()));
        let new = trajectory(new, 0, format, &mut SingleReplica);
        let old = trajectory(old, 0, format, &mut SingleReplica);
        assert_same(&new, &old, &format!("{format:?}"));
    }
}

#[test]
fn the_new_cpu_step_leaves_gradients_in_autograds_tensors_and_gathers_them_for_averaging() {
    let format = MemoryFormat::Contiguous;
    // One replica: the gradients stay where autograd made them.
    let mut r = small(32, format, StepPath::Auto);
    let b = loader(0, format).next_batch().unwrap().unwrap();
    let _ = r.train_step(&b, 1.0, &mut SingleReplica).unwrap();
    assert_eq!(r.flat().grad_location(), GradLocation::Own);
    assert!(r.flat().own_grads().iter().all(Option::is_some));
    // The old path: in the flat buffer.
    let mut r = small(32, format, StepPath::TensorOps);
    let _ = r.train_step(&b, 1.0, &mut SingleReplica).unwrap();
    assert_eq!(r.flat().grad_location(), GradLocation::Flat);

    // Two replicas, both paths: the same weights after every step.
    let run = |path: StepPath| -> Vec<Vec<(Tensor, Tensor, f64)>> {
        let handles: Vec<_> = InProcessGroup::new(2)
            .into_iter()
            .map(|mut avg| {
                std::thread::spawn(move || {
                    let rank = avg.rank();
                    let mut r = small(33, format, path);
                    r.sync_from_rank0(&mut avg).unwrap();
                    trajectory(r, rank, format, &mut avg)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    };
    let (new, old) = (run(StepPath::Auto), run(StepPath::TensorOps));
    for rank in 0..2 {
        assert_same(
            &new[rank],
            &old[rank],
            &format!("data parallel, rank {rank}"),
        );
    }
    // The two ranks agree with each other, as before.
    for ((w0, m0, _), (w1, m1, _)) in new[0].iter().zip(&new[1]) {
        assert!(w0.equal(w1) && m0.equal(m1));
    }
}
