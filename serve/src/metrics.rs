//! The worker's counters: per client (session) and in all, read by the metrics endpoint as
//! Prometheus text.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// One client's counters (shared by its session and the metrics endpoint).
#[derive(Debug, Default)]
pub struct ClientCounters {
    /// Batches sent.
    pub batches: AtomicU64,
    /// Images in them.
    pub images: AtomicU64,
    /// Payload bytes sent.
    pub bytes: AtomicU64,
    /// Requests received and not yet answered.
    pub in_flight: AtomicU64,
    /// `Failed` answers.
    pub failed: AtomicU64,
}

/// All counters of a worker.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Connections accepted.
    pub connections: AtomicU64,
    /// Connections closed for a protocol error, a failed handshake or a refusal.
    pub rejected: AtomicU64,
    /// Connections refused at the handshake's authentication.
    pub auth_failures: AtomicU64,
    clients: Mutex<BTreeMap<String, Arc<ClientCounters>>>,
}

impl Metrics {
    /// The counters of client `name` (made on first use; a client that reconnects keeps its
    /// series).
    pub fn client(&self, name: &str) -> Arc<ClientCounters> {
        let mut clients = self.clients.lock().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(clients.entry(name.to_owned()).or_default())
    }

    /// The Prometheus text exposition.
    pub fn prometheus(&self) -> String {
        let mut out = String::new();
        let totals = [
            (
                "shardfeed_serve_connections_total",
                "Connections accepted.",
                &self.connections,
            ),
            (
                "shardfeed_serve_rejected_total",
                "Connections closed for a protocol error or a refused handshake.",
                &self.rejected,
            ),
            (
                "shardfeed_serve_auth_failures_total",
                "Handshakes that failed authentication.",
                &self.auth_failures,
            ),
        ];
        for (name, help, v) in totals {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                v.load(Ordering::Relaxed)
            );
        }
        let clients = self.clients.lock().unwrap_or_else(PoisonError::into_inner);
        let series: [Series; 5] = [
            (
                "shardfeed_serve_client_batches_total",
                "counter",
                "Batches sent to the client.",
                |c| &c.batches,
            ),
            (
                "shardfeed_serve_client_images_total",
                "counter",
                "Images sent to the client.",
                |c| &c.images,
            ),
            (
                "shardfeed_serve_client_bytes_total",
                "counter",
                "Batch payload bytes sent to the client.",
                |c| &c.bytes,
            ),
            (
                "shardfeed_serve_client_in_flight",
                "gauge",
                "Requests from the client not yet answered.",
                |c| &c.in_flight,
            ),
            (
                "shardfeed_serve_client_failed_total",
                "counter",
                "Failed answers to the client.",
                |c| &c.failed,
            ),
        ];
        for (name, kind, help, get) in series {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (client, c) in clients.iter() {
                let _ = writeln!(
                    out,
                    "{name}{{client=\"{}\"}} {}",
                    escape(client),
                    get(c).load(Ordering::Relaxed)
                );
            }
        }
        out
    }
}

/// A per-client series: name, type, help, and which counter.
type Series = (
    &'static str,
    &'static str,
    &'static str,
    fn(&ClientCounters) -> &AtomicU64,
);

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_get_their_own_series() {
        let m = Metrics::default();
        m.client("rank0").images.fetch_add(64, Ordering::Relaxed);
        m.client("rank0").images.fetch_add(64, Ordering::Relaxed);
        m.client("rank1").batches.fetch_add(1, Ordering::Relaxed);
        m.connections.fetch_add(2, Ordering::Relaxed);
        let text = m.prometheus();
        assert!(
            text.contains("shardfeed_serve_client_images_total{client=\"rank0\"} 128\n"),
            "{text}"
        );
        assert!(text.contains("shardfeed_serve_client_batches_total{client=\"rank1\"} 1\n"));
        assert!(text.contains("shardfeed_serve_connections_total 2\n"));
    }
}
