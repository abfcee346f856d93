//! shardfeed-trainer: an embedded large-batch trainer on libtorch (tch 0.24 / PyTorch 2.11).
//!
//! | module | main types | job |
//! | --- | --- | --- |
//! | [`model`] | [`model::ResNet`], [`model::Arch`] | ResNet-50/18 with torchvision's names, a small ResNet for CPU |
//! | [`flat`] | [`flat::FlatParams`] | all parameters and gradients as views into two flat buffers |
//! | [`lars`] | [`lars::Lars`], [`lars::LarsConfig`] | LARS as the MLPerf reference defines it |
//! | [`schedule`] | [`schedule::PolyWarmup`] | warmup + polynomial decay, MLPerf's batch-size table |
//! | [`data`] | [`data::DeviceLoader`], [`data::SyntheticLoader`], [`data::DeviceFeeder`], [`data::HostBatchSource`] | batches onto the device |
//! | [`allreduce`] | [`allreduce::GradientAverager`], [`allreduce::InProcessGroup`], [`allreduce::NcclAverager`] | data parallelism |
//! | [`precision`] | [`precision::AutocastGuard`], [`precision::MemoryFormat`] | bf16 autocast and channels-last (tch gaps, via a C++ shim) |
//! | [`shards`] | [`shards::ShardsSource`] | the shardfeed pipeline (`shardfeed_engine::loader::Loader`) as a host batch source |
//! | [`train`] | [`train::Replica`], [`train::run`] | the loop: epochs, eval, checkpoints, resume, stop |
//! | [`phases`] | [`phases::PhaseTimer`], [`phases::PhaseTimes`] | where a step's time goes (forward, backward, LARS, ...) |
//! | [`checkpoint`] | [`checkpoint::CheckpointMeta`] | atomic checkpoint files |
//! | [`events`] | [`events::Event`], [`events::EventSink`] | JSON-lines log and the progress line |
//! | [`launch`] | [`launch::Args`], [`launch::plan`], [`launch::launch`] | the `shardfeed-train` command line: flags, plan, one thread per replica, exit codes |
//!
//! The training loop sees only [`data::DeviceLoader`]. A data pipeline that produces uint8 NHWC
//! host batches implements [`data::HostBatchSource`] and is wrapped in a
//! [`data::DeviceFeeder`], which stages, copies and normalises on the device.

pub mod allreduce;
pub mod checkpoint;
pub mod data;
pub mod dist;
pub mod events;
pub mod flat;
pub mod lars;
mod lars_cpu;
pub mod launch;
pub mod model;
pub mod phases;
pub mod precision;
pub mod schedule;
pub mod shards;
pub mod train;
