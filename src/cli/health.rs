//! `shardfeed health [ADDR]`: asks a `serve` worker's metrics endpoint for `GET /healthz` and
//! exits 0 when it answers `200`. It is the container images' health check (docker/Dockerfile),
//! which has no curl or wget to do it with.

use anyhow::{bail, Context};
use clap::Args;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, Args)]
pub struct HealthArgs {
    /// The worker's --metrics address.
    #[arg(default_value = "127.0.0.1:9100")]
    addr: SocketAddr,
    /// Seconds to wait for the answer.
    #[arg(long, default_value_t = 3.0)]
    timeout: f64,
}

pub fn run(a: HealthArgs) -> anyhow::Result<ExitCode> {
    if !(a.timeout > 0.0 && a.timeout.is_finite()) {
        bail!("--timeout must be a positive number of seconds");
    }
    let timeout = Duration::from_secs_f64(a.timeout);
    let mut stream = TcpStream::connect_timeout(&a.addr, timeout)
        .with_context(|| format!("{}: cannot connect", a.addr))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream
        .write_all(b"GET /healthz HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .with_context(|| format!("{}: cannot send the request", a.addr))?;
    // The answer is a few dozen bytes; read at most 4 KiB of it.
    let mut answer = Vec::new();
    stream
        .take(4096)
        .read_to_end(&mut answer)
        .with_context(|| format!("{}: no answer", a.addr))?;
    match status_code(&answer) {
        Some(200) => {
            outln!("{}: healthy", a.addr);
            Ok(ExitCode::SUCCESS)
        }
        Some(code) => {
            errln!("{}: unhealthy: HTTP {code}", a.addr);
            Ok(ExitCode::FAILURE)
        }
        None => bail!("{}: the answer is not HTTP", a.addr),
    }
}

/// The status code of an HTTP/1.x answer's status line (`HTTP/1.1 200 OK`).
fn status_code(answer: &[u8]) -> Option<u16> {
    let line_end = answer.iter().position(|&b| b == b'\n')?;
    let line = std::str::from_utf8(&answer[..line_end]).ok()?;
    let mut parts = line.split_ascii_whitespace();
    if !parts.next()?.starts_with("HTTP/1.") {
        return None;
    }
    parts.next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::status_code;

    #[test]
    fn reads_the_status_line() {
        assert_eq!(status_code(b"HTTP/1.1 200 OK\r\n\r\nok\n"), Some(200));
        assert_eq!(status_code(b"HTTP/1.0 404 Not Found\r\n"), Some(404));
        assert_eq!(status_code(b"SSH-2.0-OpenSSH\r\n"), None);
        assert_eq!(status_code(b"HTTP/1.1 200"), None, "no complete line");
        assert_eq!(status_code(b""), None);
    }
}
