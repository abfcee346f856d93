//! The coordinator thread of a remote stream: it stands where the local stream's dispatcher
//! does. It walks the batch positions in order, takes a free buffer from the pool for each
//! (back-pressure, as locally), asks workers for them through [`Schedule`], and sends each
//! answered batch on to the consumer, which puts them back in order. It also connects to the
//! workers (one thread each for connecting and reading), re-reads the worker list, cuts off
//! workers that miss the deadline, and fails the stream when no worker can answer.

use crate::loader::batch::{Batch, BatchState};
use crate::loader::dispatch::OrderCache;
use crate::loader::{BatchError, Position, TransformSchedule};
use crate::remote::connection::{self, Connected, Event, HelloParts, InFlight, InFlightMap};
use crate::remote::schedule::{ConnId, Refusal, Schedule};
use crate::remote::{RemoteConfig, RemoteError, RemoteStats};
use crossbeam_channel::{never, select, unbounded, Receiver, Sender, TryRecvError};
use shardfeed_wire::message::ExpectedBatch;
use std::collections::{BTreeMap, HashMap};
use std::net::{Shutdown, TcpStream};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often the coordinator wakes when nothing happens (deadlines, refresh).
const TICK: Duration = Duration::from_millis(20);
/// The longest wait before a lost worker is tried again.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// Everything the coordinator needs.
pub(crate) struct Coordinator {
    pub config: RemoteConfig,
    pub hello: HelloParts,
    pub orders: OrderCache,
    pub schedule: TransformSchedule,
    pub batch_size: usize,
    pub batches_per_epoch: u64,
    pub start: Position,
    pub end_epoch: Option<u64>,
    pub dataset_len: u64,
    pub pool_rx: Receiver<Arc<BatchState>>,
    pub pool_tx: Sender<Arc<BatchState>>,
    pub stop_rx: Receiver<()>,
    pub done: Sender<Batch>,
    pub stats: Arc<Mutex<RemoteStats>>,
    /// When the loader was made (the fault log's clock).
    pub started: Instant,
}

/// One worker address.
#[derive(Default)]
struct Address {
    conn: Option<ConnId>,
    connecting: bool,
    failures: u32,
    retry_at: Option<Instant>,
    /// Still in the worker list.
    listed: bool,
}

/// One open connection.
struct Conn {
    addr: String,
    writer: TcpStream,
    in_flight: InFlightMap,
    reader: Option<JoinHandle<()>>,
}

/// A batch being fetched.
struct Fetch {
    state: Arc<BatchState>,
    expected: ExpectedBatch,
}

struct Run {
    c: Coordinator,
    events_tx: Sender<Event>,
    addresses: BTreeMap<String, Address>,
    conns: HashMap<ConnId, Conn>,
    fetches: HashMap<u64, Fetch>,
    sched: Schedule,
    next_conn: ConnId,
    list_error: Option<String>,
    /// Each connection thread (connecting, then reading), by connection.
    threads: HashMap<ConnId, JoinHandle<()>>,
}

impl Coordinator {
    /// Runs until the last epoch is delivered, an error is delivered, or the stream is torn
    /// down; then closes every connection, waits for the readers, and returns every buffer to
    /// the pool.
    pub fn run(self) {
        let (events_tx, events_rx) = unbounded();
        let mut run = Run {
            c: self,
            events_tx,
            addresses: BTreeMap::new(),
            conns: HashMap::new(),
            fetches: HashMap::new(),
            sched: Schedule::default(),
            next_conn: 1,
            list_error: None,
            threads: HashMap::new(),
        };
        run.main_loop(&events_rx);
        run.shut_down(&events_rx);
    }
}

impl Run {
    fn at_end(&self, p: Position) -> bool {
        self.c.end_epoch.is_some_and(|end| p.epoch >= end)
    }

    fn stats(&self) -> std::sync::MutexGuard<'_, RemoteStats> {
        self.c.stats.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn note(&self, text: String) {
        let since = self.c.started.elapsed();
        self.stats().note(since, text);
    }

    fn main_loop(&mut self, events: &Receiver<Event>) {
        let mut cursor = self.c.start;
        let mut seq = 0u64;
        let mut next_refresh = Instant::now();
        let mut stalled_since: Option<Instant> = None;
        loop {
            if self.c.stop_rx.try_recv() == Err(TryRecvError::Disconnected) {
                return;
            }
            let now = Instant::now();
            if now >= next_refresh {
                self.refresh(now);
                next_refresh = now + self.c.config.refresh;
            }
            for conn in self.sched.overdue(now, self.c.config.deadline) {
                self.cut_off(conn, "missed the deadline");
            }
            if self.sched.pending() > 0 && self.sched.live_workers() == 0 {
                let since = *stalled_since.get_or_insert(now);
                if now.duration_since(since) > self.c.config.deadline {
                    let error = self.no_workers_error();
                    self.fail_earliest(error);
                    return;
                }
            } else {
                stalled_since = None;
            }
            self.send_requests(now);
            if self.at_end(cursor) && self.sched.pending() == 0 {
                return;
            }
            let pool = if self.at_end(cursor) {
                never()
            } else {
                self.c.pool_rx.clone()
            };
            select! {
                recv(events) -> ev => {
                    if let Ok(ev) = ev {
                        if let Err(e) = self.handle(ev) {
                            self.fail_earliest(e);
                            return;
                        }
                    }
                }
                recv(pool) -> state => {
                    let Ok(state) = state else { return };
                    match self.prepare(&state, cursor, seq) {
                        Ok(expected) => {
                            self.fetches.insert(seq, Fetch { state, expected });
                            self.sched.push(seq, cursor);
                        }
                        Err(e) => {
                            self.fail(state, cursor, seq, e);
                            return;
                        }
                    }
                    seq += 1;
                    cursor = cursor.next(self.c.batches_per_epoch);
                }
                recv(self.c.stop_rx) -> _ => return,
                default(TICK) => {}
            }
        }
    }

    /// Re-reads the worker list and starts connecting to listed workers that have no
    /// connection and whose back-off has passed.
    fn refresh(&mut self, now: Instant) {
        match self.c.config.workers.read() {
            Ok(list) => {
                self.list_error = None;
                for a in self.addresses.values_mut() {
                    a.listed = false;
                }
                for addr in list {
                    self.addresses.entry(addr).or_default().listed = true;
                }
            }
            Err(e) => {
                if self.list_error.as_ref() != Some(&e) {
                    self.note(format!(
                        "worker list unreadable (keeping the last one): {e}"
                    ));
                }
                self.list_error = Some(e);
            }
        }
        let due: Vec<String> = self
            .addresses
            .iter()
            .filter(|(_, a)| a.listed && a.conn.is_none() && !a.connecting)
            .filter(|(_, a)| a.retry_at.is_none_or(|t| now >= t))
            .map(|(k, _)| k.clone())
            .collect();
        for addr in due {
            self.start_connect(addr);
        }
    }

    fn start_connect(&mut self, addr: String) {
        let conn = self.next_conn;
        self.next_conn += 1;
        if let Some(a) = self.addresses.get_mut(&addr) {
            a.connecting = true;
        }
        let (hello, timeout, events) = (
            self.c.hello.clone(),
            self.c.config.connect_timeout,
            self.events_tx.clone(),
        );
        let name = format!("shardfeed-remote-{conn}");
        let addr_for_error = addr.clone();
        let spawned =
            std::thread::Builder::new().name(name).spawn(move || {
                match connection::connect(&addr, timeout, &hello) {
                    Ok((stream, welcome)) => {
                        let Ok(writer) = stream.try_clone() else {
                            let _ = events.send(Event::ConnectFailed {
                                conn,
                                addr,
                                error: "cannot clone the socket".into(),
                            });
                            return;
                        };
                        let in_flight: InFlightMap = Arc::default();
                        let connected = Connected {
                            conn,
                            addr,
                            welcome,
                            writer,
                            in_flight: Arc::clone(&in_flight),
                        };
                        if events.send(Event::Connected(Box::new(connected))).is_ok() {
                            connection::read_answers(conn, stream, &in_flight, &events);
                        }
                    }
                    Err(error) => {
                        let _ = events.send(Event::ConnectFailed { conn, addr, error });
                    }
                }
            });
        match spawned {
            Ok(h) => {
                self.threads.insert(conn, h);
            }
            Err(e) => {
                if let Some(a) = self.addresses.get_mut(&addr_for_error) {
                    a.connecting = false;
                    a.retry_at = Some(Instant::now() + MAX_BACKOFF);
                }
                self.note(format!(
                    "{addr_for_error}: cannot start a connection thread: {e}"
                ));
            }
        }
    }
}

impl Run {
    fn backoff(failures: u32, refresh: Duration) -> Duration {
        let factor = 1u32 << failures.min(6);
        (refresh * factor / 2).min(MAX_BACKOFF)
    }

    /// Handles one event from a connection thread. An error fails the stream.
    fn handle(&mut self, ev: Event) -> Result<(), BatchError> {
        let now = Instant::now();
        match ev {
            Event::Connected(c) => {
                let Connected {
                    conn,
                    addr,
                    welcome,
                    writer,
                    in_flight,
                } = *c;
                let wanted = self
                    .addresses
                    .get(&addr)
                    .is_some_and(|a| a.listed && a.conn.is_none());
                if !wanted {
                    let _ = writer.shutdown(Shutdown::Both);
                    if let Some(a) = self.addresses.get_mut(&addr) {
                        a.connecting = false;
                    }
                    return Ok(());
                }
                let cap = match self.c.config.max_in_flight {
                    0 => welcome.max_in_flight as usize,
                    n => n.min(welcome.max_in_flight as usize),
                };
                if let Some(a) = self.addresses.get_mut(&addr) {
                    a.conn = Some(conn);
                    a.connecting = false;
                    a.failures = 0;
                }
                self.sched.add_worker(conn, &addr, cap);
                {
                    let mut stats = self.stats();
                    let w = stats.worker(&addr);
                    w.connected = true;
                    w.name.clone_from(&welcome.worker);
                }
                self.note(format!(
                    "{addr} connected: worker {}, {} cores, {cap} requests in flight",
                    welcome.worker, welcome.cores
                ));
                self.conns.insert(
                    conn,
                    Conn {
                        addr,
                        writer,
                        in_flight,
                        reader: self.threads.remove(&conn),
                    },
                );
            }
            Event::ConnectFailed { conn, addr, error } => {
                // The thread has ended.
                self.threads.remove(&conn);
                let refresh = self.c.config.refresh;
                let mut first = false;
                if let Some(a) = self.addresses.get_mut(&addr) {
                    a.connecting = false;
                    a.failures += 1;
                    first = a.failures == 1;
                    a.retry_at = Some(now + Self::backoff(a.failures, refresh));
                }
                {
                    let mut stats = self.stats();
                    let w = stats.worker(&addr);
                    w.connect_failures += 1;
                    w.last_error = Some(error.clone());
                }
                if first {
                    self.note(format!("{addr} cannot be used: {error}"));
                }
                if error.starts_with("refused") {
                    // A worker for other data or another version is a setup error; say so at once
                    // when it is the only one.
                    let others = self
                        .addresses
                        .values()
                        .any(|a| a.conn.is_some() || a.connecting);
                    if !others && self.addresses.len() == 1 {
                        return Err(BatchError::Remote(RemoteError::Refused {
                            worker: addr,
                            reason: error,
                        }));
                    }
                }
            }
            Event::Answered { conn, request } => {
                let Some(seq) = self.sched.answered(conn, request) else {
                    return Ok(());
                };
                let Some(fetch) = self.fetches.remove(&seq) else {
                    return Ok(());
                };
                let addr = self
                    .conns
                    .get(&conn)
                    .map(|c| c.addr.clone())
                    .unwrap_or_default();
                let mut buf = fetch.state.lock();
                let finished = std::mem::take(&mut *buf);
                drop(buf);
                {
                    let in_flight = self.sched.in_flight(conn);
                    let mut stats = self.stats();
                    let w = stats.worker(&addr);
                    w.batches += 1;
                    w.images += finished.len as u64;
                    w.bytes += finished.len as u64 * u64::from(fetch.expected.side).pow(2) * 3;
                    w.in_flight = in_flight;
                }
                let _ = self
                    .c
                    .done
                    .send(Batch::new(finished, fetch.state, self.c.pool_tx.clone()));
            }
            Event::Refused {
                conn,
                request,
                reason,
            } => {
                let addr = self
                    .conns
                    .get(&conn)
                    .map(|c| c.addr.clone())
                    .unwrap_or_default();
                self.stats().worker(&addr).refusals += 1;
                match self.sched.refused(conn, request, &reason) {
                    Some(Refusal::Retry) => {
                        self.stats().retries += 1;
                        self.note(format!(
                            "{addr} failed a batch ({reason}); asking another worker"
                        ));
                    }
                    Some(Refusal::GiveUp {
                        position, reasons, ..
                    }) => {
                        return Err(BatchError::Remote(RemoteError::BatchFailed {
                            epoch: position.epoch,
                            batch: position.batch,
                            reasons,
                        }));
                    }
                    None => {}
                }
            }
            Event::Lost { conn, error } => {
                let Some(c) = self.conns.remove(&conn) else {
                    self.threads.remove(&conn);
                    return Ok(());
                };
                if let Some(r) = c.reader {
                    let _ = r.join();
                }
                let n = self.sched.worker_lost(conn);
                let refresh = self.c.config.refresh;
                if let Some(a) = self.addresses.get_mut(&c.addr) {
                    a.conn = None;
                    a.failures += 1;
                    a.retry_at = Some(now + Self::backoff(a.failures, refresh));
                }
                {
                    let mut stats = self.stats();
                    stats.reassigned += n;
                    let w = stats.worker(&c.addr);
                    w.connected = false;
                    w.lost += 1;
                    w.in_flight = 0;
                    w.last_error = Some(error.clone());
                }
                let next = self.sched.earliest().map_or_else(String::new, |(_, p)| {
                    format!(
                        " (next batch to deliver: epoch {} batch {})",
                        p.epoch, p.batch
                    )
                });
                self.note(format!(
                    "{} lost: {error}; {n} batches reassigned{next}",
                    c.addr
                ));
            }
        }
        Ok(())
    }

    /// Sends every request the schedule assigns now; a connection that cannot take one is cut
    /// off.
    fn send_requests(&mut self, now: Instant) {
        for s in self.sched.assign(now) {
            let Some(fetch) = self.fetches.get(&s.seq) else {
                continue;
            };
            let Some(conn) = self.conns.get_mut(&s.conn) else {
                continue;
            };
            conn.in_flight
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(
                    s.request,
                    InFlight {
                        state: Arc::clone(&fetch.state),
                        expected: fetch.expected,
                    },
                );
            let sent = connection::send_request(
                &mut conn.writer,
                s.request,
                s.position.epoch,
                s.position.batch,
            );
            let addr = conn.addr.clone();
            self.stats().worker(&addr).in_flight = self.sched.in_flight(s.conn);
            if let Err(e) = sent {
                self.cut_off(s.conn, &format!("cannot send a request: {e}"));
            }
        }
    }

    /// Disconnects `conn`; its reader then ends and reports `Lost`, and its batches are
    /// reassigned.
    fn cut_off(&mut self, conn: ConnId, why: &str) {
        self.sched.close(conn);
        if let Some(c) = self.conns.get(&conn) {
            let _ = c.writer.shutdown(Shutdown::Both);
            let addr = c.addr.clone();
            if why == "missed the deadline" {
                self.stats().worker(&addr).deadline_misses += 1;
            }
            let deadline = self.c.config.deadline.as_secs_f64();
            self.note(format!("{addr} cut off: {why} ({deadline:.1}s)"));
        }
    }

    /// Sets up `state` for the batch at `cursor`: what the answer must be, and every field the
    /// consumer reads that does not come from the worker.
    fn prepare(
        &mut self,
        state: &Arc<BatchState>,
        cursor: Position,
        seq: u64,
    ) -> Result<ExpectedBatch, BatchError> {
        let order = self.c.orders.get(cursor.epoch)?;
        let first = cursor.batch as usize * self.c.batch_size;
        let n = self
            .c
            .batch_size
            .min(order.samples.len().saturating_sub(first));
        let transform = self.c.schedule.at(cursor.epoch);
        let mut buf = state.lock();
        if buf.images.len() < n * transform.output_len() {
            buf.images =
                bytes::BytesMut::zeroed(self.c.batch_size * self.c.schedule.max_output_len());
        }
        buf.transform = Some(transform);
        buf.position = cursor;
        buf.seq = seq;
        buf.len = n;
        buf.remaining = 0;
        buf.dataset_len = self.c.dataset_len;
        buf.error = None;
        buf.failures.clear();
        buf.slots.clear();
        buf.labels.clear();
        buf.labels.resize(n, 0);
        buf.records.clear();
        buf.records.resize(n, 0);
        buf.positions.clear();
        buf.positions
            .extend(order.samples[first..first + n].iter().map(|s| s.position));
        Ok(ExpectedBatch {
            epoch: cursor.epoch,
            batch: cursor.batch,
            count: n as u32,
            side: transform.size(),
        })
    }

    /// Delivers `error` as the batch at `seq`.
    fn fail(&self, state: Arc<BatchState>, position: Position, seq: u64, error: BatchError) {
        let mut buf = state.lock();
        buf.position = position;
        buf.seq = seq;
        buf.len = 0;
        buf.labels.clear();
        buf.records.clear();
        buf.positions.clear();
        buf.failures.clear();
        buf.error = Some((0, error));
        let finished = std::mem::take(&mut *buf);
        drop(buf);
        let _ = self
            .c
            .done
            .send(Batch::new(finished, state, self.c.pool_tx.clone()));
    }

    /// Delivers `error` in place of the earliest batch not yet delivered (the one the consumer
    /// waits for).
    fn fail_earliest(&mut self, error: BatchError) {
        self.note(format!("failed: {error}"));
        if let Some((seq, position)) = self.sched.earliest() {
            if let Some(f) = self.fetches.remove(&seq) {
                self.fail(f.state, position, seq, error);
            }
        }
    }

    fn no_workers_error(&self) -> BatchError {
        let (epoch, batch) = self
            .sched
            .earliest()
            .map_or((0, 0), |(_, p)| (p.epoch, p.batch));
        let stats = self.stats();
        let mut tried: Vec<String> = self
            .addresses
            .iter()
            .filter(|(_, a)| a.listed)
            .map(|(addr, _)| {
                let why = stats.workers.get(addr).and_then(|w| w.last_error.clone());
                format!("{addr} ({})", why.as_deref().unwrap_or("no answer"))
            })
            .collect();
        if let Some(e) = &self.list_error {
            tried.push(e.clone());
        }
        BatchError::Remote(RemoteError::NoWorkers {
            epoch,
            batch,
            waited: self.c.config.deadline,
            tried,
        })
    }

    /// Closes every connection, joins the readers (so no buffer is written after this), and
    /// returns the buffers of undelivered batches to the pool.
    fn shut_down(&mut self, events: &Receiver<Event>) {
        for c in self.conns.values() {
            let _ = c.writer.shutdown(Shutdown::Both);
        }
        for (_, c) in self.conns.drain() {
            if let Some(r) = c.reader {
                let _ = r.join();
            }
        }
        // Connections that completed their handshake meanwhile: close them (their reader has
        // nothing outstanding, so it touches no buffer, and ends).
        while let Ok(ev) = events.try_recv() {
            if let Event::Connected(c) = ev {
                let _ = c.writer.shutdown(Shutdown::Both);
            }
        }
        for (_, f) in self.fetches.drain() {
            let _ = self.c.pool_tx.try_send(f.state);
        }
        let mut stats = self.stats();
        for w in stats.workers.values_mut() {
            w.connected = false;
            w.in_flight = 0;
        }
    }
}
