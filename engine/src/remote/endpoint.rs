//! A Prometheus text endpoint for a process that reads from remote workers (the trainer, a
//! benchmark): `GET /metrics` renders the remote source's counters, `GET /healthz` says ok. One
//! small blocking thread; each request is answered and closed.

use crate::remote::RemoteStats;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// Serves `stats` on `addr` from a thread of its own, for the process's life. Returns the
/// address bound (the port chosen when asked for port 0).
///
/// # Errors
///
/// Binding `addr`, or starting the thread.
pub fn serve_metrics(
    addr: SocketAddr,
    stats: Arc<Mutex<RemoteStats>>,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    let bound = listener.local_addr()?;
    std::thread::Builder::new()
        .name("shardfeed-metrics".into())
        .spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else {
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                };
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
                let mut head = [0u8; 1024];
                let Ok(n) = stream.read(&mut head) else { continue };
                let request = String::from_utf8_lossy(&head[..n]);
                let (status, body) = if request.starts_with("GET /metrics") {
                    let mut body = String::new();
                    stats.lock().unwrap_or_else(PoisonError::into_inner).prometheus(&mut body);
                    ("200 OK", body)
                } else if request.starts_with("GET /healthz") {
                    ("200 OK", "ok\n".to_owned())
                } else {
                    ("404 Not Found", "GET /metrics or /healthz\n".to_owned())
                };
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        })?;
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_endpoint_serves_the_counters() {
        let stats = Arc::new(Mutex::new(RemoteStats::default()));
        stats.lock().expect("lock").reassigned = 5;
        let addr =
            serve_metrics(SocketAddr::from(([127, 0, 0, 1], 0)), Arc::clone(&stats)).expect("bind");
        let mut s = std::net::TcpStream::connect(addr).expect("connect");
        s.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").expect("send");
        let mut text = String::new();
        s.read_to_string(&mut text).expect("read");
        assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
        assert!(
            text.contains("shardfeed_remote_reassigned_total 5\n"),
            "{text}"
        );
    }
}
