//! `shardfeed-train`: trains a ResNet with LARS on one CPU, one GPU or every GPU of the node.
//!
//! ```text
//! shardfeed-train --data synthetic --model small --epochs 5            # CPU, a few minutes
//! shardfeed-train --data shards:/data/imagenet-shards --model resnet50 --gpus all
//! shardfeed-train --data synthetic --model resnet50 --batch-size 256 --gpus all --max-steps 300 --bench-warmup 50
//! ```
//!
//! Glue only: flags → `shardfeed_trainer::launch` (plan, one thread per replica) → the exit
//! status (0 done, 1 training failed, 2 usage or I/O error, 130 stopped by Ctrl-C).

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use clap::Parser;
use shardfeed_trainer::launch::{launch, plan, Args, LaunchError, EXIT_FAILURE, EXIT_INTERRUPTED};

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(n) = args.threads {
        tch::set_num_threads(n);
    }
    let stop = match stop_on_ctrl_c() {
        Ok(stop) => stop,
        Err(e) => {
            eprintln!("shardfeed-train: error: cannot install the Ctrl-C handler: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    match train(&args, &stop) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("shardfeed-train: error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// The first Ctrl-C sets the flag (the run checkpoints after this step and stops); a second
/// one exits at once (the last checkpoint stays valid: writes are atomic).
fn stop_on_ctrl_c() -> Result<Arc<AtomicBool>, ctrlc::Error> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            eprintln!("shardfeed-train: aborted");
            std::process::exit(i32::from(EXIT_INTERRUPTED));
        }
        eprintln!("shardfeed-train: stopping after this step (checkpointing); Ctrl-C again aborts");
    })?;
    Ok(stop)
}

fn train(args: &Args, stop: &AtomicBool) -> Result<ExitCode, LaunchError> {
    let plan = plan(args)?;
    eprintln!(
        "shardfeed-train: {} on {:?} x{}, {:?}, {:?}, batch {} per replica ({} replicas), {}x{} images",
        args.model,
        plan.devices[0],
        plan.devices.len(),
        plan.precision,
        plan.format,
        plan.batch,
        plan.world,
        plan.image_size,
        plan.image_size
    );
    let outcome = launch(args, &plan, stop)?;
    if let Some((images, secs)) = outcome.bench {
        println!(
            "shardfeed-train {}: {images} images in {secs:.3} s = {:.1} img/s",
            args.model,
            images as f64 / secs
        );
    } else if args.bench_warmup.is_some() && plan.dist.as_ref().is_none_or(|e| e.rank == 0) {
        eprintln!("shardfeed-train: too few steps after --bench-warmup to measure");
    }
    if let Some(phases) = outcome.phases {
        println!("shardfeed-train phases (ms/step): {phases}");
    }
    if outcome.interrupted {
        eprintln!("shardfeed-train: stopped at step {}", outcome.step);
        return Ok(ExitCode::from(EXIT_INTERRUPTED));
    }
    Ok(ExitCode::SUCCESS)
}
