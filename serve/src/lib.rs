//! # shardfeed-serve
//!
//! `shardfeed serve`: a worker that computes batches for remote clients (the engine's remote
//! source, one per trainer rank) with the engine's own worker pool, speaking the protocol of
//! [docs/PROTOCOL.md](../../docs/PROTOCOL.md) over TCP on tokio.
//!
//! - [`catalog`]: the datasets served and their fingerprints.
//! - [`handshake`]: the checks of a client's `Hello` (version, dataset, recipe) as pure code.
//! - `session`: one client connection: handshake, then requests in and batches out, with the
//!   batch pixels written from the engine's buffer (vectored writes, no copy).
//! - [`server`]: the listener (bounded connections, shutdown) and the metrics endpoint.
//! - [`metrics`]: per-client counters and their Prometheus text.
//!
//! CPU work never runs on the runtime: each session has a [`Loader`] on its own threads
//! ([`Loader::on_demand`]); tokio only moves bytes.
//!
//! [`Loader`]: shardfeed_engine::loader::Loader
//! [`Loader::on_demand`]: shardfeed_engine::loader::Loader::on_demand

pub mod catalog;
pub mod handshake;
pub mod metrics;
pub mod server;
mod session;

pub use server::{ServeConfig, ServeError, Server};
