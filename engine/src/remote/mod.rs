//! The remote source: batches computed by `shardfeed serve` workers on other hosts, delivered
//! through the same [`Loader`](crate::loader::Loader) API as local ones, with the same bytes
//! (docs/PROTOCOL.md).
//!
//! A batch is a pure function of (dataset, recipe, seed, epoch, rank, world, batch index), so
//! any worker can compute any batch and a batch lost with its worker is asked of another with
//! the same result. Make a loader with [`Loader::remote`](crate::loader::Loader::remote) and a
//! [`RemoteConfig`]; everything else (epochs, resume, metrics) is as for a local loader, plus
//! [`Loader::remote_stats`](crate::loader::Loader::remote_stats).
//!
//! - [`config`]: the worker list and the deadlines.
//! - `schedule`: which batch is asked of which worker (pure).
//! - `connection`: the handshake and the reader thread of one connection (blocking sockets).
//! - `coordinator`: the thread that runs it all in place of the local dispatcher.
//! - [`stats`]: per-worker counters, the fault log, and their Prometheus text;
//!   [`serve_metrics`] serves them over HTTP.

pub mod config;
pub(crate) mod connection;
pub(crate) mod coordinator;
mod endpoint;
pub(crate) mod schedule;
pub mod stats;

pub use config::{read_token, RemoteConfig, TokenFileError, WorkerList};
pub use connection::encode_failures;
pub use endpoint::serve_metrics;
pub use stats::{RemoteStats, WorkerStats};

use std::time::Duration;

/// Why the remote source could not deliver a batch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RemoteError {
    /// No worker took the batch within the deadline.
    #[error(
        "no worker answered for batch {batch} of epoch {epoch} within {:.1}s; tried: {}",
        waited.as_secs_f64(),
        if tried.is_empty() { "no worker listed".to_owned() } else { tried.join("; ") }
    )]
    NoWorkers {
        /// The epoch.
        epoch: u64,
        /// The batch.
        batch: u64,
        /// How long the source waited.
        waited: Duration,
        /// Each worker tried, with its last error.
        tried: Vec<String>,
    },
    /// Workers answered `Failed` for the batch, each time.
    #[error("batch {batch} of epoch {epoch} failed on the workers: {}", reasons.join("; "))]
    BatchFailed {
        /// The epoch.
        epoch: u64,
        /// The batch.
        batch: u64,
        /// "worker: reason", per answer.
        reasons: Vec<String>,
    },
    /// The only worker refused the handshake (other data, another version, a wrong secret).
    #[error("worker {worker} {reason}")]
    Refused {
        /// Its address.
        worker: String,
        /// What it said.
        reason: String,
    },
    /// The manifest could not be read for the dataset's fingerprint.
    #[error("reading {path} for the dataset's fingerprint: {error}")]
    Manifest {
        /// The file.
        path: String,
        /// Why.
        error: String,
    },
}
