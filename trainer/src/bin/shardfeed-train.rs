//! `shardfeed-train`: trains a ResNet with LARS on one CPU, one GPU or every GPU of the node.
//!
//! ```text
//! shardfeed-train --data synthetic --model small --epochs 5            # CPU, a few minutes
//! shardfeed-train --data shards:/data/imagenet-shards --model resnet50 --gpus all
//! shardfeed-train --data synthetic --model resnet50 --batch-size 256 --gpus all --max-steps 300 --bench-warmup 50
//! ```
//!
//! Glue only: flags → settings → one thread per replica running `shardfeed_trainer::train::run`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Parser;
use shardfeed_trainer::allreduce::{
    GradientAverager, InProcessGroup, NcclAverager, NcclId, SingleReplica,
};
use shardfeed_trainer::data::{DeviceLoader, SyntheticConfig, SyntheticLoader};
use shardfeed_trainer::events::{Discard, Event, EventSink, JsonLines, Progress, Tee};
use shardfeed_trainer::lars::LarsConfig;
use shardfeed_trainer::model::{Arch, ModelOptions};
use shardfeed_trainer::precision::{MemoryFormat, Precision};
use shardfeed_trainer::schedule::{mlperf_defaults, PolyWarmup};
use shardfeed_trainer::shards::{ShardsOptions, ShardsSource, Split};
use shardfeed_trainer::train::{run, Replica, ReplicaConfig, TrainOptions};
use tch::Device;

static INIT: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Where batches come from.
#[derive(Debug, Clone, PartialEq)]
enum DataSource {
    /// Batches made on the device.
    Synthetic,
    /// A shardfeed dataset directory (train/ and val/).
    Shards(PathBuf),
}

fn parse_data(s: &str) -> Result<DataSource, String> {
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

#[derive(Debug, Parser)]
#[command(
    name = "shardfeed-train",
    version,
    about = "Large-batch LARS training of ResNets on libtorch"
)]
struct Args {
    /// Data: `synthetic` (batches made on the device) or `shards:DIR`.
    #[arg(long, value_parser = parse_data, default_value = "synthetic")]
    data: DataSource,
    /// Model: small, resnet18 or resnet50.
    #[arg(long, default_value = "small")]
    model: Arch,
    /// Classes (synthetic data; shards take theirs from the manifest).
    #[arg(long, default_value_t = 10)]
    classes: usize,
    /// Decode-and-augment threads per replica (shards data) [default: the cores shared out].
    #[arg(long)]
    workers: Option<usize>,
    /// Image side in pixels [default: 32 for small, 224 otherwise].
    #[arg(long)]
    image_size: Option<usize>,
    /// Images per step per replica.
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// Epochs.
    #[arg(long, default_value_t = 5)]
    epochs: u64,
    /// Steps per epoch (synthetic data).
    #[arg(long, default_value_t = 50)]
    steps_per_epoch: u64,
    /// Validation batches per replica (synthetic data).
    #[arg(long, default_value_t = 10)]
    val_batches: u64,
    /// Noise level of the synthetic images (1: pattern and noise of equal size).
    #[arg(long, default_value_t = 1.0)]
    synthetic_noise: f32,
    /// Peak learning rate [default: MLPerf's table for the global batch].
    #[arg(long)]
    lr: Option<f64>,
    /// Warmup epochs [default: MLPerf's table].
    #[arg(long)]
    warmup_epochs: Option<f64>,
    /// Final learning rate.
    #[arg(long, default_value_t = 1e-4)]
    end_lr: f64,
    /// LARS momentum.
    #[arg(long, default_value_t = 0.9)]
    momentum: f64,
    /// LARS weight decay (conv and fc weights only).
    #[arg(long, default_value_t = 1e-4)]
    weight_decay: f64,
    /// LARS coefficient η.
    #[arg(long, default_value_t = 0.001)]
    eta: f64,
    /// LARS ε (the MLPerf reference's effective value).
    #[arg(long, default_value_t = 1e-7)]
    epsilon: f64,
    /// Label smoothing.
    #[arg(long, default_value_t = 0.1)]
    label_smoothing: f64,
    /// Start each block's last BN scale at 0.
    #[arg(long)]
    zero_init_residual: bool,
    /// fp32 or bf16 [default: bf16 on GPU, fp32 on CPU].
    #[arg(long, value_parser = ["fp32", "bf16"])]
    precision: Option<String>,
    /// nchw or nhwc (channels-last) [default: nhwc on GPU, nchw on CPU].
    #[arg(long, value_parser = ["nchw", "nhwc"])]
    memory_format: Option<String>,
    /// cpu, cuda or cuda:N (one replica) [default: cuda if available].
    #[arg(long)]
    device: Option<String>,
    /// Data parallel over GPUs: `all` or a count (one replica per GPU, NCCL).
    #[arg(long, conflicts_with = "device")]
    gpus: Option<String>,
    /// Data parallel over N CPU replicas in this process (tests the multi-replica path).
    #[arg(long, default_value_t = 1, conflicts_with = "gpus")]
    replicas: usize,
    /// Evaluate every N epochs (0: never).
    #[arg(long, default_value_t = 1)]
    eval_every: u64,
    /// A throughput line every N steps.
    #[arg(long, default_value_t = 10)]
    log_every: u64,
    /// Checkpoint directory (Ctrl-C and the end of the run checkpoint there).
    #[arg(long)]
    checkpoint_dir: Option<PathBuf>,
    /// Checkpoint every N epochs (0: only at the end and on Ctrl-C).
    #[arg(long, default_value_t = 1)]
    checkpoint_every: u64,
    /// Resume from the checkpoint in --checkpoint-dir, if there is one.
    #[arg(long, requires = "checkpoint_dir")]
    resume: bool,
    /// JSON-lines log file (appended).
    #[arg(long)]
    log: Option<PathBuf>,
    /// Stop after N steps in total.
    #[arg(long)]
    max_steps: Option<u64>,
    /// Print images/s measured after this many steps (benchmark mode).
    #[arg(long)]
    bench_warmup: Option<u64>,
    /// Seed of the model initialisation and the data.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// libtorch intra-op threads per process (CPU) [default: libtorch's].
    #[arg(long)]
    threads: Option<i32>,
}

/// Measures images/s between step `warmup` and the last step (Step events are emitted when a
/// step's loss is read back, so the GPU has finished it).
struct BenchSink {
    warmup: u64,
    global_batch: usize,
    start: Option<(u64, Instant)>,
    last: Option<(u64, Instant)>,
}

impl EventSink for BenchSink {
    fn event(&mut self, event: &Event) {
        if let Event::Step { step, .. } = event {
            if *step == self.warmup {
                self.start = Some((*step, Instant::now()));
            } else if *step > self.warmup {
                self.last = Some((*step, Instant::now()));
            }
        }
    }
}

struct Plan {
    devices: Vec<Device>,
    precision: Precision,
    format: MemoryFormat,
    image_size: usize,
    classes: usize,
    /// Train and val dataset directories (shards data).
    shards: Option<(PathBuf, Option<PathBuf>)>,
}

/// `DIR/train` and `DIR/val` when DIR holds both splits (as `shardfeed shard` writes them), or DIR
/// itself as the training set when it is one dataset.
fn shard_dirs(dir: &std::path::Path) -> (PathBuf, Option<PathBuf>) {
    let manifest = shardfeed_engine::shards::MANIFEST_FILE;
    if dir.join(manifest).exists() {
        return (dir.to_owned(), None);
    }
    let val = dir.join("val");
    (
        dir.join("train"),
        val.join(manifest).exists().then_some(val),
    )
}

fn plan(args: &Args) -> Result<Plan> {
    let devices: Vec<Device> = if let Some(gpus) = &args.gpus {
        let available = tch::Cuda::device_count() as usize;
        let n = if gpus == "all" {
            available
        } else {
            gpus.parse::<usize>()
                .with_context(|| format!("--gpus {gpus}: expected `all` or a count"))?
        };
        if n == 0 || n > available {
            bail!("--gpus {gpus}: {available} GPU(s) visible");
        }
        (0..n).map(Device::Cuda).collect()
    } else {
        let device = match args.device.as_deref() {
            None => Device::cuda_if_available(),
            Some("cpu") => Device::Cpu,
            Some("cuda") => Device::Cuda(0),
            Some(d) => match d.strip_prefix("cuda:").map(str::parse::<usize>) {
                Some(Ok(i)) => Device::Cuda(i),
                _ => bail!("--device {d}: expected cpu, cuda or cuda:N"),
            },
        };
        if device.is_cuda() && !tch::Cuda::is_available() {
            bail!(
                "--device {:?}: CUDA is not available to libtorch here",
                device
            );
        }
        if args.replicas == 0 {
            bail!("--replicas must be at least 1");
        }
        if args.replicas > 1 && device.is_cuda() {
            bail!("--replicas is for CPU runs; use --gpus for several GPUs");
        }
        vec![device; args.replicas]
    };
    let gpu = devices[0].is_cuda();
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
            let (train, val) = shard_dirs(dir);
            let dataset = shardfeed_engine::shards::Dataset::open(&train)
                .with_context(|| format!("--data shards:{}", dir.display()))?;
            (dataset.num_classes(), Some((train, val)))
        }
    };
    if classes == 0 {
        bail!("the dataset lists no classes");
    }
    Ok(Plan {
        devices,
        precision,
        format,
        image_size,
        classes,
        shards,
    })
}

/// What one replica thread reports back.
struct ReplicaOutcome {
    step: u64,
    interrupted: bool,
    bench: Option<(u64, f64)>,
}

fn run_replica(
    args: &Args,
    plan: &Plan,
    rank: usize,
    mut avg: Box<dyn GradientAverager>,
    stop: &AtomicBool,
) -> Result<ReplicaOutcome> {
    let device = plan.devices[rank];
    let world = plan.devices.len();
    let lars = LarsConfig {
        momentum: args.momentum,
        weight_decay: args.weight_decay,
        eta: args.eta,
        epsilon: args.epsilon,
        nesterov: false,
    };
    // libtorch's generator is process-wide: seed and build under a lock so rank 0's initial
    // weights (which every rank copies) depend on --seed only, not on thread timing.
    let init = INIT.lock().unwrap_or_else(|e| e.into_inner());
    tch::manual_seed(args.seed as i64);
    let replica = Replica::resnet(
        device,
        args.model,
        plan.classes as i64,
        ModelOptions {
            zero_init_residual: args.zero_init_residual,
        },
        &ReplicaConfig {
            format: plan.format,
            precision: plan.precision,
            lars,
            label_smoothing: args.label_smoothing,
        },
    );
    drop(init);
    let mut replica = replica?;
    replica.sync_from_rank0(avg.as_mut())?;
    let (mut train_loader, mut val_loader) = loaders(args, plan, rank)?;
    let global_batch = args.batch_size * world;
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
    };
    let resume = match &args.checkpoint_dir {
        Some(dir) if args.resume && shardfeed_trainer::checkpoint::exists(dir) => {
            let point = replica
                .load_checkpoint(dir)
                .with_context(|| format!("resuming from {}", dir.display()))?;
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

    let mut bench = BenchSink {
        warmup: args.bench_warmup.unwrap_or(u64::MAX),
        global_batch,
        start: None,
        last: None,
    };
    // Rank 0 reports (progress line, JSON lines, benchmark); the other replicas stay quiet.
    let mut reports: Box<dyn EventSink> = if rank == 0 {
        let mut sinks: Vec<Box<dyn EventSink>> = vec![Box::new(Progress)];
        if let Some(path) = &args.log {
            sinks.push(Box::new(JsonLines::append(path).with_context(|| {
                format!("cannot open the log {}", path.display())
            })?));
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
        &mut TeeRef(reports.as_mut(), &mut bench),
        stop,
    )?;
    let bench = match (bench.start, bench.last) {
        (Some((s0, t0)), Some((s1, t1))) => Some((
            (s1 - s0) * bench.global_batch as u64,
            t1.duration_since(t0).as_secs_f64(),
        )),
        _ => None,
    };
    Ok(ReplicaOutcome {
        step: summary.step,
        interrupted: summary.interrupted,
        bench,
    })
}

type BoxedLoader = Box<dyn DeviceLoader>;

/// The replica's train and val loaders: batches made on the device, or the shards pipeline
/// (this replica's partition: rank = replica, world = replicas) fed through pinned staging memory.
fn loaders(args: &Args, plan: &Plan, rank: usize) -> Result<(BoxedLoader, Option<BoxedLoader>)> {
    let device = plan.devices[rank];
    let world = plan.devices.len();
    let size = (plan.image_size, plan.image_size);
    let Some((train_dir, val_dir)) = &plan.shards else {
        let config = SyntheticConfig {
            batch: args.batch_size,
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
        return Ok((Box::new(train), Some(Box::new(val))));
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let options = ShardsOptions {
        size: u32::try_from(plan.image_size).context("--image-size is too large")?,
        batch: args.batch_size,
        seed: args.seed,
        rank: rank as u32,
        world: world as u32,
        workers: args.workers.unwrap_or((cores / world).max(1)),
    };
    let train = ShardsSource::open(train_dir, Split::Train, &options)?;
    let val = match val_dir {
        Some(dir) if args.eval_every > 0 => Some(Box::new(
            ShardsSource::open(dir, Split::Val, &options)?.into_device_loader(device, plan.format),
        ) as BoxedLoader),
        _ => None,
    };
    Ok((Box::new(train.into_device_loader(device, plan.format)), val))
}

struct TeeRef<'a>(&'a mut dyn EventSink, &'a mut dyn EventSink);

impl EventSink for TeeRef<'_> {
    fn event(&mut self, event: &Event) {
        self.0.event(event);
        self.1.event(event);
    }
}

fn averagers(plan: &Plan) -> Result<Vec<Box<dyn GradientAverager>>> {
    let world = plan.devices.len();
    if world == 1 {
        return Ok(vec![Box::new(SingleReplica)]);
    }
    if plan.devices[0].is_cuda() {
        // Communicators are made inside the replica threads (ncclCommInitRank blocks until all
        // ranks join); here only the shared id.
        bail!("internal: GPU averagers are made per thread")
    }
    Ok(InProcessGroup::new(world)
        .into_iter()
        .map(|a| Box::new(a) as Box<dyn GradientAverager>)
        .collect())
}

fn main() -> ExitCode {
    let args = Args::parse();
    match real_main(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("shardfeed-train: error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn real_main(args: Args) -> Result<ExitCode> {
    if let Some(n) = args.threads {
        tch::set_num_threads(n);
    }
    let plan = plan(&args)?;
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = Arc::clone(&stop);
        ctrlc::set_handler(move || {
            if stop.swap(true, Ordering::SeqCst) {
                eprintln!("shardfeed-train: aborted");
                std::process::exit(130);
            }
            eprintln!(
                "shardfeed-train: stopping after this step (checkpointing); Ctrl-C again aborts"
            );
        })
        .context("cannot install the Ctrl-C handler")?;
    }
    let world = plan.devices.len();
    eprintln!(
        "shardfeed-train: {} on {:?} x{world}, {:?}, {:?}, batch {} per replica, {}x{} images",
        args.model,
        plan.devices[0],
        plan.precision,
        plan.format,
        args.batch_size,
        plan.image_size,
        plan.image_size
    );
    let outcomes: Vec<Result<ReplicaOutcome>> = if plan.devices[0].is_cuda() && world > 1 {
        let id = NcclId::new()?;
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..world)
                .map(|rank| {
                    let (args, plan, stop) = (&args, &plan, &*stop);
                    s.spawn(move || {
                        let avg = NcclAverager::new(id, rank, world, rank)?;
                        run_replica(args, plan, rank, Box::new(avg), stop)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(anyhow::anyhow!("a replica thread panicked")))
                })
                .collect()
        })
    } else {
        let avgs = averagers(&plan)?;
        std::thread::scope(|s| {
            let handles: Vec<_> = avgs
                .into_iter()
                .enumerate()
                .map(|(rank, avg)| {
                    let (args, plan, stop) = (&args, &plan, &*stop);
                    s.spawn(move || run_replica(args, plan, rank, avg, stop))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(anyhow::anyhow!("a replica thread panicked")))
                })
                .collect()
        })
    };
    let mut first = None;
    for (rank, outcome) in outcomes.into_iter().enumerate() {
        let outcome = outcome.with_context(|| format!("replica {rank}"))?;
        if rank == 0 {
            first = Some(outcome);
        }
    }
    let Some(first) = first else {
        bail!("no replica ran");
    };
    if let Some((images, secs)) = first.bench {
        println!(
            "shardfeed-train {}: {images} images in {secs:.3} s = {:.1} img/s",
            args.model,
            images as f64 / secs
        );
    } else if args.bench_warmup.is_some() {
        eprintln!("shardfeed-train: too few steps after --bench-warmup to measure");
    }
    if first.interrupted {
        eprintln!("shardfeed-train: stopped at step {}", first.step);
        return Ok(ExitCode::from(130));
    }
    Ok(ExitCode::SUCCESS)
}
