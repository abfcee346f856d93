//! One client connection: the handshake, then `Request`s in and `Batch`es out.
//!
//! The batches come from a [`Loader`] in on-demand mode on its own threads (never on the
//! runtime); its answers arrive in request order, so the ids of the requests wait in a queue
//! for them. Pixels are written from the loader's batch buffer in one vectored write with the
//! small header, and the buffer goes back to the loader's pool once written: the loader's
//! `prefetch` buffers bound the session's memory, and a slow client slows only its own loader.

use crate::catalog::Catalog;
use crate::handshake;
use crate::metrics::Metrics;
use shardfeed_engine::loader::{Batch, BatchError, Loader, LoaderConfig, Position};
use shardfeed_engine::remote::encode_failures;
use shardfeed_wire::auth::Token;
use shardfeed_wire::frame::{check_length, FrameHeader, Kind, HEADER_LEN, MAX_CONTROL_PAYLOAD};
use shardfeed_wire::message::{
    AuthMode, BatchMeta, Bytes32, Challenge, Decode, Encode, Hello, Proof, Reason, Request, Welcome,
};
use std::io::IoSlice;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

/// What every session shares.
pub(crate) struct Shared {
    pub catalog: Catalog,
    pub token: Option<Token>,
    /// This worker's name (its address), for clients and logs.
    pub name: String,
    /// Decode threads per session.
    pub workers: usize,
    pub max_in_flight: u32,
    pub handshake_timeout: Duration,
    /// The longest one batch may take to write before the client counts as gone.
    pub write_timeout: Duration,
    /// Benchmark mode: answer every request with ready-made pixels of the right shape, computed
    /// once, instead of decoding (what the transport alone costs).
    pub replay: bool,
    pub metrics: Arc<Metrics>,
}

type Outcome = Result<String, String>;

async fn read_header(rd: &mut OwnedReadHalf) -> Result<Option<FrameHeader>, String> {
    let mut h = [0u8; HEADER_LEN];
    match rd.read(&mut h[..1]).await {
        Ok(0) => return Ok(None),
        Ok(_) => {}
        Err(e) => return Err(e.to_string()),
    }
    rd.read_exact(&mut h[1..])
        .await
        .map_err(|e| format!("truncated frame header: {e}"))?;
    FrameHeader::decode(&h).map(Some).map_err(|e| e.to_string())
}

async fn read_control(rd: &mut OwnedReadHalf, header: &FrameHeader) -> Result<Vec<u8>, String> {
    // The bound is checked before anything is allocated.
    check_length(header, MAX_CONTROL_PAYLOAD).map_err(|e| e.to_string())?;
    let mut payload = vec![0u8; header.length as usize];
    rd.read_exact(&mut payload)
        .await
        .map_err(|e| format!("truncated {:?} payload: {e}", header.kind))?;
    Ok(payload)
}

async fn send<M: Encode>(wr: &mut OwnedWriteHalf, msg: &M, request: u64) -> Result<(), String> {
    let mut payload = Vec::new();
    msg.encode_into(&mut payload);
    let mut frame = FrameHeader::new(M::KIND, payload.len() as u32, request)
        .encode()
        .to_vec();
    frame.extend_from_slice(&payload);
    wr.write_all(&frame).await.map_err(|e| e.to_string())
}

async fn send_reason(
    wr: &mut OwnedWriteHalf,
    kind: Kind,
    reason: &str,
    request: u64,
) -> Result<(), String> {
    let mut payload = Vec::new();
    Reason {
        kind,
        reason: reason.to_owned(),
    }
    .encode_into(&mut payload);
    let mut frame = FrameHeader::new(kind, payload.len() as u32, request)
        .encode()
        .to_vec();
    frame.extend_from_slice(&payload);
    wr.write_all(&frame).await.map_err(|e| e.to_string())
}

/// Refuses the handshake with `reason` (sent, then the connection closes); what to log.
async fn refuse(wr: &mut OwnedWriteHalf, reason: String) -> String {
    let _ = send_reason(wr, Kind::Refused, &reason, 0).await;
    format!("refused: {reason}")
}

fn nonce() -> Result<Bytes32, String> {
    let mut n = [0u8; 32];
    getrandom::fill(&mut n).map_err(|e| format!("no random numbers: {e}"))?;
    Ok(n)
}

/// Runs one connection to its end. `Ok` is how it ended in order, `Err` why it was closed
/// (logged by the caller with the peer's address).
pub(crate) async fn run(stream: TcpStream, shared: Arc<Shared>) -> Outcome {
    let _ = stream.set_nodelay(true);
    let (mut rd, mut wr) = stream.into_split();
    let opened = tokio::time::timeout(
        shared.handshake_timeout,
        handshake(&mut rd, &mut wr, &shared),
    )
    .await;
    let (loader, client) = match opened {
        Ok(Ok(open)) => open,
        Ok(Err(e)) => {
            shared.metrics.rejected.fetch_add(1, Ordering::Relaxed);
            return Err(e);
        }
        Err(_) => {
            shared.metrics.rejected.fetch_add(1, Ordering::Relaxed);
            return Err(format!(
                "no handshake within {:?}",
                shared.handshake_timeout
            ));
        }
    };
    serve_requests(rd, wr, loader, &client, &shared).await
}

/// The handshake: `Hello` → `Challenge` → `Proof` → `Welcome`, and the session's loader.
async fn handshake(
    rd: &mut OwnedReadHalf,
    wr: &mut OwnedWriteHalf,
    shared: &Shared,
) -> Result<(Loader, String), String> {
    let header = read_header(rd).await?.ok_or("closed before its Hello")?;
    if header.kind != Kind::Hello {
        return Err(refuse(wr, format!("expected Hello, got {:?}", header.kind)).await);
    }
    let hello_payload = read_control(rd, &header).await?;
    let hello = Hello::decode(&hello_payload).map_err(|e| e.to_string())?;
    let accepted = match handshake::check(&hello, &shared.catalog, &shared.name) {
        Ok(a) => a,
        Err(reason) => return Err(refuse(wr, reason).await),
    };
    let worker_nonce = nonce()?;
    let auth = if shared.token.is_some() {
        AuthMode::HmacSha256
    } else {
        AuthMode::None
    };
    send(wr, &Challenge { worker_nonce, auth }, 0).await?;
    let header = read_header(rd).await?.ok_or("closed before its Proof")?;
    if header.kind != Kind::Proof {
        return Err(refuse(wr, format!("expected Proof, got {:?}", header.kind)).await);
    }
    let proof = Proof::decode(&read_control(rd, &header).await?).map_err(|e| e.to_string())?;
    let mut worker_mac = None;
    if let Some(token) = &shared.token {
        let valid = proof
            .mac
            .filter(|m| token.verify_client(&hello_payload, &worker_nonce, m));
        let Some(client_mac) = valid else {
            shared.metrics.auth_failures.fetch_add(1, Ordering::Relaxed);
            return Err(refuse(wr, "authentication failed".into()).await);
        };
        worker_mac = Some(token.worker_proof(&hello_payload, &worker_nonce, &client_mac));
    }
    let config = LoaderConfig {
        workers: shared.workers,
        prefetch: shared.max_in_flight as usize + 1,
        epochs: None,
        ..accepted.config
    };
    let loader = match Loader::new(Arc::clone(&accepted.served.dataset), config) {
        Ok(l) => l,
        Err(e) => {
            let reason = format!(
                "worker {} cannot make client {}'s batches: {e}",
                shared.name, hello.client
            );
            return Err(refuse(wr, reason).await);
        }
    };
    let welcome = Welcome {
        worker: shared.name.clone(),
        cores: shared.workers as u32,
        max_in_flight: shared.max_in_flight,
        mac: worker_mac,
    };
    send(wr, &welcome, 0).await?;
    Ok((loader, hello.client))
}

async fn serve_requests(
    rd: OwnedReadHalf,
    wr: OwnedWriteHalf,
    loader: Loader,
    client: &str,
    shared: &Shared,
) -> Outcome {
    if shared.replay {
        return replay_requests(rd, wr, loader, client, shared).await;
    }
    compute_requests(rd, wr, loader, client, shared).await
}

async fn compute_requests(
    mut rd: OwnedReadHalf,
    mut wr: OwnedWriteHalf,
    loader: Loader,
    client: &str,
    shared: &Shared,
) -> Outcome {
    let max = shared.max_in_flight as u64;
    let batches_per_epoch = loader.batches_per_epoch();
    let counters = shared.metrics.client(client);
    let (positions_tx, positions_rx) = crossbeam_channel::bounded::<Position>(max as usize);
    let (answers_tx, mut answers_rx) = tokio::sync::mpsc::channel::<Result<Batch, BatchError>>(1);
    let (ids_tx, mut ids_rx) = tokio::sync::mpsc::unbounded_channel::<u64>();
    let spawned = std::thread::Builder::new()
        .name(format!("shardfeed-session-{client}"))
        .spawn(move || {
            let mut loader = loader;
            for item in loader.on_demand(positions_rx) {
                let failed = item.is_err();
                if answers_tx.blocking_send(item).is_err() || failed {
                    break;
                }
            }
        });
    if let Err(e) = spawned {
        let _ = send_reason(
            &mut wr,
            Kind::Goodbye,
            "worker cannot start a session thread",
            0,
        )
        .await;
        return Err(format!("cannot start a session thread: {e}"));
    }
    // The limit is this connection's: a client may hold several (a trainer's train and val
    // loaders share its name, and so its metrics), each allowed `max` requests. The client's
    // gauge in the metrics adds up its connections.
    let in_flight = AtomicU64::new(0);
    let gauge = &counters.in_flight;
    let reading = async {
        loop {
            let Some(h) = read_header(&mut rd).await? else {
                return Ok("client closed the connection".to_owned());
            };
            match h.kind {
                Kind::Request => {
                    let r = Request::decode(&read_control(&mut rd, &h).await?)
                        .map_err(|e| e.to_string())?;
                    if r.batch >= batches_per_epoch {
                        return Err(format!(
                            "asked for batch {} of epoch {}, but an epoch has {batches_per_epoch}",
                            r.batch, r.epoch
                        ));
                    }
                    if in_flight.load(Ordering::Relaxed) >= max {
                        return Err(format!("more than {max} requests in flight"));
                    }
                    in_flight.fetch_add(1, Ordering::Relaxed);
                    gauge.fetch_add(1, Ordering::Relaxed);
                    let _ = ids_tx.send(h.request);
                    if positions_tx
                        .try_send(Position::new(r.epoch, r.batch))
                        .is_err()
                    {
                        return Err("the session's loader stopped".to_owned());
                    }
                }
                Kind::Cancel => {
                    // Answers come in request order; a cancelled one is answered anyway.
                    read_control(&mut rd, &h).await?;
                }
                Kind::Goodbye => return Ok("client said goodbye".to_owned()),
                other => return Err(format!("unexpected {other:?} frame after the handshake")),
            }
        }
    };
    let writing = async {
        while let Some(item) = answers_rx.recv().await {
            let id = ids_rx.recv().await.ok_or("an answer without a request")?;
            in_flight.fetch_sub(1, Ordering::Relaxed);
            gauge.fetch_sub(1, Ordering::Relaxed);
            match item {
                Ok(batch) => {
                    let write = write_batch(&mut wr, id, &batch);
                    let bytes = tokio::time::timeout(shared.write_timeout, write)
                        .await
                        .map_err(|_| {
                            format!(
                                "client took over {:?} to take one batch",
                                shared.write_timeout
                            )
                        })??;
                    counters.batches.fetch_add(1, Ordering::Relaxed);
                    counters
                        .images
                        .fetch_add(batch.len() as u64, Ordering::Relaxed);
                    counters.bytes.fetch_add(bytes, Ordering::Relaxed);
                }
                Err(e) => {
                    counters.failed.fetch_add(1, Ordering::Relaxed);
                    let reason = e.to_string();
                    send_reason(&mut wr, Kind::Failed, &reason, id).await?;
                    // The session's stream ends with an error: the client asks again elsewhere
                    // (or here, on a new connection).
                    let _ = send_reason(&mut wr, Kind::Goodbye, "a batch failed", 0).await;
                    return Err(format!("batch failed: {reason}"));
                }
            }
        }
        Err("the session's loader stopped".to_owned())
    };
    let outcome = tokio::select! {
        r = reading => r,
        w = writing => w,
    };
    // What this connection still had outstanding leaves the client's gauge with it.
    let left = in_flight.load(Ordering::Relaxed);
    let _ = gauge.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |g| {
        Some(g.saturating_sub(left))
    });
    outcome
}

/// Benchmark mode (`--replay`): every request is answered at once with pixels made once (the
/// session's first batch, repeated), labels and records of zero: the bytes a client receives are
/// not the batch it asked for, only its shape, so only the transport is measured.
async fn replay_requests(
    mut rd: OwnedReadHalf,
    mut wr: OwnedWriteHalf,
    mut loader: Loader,
    client: &str,
    shared: &Shared,
) -> Outcome {
    let (batch_size, per_epoch, batches_per_epoch) = (
        loader.config().batch_size as u64,
        loader.samples_per_epoch(),
        loader.batches_per_epoch(),
    );
    let schedule = loader.config().transform.clone();
    let counters = shared.metrics.client(client);
    // One real batch, made once, off the runtime.
    let made = tokio::task::spawn_blocking(move || {
        let first = loader.epoch(0).next();
        first.map(|b| b.map(|b| b.images().to_vec()))
    })
    .await
    .map_err(|e| format!("replay batch: {e}"))?;
    let mut pixels = match made {
        Some(Ok(p)) => p,
        Some(Err(e)) => return Err(format!("replay batch: {e}")),
        None => return Err("replay batch: the dataset makes no batch".into()),
    };
    let largest = batch_size as usize * schedule.max_output_len();
    pixels.resize(largest.max(pixels.len()), 0);
    let mut head = Vec::new();
    loop {
        let Some(h) = read_header(&mut rd).await? else {
            return Ok("client closed the connection".to_owned());
        };
        match h.kind {
            Kind::Request => {
                let r = Request::decode(&read_control(&mut rd, &h).await?)
                    .map_err(|e| e.to_string())?;
                if r.batch >= batches_per_epoch {
                    return Err(format!(
                        "asked for batch {} past the epoch's {batches_per_epoch}",
                        r.batch
                    ));
                }
                let count = batch_size.min(per_epoch - r.batch * batch_size) as u32;
                let side = schedule.at(r.epoch).size();
                let meta = BatchMeta {
                    epoch: r.epoch,
                    batch: r.batch,
                    count,
                    side,
                    padding: 0,
                    failures: 0,
                    failure_bytes: 0,
                };
                let length =
                    u32::try_from(meta.payload_len()).map_err(|_| "batch too large for a frame")?;
                head.clear();
                head.extend_from_slice(&FrameHeader::new(Kind::Batch, length, h.request).encode());
                head.extend_from_slice(&meta.encode());
                head.resize(head.len() + 12 * count as usize, 0);
                let body = &pixels[..meta.pixels_len() as usize];
                write_all_vectored(&mut wr, &head, body)
                    .await
                    .map_err(|e| e.to_string())?;
                counters.batches.fetch_add(1, Ordering::Relaxed);
                counters
                    .images
                    .fetch_add(u64::from(count), Ordering::Relaxed);
                counters
                    .bytes
                    .fetch_add(meta.payload_len(), Ordering::Relaxed);
            }
            Kind::Cancel => {
                read_control(&mut rd, &h).await?;
            }
            Kind::Goodbye => return Ok("client said goodbye".to_owned()),
            other => return Err(format!("unexpected {other:?} frame after the handshake")),
        }
    }
}

/// Writes one `Batch` frame: header, meta, labels, records and failures from one small buffer,
/// the pixels straight from the batch buffer, in vectored writes. Returns the payload's bytes.
async fn write_batch(wr: &mut OwnedWriteHalf, request: u64, batch: &Batch) -> Result<u64, String> {
    let failures = encode_failures(batch.failures());
    let meta = BatchMeta {
        epoch: batch.epoch(),
        batch: batch.index(),
        count: batch.len() as u32,
        side: batch.side(),
        padding: batch.padding() as u32,
        failures: batch.failures().len() as u32,
        failure_bytes: failures.len() as u32,
    };
    let pixels = batch.images();
    let length = meta.payload_len();
    if pixels.len() as u64 != meta.pixels_len() {
        return Err(format!(
            "internal: {} pixel bytes for {} expected",
            pixels.len(),
            meta.pixels_len()
        ));
    }
    let length32 = u32::try_from(length)
        .map_err(|_| format!("a batch of {length} bytes does not fit one frame"))?;
    let mut head = Vec::with_capacity(HEADER_LEN + 40 + 12 * batch.len() + failures.len());
    head.extend_from_slice(&FrameHeader::new(Kind::Batch, length32, request).encode());
    head.extend_from_slice(&meta.encode());
    for l in batch.labels() {
        head.extend_from_slice(&l.to_le_bytes());
    }
    for r in batch.records() {
        head.extend_from_slice(&r.to_le_bytes());
    }
    head.extend_from_slice(&failures);
    write_all_vectored(wr, &head, pixels)
        .await
        .map_err(|e| e.to_string())?;
    Ok(length)
}

async fn write_all_vectored(
    wr: &mut OwnedWriteHalf,
    mut a: &[u8],
    mut b: &[u8],
) -> std::io::Result<()> {
    while !a.is_empty() || !b.is_empty() {
        let n = wr
            .write_vectored(&[IoSlice::new(a), IoSlice::new(b)])
            .await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        let from_a = n.min(a.len());
        a = &a[from_a..];
        b = &b[n - from_a..];
    }
    Ok(())
}
