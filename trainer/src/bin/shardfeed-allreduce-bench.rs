//! `shardfeed-allreduce-bench`: times the all-reduce of one ResNet-50 gradient buffer
//! (25,557,032 fp32) through shardfeed-train's own c10d path (`dist::join`: TCPStore +
//! ProcessGroupGloo, or NCCL with `--device cuda`), one process per rank, launched by torchrun.
//! `trainer/bench/allreduce.py` is the same loop through `torch.distributed`; both print one
//! line, which `scripts/bench-dist.sh` compares.
//!
//! ```text
//! torchrun --no-python --standalone --nproc-per-node 2 shardfeed-allreduce-bench --iters 20
//! ```
//!
//! Glue only: flags → `dist::join` → timed `GradientAverager::average` calls.

use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use shardfeed_trainer::allreduce::GradientAverager;
use shardfeed_trainer::dist::env::DistEnv;
use shardfeed_trainer::dist::{join, JoinOptions};
use tch::{Device, Kind, Tensor};

/// ResNet-50's parameter count: the gradient buffer one step all-reduces.
const RESNET50_PARAMETERS: i64 = 25_557_032;

#[derive(Debug, Parser)]
#[command(
    name = "shardfeed-allreduce-bench",
    about = "Times the ResNet-50 gradient all-reduce over c10d"
)]
struct Args {
    /// Timed all-reduces.
    #[arg(long, default_value_t = 20)]
    iters: usize,
    /// Untimed all-reduces first.
    #[arg(long, default_value_t = 3)]
    warmup: usize,
    /// Elements in the buffer.
    #[arg(long, default_value_t = RESNET50_PARAMETERS)]
    numel: i64,
    /// cpu (Gloo) or cuda (NCCL, GPU LOCAL_RANK).
    #[arg(long, default_value = "cpu")]
    device: String,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shardfeed-allreduce-bench: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let env = DistEnv::from_vars(|k| std::env::var(k).ok())?
        .ok_or("not launched by torchrun or srun (no RANK / WORLD_SIZE)")?;
    let device = match args.device.as_str() {
        "cpu" => Device::Cpu,
        "cuda" => Device::Cuda(env.local_rank),
        d => return Err(format!("--device {d}: cpu or cuda").into()),
    };
    let mut avg = join(&env, &JoinOptions::new(device, |k| std::env::var(k).ok()))?;
    let mut buffer = Tensor::ones([args.numel], (Kind::Float, device));
    let sync = || {
        if let Device::Cuda(i) = device {
            tch::Cuda::synchronize(i as i64);
        }
    };
    for _ in 0..args.warmup {
        avg.average(&mut buffer)?;
    }
    sync();
    let start = Instant::now();
    for _ in 0..args.iters {
        avg.average(&mut buffer)?;
    }
    sync();
    let secs = start.elapsed().as_secs_f64();
    if env.rank == 0 {
        let bytes = args.numel as f64 * 4.0;
        let each = secs / args.iters as f64;
        // Ring all-reduce bus bandwidth, as nccl-tests reports it: 2(n-1)/n of the buffer.
        let n = env.world as f64;
        println!(
            "shardfeed allreduce: world {} x {:.1} MB: {:.2} ms each, bus {:.3} GB/s",
            env.world,
            bytes / 1e6,
            each * 1e3,
            bytes * 2.0 * (n - 1.0) / n / each / 1e9
        );
    }
    Ok(())
}
