//! `shardfeed serve DIR`: computes batches for remote clients (docs/PROTOCOL.md); and the flags
//! a client command (`bench`) shares to use such workers.

use anyhow::{bail, Context};
use clap::Args;
use shardfeed_engine::remote::{read_token, RemoteConfig, WorkerList};
use shardfeed_serve::{ServeConfig, Server};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// A dataset directory, or a directory holding train/ and val/ (both are served).
    dir: PathBuf,
    /// Address to listen on. Any address but loopback requires --token-file.
    #[arg(long, default_value = "127.0.0.1:7000")]
    listen: SocketAddr,
    /// A file holding the shared secret (at least 16 bytes) clients must prove they hold.
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// Decode threads per client (default: all cores).
    #[arg(long)]
    workers: Option<usize>,
    /// Requests one client may have outstanding.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1024))]
    max_in_flight: u32,
    /// Clients served at once.
    #[arg(long, default_value_t = 64)]
    max_clients: usize,
    /// Serve Prometheus text at http://ADDR/metrics (and /healthz).
    #[arg(long)]
    metrics: Option<SocketAddr>,
    /// Benchmark the transport: answer every request with ready-made pixels of the right shape
    /// (not the batch asked for) instead of decoding.
    #[arg(long)]
    replay: bool,
}

pub fn run(a: ServeArgs) -> anyhow::Result<ExitCode> {
    let config = ServeConfig {
        listen: a.listen,
        token: a.token_file.as_deref().map(read_token).transpose()?,
        workers: a.workers.unwrap_or(0),
        max_in_flight: a.max_in_flight,
        max_clients: a.max_clients,
        metrics: a.metrics,
        replay: a.replay,
        ..ServeConfig::new(&a.dir)
    };
    let server = Server::start(config)?;
    // Scripts and tests read the address (the port, when asked for port 0) from this line.
    outln!("listening on {}", server.local_addr());
    if let Some(m) = server.metrics_addr() {
        outln!("metrics on http://{m}/metrics");
    }
    server.wait();
    Ok(ExitCode::SUCCESS)
}

/// The flags of a command that can take its batches from `shardfeed serve` workers.
#[derive(Debug, Args)]
pub struct RemoteArgs {
    /// Take batches from these workers: HOST:PORT[,HOST:PORT...]. The bytes are the same as
    /// local ones.
    #[arg(long)]
    pub remote: Option<String>,
    /// A file of worker addresses, re-read every --refresh seconds (workers may join and leave).
    #[arg(long)]
    pub remote_file: Option<PathBuf>,
    /// The shared secret of the workers.
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// Seconds a worker has to answer a request before it is cut off and the batch asked of
    /// another; also how long the loader waits when no worker is reachable before failing.
    #[arg(long, default_value_t = 30.0)]
    pub deadline: f64,
    /// Seconds between re-reads of the worker list and retries of lost workers.
    #[arg(long, default_value_t = 2.0)]
    pub refresh: f64,
    /// Also decode on this many local threads, as one more worker (remote mode only).
    #[arg(long, default_value_t = 0)]
    pub local_workers: usize,
}

/// Local workers started for `--local-workers` (stopped when dropped).
pub struct LocalWorkers(#[allow(dead_code)] Option<Server>);

impl RemoteArgs {
    /// True when batches come from workers.
    pub fn enabled(&self) -> bool {
        self.remote.is_some() || self.remote_file.is_some()
    }

    /// The remote source's settings, and the in-process worker of `--local-workers` (serving
    /// `dir` on a loopback port of its own), when asked for.
    pub fn config(
        &self,
        dir: &Path,
        client: String,
    ) -> anyhow::Result<(RemoteConfig, LocalWorkers)> {
        if !(self.deadline > 0.0
            && self.deadline.is_finite()
            && self.refresh > 0.0
            && self.refresh.is_finite())
        {
            bail!("--deadline and --refresh must be positive numbers of seconds");
        }
        let mut workers = self
            .remote
            .as_deref()
            .map(WorkerList::parse_addresses)
            .unwrap_or_default();
        workers.file.clone_from(&self.remote_file);
        let local = if self.local_workers > 0 {
            let server = Server::start(ServeConfig {
                listen: SocketAddr::from(([127, 0, 0, 1], 0)),
                workers: self.local_workers,
                log: false,
                ..ServeConfig::new(dir)
            })
            .context("starting the local workers")?;
            workers.addresses.push(server.local_addr().to_string());
            Some(server)
        } else {
            None
        };
        let config = RemoteConfig {
            token: self.token_file.as_deref().map(read_token).transpose()?,
            deadline: Duration::from_secs_f64(self.deadline),
            refresh: Duration::from_secs_f64(self.refresh),
            client_name: client,
            ..RemoteConfig::new(workers)
        };
        Ok((config, LocalWorkers(local)))
    }
}
