//! `shardfeed serve` processes for the remote tests: started on a free loopback port (read from
//! the line it prints), killed and reaped when dropped.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// A running `shardfeed serve`.
pub struct Worker {
    pub child: Child,
    pub addr: String,
}

impl Worker {
    /// `shardfeed serve DIR --listen 127.0.0.1:0 --workers 1 EXTRA...`.
    pub fn start(dir: &Path, extra: &[&str]) -> Worker {
        Worker::start_in(None, dir, "127.0.0.1:0", extra)
    }

    /// The same, inside network namespace `netns` when given (`ip netns exec`), on `listen`.
    pub fn start_in(netns: Option<&str>, dir: &Path, listen: &str, extra: &[&str]) -> Worker {
        let bin = env!("CARGO_BIN_EXE_shardfeed");
        let mut cmd = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, bin]);
                c
            }
            None => Command::new(bin),
        };
        cmd.arg("serve")
            .arg(dir)
            .args(["--listen", listen, "--workers", "1"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut child = cmd.spawn().expect("start shardfeed serve");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read its address");
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line from serve: {line:?}"))
            .to_owned();
        Worker { child, addr }
    }

    /// Sends `signal` (a `kill -s` name) to the worker.
    pub fn signal(&self, signal: &str) {
        let ok = Command::new("kill")
            .args(["-s", signal, &self.child.id().to_string()])
            .status()
            .expect("run kill")
            .success();
        assert!(ok, "kill -s {signal} failed");
    }

    /// SIGKILL, and reap it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        // A stopped process dies of SIGKILL too.
        self.kill();
    }
}
