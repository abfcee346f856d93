//! The training loop: a [`Replica`] (model, flat parameters, LARS, precision) and [`run`], which
//! drives it over a [`DeviceLoader`] for a number of epochs — learning-rate schedule, evaluation
//! every N epochs, checkpoints and exact resume, stop on request (Ctrl-C), events to a sink.
//!
//! One replica per thread; data parallelism is the [`GradientAverager`] given to each. The loop
//! never waits for the GPU needlessly: the loss of step `k` is read while step `k + 1` is
//! already queued.
//!
//! ```no_run
//! use std::sync::atomic::AtomicBool;
//! use shardfeed_trainer::{allreduce::SingleReplica, events::Progress};
//! use shardfeed_trainer::data::{DeviceLoader, SyntheticConfig, SyntheticLoader};
//! use shardfeed_trainer::model::{Arch, ModelOptions};
//! use shardfeed_trainer::schedule::PolyWarmup;
//! use shardfeed_trainer::train::{run, Replica, ReplicaConfig, TrainOptions};
//! let device = tch::Device::Cpu;
//! let mut replica = Replica::resnet(device, Arch::Small, 10, ModelOptions::default(),
//!     &ReplicaConfig::default())?;
//! let data = SyntheticConfig { batch: 32, size: (32, 32), classes: 10, batches_per_epoch: 20, ..SyntheticConfig::default() };
//! let mut loader = SyntheticLoader::new(device, &data)?;
//! let opts = TrainOptions { epochs: 2, ..Default::default() };
//! let schedule = PolyWarmup::new(1.0, 1e-4, loader.batches_per_epoch(), 0.5, 40);
//! let summary = run(&mut replica, &mut loader, None, &mut SingleReplica, &schedule, &opts,
//!     None, &mut Progress, &AtomicBool::new(false))?;
//! println!("{} steps", summary.step);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tch::nn::{self, ModuleT};
use tch::{Device, Kind, Reduction, Tensor};

use crate::allreduce::{AllReduceError, GradientAverager};
use crate::checkpoint::{self, CheckpointError, CheckpointMeta, CHECKPOINT_FORMAT};
use crate::data::{DataError, DeviceBatch, DeviceLoader, Position};
use crate::events::{Event, EventSink};
use crate::flat::FlatParams;
use crate::lars::{Lars, LarsConfig};
use crate::model::{Arch, ModelOptions, ResNet};
use crate::phases::{Phase, PhaseTimer, PhaseTimes};
use crate::precision::{AutocastGuard, MemoryFormat, Precision, ShimError};
use crate::schedule::PolyWarmup;

/// Training failed.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// The loader failed.
    #[error("loader: {0}")]
    Loader(#[from] DataError),
    /// Gradient averaging failed.
    #[error("gradient averaging: {0}")]
    AllReduce(#[from] AllReduceError),
    /// A checkpoint could not be written or read.
    #[error("checkpoint: {0}")]
    Checkpoint(#[from] CheckpointError),
    /// Autocast or memory-format set-up failed.
    #[error(transparent)]
    Shim(#[from] ShimError),
    /// A libtorch call failed.
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
    /// The loss is no longer finite (diverged).
    #[error("step {step}: the loss is {loss} (training diverged; lower the learning rate)")]
    Diverged {
        /// The step.
        step: u64,
        /// The loss.
        loss: f64,
    },
    /// Inconsistent options.
    #[error("{0}")]
    Config(String),
}

/// Loop options.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainOptions {
    /// Epochs to train (the schedule's length).
    pub epochs: u64,
    /// Evaluate every this many epochs (0: never).
    pub eval_every: u64,
    /// Emit a throughput event every this many steps.
    pub log_every: u64,
    /// Where checkpoints go (none: no checkpoints, Ctrl-C just stops).
    pub checkpoint_dir: Option<PathBuf>,
    /// Checkpoint every this many epochs (0: only at the end and on stop).
    pub checkpoint_every: u64,
    /// Stop after this many steps in total (benchmarks, tests); the schedule keeps its length.
    pub max_steps: Option<u64>,
    /// Benchmark: time the steps after this many steps of the run ([`RunSummary::bench`]),
    /// from the start of the first (the device synchronised) to the end of the run.
    pub bench_after: Option<u64>,
    /// With `bench_after`: time every phase of those steps too ([`RunSummary::phases`]). On
    /// CUDA this synchronises the device at every phase boundary.
    pub phases: bool,
}

impl Default for TrainOptions {
    fn default() -> Self {
        TrainOptions {
            epochs: 1,
            eval_every: 1,
            log_every: 10,
            checkpoint_dir: None,
            checkpoint_every: 1,
            max_steps: None,
            bench_after: None,
            phases: false,
        }
    }
}

/// Where a run starts: 0 steps at (0, 0), or a checkpoint's step and loader position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ResumePoint {
    /// Steps already done.
    pub step: u64,
    /// Next batch to train on.
    pub position: Position,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub struct RunSummary {
    /// Steps done.
    pub step: u64,
    /// Where the loader would go on.
    pub position: Position,
    /// Whether it stopped on request.
    pub interrupted: bool,
    /// The last evaluation, if any.
    pub last_eval: Option<EvalResult>,
    /// Steps timed after [`TrainOptions::bench_after`] and the seconds they took, if any.
    pub bench: Option<(u64, f64)>,
    /// Per-phase times of those steps, if [`TrainOptions::phases`].
    pub phases: Option<PhaseTimes>,
}

/// Validation results over all replicas.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EvalResult {
    /// Top-1 accuracy.
    pub top1: f64,
    /// Top-5 accuracy.
    pub top5: f64,
    /// Mean cross-entropy.
    pub loss: f64,
    /// Images evaluated.
    pub images: u64,
}

/// How a [`Replica`] computes: its memory format, precision, optimizer and loss.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReplicaConfig {
    /// Memory format of the parameters (conv weights) and the inputs.
    pub format: MemoryFormat,
    /// fp32, or bf16 autocast.
    pub precision: Precision,
    /// The LARS settings.
    pub lars: LarsConfig,
    /// Label smoothing of the training loss.
    pub label_smoothing: f64,
}

impl Default for ReplicaConfig {
    /// NCHW, fp32, LARS's defaults, label smoothing 0.1 (MLPerf's).
    fn default() -> Self {
        ReplicaConfig {
            format: MemoryFormat::Contiguous,
            precision: Precision::Fp32,
            lars: LarsConfig::default(),
            label_smoothing: 0.1,
        }
    }
}

/// How [`Replica::train_step`] handles gradients and LARS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StepPath {
    /// The fastest path for the device: on the CPU autograd's own gradients and the fused LARS
    /// (`lars_cpu`); on CUDA the flat buffer and LARS as tensor ops.
    #[default]
    Auto,
    /// The tensor-op path on every device: the flat gradient buffer zeroed and accumulated into
    /// by autograd, [`Lars::step_tensor_ops`]. What the CPU did before the fused step (issue
    /// 12); kept for A/B measurements and as the reference the fused step is tested against.
    TensorOps,
}

/// One model replica with everything its updates need.
pub struct Replica {
    device: Device,
    model_name: String,
    vs: nn::VarStore,
    model: Box<dyn ModuleT>,
    flat: FlatParams,
    lars: Lars,
    precision: Precision,
    label_smoothing: f64,
    num_classes: i64,
    step_path: StepPath,
}

impl std::fmt::Debug for Replica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replica")
            .field("model", &self.model_name)
            .field("device", &self.device)
            .finish()
    }
}

impl Replica {
    /// A replica of any model: `build` makes it under the VarStore root on `device`.
    pub fn new(
        device: Device,
        model_name: &str,
        num_classes: i64,
        build: impl FnOnce(&nn::Path) -> Box<dyn ModuleT>,
        config: &ReplicaConfig,
    ) -> Result<Self, TrainError> {
        let &ReplicaConfig {
            format,
            precision,
            lars,
            label_smoothing,
        } = config;
        let vs = nn::VarStore::new(device);
        let model = build(&vs.root());
        let flat = FlatParams::from_var_store(&vs, format)?;
        let lars = Lars::new(&flat, lars);
        Ok(Replica {
            device,
            model_name: model_name.to_owned(),
            vs,
            model,
            flat,
            lars,
            precision,
            label_smoothing,
            num_classes,
            step_path: StepPath::Auto,
        })
    }

    /// A replica of one of our ResNets.
    pub fn resnet(
        device: Device,
        arch: Arch,
        num_classes: i64,
        opts: ModelOptions,
        config: &ReplicaConfig,
    ) -> Result<Self, TrainError> {
        Replica::new(
            device,
            arch.name(),
            num_classes,
            |p| Box::new(ResNet::new(p, arch, num_classes, opts)),
            config,
        )
    }

    /// Chooses how steps handle gradients and LARS (default [`StepPath::Auto`]).
    pub fn set_step_path(&mut self, path: StepPath) {
        self.step_path = path;
    }

    /// The flat parameters (weights, gradients).
    pub fn flat(&self) -> &FlatParams {
        &self.flat
    }

    /// The LARS state.
    pub fn lars(&self) -> &Lars {
        &self.lars
    }

    /// The device.
    pub fn device(&self) -> Device {
        self.device
    }

    /// The model's name.
    pub fn model_name(&self) -> &str {
        &self.model_name
    }

    fn buffers(&self) -> Vec<(String, Tensor)> {
        let mut buffers: Vec<(String, Tensor)> = self
            .vs
            .variables()
            .into_iter()
            .filter(|(_, t)| !t.requires_grad())
            .collect();
        buffers.sort_by(|a, b| a.0.cmp(&b.0));
        buffers
    }

    /// Makes this replica's weights and BN statistics rank 0's (call on every rank at start).
    pub fn sync_from_rank0(&mut self, avg: &mut dyn GradientAverager) -> Result<(), TrainError> {
        if avg.world_size() == 1 {
            return Ok(());
        }
        avg.broadcast(&mut self.flat.weights().shallow_clone())?;
        for (_, mut b) in self.buffers() {
            if b.kind() == Kind::Float && b.is_contiguous() {
                avg.broadcast(&mut b)?;
            } else {
                let mut f = b.to_kind(Kind::Float).contiguous();
                avg.broadcast(&mut f)?;
                tch::no_grad(|| b.f_copy_(&f))?;
            }
        }
        Ok(())
    }

    /// Forward, loss, backward, gradient averaging and one LARS update; returns the loss (a
    /// device scalar, not yet read back).
    ///
    /// On the CPU the gradients stay in autograd's own tensors (no zeroing, no accumulation
    /// into the flat buffer: [`FlatParams::release_grads`]) and LARS reads them there; with
    /// more than one replica they are first copied into the flat buffer for its all-reduce
    /// ([`FlatParams::gather_grads`]). On CUDA autograd accumulates into the zeroed flat buffer.
    pub fn train_step(
        &mut self,
        batch: &DeviceBatch,
        lr: f64,
        avg: &mut dyn GradientAverager,
    ) -> Result<Tensor, TrainError> {
        self.train_step_timed(batch, lr, avg, &mut PhaseTimer::off())
    }

    /// [`Replica::train_step`], marking each phase's end on `timer` (which must have been
    /// started).
    pub fn train_step_timed(
        &mut self,
        batch: &DeviceBatch,
        lr: f64,
        avg: &mut dyn GradientAverager,
        timer: &mut PhaseTimer,
    ) -> Result<Tensor, TrainError> {
        let fused_cpu = self.device == Device::Cpu && self.step_path == StepPath::Auto;
        if fused_cpu {
            self.flat.release_grads()?;
        } else {
            self.flat.zero_grads()?;
        }
        timer.mark(Phase::Zero);
        let logits = {
            let _autocast = AutocastGuard::new(self.device, self.precision)?;
            self.model.forward_t(&batch.images, true)
        };
        timer.mark(Phase::Forward);
        let loss = logits.to_kind(Kind::Float).f_cross_entropy_loss(
            &batch.labels,
            None::<Tensor>,
            Reduction::Mean,
            -100,
            self.label_smoothing,
        )?;
        timer.mark(Phase::Loss);
        avg.before_backward(&self.flat)?;
        loss.f_backward()?;
        timer.mark(Phase::Backward);
        avg.after_backward(&mut self.flat)?;
        timer.mark(Phase::Average);
        match self.step_path {
            StepPath::Auto => self.lars.step(&self.flat, lr),
            StepPath::TensorOps => self.lars.step_tensor_ops(&self.flat, lr),
        }
        timer.mark(Phase::Lars);
        Ok(loss.detach())
    }

    /// Top-1, top-5 and loss over one pass of `loader` (epoch 0 of it), summed over replicas.
    pub fn evaluate(
        &mut self,
        loader: &mut dyn DeviceLoader,
        avg: &mut dyn GradientAverager,
    ) -> Result<EvalResult, TrainError> {
        loader.start_epoch(0, 0)?;
        let k = self.num_classes.min(5);
        // [top-1 hits, top-5 hits, loss sum, images]
        let mut totals = Tensor::zeros([4], (Kind::Float, self.device));
        tch::no_grad(|| -> Result<(), TrainError> {
            while let Some(batch) = loader.next_batch()? {
                let logits = {
                    let _autocast = AutocastGuard::new(self.device, self.precision)?;
                    self.model.forward_t(&batch.images, false)
                }
                .to_kind(Kind::Float);
                let loss = logits.f_cross_entropy_loss(
                    &batch.labels,
                    None::<Tensor>,
                    Reduction::Sum,
                    -100,
                    0.0,
                )?;
                let (_, top) = logits.f_topk(k, 1, true, true)?;
                let hits = top.eq_tensor(&batch.labels.unsqueeze(1));
                let top1 = hits.narrow(1, 0, 1).sum(Kind::Float);
                let top5 = hits.sum(Kind::Float);
                let n = Tensor::from_slice(&[batch.labels.size()[0] as f32])
                    .to_device(self.device)
                    .squeeze();
                let _ = totals.f_add_(&Tensor::stack(&[top1, top5, loss, n], 0))?;
            }
            Ok(())
        })?;
        let world = avg.world_size() as f64;
        avg.average(&mut totals)?;
        let v = Vec::<f64>::try_from(totals.to_kind(Kind::Double).to_device(Device::Cpu))?;
        let images = (v[3] * world).round();
        let per = |x: f64| {
            if images > 0.0 {
                x * world / images
            } else {
                0.0
            }
        };
        Ok(EvalResult {
            top1: per(v[0]),
            top5: per(v[1]),
            loss: per(v[2]),
            images: images as u64,
        })
    }

    /// Everything a checkpoint holds: `param.*`, `buffer.*`, `lars.momentum.*` (CPU, each
    /// contiguous in its NCHW shape whatever this replica's memory format).
    pub fn state_tensors(&self) -> Vec<(String, Tensor)> {
        let cpu = |t: &Tensor| t.detach().to_device(Device::Cpu).contiguous();
        let mut out: Vec<(String, Tensor)> = self
            .flat
            .segments()
            .iter()
            .zip(self.flat.vars())
            .map(|(s, v)| (format!("param.{}", s.name), cpu(v)))
            .collect();
        out.extend(
            self.buffers()
                .into_iter()
                .map(|(n, t)| (format!("buffer.{n}"), cpu(&t))),
        );
        out.extend(
            self.flat
                .segments()
                .iter()
                .zip(self.flat.param_views(self.lars.momentum()))
                .map(|(s, v)| (format!("lars.momentum.{}", s.name), cpu(&v))),
        );
        out
    }

    /// Writes a checkpoint of this replica at `resume` into `dir`.
    pub fn save_checkpoint(
        &self,
        dir: &Path,
        resume: ResumePoint,
        world_size: usize,
        global_batch: usize,
    ) -> Result<PathBuf, CheckpointError> {
        let meta = CheckpointMeta {
            format: CHECKPOINT_FORMAT,
            step: resume.step,
            position: resume.position,
            model: self.model_name.clone(),
            parameters: self.flat.numel(),
            world_size,
            global_batch: Some(global_batch as u64),
            tensors: String::new(),
        };
        checkpoint::save(dir, meta, &self.state_tensors())
    }

    /// Loads the checkpoint in `dir` into this replica; returns where to resume.
    pub fn load_checkpoint(&mut self, dir: &Path) -> Result<ResumePoint, CheckpointError> {
        self.load_checkpoint_at(dir, None)
    }

    /// [`Replica::load_checkpoint`] for a run of `global_batch` images per step: a checkpoint
    /// written at another global batch is refused (its positions count other batches).
    pub fn load_checkpoint_at(
        &mut self,
        dir: &Path,
        global_batch: Option<usize>,
    ) -> Result<ResumePoint, CheckpointError> {
        let (meta, tensors) = checkpoint::load(dir)?;
        let path = dir.join(&meta.tensors);
        let mismatch = |reason: String| CheckpointError::Mismatch {
            path: path.clone(),
            reason,
        };
        if let (Some(written), Some(now)) = (meta.global_batch, global_batch) {
            if written != now as u64 {
                return Err(mismatch(format!(
                    "written at a global batch of {written} images ({} replicas), this run's is                      {now}: resume with --global-batch {written}",
                    meta.world_size
                )));
            }
        }
        if meta.model != self.model_name || meta.parameters != self.flat.numel() {
            return Err(mismatch(format!(
                "a {} with {} parameters, this run trains a {} with {}",
                meta.model,
                meta.parameters,
                self.model_name,
                self.flat.numel()
            )));
        }
        let mut by_name: HashMap<String, Tensor> = tensors.into_iter().collect();
        let mut take = |name: &str, into: &Tensor| -> Result<(), CheckpointError> {
            let src = by_name
                .remove(name)
                .ok_or_else(|| mismatch(format!("no tensor '{name}'")))?;
            if src.size() != into.size() {
                return Err(mismatch(format!(
                    "'{name}' has shape {:?}, the model wants {:?}",
                    src.size(),
                    into.size()
                )));
            }
            let mut into = into.shallow_clone();
            tch::no_grad(|| into.f_copy_(&src)).map_err(|source| CheckpointError::Torch {
                path: path.clone(),
                source,
            })
        };
        for (seg, var) in self.flat.segments().iter().zip(self.flat.vars()) {
            take(&format!("param.{}", seg.name), var)?;
        }
        for (name, buf) in self.buffers() {
            take(&format!("buffer.{name}"), &buf)?;
        }
        if meta.format == 1 {
            // One flat tensor in the writer's layout, taken as this run's (checkpoint.rs).
            take("lars.momentum", self.lars.momentum())?;
        } else {
            let views = self.flat.param_views(self.lars.momentum());
            for (seg, view) in self.flat.segments().iter().zip(&views) {
                take(&format!("lars.momentum.{}", seg.name), view)?;
            }
        }
        Ok(ResumePoint {
            step: meta.step,
            position: meta.position,
        })
    }
}

/// A step whose loss has not been read back yet.
struct Pending {
    step: u64,
    epoch: u64,
    loss: Tensor,
    lr: f64,
}

/// Throughput accounting between two throughput events.
struct Window {
    start: Instant,
    data_wait: Duration,
    steps: u64,
    loss_sum: f64,
    losses: u64,
}

impl Window {
    fn new() -> Self {
        Window {
            start: Instant::now(),
            data_wait: Duration::ZERO,
            steps: 0,
            loss_sum: 0.0,
            losses: 0,
        }
    }
}

fn report(p: Pending, window: &mut Window, sink: &mut dyn EventSink) -> Result<(), TrainError> {
    let loss = p.loss.f_double_value(&[])?;
    if !loss.is_finite() {
        return Err(TrainError::Diverged { step: p.step, loss });
    }
    window.loss_sum += loss;
    window.losses += 1;
    sink.event(&Event::Step {
        step: p.step,
        epoch: p.epoch,
        loss,
        lr: p.lr,
    });
    Ok(())
}

/// Trains `replica` on `loader` from `resume` (or step 0) to `opts.epochs` epochs.
///
/// Rank 0 writes checkpoints and evaluation results go to every rank's sink. `stop` is checked
/// after every step: when set, the run checkpoints (if it has a directory) and returns with
/// `interrupted`.
#[allow(clippy::too_many_arguments)]
pub fn run(
    replica: &mut Replica,
    loader: &mut dyn DeviceLoader,
    mut eval_loader: Option<&mut dyn DeviceLoader>,
    avg: &mut dyn GradientAverager,
    schedule: &PolyWarmup,
    opts: &TrainOptions,
    resume: Option<ResumePoint>,
    sink: &mut dyn EventSink,
    stop: &AtomicBool,
) -> Result<RunSummary, TrainError> {
    let steps_per_epoch = loader.batches_per_epoch();
    if steps_per_epoch == 0 {
        return Err(TrainError::Config(
            "the loader yields no full batch per epoch (fewer images than the batch size)".into(),
        ));
    }
    let total = opts
        .max_steps
        .unwrap_or(u64::MAX)
        .min(opts.epochs * steps_per_epoch);
    let resume = resume.unwrap_or_default();
    let global_batch = loader.batch_size() * avg.world_size();
    let checkpoint_dir = opts.checkpoint_dir.as_deref().filter(|_| avg.rank() == 0);
    let log_every = opts.log_every.max(1);
    sink.event(&Event::Start {
        step: resume.step,
        epoch: resume.position.epoch,
        batch: resume.position.batch,
        world_size: avg.world_size(),
        global_batch,
        steps_per_epoch,
        train_steps: total,
    });

    let mut step = resume.step;
    let mut position = resume.position;
    let mut pending: Option<Pending> = None;
    let mut window = Window::new();
    let mut interrupted = false;
    let mut last_eval = None;
    let mut saved_at: Option<u64> = None;
    let mut timer = PhaseTimer::off();
    let mut bench_start: Option<(u64, Instant)> = None;
    let device = replica.device();
    let sync_device = || {
        if let Device::Cuda(i) = device {
            tch::Cuda::synchronize(i as i64);
        }
    };

    let world_size = avg.world_size();
    let save = |replica: &Replica, step: u64, position: Position, sink: &mut dyn EventSink| {
        if let Some(dir) = checkpoint_dir {
            replica.save_checkpoint(
                dir,
                ResumePoint { step, position },
                world_size,
                global_batch,
            )?;
            sink.event(&Event::Checkpoint {
                step,
                path: dir.to_owned(),
            });
        }
        Ok::<(), TrainError>(())
    };

    while position.epoch < opts.epochs && step < total {
        let epoch = position.epoch;
        loader.start_epoch(epoch, position.batch)?;
        let mut exhausted = false;
        while step < total {
            if opts.bench_after == Some(step - resume.step) {
                sync_device();
                bench_start = Some((step, Instant::now()));
                if opts.phases {
                    timer = PhaseTimer::new(replica.device());
                }
            }
            timer.start();
            let waited = Instant::now();
            let batch = loader.next_batch()?;
            window.data_wait += waited.elapsed();
            let Some(batch) = batch else {
                exhausted = true;
                break;
            };
            timer.mark(Phase::Data);
            let lr = schedule.lr(step);
            let loss = replica.train_step_timed(&batch, lr, avg, &mut timer)?;
            step += 1;
            position.batch += 1;
            window.steps += 1;
            // Reading the previous step's loss waits for that step only; this one is queued.
            if let Some(prev) = pending.replace(Pending {
                step,
                epoch,
                loss,
                lr,
            }) {
                report(prev, &mut window, sink)?;
            }
            timer.mark(Phase::Sync);
            timer.end_step();
            if step % log_every == 0 {
                let elapsed = window.start.elapsed().as_secs_f64();
                sink.event(&Event::Throughput {
                    step,
                    epoch,
                    loss: window.loss_sum / window.losses.max(1) as f64,
                    lr,
                    images_per_sec: (window.steps as usize * global_batch) as f64
                        / elapsed.max(1e-9),
                    data_wait_pct: 100.0 * window.data_wait.as_secs_f64() / elapsed.max(1e-9),
                });
                window = Window::new();
            }
            if stop.load(Ordering::SeqCst) {
                interrupted = true;
                break;
            }
        }
        if let Some(p) = pending.take() {
            report(p, &mut window, sink)?;
        }
        if !(exhausted || position.batch >= steps_per_epoch) {
            // Stopped mid-epoch (max_steps or a stop request): resume from this batch.
            break;
        }
        position = Position {
            epoch: epoch + 1,
            batch: 0,
        };
        let epochs_done = epoch + 1;
        if opts.eval_every > 0 && epochs_done % opts.eval_every == 0 {
            if let Some(eval) = eval_loader.as_deref_mut() {
                let r = replica.evaluate(eval, avg)?;
                sink.event(&Event::Eval {
                    epoch: epochs_done,
                    step,
                    top1: r.top1,
                    top5: r.top5,
                    loss: r.loss,
                    images: r.images,
                });
                last_eval = Some(r);
            }
        }
        if opts.checkpoint_every > 0 && epochs_done % opts.checkpoint_every == 0 {
            save(replica, step, position, sink)?;
            saved_at = Some(step);
        }
        if interrupted {
            break;
        }
    }
    if let Some(p) = pending.take() {
        report(p, &mut window, sink)?;
    }
    let bench = bench_start.and_then(|(from, t0)| {
        sync_device();
        (step > from).then(|| (step - from, t0.elapsed().as_secs_f64()))
    });
    if saved_at != Some(step) && step > resume.step {
        save(replica, step, position, sink)?;
    }
    sink.event(&Event::End { step, interrupted });
    Ok(RunSummary {
        step,
        position,
        interrupted,
        last_eval,
        bench,
        phases: timer.is_on().then(|| timer.times()),
    })
}
