//! Data parallelism: the [`GradientAverager`] trait and its implementations.
//!
//! - [`SingleReplica`]: world size 1, nothing to do.
//! - [`InProcessGroup`] / [`InProcessAverager`]: replicas on threads of one process (CPU
//!   tensors), summing in rank order so every replica gets bit-identical results. Used by the
//!   CPU tests of the N-replica logic.
//! - [`NcclAverager`]: one replica per GPU through NCCL (`cudarc`'s bindings, loaded at run time,
//!   so building needs nothing CUDA). One communicator per rank, made with a shared
//!   [`NcclId`]: the same code spans nodes once the id is shipped to the other processes.
//!
//! Every replica calls [`GradientAverager::average`] on its flat gradient buffer
//! ([`crate::flat::FlatParams::grads`]) after backward and before the optimizer step.
//!
//! ```
//! use shardfeed_trainer::allreduce::{GradientAverager, InProcessGroup};
//! let ranks = InProcessGroup::new(2);
//! let handles: Vec<_> = ranks.into_iter().enumerate().map(|(r, mut avg)| {
//!     std::thread::spawn(move || {
//!         let mut g = tch::Tensor::from_slice(&[r as f32 * 2.0, 1.0]);
//!         avg.average(&mut g).unwrap();
//!         Vec::<f32>::try_from(&g).unwrap()
//!     })
//! }).collect();
//! for h in handles { assert_eq!(h.join().unwrap(), vec![1.0, 1.0]); }
//! ```

use std::sync::{Arc, Barrier, Mutex};

use tch::{Kind, Tensor};

use crate::flat::FlatParams;

/// Averaging across replicas failed.
#[derive(Debug, thiserror::Error)]
pub enum AllReduceError {
    /// Another replica's thread died while this one waited for it.
    #[error("rank {rank}: a peer replica is gone (its thread panicked)")]
    PeerGone {
        /// This replica's rank.
        rank: usize,
    },
    /// NCCL or the CUDA driver could not be loaded or failed.
    #[error("rank {rank}: {what}")]
    Nccl {
        /// This replica's rank.
        rank: usize,
        /// What failed, with NCCL's message.
        what: String,
    },
    /// A libtorch call failed.
    #[error(transparent)]
    Torch(#[from] tch::TchError),
    /// A shim call (gradient views) failed.
    #[error(transparent)]
    Shim(#[from] crate::precision::ShimError),
    /// A c10d collective or rendezvous failed (a multi-process job); `diagnosis` names the
    /// lost or hung rank when the heartbeats tell.
    #[error("rank {rank}: {what}{}", if diagnosis.is_empty() { String::new() } else { format!(" — {diagnosis}") })]
    C10d {
        /// This process's rank.
        rank: usize,
        /// What failed, with c10d's message.
        what: String,
        /// Who is to blame, from the heartbeats ([`crate::dist::health`]).
        diagnosis: String,
    },
}

/// Averages gradients (and broadcasts state) across the replicas of one training run.
pub trait GradientAverager: Send {
    /// This replica's rank, from 0.
    fn rank(&self) -> usize;
    /// Number of replicas.
    fn world_size(&self) -> usize;
    /// Replaces `buffer` (a dense fp32 tensor, the same size on every replica) by its mean over
    /// all replicas. Every replica must call it, in the same order.
    fn average(&mut self, buffer: &mut Tensor) -> Result<(), AllReduceError>;
    /// Replaces `buffer` by rank 0's (initial weights, BN statistics).
    fn broadcast(&mut self, buffer: &mut Tensor) -> Result<(), AllReduceError>;
    /// Called before each backward. An averager that overlaps communication with backward
    /// arms its hooks here; the default does nothing.
    fn before_backward(&mut self, _flat: &FlatParams) -> Result<(), AllReduceError> {
        Ok(())
    }
    /// Called after each backward: leaves the mean gradient over replicas in `flat`'s
    /// gradient buffer. The default gathers the gradients there and [`average`](Self::average)s
    /// it in one call (nothing at world size 1).
    fn after_backward(&mut self, flat: &mut FlatParams) -> Result<(), AllReduceError> {
        if self.world_size() > 1 {
            flat.gather_grads()?;
            self.average(&mut flat.grads().shallow_clone())?;
        }
        Ok(())
    }
}

/// World size 1.
#[derive(Debug, Default, Clone, Copy)]
pub struct SingleReplica;

impl GradientAverager for SingleReplica {
    fn rank(&self) -> usize {
        0
    }
    fn world_size(&self) -> usize {
        1
    }
    fn average(&mut self, _: &mut Tensor) -> Result<(), AllReduceError> {
        Ok(())
    }
    fn broadcast(&mut self, _: &mut Tensor) -> Result<(), AllReduceError> {
        Ok(())
    }
}

struct Shared {
    /// One staging tensor per rank (made on first use, remade only when the size changes).
    slots: Mutex<Vec<Option<Tensor>>>,
    barrier: Barrier,
}

/// Makes the [`InProcessAverager`]s of one group of threads.
pub struct InProcessGroup;

impl InProcessGroup {
    /// `world` averagers, one per replica thread (rank = index).
    #[allow(clippy::new_ret_no_self)]
    pub fn new(world: usize) -> Vec<InProcessAverager> {
        let shared = Arc::new(Shared {
            slots: Mutex::new((0..world).map(|_| None).collect()),
            barrier: Barrier::new(world),
        });
        (0..world)
            .map(|rank| InProcessAverager {
                rank,
                world,
                shared: Arc::clone(&shared),
            })
            .collect()
    }
}

/// One replica's handle on an in-process group (CPU tensors).
pub struct InProcessAverager {
    rank: usize,
    world: usize,
    shared: Arc<Shared>,
}

impl InProcessAverager {
    fn publish(&self, buffer: &Tensor) -> Result<(), AllReduceError> {
        let mut slots = self
            .shared
            .slots
            .lock()
            .map_err(|_| AllReduceError::PeerGone { rank: self.rank })?;
        let slot = &mut slots[self.rank];
        match slot {
            // The steady state (the same gradient buffer every step) reuses the staging tensor.
            Some(t) if t.size() == buffer.size() && t.kind() == buffer.kind() => {
                tch::no_grad(|| t.f_copy_(buffer))?;
            }
            _ => *slot = Some(buffer.detach().copy()),
        }
        Ok(())
    }

    /// `buffer ← f(slots)` after every rank published, then wait until every rank has read.
    fn combine(
        &self,
        buffer: &mut Tensor,
        f: impl FnOnce(&[Option<Tensor>], &mut Tensor) -> Result<(), AllReduceError>,
    ) -> Result<(), AllReduceError> {
        self.publish(buffer)?;
        self.shared.barrier.wait();
        {
            let slots = self
                .shared
                .slots
                .lock()
                .map_err(|_| AllReduceError::PeerGone { rank: self.rank })?;
            tch::no_grad(|| f(&slots, buffer))?;
        }
        self.shared.barrier.wait();
        Ok(())
    }
}

fn slot(slots: &[Option<Tensor>], rank: usize, me: usize) -> Result<&Tensor, AllReduceError> {
    slots[rank]
        .as_ref()
        .ok_or(AllReduceError::PeerGone { rank: me })
}

impl GradientAverager for InProcessAverager {
    fn rank(&self) -> usize {
        self.rank
    }

    fn world_size(&self) -> usize {
        self.world
    }

    fn average(&mut self, buffer: &mut Tensor) -> Result<(), AllReduceError> {
        let (me, world) = (self.rank, self.world);
        self.combine(buffer, |slots, buffer| {
            // Rank order, so every replica computes the very same sum.
            buffer.f_copy_(slot(slots, 0, me)?)?;
            for r in 1..world {
                let _ = buffer.f_add_(slot(slots, r, me)?)?;
            }
            let _ = buffer.f_div_scalar_(world as f64)?;
            Ok(())
        })
    }

    fn broadcast(&mut self, buffer: &mut Tensor) -> Result<(), AllReduceError> {
        let me = self.rank;
        self.combine(buffer, |slots, buffer| {
            Ok(buffer.f_copy_(slot(slots, 0, me)?)?)
        })
    }
}

/// The id every rank of an NCCL group is made with (`ncclGetUniqueId` on one rank, shared).
#[derive(Clone, Copy)]
pub struct NcclId(cudarc::nccl::sys::ncclUniqueId);

/// Whether NCCL and the CUDA driver can be loaded here.
pub fn nccl_available() -> bool {
    // SAFETY: only tries to dlopen the libraries.
    unsafe { cudarc::driver::sys::is_culib_present() && cudarc::nccl::sys::is_culib_present() }
}

impl NcclId {
    /// A fresh id (call on one rank, hand it to all).
    pub fn new() -> Result<Self, AllReduceError> {
        if !nccl_available() {
            return Err(AllReduceError::Nccl {
                rank: 0,
                what: "libnccl.so / libcuda.so cannot be loaded (scripts/setup-torch.sh links libnccl.so into the venv)".into(),
            });
        }
        cudarc::nccl::result::get_uniqueid()
            .map(NcclId)
            .map_err(|e| AllReduceError::Nccl {
                rank: 0,
                what: format!("ncclGetUniqueId: {e:?}"),
            })
    }
}

/// One GPU replica's NCCL communicator. All-reduces run on the legacy default CUDA stream, the
/// one libtorch computes on, so they are ordered after backward and before the optimizer.
pub struct NcclAverager {
    rank: usize,
    world: usize,
    comm: cudarc::nccl::sys::ncclComm_t,
    _ctx: std::sync::Arc<cudarc::driver::CudaContext>,
}

// SAFETY: the communicator is used by one thread at a time (the replica that owns it).
unsafe impl Send for NcclAverager {}

impl NcclAverager {
    /// Joins the group `id` as `rank` of `world` on GPU `ordinal`. Every rank must call this at
    /// the same time (one thread or process each): it blocks until all have joined.
    pub fn new(
        id: NcclId,
        rank: usize,
        world: usize,
        ordinal: usize,
    ) -> Result<Self, AllReduceError> {
        let nccl_err = |what: String| AllReduceError::Nccl { rank, what };
        let ctx = cudarc::driver::CudaContext::new(ordinal)
            .map_err(|e| nccl_err(format!("CUDA context for GPU {ordinal}: {e:?}")))?;
        ctx.bind_to_thread()
            .map_err(|e| nccl_err(format!("binding GPU {ordinal}: {e:?}")))?;
        let mut comm = std::ptr::null_mut();
        // SAFETY: `comm` is a valid out pointer; the id came from ncclGetUniqueId.
        unsafe { cudarc::nccl::result::comm_init_rank(&mut comm, world as i32, id.0, rank as i32) }
            .map_err(|e| nccl_err(format!("ncclCommInitRank: {e:?}")))?;
        Ok(NcclAverager {
            rank,
            world,
            comm,
            _ctx: ctx,
        })
    }

    fn check(&self, buffer: &Tensor) -> Result<(), AllReduceError> {
        if !buffer.device().is_cuda() || buffer.kind() != Kind::Float || !buffer.is_contiguous() {
            return Err(AllReduceError::Nccl {
                rank: self.rank,
                what: "NCCL needs a dense fp32 CUDA tensor".into(),
            });
        }
        Ok(())
    }
}

impl GradientAverager for NcclAverager {
    fn rank(&self) -> usize {
        self.rank
    }

    fn world_size(&self) -> usize {
        self.world
    }

    fn average(&mut self, buffer: &mut Tensor) -> Result<(), AllReduceError> {
        self.check(buffer)?;
        let ptr = buffer.data_ptr();
        // SAFETY: in-place all-reduce over the tensor's own dense CUDA memory.
        unsafe {
            cudarc::nccl::result::all_reduce(
                ptr,
                ptr,
                buffer.numel(),
                cudarc::nccl::sys::ncclDataType_t::ncclFloat32,
                cudarc::nccl::sys::ncclRedOp_t::ncclAvg,
                self.comm,
                std::ptr::null_mut(),
            )
        }
        .map(|_| ())
        .map_err(|e| AllReduceError::Nccl {
            rank: self.rank,
            what: format!("ncclAllReduce: {e:?}"),
        })
    }

    fn broadcast(&mut self, buffer: &mut Tensor) -> Result<(), AllReduceError> {
        self.check(buffer)?;
        let ptr = buffer.data_ptr();
        // SAFETY: in-place broadcast over the tensor's own dense CUDA memory.
        unsafe {
            cudarc::nccl::result::broadcast(
                ptr,
                ptr,
                buffer.numel(),
                cudarc::nccl::sys::ncclDataType_t::ncclFloat32,
                0,
                self.comm,
                std::ptr::null_mut(),
            )
        }
        .map(|_| ())
        .map_err(|e| AllReduceError::Nccl {
            rank: self.rank,
            what: format!("ncclBroadcast: {e:?}"),
        })
    }
}

impl Drop for NcclAverager {
    fn drop(&mut self) {
        // SAFETY: the communicator was made by ncclCommInitRank and is destroyed once.
        let _ = unsafe { cudarc::nccl::result::comm_destroy(self.comm) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_process_average_and_broadcast_are_identical_on_every_rank() {
        let world = 3;
        let handles: Vec<_> = InProcessGroup::new(world)
            .into_iter()
            .map(|mut avg| {
                std::thread::spawn(move || {
                    let r = avg.rank() as f32;
                    let mut results = Vec::new();
                    for step in 0..3 {
                        let mut g = Tensor::from_slice(&[r, 10.0 * r + step as f32, 1.0]);
                        avg.average(&mut g).unwrap();
                        results.push(Vec::<f32>::try_from(&g).unwrap());
                    }
                    let mut w = Tensor::from_slice(&[r + 5.0, r]);
                    avg.broadcast(&mut w).unwrap();
                    (results, Vec::<f32>::try_from(&w).unwrap())
                })
            })
            .collect();
        for h in handles {
            let (results, w) = h.join().unwrap();
            for (step, g) in results.iter().enumerate() {
                assert_eq!(g, &vec![1.0, 10.0 + step as f32, 1.0]);
            }
            assert_eq!(w, vec![5.0, 0.0]);
        }
    }

    #[test]
    fn single_replica_is_a_no_op() {
        let mut g = Tensor::from_slice(&[1.0f32, 2.0]);
        SingleReplica.average(&mut g).unwrap();
        assert_eq!(Vec::<f32>::try_from(&g).unwrap(), vec![1.0, 2.0]);
        assert_eq!(SingleReplica.world_size(), 1);
    }
}
