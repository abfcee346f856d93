//! [`RemoteStats`]: what the remote source counted, per worker and in all, and its fault log.

use std::collections::BTreeMap;
use std::time::Duration;

/// One worker address, as the remote source saw it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkerStats {
    /// The worker's name from its `Welcome` (empty before the first handshake).
    pub name: String,
    /// Connected now.
    pub connected: bool,
    /// Batches it answered.
    pub batches: u64,
    /// Images in them.
    pub images: u64,
    /// Payload bytes received from it.
    pub bytes: u64,
    /// Requests outstanding now.
    pub in_flight: usize,
    /// Connections to it that ended while the source ran.
    pub lost: u64,
    /// Times it was cut off for missing the deadline.
    pub deadline_misses: u64,
    /// `Failed` answers.
    pub refusals: u64,
    /// Connection attempts that failed.
    pub connect_failures: u64,
    /// The last error seen with it.
    pub last_error: Option<String>,
}

/// Fault-log entries kept (older ones are dropped, the counters keep counting).
const LOG_KEPT: usize = 1000;

/// Counters of the remote source since the loader was made.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RemoteStats {
    /// By address.
    pub workers: BTreeMap<String, WorkerStats>,
    /// Batches asked of another worker after theirs was lost or cut off.
    pub reassigned: u64,
    /// Batches asked of another worker after a `Failed` answer.
    pub retries: u64,
    /// What happened to workers, in order: "+12.345s 10.0.0.5:7000 lost: ...; 2 batches
    /// reassigned (next batch 0/14)".
    pub log: Vec<String>,
}

impl RemoteStats {
    /// The worker at `addr`, made on first use.
    pub(crate) fn worker(&mut self, addr: &str) -> &mut WorkerStats {
        self.workers.entry(addr.to_owned()).or_default()
    }

    /// Adds a fault-log entry at `since` the source's start.
    pub(crate) fn note(&mut self, since: Duration, text: String) {
        if self.log.len() == LOG_KEPT {
            self.log.remove(0);
        }
        self.log
            .push(format!("+{:.3}s {text}", since.as_secs_f64()));
    }

    /// Workers connected now.
    pub fn connected(&self) -> usize {
        self.workers.values().filter(|w| w.connected).count()
    }

    /// The Prometheus text exposition of these counters (after `# HELP`/`# TYPE` lines), each
    /// per-worker series labelled with the worker's address.
    pub fn prometheus(&self, out: &mut String) {
        use std::fmt::Write;
        let series: [Series; 8] = [
            (
                "shardfeed_remote_worker_batches_total",
                "counter",
                "Batches the worker answered.",
                |w| w.batches,
            ),
            (
                "shardfeed_remote_worker_images_total",
                "counter",
                "Images received from the worker.",
                |w| w.images,
            ),
            (
                "shardfeed_remote_worker_bytes_total",
                "counter",
                "Batch payload bytes received from the worker.",
                |w| w.bytes,
            ),
            (
                "shardfeed_remote_worker_in_flight",
                "gauge",
                "Requests outstanding at the worker.",
                |w| w.in_flight as u64,
            ),
            (
                "shardfeed_remote_worker_connected",
                "gauge",
                "1 when the worker is connected.",
                |w| u64::from(w.connected),
            ),
            (
                "shardfeed_remote_worker_lost_total",
                "counter",
                "Connections to the worker that ended.",
                |w| w.lost,
            ),
            (
                "shardfeed_remote_worker_deadline_misses_total",
                "counter",
                "Times the worker was cut off for missing the deadline.",
                |w| w.deadline_misses,
            ),
            (
                "shardfeed_remote_worker_refusals_total",
                "counter",
                "Failed answers from the worker.",
                |w| w.refusals,
            ),
        ];
        for (name, kind, help, get) in series {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (addr, w) in &self.workers {
                let _ = writeln!(out, "{name}{{worker=\"{}\"}} {}", escape(addr), get(w));
            }
        }
        let _ = writeln!(
            out,
            "# HELP shardfeed_remote_reassigned_total Batches asked of another worker after theirs was lost.\n# TYPE shardfeed_remote_reassigned_total counter\nshardfeed_remote_reassigned_total {}",
            self.reassigned
        );
        let _ = writeln!(
            out,
            "# HELP shardfeed_remote_retries_total Batches asked of another worker after a Failed answer.\n# TYPE shardfeed_remote_retries_total counter\nshardfeed_remote_retries_total {}",
            self.retries
        );
    }
}

/// A per-worker series: name, type, help, and how to read it.
type Series = (
    &'static str,
    &'static str,
    &'static str,
    fn(&WorkerStats) -> u64,
);

/// A label value, escaped as the exposition format asks.
pub(crate) fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_text_has_one_series_per_worker() {
        let mut s = RemoteStats::default();
        s.worker("10.0.0.1:7000").batches = 3;
        s.worker("w\"2:7000").connected = true;
        s.reassigned = 2;
        let mut out = String::new();
        s.prometheus(&mut out);
        assert!(out.contains("shardfeed_remote_worker_batches_total{worker=\"10.0.0.1:7000\"} 3\n"));
        assert!(out.contains("shardfeed_remote_worker_connected{worker=\"w\\\"2:7000\"} 1\n"));
        assert!(out.contains("shardfeed_remote_reassigned_total 2\n"));
        assert_eq!(s.connected(), 1);
    }

    #[test]
    fn the_fault_log_is_bounded() {
        let mut s = RemoteStats::default();
        for i in 0..LOG_KEPT + 5 {
            s.note(Duration::from_millis(i as u64), format!("event {i}"));
        }
        assert_eq!(s.log.len(), LOG_KEPT);
        assert!(s.log[0].ends_with("event 5"));
    }
}
