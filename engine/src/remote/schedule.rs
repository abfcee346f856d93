//! [`Schedule`]: which batch is asked of which worker, as pure bookkeeping (no sockets, no
//! clock of its own: the caller passes `now`), so every rule of the remote source's failure
//! handling is tested on its own.
//!
//! - Batches wait in sequence order and are given, earliest first, to the connected worker with
//!   the fewest requests outstanding (and room for one more).
//! - A batch is outstanding at one worker at a time. When the worker is lost (disconnected, or
//!   cut off because it missed the deadline) its batches go back to the queue, to be asked of
//!   another: a reassignment.
//! - A worker that answers `Failed` has the batch asked of another; after [`MAX_REFUSALS`]
//!   such answers the batch fails with the last reason (a strict-mode failure is the same on
//!   every worker).

use crate::loader::Position;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// A connection's id, unique for the source's life.
pub(crate) type ConnId = u64;

/// `Failed` answers for one batch before the batch fails.
pub(crate) const MAX_REFUSALS: usize = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Assignment {
    conn: ConnId,
    request: u64,
    sent: Instant,
}

#[derive(Debug)]
struct Entry {
    position: Position,
    assigned: Option<Assignment>,
    /// (worker, reason) of each `Failed` answer.
    refusals: Vec<(String, String)>,
}

#[derive(Debug)]
struct Worker {
    name: String,
    cap: usize,
    in_flight: usize,
    /// Disconnected by us (deadline): its batches wait for its reader to end.
    closing: bool,
}

/// A request to send: batch `position` (sequence `seq`) to `conn` as request `request`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Send {
    pub conn: ConnId,
    pub request: u64,
    pub seq: u64,
    pub position: Position,
}

/// What a `Failed` answer leads to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The batch waits for another worker.
    Retry,
    /// The batch fails: every refusal, as "worker: reason".
    GiveUp {
        seq: u64,
        position: Position,
        reasons: Vec<String>,
    },
}

/// The bookkeeping.
#[derive(Debug, Default)]
pub(crate) struct Schedule {
    entries: BTreeMap<u64, Entry>,
    workers: BTreeMap<ConnId, Worker>,
    next_request: u64,
}

impl Schedule {
    /// A worker that completed its handshake, taking up to `cap` requests at once.
    pub fn add_worker(&mut self, conn: ConnId, name: &str, cap: usize) {
        self.workers.insert(
            conn,
            Worker {
                name: name.to_owned(),
                cap: cap.max(1),
                in_flight: 0,
                closing: false,
            },
        );
    }

    /// A batch to fetch.
    pub fn push(&mut self, seq: u64, position: Position) {
        self.entries.insert(
            seq,
            Entry {
                position,
                assigned: None,
                refusals: Vec::new(),
            },
        );
    }

    /// Batches not yet answered.
    pub fn pending(&self) -> usize {
        self.entries.len()
    }

    /// The earliest batch not yet answered.
    pub fn earliest(&self) -> Option<(u64, Position)> {
        self.entries.iter().next().map(|(s, e)| (*s, e.position))
    }

    /// Workers connected and not being cut off.
    pub fn live_workers(&self) -> usize {
        self.workers.values().filter(|w| !w.closing).count()
    }

    /// Requests outstanding at `conn`.
    pub fn in_flight(&self, conn: ConnId) -> usize {
        self.workers.get(&conn).map_or(0, |w| w.in_flight)
    }

    /// Gives waiting batches, earliest first, to the least busy workers with room; a worker that
    /// refused a batch gets it only when no other can take it.
    pub fn assign(&mut self, now: Instant) -> Vec<Send> {
        let mut sends = Vec::new();
        for (&seq, entry) in self.entries.iter_mut() {
            if entry.assigned.is_some() {
                continue;
            }
            let refused = |w: &Worker| entry.refusals.iter().any(|(n, _)| *n == w.name);
            let pick = self
                .workers
                .iter()
                .filter(|(_, w)| !w.closing && w.in_flight < w.cap)
                .min_by_key(|(id, w)| (refused(w), w.in_flight, **id))
                .map(|(id, _)| *id);
            let Some(conn) = pick else { break };
            let request = self.next_request;
            self.next_request += 1;
            entry.assigned = Some(Assignment {
                conn,
                request,
                sent: now,
            });
            if let Some(w) = self.workers.get_mut(&conn) {
                w.in_flight += 1;
            }
            sends.push(Send {
                conn,
                request,
                seq,
                position: entry.position,
            });
        }
        sends
    }

    fn find(&self, conn: ConnId, request: u64) -> Option<u64> {
        self.entries
            .iter()
            .find(|(_, e)| {
                e.assigned
                    .is_some_and(|a| a.conn == conn && a.request == request)
            })
            .map(|(s, _)| *s)
    }

    fn release(&mut self, conn: ConnId) {
        if let Some(w) = self.workers.get_mut(&conn) {
            w.in_flight = w.in_flight.saturating_sub(1);
        }
    }

    /// `conn` answered `request`: the batch is done. Its sequence number, or `None` when the
    /// request is not outstanding there (a protocol error by the worker).
    pub fn answered(&mut self, conn: ConnId, request: u64) -> Option<u64> {
        let seq = self.find(conn, request)?;
        self.entries.remove(&seq);
        self.release(conn);
        Some(seq)
    }

    /// `conn` answered `Failed` to `request`.
    pub fn refused(&mut self, conn: ConnId, request: u64, reason: &str) -> Option<Refusal> {
        let seq = self.find(conn, request)?;
        self.release(conn);
        let name = self
            .workers
            .get(&conn)
            .map_or_else(String::new, |w| w.name.clone());
        let entry = self.entries.get_mut(&seq)?;
        entry.assigned = None;
        entry.refusals.push((name, reason.to_owned()));
        if entry.refusals.len() >= MAX_REFUSALS {
            return Some(Refusal::GiveUp {
                seq,
                position: entry.position,
                reasons: entry
                    .refusals
                    .iter()
                    .map(|(w, r)| format!("{w}: {r}"))
                    .collect(),
            });
        }
        Some(Refusal::Retry)
    }

    /// The connection to `conn` ended: its outstanding batches wait for another worker. How
    /// many were outstanding (the reassignments).
    pub fn worker_lost(&mut self, conn: ConnId) -> u64 {
        self.workers.remove(&conn);
        let mut n = 0;
        for e in self.entries.values_mut() {
            if e.assigned.is_some_and(|a| a.conn == conn) {
                e.assigned = None;
                n += 1;
            }
        }
        n
    }

    /// Workers with a request outstanding for longer than `deadline`, not already being cut
    /// off; they are marked as being cut off.
    pub fn overdue(&mut self, now: Instant, deadline: Duration) -> Vec<ConnId> {
        let mut late: Vec<ConnId> = self
            .entries
            .values()
            .filter_map(|e| e.assigned)
            .filter(|a| now.saturating_duration_since(a.sent) > deadline)
            .map(|a| a.conn)
            .filter(|c| self.workers.get(c).is_some_and(|w| !w.closing))
            .collect();
        late.sort_unstable();
        late.dedup();
        for c in &late {
            if let Some(w) = self.workers.get_mut(c) {
                w.closing = true;
            }
        }
        late
    }

    /// Marks `conn` as being cut off (a failed write): it gets no more requests.
    pub fn close(&mut self, conn: ConnId) {
        if let Some(w) = self.workers.get_mut(&conn) {
            w.closing = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(b: u64) -> Position {
        Position::new(0, b)
    }

    #[test]
    fn batches_go_earliest_first_to_the_least_busy_worker() {
        let now = Instant::now();
        let mut s = Schedule::default();
        s.add_worker(1, "a", 2);
        s.add_worker(2, "b", 2);
        for b in 0..5 {
            s.push(b, p(b));
        }
        let sent = s.assign(now);
        let conns: Vec<_> = sent.iter().map(|x| (x.seq, x.conn)).collect();
        assert_eq!(
            conns,
            [(0, 1), (1, 2), (2, 1), (3, 2)],
            "alternating, up to the caps"
        );
        assert!(s.assign(now).is_empty(), "no room left");
        assert_eq!(s.answered(2, sent[1].request), Some(1));
        let next = s.assign(now);
        assert_eq!((next[0].seq, next[0].conn), (4, 2));
        assert_eq!(s.answered(1, 999), None, "an answer to no request");
    }

    #[test]
    fn a_lost_worker_s_batches_are_reassigned_to_the_others() {
        let now = Instant::now();
        let mut s = Schedule::default();
        s.add_worker(1, "a", 4);
        s.add_worker(2, "b", 4);
        for b in 0..4 {
            s.push(b, p(b));
        }
        s.assign(now);
        assert_eq!(s.worker_lost(1), 2);
        assert_eq!(s.live_workers(), 1);
        let again = s.assign(now);
        assert_eq!(
            again.iter().map(|x| (x.seq, x.conn)).collect::<Vec<_>>(),
            [(0, 2), (2, 2)]
        );
        assert_eq!(s.in_flight(2), 4);
    }

    #[test]
    fn a_worker_past_the_deadline_is_cut_off_once() {
        let t0 = Instant::now();
        let mut s = Schedule::default();
        s.add_worker(1, "a", 1);
        s.add_worker(2, "b", 1);
        s.push(0, p(0));
        s.assign(t0);
        let later = t0 + Duration::from_secs(3);
        s.push(1, p(1));
        s.assign(later);
        assert_eq!(s.overdue(later, Duration::from_secs(2)), [1]);
        assert!(
            s.overdue(later, Duration::from_secs(2)).is_empty(),
            "already closing"
        );
        assert_eq!(s.live_workers(), 1);
        // Its batch waits for its reader to end, then goes to the other worker.
        assert!(s.assign(later).is_empty());
        assert_eq!(s.worker_lost(1), 1);
        assert_eq!(s.earliest(), Some((0, p(0))));
    }

    #[test]
    fn refused_batches_go_elsewhere_then_fail_with_every_reason() {
        let now = Instant::now();
        let mut s = Schedule::default();
        s.add_worker(1, "a", 1);
        s.add_worker(2, "b", 1);
        s.push(0, p(7));
        let first = s.assign(now)[0];
        assert_eq!(first.conn, 1);
        assert_eq!(
            s.refused(1, first.request, "bad record"),
            Some(Refusal::Retry)
        );
        let second = s.assign(now)[0];
        assert_eq!(second.conn, 2, "the worker that refused it comes last");
        assert_eq!(
            s.refused(2, second.request, "bad record"),
            Some(Refusal::Retry)
        );
        let third = s.assign(now)[0];
        match s.refused(third.conn, third.request, "bad record") {
            Some(Refusal::GiveUp {
                seq,
                position,
                reasons,
            }) => {
                assert_eq!((seq, position), (0, p(7)));
                assert_eq!(reasons.len(), MAX_REFUSALS);
                assert_eq!(reasons[0], "a: bad record");
            }
            other => panic!("{other:?}"),
        }
    }
}
