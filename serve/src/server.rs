//! [`Server`]: the listener and the metrics endpoint, on a tokio runtime of their own thread.
//!
//! - Loopback unless told otherwise; any other address requires a shared secret.
//! - At most `max_clients` connections at once (a semaphore); more are closed at accept.
//! - Accept errors (out of file descriptors, say) back off and go on; a bad connection is
//!   closed with its reason logged and never touches the others.

use crate::catalog::{Catalog, CatalogError};
use crate::metrics::Metrics;
use crate::session::{self, Shared};
use shardfeed_wire::auth::Token;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

/// How a worker serves. [`ServeConfig::new`] has the defaults.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// A dataset, or a directory holding `train/` and `val/`.
    pub dir: PathBuf,
    /// Where to listen. Default `127.0.0.1:7000`.
    pub listen: SocketAddr,
    /// The shared secret clients must prove they hold; required off loopback.
    pub token: Option<Token>,
    /// Decode threads per client; 0: every core. Default 0.
    pub workers: usize,
    /// Requests one client may have outstanding. Default 4.
    pub max_in_flight: u32,
    /// Clients at once. Default 64.
    pub max_clients: usize,
    /// Where to serve Prometheus text (`GET /metrics`) and `GET /healthz`.
    pub metrics: Option<SocketAddr>,
    /// Time allowed for a client's handshake. Default 10 s.
    pub handshake_timeout: Duration,
    /// Time allowed for writing one batch to a client. Default 60 s.
    pub write_timeout: Duration,
    /// Log connections and their ends on stderr. Default true.
    pub log: bool,
    /// Benchmark mode: answer with ready-made pixels of the right shape instead of decoding
    /// (measures the transport alone; the bytes are not the batches asked for). Default false.
    pub replay: bool,
}

impl ServeConfig {
    /// The defaults, for the dataset(s) in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> ServeConfig {
        ServeConfig {
            dir: dir.into(),
            listen: SocketAddr::from(([127, 0, 0, 1], 7000)),
            token: None,
            workers: 0,
            max_in_flight: 4,
            max_clients: 64,
            metrics: None,
            handshake_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(60),
            log: true,
            replay: false,
        }
    }
}

/// A worker that cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The datasets.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// A non-loopback address without a secret.
    #[error("refusing to listen on {0} without a shared secret: pass --token-file (loopback needs none)")]
    NoToken(SocketAddr),
    /// Binding failed.
    #[error("cannot listen on {addr}: {error}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        error: std::io::Error,
    },
    /// The runtime or its thread could not start.
    #[error("cannot start the server: {0}")]
    Start(std::io::Error),
    /// Settings out of range.
    #[error("invalid setting: {0}")]
    Config(&'static str),
}

/// A running worker. Dropping it (or [`Server::shutdown`]) stops it.
pub struct Server {
    addr: SocketAddr,
    metrics_addr: Option<SocketAddr>,
    metrics: Arc<Metrics>,
    stop: Option<watch::Sender<bool>>,
    thread: Option<JoinHandle<()>>,
}

fn log_line(enabled: bool, text: &str) {
    if enabled {
        let _ = writeln!(std::io::stderr(), "shardfeed serve: {text}");
    }
}

fn bind(addr: SocketAddr) -> Result<std::net::TcpListener, ServeError> {
    let l = std::net::TcpListener::bind(addr).map_err(|error| ServeError::Bind { addr, error })?;
    l.set_nonblocking(true)
        .map_err(|error| ServeError::Bind { addr, error })?;
    Ok(l)
}

impl Server {
    /// Opens the datasets, binds, and starts serving on a thread of its own.
    ///
    /// # Errors
    ///
    /// [`ServeError`]: the datasets, the address, a missing secret.
    pub fn start(config: ServeConfig) -> Result<Server, ServeError> {
        if !config.listen.ip().is_loopback() && config.token.is_none() {
            return Err(ServeError::NoToken(config.listen));
        }
        if config.max_in_flight == 0 || config.max_clients == 0 {
            return Err(ServeError::Config(
                "max-in-flight and max-clients must be at least 1",
            ));
        }
        let catalog = Catalog::open(&config.dir)?;
        let listener = bind(config.listen)?;
        let addr = listener.local_addr().map_err(|error| ServeError::Bind {
            addr: config.listen,
            error,
        })?;
        let metrics_listener = config.metrics.map(bind).transpose()?;
        let metrics_addr = match &metrics_listener {
            Some(l) => Some(l.local_addr().map_err(ServeError::Start)?),
            None => None,
        };
        let workers = if config.workers == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            config.workers
        };
        log_line(
            config.log,
            &format!(
                "listening on {addr}, serving {}, {workers} decode threads per client",
                catalog.describe()
            ),
        );
        let metrics = Arc::new(Metrics::default());
        let shared = Arc::new(Shared {
            catalog,
            token: config.token.clone(),
            name: addr.to_string(),
            workers,
            max_in_flight: config.max_in_flight,
            handshake_timeout: config.handshake_timeout,
            write_timeout: config.write_timeout,
            replay: config.replay,
            metrics: Arc::clone(&metrics),
        });
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("shardfeed-serve-io")
            .enable_all()
            .build()
            .map_err(ServeError::Start)?;
        let (stop_tx, stop_rx) = watch::channel(false);
        let (max_clients, log) = (config.max_clients, config.log);
        let thread = std::thread::Builder::new()
            .name("shardfeed-serve".into())
            .spawn(move || {
                runtime.block_on(async move {
                    if let Some(l) = metrics_listener {
                        tokio::spawn(metrics_endpoint(
                            l,
                            Arc::clone(&shared.metrics),
                            stop_rx.clone(),
                        ));
                    }
                    accept_loop(listener, shared, max_clients, log, stop_rx).await;
                });
                // Sessions still running are cancelled with the runtime; their loader threads
                // end when their channels close.
                runtime.shutdown_timeout(Duration::from_secs(1));
            })
            .map_err(ServeError::Start)?;
        Ok(Server {
            addr,
            metrics_addr,
            metrics,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    /// The address it listens on (the port chosen when asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The metrics endpoint's address.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// The counters.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Blocks until the server stops (it stops only when shut down).
    pub fn wait(mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    /// Stops accepting, closes every connection, and waits.
    pub fn shutdown(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(true);
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop_now();
    }
}

async fn accept_loop(
    listener: std::net::TcpListener,
    shared: Arc<Shared>,
    max_clients: usize,
    log: bool,
    mut stop: watch::Receiver<bool>,
) {
    let listener = match TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            log_line(true, &format!("cannot start the listener: {e}"));
            return;
        }
    };
    let slots = Arc::new(Semaphore::new(max_clients));
    let mut backoff = Duration::from_millis(10);
    loop {
        let accepted = tokio::select! {
            _ = stop.changed() => return,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(a) => {
                backoff = Duration::from_millis(10);
                a
            }
            Err(e) => {
                log_line(
                    log,
                    &format!("accept failed ({e}); retrying in {backoff:?}"),
                );
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        shared
            .metrics
            .connections
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
            log_line(
                log,
                &format!("{peer}: closed: already serving {max_clients} clients"),
            );
            drop(stream);
            continue;
        };
        let shared = Arc::clone(&shared);
        let mut stop = stop.clone();
        tokio::spawn(async move {
            log_line(log, &format!("{peer}: connected"));
            let outcome = tokio::select! {
                o = session::run(stream, Arc::clone(&shared)) => o,
                _ = stop.changed() => Ok("server shutting down".to_owned()),
            };
            match outcome {
                Ok(how) => log_line(log, &format!("{peer}: closed: {how}")),
                Err(why) => log_line(log, &format!("{peer}: closed: {why}")),
            }
            drop(permit);
        });
    }
}

/// A minimal HTTP/1.x endpoint: `GET /metrics` (Prometheus text) and `GET /healthz`.
async fn metrics_endpoint(
    listener: std::net::TcpListener,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
) {
    let Ok(listener) = TcpListener::from_std(listener) else {
        return;
    };
    loop {
        let accepted = tokio::select! {
            _ = stop.changed() => return,
            a = listener.accept() => a,
        };
        let Ok((mut stream, _)) = accepted else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let metrics = Arc::clone(&metrics);
        tokio::spawn(async move {
            let mut head = [0u8; 1024];
            let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut head)).await;
            let Ok(Ok(n)) = read else { return };
            let first = String::from_utf8_lossy(&head[..n]);
            let (status, body) = if first.starts_with("GET /metrics") {
                ("200 OK", metrics.prometheus())
            } else if first.starts_with("GET /healthz") {
                ("200 OK", "ok\n".to_owned())
            } else {
                ("404 Not Found", "GET /metrics or /healthz\n".to_owned())
            };
            let response = format!(
                "HTTP/1.1 {status}\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
        });
    }
}
