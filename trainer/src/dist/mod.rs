//! Multi-process data parallelism on libtorch's c10d, launched as PyTorch jobs are (torchrun,
//! Slurm `srun`, Kubernetes JobSet / PyTorchJob): one process per device.
//!
//! - [`env`]: where this process stands, from the launcher's variables.
//! - [`c10d`]: `TCPStore`, `ProcessGroupGloo` / `ProcessGroupNCCL`, and the bucketed all-reduce
//!   started from autograd hooks (`csrc/c10d.cpp`).
//! - [`buckets`]: which parameters go in which bucket (pure).
//! - [`health`]: heartbeats in the store, and the sentence naming a lost or hung rank.
//! - [`C10dAverager`]: the [`GradientAverager`] of a process of such a job; [`join`] makes it.

pub mod buckets;
pub mod c10d;
pub mod env;
pub mod health;

use std::time::Duration;

use tch::{Device, Tensor};

use crate::allreduce::{AllReduceError, GradientAverager};
use crate::flat::FlatParams;
use buckets::{plan_buckets, DEFAULT_BUCKET_BYTES, FIRST_BUCKET_BYTES};
use c10d::{BucketTimes, Buckets, C10dError, GlooDevice, ProcessGroup, Store};
use env::DistEnv;
use health::{diagnose, Heartbeat};

/// The default bound on one collective: a rank that died, hung or lost its network makes every
/// other rank fail within it (plus [`health::DIAGNOSIS_WINDOW`] to name it).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(100);

/// How a process joins its job.
#[derive(Debug, Clone, PartialEq)]
pub struct JoinOptions {
    /// This process's device: CPU joins through Gloo, CUDA through NCCL.
    pub device: Device,
    /// Bound on the rendezvous and on every collective.
    pub timeout: Duration,
    /// Gradient bucket size in bytes; 0: one all-reduce after backward (no overlap).
    pub bucket_bytes: usize,
    /// gloo's network device (`GLOO_SOCKET_IFNAME`, else its default).
    pub gloo_device: GlooDevice,
}

impl JoinOptions {
    /// DDP's defaults for `device`, gloo's device from `GLOO_SOCKET_IFNAME` (through `get`).
    pub fn new(device: Device, get: impl Fn(&str) -> Option<String>) -> JoinOptions {
        JoinOptions {
            device,
            timeout: DEFAULT_TIMEOUT,
            bucket_bytes: DEFAULT_BUCKET_BYTES,
            gloo_device: match get("GLOO_SOCKET_IFNAME") {
                Some(i) if !i.is_empty() => GlooDevice::Interface(i),
                _ => GlooDevice::Default,
            },
        }
    }
}

/// Joins the job `env` describes: the TCPStore (hosted by rank 0, or by torchrun's agent),
/// the heartbeat, and the process group.
///
/// # Errors
///
/// [`AllReduceError::C10d`] when the store or the group cannot be made (unreachable master,
/// timeout waiting for the other ranks).
pub fn join(env: &DistEnv, options: &JoinOptions) -> Result<C10dAverager, AllReduceError> {
    let rank = env.rank;
    let store_name = format!(
        "{}:{}{}",
        env.master_addr,
        env.master_port,
        if env.agent_store {
            " (torchrun's agent)"
        } else {
            " (rank 0)"
        }
    );
    let failed = |e: C10dError, what: &str| AllReduceError::C10d {
        rank,
        what: format!("{what}: {e}"),
        diagnosis: String::new(),
    };
    let connect = |server: bool| {
        Store::connect(
            &env.master_addr,
            env.master_port,
            env.world,
            server,
            options.timeout,
            &env.store_prefix(),
        )
    };
    let store = connect(!env.agent_store && rank == 0)
        .map_err(|e| failed(e, &format!("joining the store at {store_name}")))?;
    let heartbeat = Heartbeat::start(
        connect(false).map_err(|e| failed(e, "the heartbeat's store connection"))?,
        rank,
    );
    let group = match options.device {
        Device::Cuda(_) => ProcessGroup::nccl(&store, rank, env.world, options.timeout),
        _ => ProcessGroup::gloo(
            &store,
            rank,
            env.world,
            options.timeout,
            &options.gloo_device,
        ),
    }
    .map_err(|e| failed(e, "making the process group"))?;
    Ok(C10dAverager {
        group,
        store,
        store_name,
        heartbeat,
        bucket_bytes: options.bucket_bytes,
        buckets: None,
        steps: 0,
        last: BucketTimes::default(),
    })
}

/// One process's [`GradientAverager`] in a c10d job: a bucketed all-reduce overlapping backward
/// (through [`GradientAverager::before_backward`] / [`after_backward`]), plain all-reduces and
/// broadcasts otherwise. A failed collective is reported with [`health::diagnose`]'s sentence
/// naming the lost rank.
///
/// [`after_backward`]: GradientAverager::after_backward
pub struct C10dAverager {
    // Field order is drop order: the buckets' hooks and the group before the store.
    buckets: Option<Buckets>,
    group: ProcessGroup,
    heartbeat: Heartbeat,
    store: Store,
    store_name: String,
    bucket_bytes: usize,
    steps: u64,
    last: BucketTimes,
}

impl C10dAverager {
    /// The last step's bucket timings.
    pub fn last_times(&self) -> BucketTimes {
        self.last
    }

    /// The job's store (small shared state: elastic bookkeeping, tests).
    pub fn store(&self) -> &Store {
        &self.store
    }

    fn lost(&self, e: C10dError) -> AllReduceError {
        let diagnosis = diagnose(
            &self.store,
            self.group.world(),
            self.group.rank(),
            self.steps,
            &self.store_name,
        );
        AllReduceError::C10d {
            rank: self.group.rank(),
            what: e.to_string(),
            diagnosis,
        }
    }

    fn divide(&self, t: &mut Tensor) -> Result<(), AllReduceError> {
        let _ = tch::no_grad(|| t.f_div_scalar_(self.group.world() as f64))?;
        Ok(())
    }
}

impl GradientAverager for C10dAverager {
    fn rank(&self) -> usize {
        self.group.rank()
    }

    fn world_size(&self) -> usize {
        self.group.world()
    }

    fn average(&mut self, buffer: &mut Tensor) -> Result<(), AllReduceError> {
        if let Err(e) = self.group.allreduce_sum(buffer) {
            return Err(self.lost(e));
        }
        self.divide(buffer)
    }

    fn broadcast(&mut self, buffer: &mut Tensor) -> Result<(), AllReduceError> {
        self.group.broadcast(buffer, 0).map_err(|e| self.lost(e))
    }

    fn before_backward(&mut self, flat: &FlatParams) -> Result<(), AllReduceError> {
        self.steps += 1;
        self.heartbeat.set_step(self.steps);
        if self.buckets.is_none() {
            let numels: Vec<usize> = flat.segments().iter().map(|s| s.numel as usize).collect();
            let plan = plan_buckets(&numels, 4, FIRST_BUCKET_BYTES, self.bucket_bytes);
            let made = Buckets::new(
                &self.group,
                flat.grads(),
                flat.vars(),
                flat.grad_views(),
                &plan,
            )
            .map_err(|e| AllReduceError::C10d {
                rank: self.group.rank(),
                what: e.to_string(),
                diagnosis: String::new(),
            })?;
            self.buckets = Some(made);
        }
        if let Some(b) = self.buckets.as_mut() {
            if let Err(e) = b.arm() {
                return Err(self.lost(e));
            }
        }
        Ok(())
    }

    fn after_backward(&mut self, flat: &mut FlatParams) -> Result<(), AllReduceError> {
        let Some(b) = self.buckets.as_mut() else {
            flat.gather_grads()?;
            return self.average(&mut flat.grads().shallow_clone());
        };
        match b.finish() {
            Ok(t) => self.last = t,
            Err(e) => return Err(self.lost(e)),
        }
        // The hooks copied every own gradient into the flat buffer: point the parameters' grads
        // at it, as the optimizer reads them there.
        flat.adopt_flat_grads()?;
        self.divide(&mut flat.grads().shallow_clone())
    }
}
