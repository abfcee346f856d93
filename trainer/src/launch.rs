//! The `shardfeed-train` command line as a library, so the binary is glue and this is tested:
//! the flags ([`Args`], [`command`]), what they mean on this machine ([`plan`] → [`Plan`]), and
//! the run ([`launch`]: one thread per replica, each running [`train::run`](crate::train::run)
//! with its own loaders and gradient averager).
//!
//! Errors are [`LaunchError`]s; [`LaunchError::exit_code`] is the binary's exit status: 2 for
//! usage and I/O errors (bad flag values, a dataset, checkpoint or log that cannot be read or
//! written), 1 when training itself fails (divergence, libtorch, NCCL), as for the `shardfeed`
//! CLI.
//!
//! ```
//! use clap::Parser;
//! use shardfeed_trainer::launch::{plan, Args};
//! let args = Args::try_parse_from(["shardfeed-train", "--device", "cpu", "--replicas", "2"])?;
//! let plan = plan(&args)?;
//! assert_eq!(plan.devices, vec![tch::Device::Cpu; 2]);
//! assert_eq!(plan.image_size, 32, "the small model's default");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

use clap::{CommandFactory, Parser};
use shardfeed_engine::layout::split_dirs;
use tch::Device;

use crate::allreduce::{
    AllReduceError, GradientAverager, InProcessGroup, NcclAverager, NcclId, SingleReplica,
};
use crate::checkpoint::CheckpointError;
use crate::data::{DataError, DeviceLoader, SyntheticConfig, SyntheticLoader};
use crate::dist::env::DistEnv;
use crate::dist::JoinOptions;
use crate::events::{Discard, EventSink, JsonLines, Progress, Tee};
use crate::lars::LarsConfig;
use crate::model::{Arch, ModelOptions};
use crate::phases::PhaseTimes;
use crate::precision::{MemoryFormat, Precision};
use crate::schedule::{mlperf_defaults, PolyWarmup};
use crate::shards::{ShardsOptions, ShardsSource, Split};
use crate::train::{run, Replica, ReplicaConfig, StepPath, TrainError, TrainOptions};

/// Exit status when training fails (the run started and could not finish).
pub const EXIT_FAILURE: u8 = 1;
/// Exit status for usage and I/O errors (clap's own usage errors exit 2 too).
pub const EXIT_USAGE: u8 = 2;
/// Exit status after Ctrl-C (the run checkpointed and stopped).
pub const EXIT_INTERRUPTED: u8 = 130;

/// Where batches come from.
#[derive(Debug, Clone, PartialEq)]
pub enum DataSource {
    /// Batches made on the device.
    Synthetic,
    /// A shardfeed dataset directory (train/ and val/, or one dataset).
    Shards(PathBuf),
}

/// Parses `--data`: `synthetic` or `shards:DIR`.
pub fn parse_data(s: &str) -> Result<DataSource, String> {
    if s == "synthetic" {
        Ok(DataSource::Synthetic)
    } else if let Some(dir) = s.strip_prefix("shards:") {
        if dir.is_empty() {
            return Err(
                "shards: needs a directory, e.g. --data shards:/data/imagenet-shards".into(),
            );
        }
        Ok(DataSource::Shards(PathBuf::from(dir)))
    } else {
        Err(format!(
            "unknown data source '{s}' (expected synthetic or shards:DIR)"
        ))
    }
}

/// `shardfeed-train`'s flags.
///
/// Flag names must not be ambiguous prefixes of torchrun's own options (`--log` was: torchrun's
/// argparse could not tell `--log-dir` from `--logs-specs` and refused the whole launch);
/// `tests/cli.rs::every_flag_passes_torchruns_parser` checks every flag of [`command`].
#[derive(Debug, Parser)]
#[command(
    name = "shardfeed-train",
    version,
    about = "Large-batch LARS training of ResNets on libtorch"
)]
pub struct Args {
    /// Data: `synthetic` (batches made on the device) or `shards:DIR`.
    #[arg(long, value_parser = parse_data, default_value = "synthetic")]
    pub data: DataSource,
    /// Model: small, resnet18 or resnet50.
    #[arg(long, default_value = "small")]
    pub model: Arch,
    /// Classes (synthetic data; shards take theirs from the manifest).
    #[arg(long, default_value_t = 10)]
    pub classes: usize,
    /// Decode-and-augment threads per replica (shards data) [default: the cores shared out].
    #[arg(long)]
    pub workers: Option<usize>,
    /// Image side in pixels [default: 32 for small, 224 otherwise].
    #[arg(long)]
    pub image_size: Option<usize>,
    /// Images per step per replica.
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// Images per step over all replicas (every rank of a multi-process job), each taking
    /// N / replicas; overrides --batch-size. Kept the same across restarts at other world
    /// sizes, it makes resume exact: global batch b is the same samples at any world size.
    #[arg(long)]
    pub global_batch: Option<usize>,
    /// Multi-process jobs (torchrun, srun): seconds the rendezvous or one collective may take
    /// before every rank fails, naming the lost or hung rank.
    #[arg(long, default_value_t = 100.0)]
    pub dist_timeout: f64,
    /// Multi-process jobs: gradient bucket size in MB; each bucket's all-reduce starts as soon
    /// as backward has produced it (0: one all-reduce after backward, no overlap).
    #[arg(long, default_value_t = 25.0)]
    pub bucket_mb: f64,
    /// Append one JSON line per training batch (epoch, batch, rank, records) to this file, from
    /// every rank (shards data): which samples each global batch held.
    #[arg(long, hide = true)]
    pub sample_log: Option<PathBuf>,
    /// Epochs.
    #[arg(long, default_value_t = 5)]
    pub epochs: u64,
    /// Steps per epoch (synthetic data).
    #[arg(long, default_value_t = 50)]
    pub steps_per_epoch: u64,
    /// Validation batches per replica (synthetic data).
    #[arg(long, default_value_t = 10)]
    pub val_batches: u64,
    /// Noise level of the synthetic images (1: pattern and noise of equal size).
    #[arg(long, default_value_t = 1.0)]
    pub synthetic_noise: f32,
    /// Peak learning rate [default: MLPerf's table for the global batch].
    #[arg(long)]
    pub lr: Option<f64>,
    /// Warmup epochs [default: MLPerf's table].
    #[arg(long)]
    pub warmup_epochs: Option<f64>,
    /// Final learning rate.
    #[arg(long, default_value_t = 1e-4)]
    pub end_lr: f64,
    /// LARS momentum.
    #[arg(long, default_value_t = 0.9)]
    pub momentum: f64,
    /// LARS weight decay (conv and fc weights only).
    #[arg(long, default_value_t = 1e-4)]
    pub weight_decay: f64,
    /// LARS coefficient η.
    #[arg(long, default_value_t = 0.001)]
    pub eta: f64,
    /// LARS ε (the MLPerf reference's effective value).
    #[arg(long, default_value_t = 1e-7)]
    pub epsilon: f64,
    /// Label smoothing.
    #[arg(long, default_value_t = 0.1)]
    pub label_smoothing: f64,
    /// Start each block's last BN scale at 0.
    #[arg(long)]
    pub zero_init_residual: bool,
    /// fp32 or bf16 [default: bf16 on GPU, fp32 on CPU].
    #[arg(long, value_parser = ["fp32", "bf16"])]
    pub precision: Option<String>,
    /// nchw or nhwc (channels-last) [default: nhwc on GPU, nchw on CPU].
    #[arg(long, value_parser = ["nchw", "nhwc"])]
    pub memory_format: Option<String>,
    /// cpu, cuda or cuda:N (one replica) [default: cuda if available].
    #[arg(long)]
    pub device: Option<String>,
    /// Data parallel over GPUs: `all` or a count (one replica per GPU, NCCL).
    #[arg(long, conflicts_with = "device")]
    pub gpus: Option<String>,
    /// Data parallel over N CPU replicas in this process (tests the multi-replica path).
    #[arg(long, default_value_t = 1, conflicts_with = "gpus")]
    pub replicas: usize,
    /// Evaluate every N epochs (0: never).
    #[arg(long, default_value_t = 1)]
    pub eval_every: u64,
    /// A throughput line every N steps.
    #[arg(long, default_value_t = 10)]
    pub log_every: u64,
    /// Checkpoint directory (Ctrl-C and the end of the run checkpoint there).
    #[arg(long)]
    pub checkpoint_dir: Option<PathBuf>,
    /// Checkpoint every N epochs (0: only at the end and on Ctrl-C).
    #[arg(long, default_value_t = 1)]
    pub checkpoint_every: u64,
    /// Resume from the checkpoint in --checkpoint-dir, if there is one.
    #[arg(long, requires = "checkpoint_dir")]
    pub resume: bool,
    /// JSON-lines log file (appended). Not `--log`: torchrun refuses that as an ambiguous
    /// abbreviation of its `--log-dir` / `--logs-specs`.
    #[arg(long)]
    pub log_file: Option<PathBuf>,
    /// Stop after N steps in total.
    #[arg(long)]
    pub max_steps: Option<u64>,
    /// Take the shards data's batches from `shardfeed serve` workers (HOST:PORT[,...]) instead
    /// of this host's cores: the same bytes, so the same training.
    #[arg(long)]
    pub remote: Option<String>,
    /// A file of worker addresses, re-read while the job runs (workers may join and leave).
    #[arg(long)]
    pub remote_file: Option<PathBuf>,
    /// The workers' shared secret (a file of at least 16 bytes).
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// Seconds a worker has to answer before its batch is asked of another.
    #[arg(long, default_value_t = 30.0)]
    pub remote_deadline: f64,
    /// Serve the remote source's counters as Prometheus text at http://ADDR/metrics (rank 0).
    #[arg(long)]
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Print images/s measured after this many steps (benchmark mode).
    #[arg(long)]
    pub bench_warmup: Option<u64>,
    /// Print where a step's time goes (data, zero, forward, loss, backward, allreduce, lars,
    /// sync; ms per step), after --bench-warmup's warmup. On a GPU it synchronises at every
    /// phase, which slows the step: measure images/s without it.
    #[arg(long)]
    pub phases: bool,
    /// Train with the tensor-op step (flat gradients zeroed and accumulated into, LARS as
    /// libtorch ops): the CPU step before issue 12, for A/B benchmarks.
    #[arg(long, hide = true)]
    pub tensor_op_step: bool,
    /// Seed of the model initialisation and the data.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// libtorch intra-op threads per process (CPU) [default: libtorch's].
    #[arg(long)]
    pub threads: Option<i32>,
}

/// The clap command of `shardfeed-train`: its flags, for tests and tools (torchrun's parser
/// check, completions).
pub fn command() -> clap::Command {
    Args::command()
}

/// Why a launch failed. [`exit_code`](Self::exit_code) tells usage and I/O errors from training
/// failures.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// A flag value that cannot work here (names the flag).
    #[error("{0}")]
    Usage(String),
    /// `--data shards:DIR` does not open as a dataset.
    #[error("--data shards:{}: {source}", .dir.display())]
    Dataset {
        /// The directory given.
        dir: PathBuf,
        /// Why it does not open.
        source: shardfeed_engine::shards::ShardError,
    },
    /// The `--log-file` file cannot be opened for appending.
    #[error("cannot open the log {}: {source}", .path.display())]
    Log {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The checkpoint to resume from cannot be read or does not fit this run.
    #[error("resuming from {}: {source}", .dir.display())]
    Resume {
        /// The checkpoint directory.
        dir: PathBuf,
        /// What went wrong.
        source: CheckpointError,
    },
    /// A loader could not be built.
    #[error(transparent)]
    Data(#[from] DataError),
    /// Setting up gradient averaging failed (NCCL).
    #[error(transparent)]
    AllReduce(#[from] AllReduceError),
    /// Training failed.
    #[error(transparent)]
    Train(#[from] TrainError),
    /// One replica failed (its thread's error).
    #[error("replica {rank}: {source}")]
    Replica {
        /// The replica.
        rank: usize,
        /// Its error.
        source: Box<LaunchError>,
    },
    /// A replica thread panicked.
    #[error("replica {0}: the thread panicked")]
    Panicked(usize),
}

impl LaunchError {
    /// The process exit status for this error: [`EXIT_USAGE`] (2) for usage and I/O errors,
    /// [`EXIT_FAILURE`] (1) when training itself failed.
    pub fn exit_code(&self) -> u8 {
        let data = |e: &DataError| match e {
            DataError::Config(_) | DataError::Source(_) | DataError::BadBatch { .. } => EXIT_USAGE,
            DataError::FeederGone(_) | DataError::Torch(_) | DataError::Shim(_) => EXIT_FAILURE,
        };
        match self {
            LaunchError::Usage(_)
            | LaunchError::Dataset { .. }
            | LaunchError::Log { .. }
            | LaunchError::Resume { .. } => EXIT_USAGE,
            LaunchError::Data(e) => data(e),
            LaunchError::Train(TrainError::Loader(e)) => data(e),
            LaunchError::Train(TrainError::Checkpoint(_) | TrainError::Config(_)) => EXIT_USAGE,
            LaunchError::Train(_) | LaunchError::AllReduce(_) | LaunchError::Panicked(_) => {
                EXIT_FAILURE
            }
            LaunchError::Replica { source, .. } => source.exit_code(),
        }
    }
}

/// What the machine offers: CUDA as libtorch sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cuda {
    /// Whether libtorch can use CUDA.
    pub available: bool,
    /// GPUs visible.
    pub devices: usize,
}

impl Cuda {
    /// What libtorch reports on this machine.
    pub fn detect() -> Cuda {
        Cuda {
            available: tch::Cuda::is_available(),
            devices: tch::Cuda::device_count().max(0) as usize,
        }
    }
}

/// The flags resolved against the machine.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// One device per replica.
    pub devices: Vec<Device>,
    /// fp32 or bf16.
    pub precision: Precision,
    /// NCHW or channels-last.
    pub format: MemoryFormat,
    /// Image side.
    pub image_size: usize,
    /// Classes of the model.
    pub classes: usize,
    /// Train and val dataset directories (shards data).
    pub shards: Option<(PathBuf, Option<PathBuf>)>,
    /// Images per step per replica.
    pub batch: usize,
    /// Replicas in the whole job (this process's `devices.len()`, or the launcher's world).
    pub world: usize,
    /// This process's place in a multi-process job (torchrun, srun), when launched as one.
    pub dist: Option<DistEnv>,
}

/// One device per replica from `--gpus`, `--device` and `--replicas`, given what `cuda` offers.
pub fn select_devices(args: &Args, cuda: Cuda) -> Result<Vec<Device>, LaunchError> {
    let usage = |m: String| Err(LaunchError::Usage(m));
    if let Some(gpus) = &args.gpus {
        let n = if gpus == "all" {
            cuda.devices
        } else {
            match gpus.parse::<usize>() {
                Ok(n) => n,
                Err(_) => return usage(format!("--gpus {gpus}: expected `all` or a count")),
            }
        };
        if n == 0 || n > cuda.devices {
            return usage(format!("--gpus {gpus}: {} GPU(s) visible", cuda.devices));
        }
        return Ok((0..n).map(Device::Cuda).collect());
    }
    let device = match args.device.as_deref() {
        None if cuda.available => Device::Cuda(0),
        None | Some("cpu") => Device::Cpu,
        Some("cuda") => Device::Cuda(0),
        Some(d) => match d.strip_prefix("cuda:").map(str::parse::<usize>) {
            Some(Ok(i)) => Device::Cuda(i),
            _ => return usage(format!("--device {d}: expected cpu, cuda or cuda:N")),
        },
    };
    if device.is_cuda() && !cuda.available {
        return usage(format!(
            "--device {device:?}: CUDA is not available to libtorch here"
        ));
    }
    if args.replicas == 0 {
        return usage("--replicas must be at least 1".into());
    }
    if args.replicas > 1 && device.is_cuda() {
        return usage("--replicas is for CPU runs; use --gpus for several GPUs".into());
    }
    Ok(vec![device; args.replicas])
}

/// Resolves the flags on this machine: devices, precision and memory format (bf16 and
/// channels-last on GPUs), image size, classes, and the dataset directories (which it opens to
/// read the class count).
pub fn plan(args: &Args) -> Result<Plan, LaunchError> {
    let dist = DistEnv::from_vars(|k| std::env::var(k).ok())
        .map_err(|e| LaunchError::Usage(format!("the launcher's environment: {e}")))?;
    plan_in(args, Cuda::detect(), dist)
}

/// [`plan`] with the CUDA situation given, in a single-process run.
pub fn plan_with(args: &Args, cuda: Cuda) -> Result<Plan, LaunchError> {
    plan_in(args, cuda, None)
}

/// The device of one process of a multi-process job: `--device`, else GPU `LOCAL_RANK` when
/// CUDA is there, else the CPU.
fn dist_device(args: &Args, cuda: Cuda, env: &DistEnv) -> Result<Device, LaunchError> {
    if args.gpus.is_some() || args.replicas > 1 {
        return Err(LaunchError::Usage(format!(
            "launched by {} (one process per device): drop --gpus / --replicas",
            env.launcher
        )));
    }
    match args.device.as_deref() {
        Some("cuda") | None if cuda.available => {
            if env.local_rank >= cuda.devices {
                return Err(LaunchError::Usage(format!(
                    "LOCAL_RANK {} but {} GPU(s) visible",
                    env.local_rank, cuda.devices
                )));
            }
            Ok(Device::Cuda(env.local_rank))
        }
        None | Some("cpu") => Ok(Device::Cpu),
        Some(_) => Ok(select_devices(args, cuda)?[0]),
    }
}

/// [`plan`] with the CUDA situation and the launcher's environment given.
pub fn plan_in(args: &Args, cuda: Cuda, dist: Option<DistEnv>) -> Result<Plan, LaunchError> {
    let devices = match &dist {
        Some(env) => vec![dist_device(args, cuda, env)?],
        None => select_devices(args, cuda)?,
    };
    let world = dist.as_ref().map_or(devices.len(), |env| env.world);
    let batch = match args.global_batch {
        Some(g) if g == 0 || g % world != 0 => {
            return Err(LaunchError::Usage(format!(
                "--global-batch {g} does not divide among {world} replicas"
            )))
        }
        Some(g) => g / world,
        None => args.batch_size,
    };
    if batch == 0 {
        return Err(LaunchError::Usage("--batch-size must be at least 1".into()));
    }
    let gpu = devices.first().is_some_and(|d| d.is_cuda());
    let precision = match args.precision.as_deref() {
        Some("bf16") => Precision::Bf16,
        Some(_) => Precision::Fp32,
        None if gpu => Precision::Bf16,
        None => Precision::Fp32,
    };
    let format = match args.memory_format.as_deref() {
        Some("nhwc") => MemoryFormat::ChannelsLast,
        Some(_) => MemoryFormat::Contiguous,
        None if gpu => MemoryFormat::ChannelsLast,
        None => MemoryFormat::Contiguous,
    };
    let image_size = args.image_size.unwrap_or(match args.model {
        Arch::Small => 32,
        _ => 224,
    });
    let (classes, shards) = match &args.data {
        DataSource::Synthetic => (args.classes, None),
        DataSource::Shards(dir) => {
            let found = split_dirs(dir);
            // Neither a dataset nor a root with train/: opening train/ says why.
            let train = found.train.unwrap_or_else(|| dir.join("train"));
            let dataset = shardfeed_engine::shards::Dataset::open(&train).map_err(|source| {
                LaunchError::Dataset {
                    dir: dir.clone(),
                    source,
                }
            })?;
            (dataset.num_classes(), Some((train, found.val)))
        }
    };
    if classes == 0 {
        return Err(LaunchError::Usage("the dataset lists no classes".into()));
    }
    Ok(Plan {
        devices,
        precision,
        format,
        image_size,
        classes,
        shards,
        batch,
        world,
        dist,
    })
}

/// How a run ended, as rank 0 saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// Steps done.
    pub step: u64,
    /// Whether it stopped on request (Ctrl-C).
    pub interrupted: bool,
    /// `--bench-warmup`: images trained and seconds taken after the warmup steps.
    pub bench: Option<(u64, f64)>,
    /// `--phases`: rank 0's per-phase times after the warmup steps.
    pub phases: Option<PhaseTimes>,
}

/// A replica's gradient averager, or what it needs to make one in its own thread.
enum AveragerSeed {
    Ready(Box<dyn GradientAverager>),
    /// NCCL communicators are made inside the replica threads (`ncclCommInitRank` blocks until
    /// every rank has joined); here only the shared id.
    Nccl(NcclId),
}

fn averager_seeds(plan: &Plan) -> Result<Vec<AveragerSeed>, LaunchError> {
    let world = plan.devices.len();
    if world == 1 {
        return Ok(vec![AveragerSeed::Ready(Box::new(SingleReplica))]);
    }
    if plan.devices[0].is_cuda() {
        let id = NcclId::new()?;
        return Ok((0..world).map(|_| AveragerSeed::Nccl(id)).collect());
    }
    Ok(InProcessGroup::new(world)
        .into_iter()
        .map(|a| AveragerSeed::Ready(Box::new(a)))
        .collect())
}

/// Runs the planned training: one thread per replica (per GPU with NCCL, or CPU threads with an
/// in-process group), each with its own model, loaders and averager, all stopping when `stop`
/// is set. Rank 0 reports (progress line, `--log-file`, benchmark).
///
/// # Errors
///
/// The first failing replica's error, as [`LaunchError::Replica`].
pub fn launch(args: &Args, plan: &Plan, stop: &AtomicBool) -> Result<Outcome, LaunchError> {
    if let Some(env) = &plan.dist {
        return launch_process(args, plan, env, stop);
    }
    let world = plan.devices.len();
    let seeds = averager_seeds(plan)?;
    let results: Vec<Result<Outcome, LaunchError>> = std::thread::scope(|s| {
        let handles: Vec<_> = seeds
            .into_iter()
            .enumerate()
            .map(|(rank, seed)| {
                s.spawn(move || {
                    let avg: Box<dyn GradientAverager> = match seed {
                        AveragerSeed::Ready(avg) => avg,
                        AveragerSeed::Nccl(id) => {
                            let ordinal = match plan.devices[rank] {
                                Device::Cuda(i) => i,
                                _ => rank,
                            };
                            Box::new(NcclAverager::new(id, rank, world, ordinal)?)
                        }
                    };
                    let seat = Seat {
                        rank,
                        world,
                        device: plan.devices[rank],
                    };
                    run_replica(args, plan, seat, avg, stop)
                })
            })
            .collect();
        handles
            .into_iter()
            .enumerate()
            .map(|(rank, h)| h.join().unwrap_or(Err(LaunchError::Panicked(rank))))
            .collect()
    });
    let mut first = None;
    for (rank, result) in results.into_iter().enumerate() {
        let outcome = result.map_err(|e| match e {
            LaunchError::Panicked(_) => e,
            e => LaunchError::Replica {
                rank,
                source: Box::new(e),
            },
        })?;
        first.get_or_insert(outcome);
    }
    first.ok_or_else(|| LaunchError::Usage("no replica ran".into()))
}

/// One process of a multi-process job (torchrun, srun): joins the job through c10d (the
/// TCPStore, ProcessGroupGloo on the CPU or ProcessGroupNCCL on a GPU) and runs its replica.
fn launch_process(
    args: &Args,
    plan: &Plan,
    env: &DistEnv,
    stop: &AtomicBool,
) -> Result<Outcome, LaunchError> {
    let seconds = |flag: &str, v: f64| {
        if v.is_finite() && v >= 0.0 {
            Ok(v)
        } else {
            Err(LaunchError::Usage(format!(
                "{flag} must be a number of seconds ≥ 0"
            )))
        }
    };
    let device = plan.devices[0];
    let mut options = JoinOptions::new(device, |k| std::env::var(k).ok());
    options.timeout =
        std::time::Duration::from_secs_f64(seconds("--dist-timeout", args.dist_timeout)?);
    options.bucket_bytes = (seconds("--bucket-mb", args.bucket_mb)? * 1e6) as usize;
    eprintln!("shardfeed-train: {}", env.describe());
    let avg = crate::dist::join(env, &options)?;
    let seat = Seat {
        rank: env.rank,
        world: env.world,
        device,
    };
    let outcome = run_replica(args, plan, seat, Box::new(avg), stop).map_err(|e| match e {
        LaunchError::Usage(_) | LaunchError::Resume { .. } => e,
        e => LaunchError::Replica {
            rank: env.rank,
            source: Box::new(e),
        },
    })?;
    // Rank 0 reports, as in one process.
    Ok(if env.rank == 0 {
        outcome
    } else {
        Outcome {
            bench: None,
            phases: None,
            ..outcome
        }
    })
}

/// Where a replica sits: its rank among `world`, and its device.
#[derive(Debug, Clone, Copy)]
struct Seat {
    rank: usize,
    world: usize,
    device: Device,
}

/// libtorch's generator is process-wide: replicas seed and build their model under this lock so
/// rank 0's initial weights (which every rank copies) depend on `--seed` only, not on timing.
static INIT: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn run_replica(
    args: &Args,
    plan: &Plan,
    seat: Seat,
    mut avg: Box<dyn GradientAverager>,
    stop: &AtomicBool,
) -> Result<Outcome, LaunchError> {
    let Seat {
        rank,
        world,
        device,
    } = seat;
    let config = ReplicaConfig {
        format: plan.format,
        precision: plan.precision,
        lars: LarsConfig {
            momentum: args.momentum,
            weight_decay: args.weight_decay,
            eta: args.eta,
            epsilon: args.epsilon,
            nesterov: false,
        },
        label_smoothing: args.label_smoothing,
    };
    let init = INIT.lock().unwrap_or_else(|e| e.into_inner());
    tch::manual_seed(args.seed as i64);
    let replica = Replica::resnet(
        device,
        args.model,
        plan.classes as i64,
        ModelOptions {
            zero_init_residual: args.zero_init_residual,
        },
        &config,
    );
    drop(init);
    let mut replica = replica?;
    if args.tensor_op_step {
        replica.set_step_path(StepPath::TensorOps);
    }
    replica
        .sync_from_rank0(avg.as_mut())
        .map_err(LaunchError::Train)?;
    let (mut train_loader, mut val_loader, remote_stats) = loaders(args, plan, seat)?;
    if let (0, Some(addr), Some(stats)) = (rank, args.metrics_listen, &remote_stats) {
        let bound = shardfeed_engine::remote::serve_metrics(addr, std::sync::Arc::clone(stats))
            .map_err(|e| LaunchError::Usage(format!("--metrics-listen {addr}: {e}")))?;
        eprintln!("metrics on http://{bound}/metrics");
    }
    let global_batch = plan.batch * world;
    let defaults = mlperf_defaults(global_batch as u64);
    let schedule = PolyWarmup::new(
        args.lr.unwrap_or(defaults.base_lr),
        args.end_lr,
        train_loader.batches_per_epoch(),
        args.warmup_epochs.unwrap_or(defaults.warmup_epochs),
        args.epochs * train_loader.batches_per_epoch(),
    );
    let opts = TrainOptions {
        epochs: args.epochs,
        eval_every: args.eval_every,
        log_every: args.log_every,
        checkpoint_dir: args.checkpoint_dir.clone(),
        checkpoint_every: args.checkpoint_every,
        max_steps: args.max_steps,
        bench_after: args.bench_warmup.or(args.phases.then_some(0)),
        phases: args.phases,
    };
    let resume = match &args.checkpoint_dir {
        Some(dir) if args.resume && crate::checkpoint::exists(dir) => {
            let point = replica
                .load_checkpoint_at(dir, Some(global_batch))
                .map_err(|source| LaunchError::Resume {
                    dir: dir.clone(),
                    source,
                })?;
            if rank == 0 {
                eprintln!(
                    "resuming at step {} (epoch {}, batch {})",
                    point.step, point.position.epoch, point.position.batch
                );
            }
            Some(point)
        }
        _ => None,
    };

    // Rank 0 reports (progress line, JSON lines, benchmark); the other replicas stay quiet.
    let mut reports: Box<dyn EventSink> = if rank == 0 {
        let mut sinks: Vec<Box<dyn EventSink>> = vec![Box::new(Progress)];
        if let Some(path) = &args.log_file {
            let log = JsonLines::append(path).map_err(|source| LaunchError::Log {
                path: path.clone(),
                source,
            })?;
            sinks.push(Box::new(log));
        }
        Box::new(Tee(sinks))
    } else {
        Box::new(Discard)
    };
    let summary = run(
        &mut replica,
        train_loader.as_mut(),
        val_loader
            .as_mut()
            .filter(|_| args.eval_every > 0)
            .map(|l| l.as_mut() as &mut dyn DeviceLoader),
        avg.as_mut(),
        &schedule,
        &opts,
        resume,
        reports.as_mut(),
        stop,
    )?;
    // Every rank has its own connections to the workers, so each reports what it saw.
    if let Some(stats) = &remote_stats {
        report_remote(
            rank,
            &stats
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
    }
    Ok(Outcome {
        step: summary.step,
        interrupted: summary.interrupted,
        bench: args
            .bench_warmup
            .and(summary.bench)
            .map(|(steps, secs)| (steps * global_batch as u64, secs)),
        phases: summary.phases,
    })
}

type BoxedLoader = Box<dyn DeviceLoader>;

/// The train loader's remote counters, shared with the metrics endpoint.
type SharedRemoteStats = std::sync::Arc<std::sync::Mutex<shardfeed_engine::remote::RemoteStats>>;

/// What the remote source saw, at the end of a run: per worker, and its fault log.
fn report_remote(rank: usize, stats: &shardfeed_engine::remote::RemoteStats) {
    eprintln!(
        "remote (rank {rank}): {} workers, {} batches reassigned, {} retried",
        stats.workers.len(),
        stats.reassigned,
        stats.retries
    );
    for (addr, w) in &stats.workers {
        eprintln!(
            "  {addr}: {} batches, {} images, lost {}, deadline misses {}",
            w.batches, w.images, w.lost, w.deadline_misses
        );
    }
    for line in &stats.log {
        eprintln!("  {line}");
    }
}

/// The remote source's settings from the flags, when workers are given.
fn remote_config(
    args: &Args,
    rank: usize,
) -> Result<Option<shardfeed_engine::remote::RemoteConfig>, LaunchError> {
    use shardfeed_engine::remote::{RemoteConfig, WorkerList};
    if args.remote.is_none() && args.remote_file.is_none() {
        return Ok(None);
    }
    if !(args.remote_deadline > 0.0 && args.remote_deadline.is_finite()) {
        return Err(LaunchError::Usage(
            "--remote-deadline must be a positive number of seconds".into(),
        ));
    }
    let mut workers = args
        .remote
        .as_deref()
        .map(WorkerList::parse_addresses)
        .unwrap_or_default();
    workers.file.clone_from(&args.remote_file);
    let token = args
        .token_file
        .as_deref()
        .map(shardfeed_engine::remote::read_token)
        .transpose()
        .map_err(|e| LaunchError::Usage(e.to_string()))?;
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "trainer".into());
    Ok(Some(RemoteConfig {
        token,
        deadline: std::time::Duration::from_secs_f64(args.remote_deadline),
        client_name: format!("{host}:{}/rank{rank}", std::process::id()),
        ..RemoteConfig::new(workers)
    }))
}

/// The replica's train and val loaders: batches made on the device, or the shards pipeline
/// (this replica's partition: rank = replica, world = replicas) fed through pinned staging memory.
fn loaders(
    args: &Args,
    plan: &Plan,
    seat: Seat,
) -> Result<(BoxedLoader, Option<BoxedLoader>, Option<SharedRemoteStats>), LaunchError> {
    let Seat {
        rank,
        world,
        device,
    } = seat;
    // Cores are shared among the replicas of this host.
    let local = plan
        .dist
        .as_ref()
        .map_or(world, |env| env.local_world)
        .max(1);
    let size = (plan.image_size, plan.image_size);
    let Some((train_dir, val_dir)) = &plan.shards else {
        let config = SyntheticConfig {
            batch: plan.batch,
            size,
            classes: plan.classes,
            batches_per_epoch: args.steps_per_epoch,
            seed: args.seed,
            rank,
            format: plan.format,
            noise: args.synthetic_noise,
        };
        let train = SyntheticLoader::new(device, &config)?;
        // Validation: other seeds, same class patterns (the patterns depend on the seed only).
        let val = SyntheticLoader::new(
            device,
            &SyntheticConfig {
                batches_per_epoch: args.val_batches,
                rank: rank + world,
                ..config
            },
        )?;
        return Ok((Box::new(train), Some(Box::new(val)), None));
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let options = ShardsOptions {
        size: u32::try_from(plan.image_size)
            .map_err(|_| LaunchError::Usage("--image-size is too large".into()))?,
        batch: plan.batch,
        seed: args.seed,
        rank: rank as u32,
        world: world as u32,
        workers: args.workers.unwrap_or((cores / local).max(1)),
        remote: remote_config(args, rank)?,
        sample_log: None,
    };
    let train_options = ShardsOptions {
        sample_log: args.sample_log.clone(),
        ..options.clone()
    };
    let train = ShardsSource::open(train_dir, Split::Train, &train_options)?;
    let stats = train.engine().remote_stats_handle();
    let val = match val_dir {
        Some(dir) if args.eval_every > 0 => Some(Box::new(
            ShardsSource::open(dir, Split::Val, &options)?.into_device_loader(device, plan.format),
        ) as BoxedLoader),
        _ => None,
    };
    Ok((
        Box::new(train.into_device_loader(device, plan.format)),
        val,
        stats,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(flags: &[&str]) -> Args {
        Args::try_parse_from(std::iter::once("shardfeed-train").chain(flags.iter().copied()))
            .expect("flags parse")
    }

    const NO_GPU: Cuda = Cuda {
        available: false,
        devices: 0,
    };
    const TWO_GPUS: Cuda = Cuda {
        available: true,
        devices: 2,
    };

    fn usage(r: Result<Vec<Device>, LaunchError>) -> String {
        match r {
            Err(e @ LaunchError::Usage(_)) => {
                assert_eq!(e.exit_code(), EXIT_USAGE);
                e.to_string()
            }
            other => panic!("expected a usage error, got {other:?}"),
        }
    }

    #[test]
    fn data_sources_parse() {
        assert_eq!(parse_data("synthetic"), Ok(DataSource::Synthetic));
        assert_eq!(
            parse_data("shards:/d"),
            Ok(DataSource::Shards(PathBuf::from("/d")))
        );
        assert_eq!(
            parse_data("shards:"),
            Err("shards: needs a directory, e.g. --data shards:/data/imagenet-shards".into())
        );
        assert_eq!(
            parse_data("ftp://x"),
            Err("unknown data source 'ftp://x' (expected synthetic or shards:DIR)".into())
        );
    }

    #[test]
    fn devices_follow_the_flags_and_the_machine() {
        assert_eq!(select_devices(&args(&[]), NO_GPU).unwrap(), [Device::Cpu]);
        assert_eq!(
            select_devices(&args(&[]), TWO_GPUS).unwrap(),
            [Device::Cuda(0)]
        );
        assert_eq!(
            select_devices(&args(&["--device", "cuda:1"]), TWO_GPUS).unwrap(),
            [Device::Cuda(1)]
        );
        assert_eq!(
            select_devices(&args(&["--gpus", "all"]), TWO_GPUS).unwrap(),
            [Device::Cuda(0), Device::Cuda(1)]
        );
        assert_eq!(
            select_devices(&args(&["--device", "cpu", "--replicas", "3"]), TWO_GPUS).unwrap(),
            [Device::Cpu; 3]
        );
    }

    #[test]
    fn impossible_device_flags_are_usage_errors_naming_the_flag() {
        assert_eq!(
            usage(select_devices(&args(&["--gpus", "all"]), NO_GPU)),
            "--gpus all: 0 GPU(s) visible"
        );
        assert_eq!(
            usage(select_devices(&args(&["--gpus", "3"]), TWO_GPUS)),
            "--gpus 3: 2 GPU(s) visible"
        );
        assert_eq!(
            usage(select_devices(&args(&["--gpus", "many"]), TWO_GPUS)),
            "--gpus many: expected `all` or a count"
        );
        assert_eq!(
            usage(select_devices(&args(&["--device", "tpu"]), NO_GPU)),
            "--device tpu: expected cpu, cuda or cuda:N"
        );
        assert_eq!(
            usage(select_devices(&args(&["--device", "cuda"]), NO_GPU)),
            "--device Cuda(0): CUDA is not available to libtorch here"
        );
        assert_eq!(
            usage(select_devices(&args(&["--replicas", "0"]), NO_GPU)),
            "--replicas must be at least 1"
        );
        assert_eq!(
            usage(select_devices(&args(&["--replicas", "2"]), TWO_GPUS)),
            "--replicas is for CPU runs; use --gpus for several GPUs"
        );
    }

    #[test]
    fn gpus_default_to_bf16_and_channels_last_cpus_to_fp32_nchw() {
        let gpu = plan_with(&args(&["--model", "resnet18"]), TWO_GPUS).unwrap();
        assert_eq!(
            (gpu.precision, gpu.format, gpu.image_size, gpu.classes),
            (Precision::Bf16, MemoryFormat::ChannelsLast, 224, 10)
        );
        let cpu = plan_with(&args(&[]), NO_GPU).unwrap();
        assert_eq!(
            (cpu.precision, cpu.format, cpu.image_size, cpu.shards),
            (Precision::Fp32, MemoryFormat::Contiguous, 32, None)
        );
        let forced = plan_with(
            &args(&["--precision", "bf16", "--memory-format", "nhwc"]),
            NO_GPU,
        )
        .unwrap();
        assert_eq!(
            (forced.precision, forced.format),
            (Precision::Bf16, MemoryFormat::ChannelsLast)
        );
    }

    #[test]
    fn shards_data_takes_its_splits_and_classes_from_the_dataset() {
        let t = tempfile::tempdir().unwrap();
        let opts = shardfeed_engine::synth::SynthOptions {
            classes: 3,
            per_class: 2,
            val_per_class: 1,
            ..shardfeed_engine::synth::SynthOptions::default()
        };
        let root = shardfeed_engine::demo::synthetic_dataset_with(t.path(), &opts, 1).unwrap();
        let data = format!("shards:{}", root.display());
        let p = plan_with(&args(&["--data", &data]), NO_GPU).unwrap();
        assert_eq!(p.classes, 3);
        assert_eq!(p.shards, Some((root.join("train"), Some(root.join("val")))));
        // A single dataset is the training set, with no val set.
        let train = format!("shards:{}", root.join("train").display());
        let p = plan_with(&args(&["--data", &train]), NO_GPU).unwrap();
        assert_eq!(p.shards, Some((root.join("train"), None)));
        // Not a dataset: an I/O error naming the directory given.
        let missing = t.path().join("missing");
        let err = plan_with(
            &args(&["--data", &format!("shards:{}", missing.display())]),
            NO_GPU,
        )
        .unwrap_err();
        assert_eq!(err.exit_code(), EXIT_USAGE);
        assert!(
            err.to_string()
                .starts_with(&format!("--data shards:{}: ", missing.display())),
            "{err}"
        );
    }

    #[test]
    fn training_failures_exit_1_and_io_failures_2() {
        let diverged = LaunchError::Replica {
            rank: 1,
            source: Box::new(LaunchError::Train(TrainError::Diverged {
                step: 3,
                loss: f64::NAN,
            })),
        };
        assert_eq!(diverged.exit_code(), EXIT_FAILURE);
        assert_eq!(
            diverged.to_string(),
            "replica 1: step 3: the loss is NaN (training diverged; lower the learning rate)"
        );
        let source = LaunchError::Replica {
            rank: 0,
            source: Box::new(LaunchError::Train(TrainError::Loader(DataError::Source(
                "shard-00001.sfs: short read".into(),
            )))),
        };
        assert_eq!(source.exit_code(), EXIT_USAGE);
        assert_eq!(LaunchError::Panicked(0).exit_code(), EXIT_FAILURE);
    }
}
