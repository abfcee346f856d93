//! Safe handles on libtorch's c10d through `csrc/c10d.cpp`: [`Store`] (a `c10d::TCPStore`,
//! optionally under a `PrefixStore`), [`ProcessGroup`] (`ProcessGroupGloo` or
//! `ProcessGroupNCCL`) and [`Buckets`] (the bucketed all-reduce started from autograd hooks).
//! These are the objects `torch.distributed` and DDP are made of; nothing here moves bytes
//! itself.

use std::ffi::{c_char, c_int, CString};
use std::ptr::NonNull;
use std::time::Duration;

use tch::Tensor;
use torch_sys::C_tensor;

use super::buckets::BucketPlan;

#[repr(C)]
struct SfStore {
    _private: [u8; 0],
}
#[repr(C)]
struct SfGroup {
    _private: [u8; 0],
}
#[repr(C)]
struct SfBuckets {
    _private: [u8; 0],
}

extern "C" {
    fn sf_store_connect(
        host: *const c_char,
        port: u16,
        world: c_int,
        is_server: bool,
        timeout_ms: i64,
        prefix: *const c_char,
        out: *mut *mut SfStore,
    ) -> *mut c_char;
    fn sf_store_free(s: *mut SfStore);
    fn sf_store_set(
        s: *mut SfStore,
        key: *const c_char,
        data: *const u8,
        len: usize,
    ) -> *mut c_char;
    fn sf_store_get(
        s: *mut SfStore,
        key: *const c_char,
        timeout_ms: i64,
        data: *mut *mut u8,
        len: *mut usize,
    ) -> *mut c_char;
    fn sf_free_bytes(data: *mut u8);
    fn sf_store_check(s: *mut SfStore, key: *const c_char, present: *mut bool) -> *mut c_char;
    fn sf_store_add(s: *mut SfStore, key: *const c_char, delta: i64, out: *mut i64) -> *mut c_char;
    fn sf_group_gloo(
        s: *mut SfStore,
        rank: c_int,
        size: c_int,
        timeout_ms: i64,
        interface: *const c_char,
        hostname: *const c_char,
        threads: c_int,
        out: *mut *mut SfGroup,
    ) -> *mut c_char;
    fn sf_has_nccl() -> bool;
    fn sf_group_nccl(
        s: *mut SfStore,
        rank: c_int,
        size: c_int,
        timeout_ms: i64,
        out: *mut *mut SfGroup,
    ) -> *mut c_char;
    fn sf_group_free(g: *mut SfGroup);
    fn sf_group_allreduce_sum(g: *mut SfGroup, t: *mut C_tensor) -> *mut c_char;
    fn sf_group_broadcast(g: *mut SfGroup, t: *mut C_tensor, root: c_int) -> *mut c_char;
    fn sf_buckets_new(
        g: *mut SfGroup,
        flat: *const C_tensor,
        params: *const *const C_tensor,
        slots: *const *const C_tensor,
        bucket_of: *const i32,
        n: usize,
        bucket_start: *const i64,
        bucket_len: *const i64,
        nbuckets: usize,
        out: *mut *mut SfBuckets,
    ) -> *mut c_char;
    fn sf_buckets_arm(b: *mut SfBuckets) -> *mut c_char;
    fn sf_buckets_finish(
        b: *mut SfBuckets,
        launched_ms: *mut f64,
        waited_ms: *mut f64,
    ) -> *mut c_char;
    fn sf_buckets_free(b: *mut SfBuckets);
}

/// A c10d call failed; the message is libtorch's (or gloo's / NCCL's).
#[derive(Debug, Clone, thiserror::Error)]
#[error("c10d {call}: {message}")]
pub struct C10dError {
    /// Which call.
    pub call: &'static str,
    /// libtorch's message.
    pub message: String,
}

/// The shim's error convention, shared with the rest of `csrc/` ([`crate::precision::check`]).
fn check(call: &'static str, err: *mut c_char) -> Result<(), C10dError> {
    crate::precision::check(call, err).map_err(|e| C10dError {
        call: e.call,
        message: e.message,
    })
}

fn c_string(call: &'static str, s: &str) -> Result<CString, C10dError> {
    CString::new(s).map_err(|_| C10dError {
        call,
        message: format!("{s:?} holds a NUL byte"),
    })
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// A `c10d::TCPStore`: the job's rendezvous and small shared state.
pub struct Store {
    ptr: NonNull<SfStore>,
}

// SAFETY: c10d's TCPStore serialises its operations internally (PyTorch shares one store among
// threads), and the handle is only freed by Drop.
unsafe impl Send for Store {}
unsafe impl Sync for Store {}

impl Store {
    /// Connects to (or, with `is_server`, starts) the store at `host:port` for `world` members;
    /// `prefix` scopes every key (empty for none). Waits up to `timeout` for the server.
    ///
    /// # Errors
    ///
    /// The server cannot be reached or started (the message names host and port).
    pub fn connect(
        host: &str,
        port: u16,
        world: usize,
        is_server: bool,
        timeout: Duration,
        prefix: &str,
    ) -> Result<Store, C10dError> {
        let call = "TCPStore";
        let (h, p) = (c_string(call, host)?, c_string(call, prefix)?);
        let mut out = std::ptr::null_mut();
        check(call, unsafe {
            sf_store_connect(
                h.as_ptr(),
                port,
                world as c_int,
                is_server,
                millis(timeout),
                p.as_ptr(),
                &mut out,
            )
        })
        .map_err(|e| C10dError {
            message: format!("{host}:{port}: {}", e.message),
            ..e
        })?;
        let ptr = NonNull::new(out).ok_or(C10dError {
            call,
            message: "no store".into(),
        })?;
        Ok(Store { ptr })
    }

    /// Sets `key` to `value`.
    pub fn set(&self, key: &str, value: &[u8]) -> Result<(), C10dError> {
        let k = c_string("store set", key)?;
        check("store set", unsafe {
            sf_store_set(self.ptr.as_ptr(), k.as_ptr(), value.as_ptr(), value.len())
        })
    }

    /// `key`'s value, waiting up to `timeout` for it to be set.
    pub fn get(&self, key: &str, timeout: Duration) -> Result<Vec<u8>, C10dError> {
        let k = c_string("store get", key)?;
        let (mut data, mut len) = (std::ptr::null_mut(), 0usize);
        check("store get", unsafe {
            sf_store_get(
                self.ptr.as_ptr(),
                k.as_ptr(),
                millis(timeout),
                &mut data,
                &mut len,
            )
        })?;
        // SAFETY: on success the shim returns a malloc'd buffer of `len` bytes.
        let out = unsafe { std::slice::from_raw_parts(data, len) }.to_vec();
        unsafe { sf_free_bytes(data) };
        Ok(out)
    }

    /// Whether `key` is set.
    pub fn check(&self, key: &str) -> Result<bool, C10dError> {
        let k = c_string("store check", key)?;
        let mut present = false;
        check("store check", unsafe {
            sf_store_check(self.ptr.as_ptr(), k.as_ptr(), &mut present)
        })?;
        Ok(present)
    }

    /// Adds `delta` to the counter `key` (0 when unset) and returns the new value.
    pub fn add(&self, key: &str, delta: i64) -> Result<i64, C10dError> {
        let k = c_string("store add", key)?;
        let mut out = 0i64;
        check("store add", unsafe {
            sf_store_add(self.ptr.as_ptr(), k.as_ptr(), delta, &mut out)
        })?;
        Ok(out)
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        unsafe { sf_store_free(self.ptr.as_ptr()) }
    }
}

/// Which network device gloo binds (as `GLOO_SOCKET_IFNAME` does for PyTorch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GlooDevice {
    /// gloo's default: this host's name, or loopback when it does not resolve.
    Default,
    /// A network interface, e.g. `eth0`.
    Interface(String),
    /// An address or host name of this host.
    Hostname(String),
}

/// A c10d process group: one backend (`gloo` or `nccl`) over every rank of the job.
pub struct ProcessGroup {
    ptr: NonNull<SfGroup>,
    rank: usize,
    world: usize,
}

// SAFETY: a c10d Backend is used from one thread at a time here (the replica's), and from the
// autograd engine's thread through Buckets, which c10d supports (DDP does the same).
unsafe impl Send for ProcessGroup {}

impl ProcessGroup {
    /// `ProcessGroupGloo` (CPU tensors): every collective fails after `timeout`.
    ///
    /// # Errors
    ///
    /// The rendezvous through `store` failed or timed out.
    pub fn gloo(
        store: &Store,
        rank: usize,
        world: usize,
        timeout: Duration,
        device: &GlooDevice,
    ) -> Result<ProcessGroup, C10dError> {
        let call = "ProcessGroupGloo";
        let (interface, hostname) = match device {
            GlooDevice::Default => (c_string(call, "")?, c_string(call, "")?),
            GlooDevice::Interface(i) => (c_string(call, i)?, c_string(call, "")?),
            GlooDevice::Hostname(h) => (c_string(call, "")?, c_string(call, h)?),
        };
        let mut out = std::ptr::null_mut();
        check(call, unsafe {
            sf_group_gloo(
                store.ptr.as_ptr(),
                rank as c_int,
                world as c_int,
                millis(timeout),
                interface.as_ptr(),
                hostname.as_ptr(),
                2,
                &mut out,
            )
        })?;
        Self::made(call, out, rank, world)
    }

    /// Whether this build has `ProcessGroupNCCL`.
    pub fn has_nccl() -> bool {
        unsafe { sf_has_nccl() }
    }

    /// `ProcessGroupNCCL` on the current CUDA device.
    ///
    /// # Errors
    ///
    /// Not built with NCCL, or the communicator could not be made.
    pub fn nccl(
        store: &Store,
        rank: usize,
        world: usize,
        timeout: Duration,
    ) -> Result<ProcessGroup, C10dError> {
        let call = "ProcessGroupNCCL";
        let mut out = std::ptr::null_mut();
        check(call, unsafe {
            sf_group_nccl(
                store.ptr.as_ptr(),
                rank as c_int,
                world as c_int,
                millis(timeout),
                &mut out,
            )
        })?;
        Self::made(call, out, rank, world)
    }

    fn made(
        call: &'static str,
        out: *mut SfGroup,
        rank: usize,
        world: usize,
    ) -> Result<ProcessGroup, C10dError> {
        let ptr = NonNull::new(out).ok_or(C10dError {
            call,
            message: "no group".into(),
        })?;
        Ok(ProcessGroup { ptr, rank, world })
    }

    /// This process's rank.
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// Ranks in the group.
    pub fn world(&self) -> usize {
        self.world
    }

    /// `t ← Σ_ranks t`, in place; returns when the sum is in `t`.
    pub fn allreduce_sum(&mut self, t: &mut Tensor) -> Result<(), C10dError> {
        check("allreduce", unsafe {
            sf_group_allreduce_sum(self.ptr.as_ptr(), t.as_mut_ptr())
        })
    }

    /// `t ← root's t`, in place.
    pub fn broadcast(&mut self, t: &mut Tensor, root: usize) -> Result<(), C10dError> {
        check("broadcast", unsafe {
            sf_group_broadcast(self.ptr.as_ptr(), t.as_mut_ptr(), root as c_int)
        })
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        unsafe { sf_group_free(self.ptr.as_ptr()) }
    }
}

/// What [`Buckets::finish`] measured.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct BucketTimes {
    /// When the last bucket's all-reduce was started, from [`Buckets::arm`] (ms).
    pub launched_ms: f64,
    /// How long `finish` waited for the all-reduces after backward (ms): the communication
    /// backward did not hide.
    pub waited_ms: f64,
}

/// The bucketed all-reduce of one model's flat gradient buffer: hooks on every parameter's
/// gradient accumulator start each bucket's (in-place, summing) all-reduce as soon as backward
/// has produced its last gradient.
pub struct Buckets {
    ptr: NonNull<SfBuckets>,
    count: usize,
}

// SAFETY: the hooks' shared state is behind a mutex on the C++ side.
unsafe impl Send for Buckets {}

impl Buckets {
    /// Hooks `params` (leaf tensors), whose gradient slots are `slots` (views of `flat`, the
    /// flat gradient buffer), into `plan`'s buckets of `flat`.
    ///
    /// # Errors
    ///
    /// A parameter is not a leaf requiring grad, or the plan does not fit.
    pub fn new(
        group: &ProcessGroup,
        flat: &Tensor,
        params: &[Tensor],
        slots: &[Tensor],
        plan: &BucketPlan,
    ) -> Result<Buckets, C10dError> {
        let call = "buckets";
        if params.len() != slots.len() || params.len() != plan.bucket_of.len() {
            return Err(C10dError {
                call,
                message: format!(
                    "{} parameters, {} slots, {} planned",
                    params.len(),
                    slots.len(),
                    plan.bucket_of.len()
                ),
            });
        }
        let p: Vec<*const C_tensor> = params.iter().map(Tensor::as_ptr).collect();
        let s: Vec<*const C_tensor> = slots.iter().map(Tensor::as_ptr).collect();
        let of: Vec<i32> = plan.bucket_of.iter().map(|&b| b as i32).collect();
        let start: Vec<i64> = plan.ranges.iter().map(|r| r.start as i64).collect();
        let len: Vec<i64> = plan.ranges.iter().map(|r| r.len() as i64).collect();
        let mut out = std::ptr::null_mut();
        check(call, unsafe {
            sf_buckets_new(
                group.ptr.as_ptr(),
                flat.as_ptr(),
                p.as_ptr(),
                s.as_ptr(),
                of.as_ptr(),
                p.len(),
                start.as_ptr(),
                len.as_ptr(),
                start.len(),
                &mut out,
            )
        })?;
        let ptr = NonNull::new(out).ok_or(C10dError {
            call,
            message: "no buckets".into(),
        })?;
        Ok(Buckets {
            ptr,
            count: plan.ranges.len(),
        })
    }

    /// Buckets in the plan.
    pub fn count(&self) -> usize {
        self.count
    }

    /// Before backward: every bucket waits for its parameters again.
    pub fn arm(&mut self) -> Result<(), C10dError> {
        check("buckets arm", unsafe { sf_buckets_arm(self.ptr.as_ptr()) })
    }

    /// After backward: starts what backward did not (zeros for parameters without a
    /// gradient), waits for every bucket; the flat buffer then holds the sum over ranks.
    pub fn finish(&mut self) -> Result<BucketTimes, C10dError> {
        let mut t = BucketTimes::default();
        check("allreduce", unsafe {
            sf_buckets_finish(self.ptr.as_ptr(), &mut t.launched_ms, &mut t.waited_ms)
        })?;
        Ok(t)
    }
}

impl Drop for Buckets {
    fn drop(&mut self) {
        unsafe { sf_buckets_free(self.ptr.as_ptr()) }
    }
}
