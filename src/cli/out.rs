//! Standard output and error for every command: `outln!` and `errln!` instead of `println!` and
//! `eprintln!`, which panic when the stream is gone.
//!
//! `shardfeed shard … | head` or `| true` closes the read end of the pipe: each later write to
//! stdout fails with `EPIPE` (Rust ignores `SIGPIPE`). The output is then of no use to anyone,
//! but the work is: a run must still write every split, and a check must still end with its exit
//! code. So the first failed write silences stdout for the rest of the run, and nothing panics.
//! A broken pipe is the reader's choice and is not an error; any other failure (a full disk
//! behind `> file`) is remembered, and `main` reports it and exits 2 once the work is done.
//! stderr is best effort: if it cannot be written, there is nowhere left to say so.

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// Set once a write to stdout failed: later output is dropped.
static STDOUT_GONE: AtomicBool = AtomicBool::new(false);
/// The first failure to write stdout that was not a broken pipe.
static STDOUT_ERROR: Mutex<Option<io::Error>> = Mutex::new(None);

/// Writes one line to stdout; see the module docs. Use `outln!`.
pub fn line(args: std::fmt::Arguments<'_>) {
    if STDOUT_GONE.load(Ordering::Relaxed) {
        return;
    }
    let mut out = io::stdout().lock();
    let written = out
        .write_fmt(args)
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush());
    if let Err(e) = written {
        STDOUT_GONE.store(true, Ordering::Relaxed);
        if e.kind() != io::ErrorKind::BrokenPipe {
            if let Ok(mut first) = STDOUT_ERROR.lock() {
                first.get_or_insert(e);
            }
        }
    }
}

/// Writes one line to stderr, ignoring failure. Use `errln!`.
pub fn err_line(args: std::fmt::Arguments<'_>) {
    let mut err = io::stderr().lock();
    let _ = err.write_fmt(args).and_then(|()| err.write_all(b"\n"));
}

/// The failure to write stdout that the run should report, if any (a broken pipe is not one).
pub fn stdout_error() -> Option<io::Error> {
    STDOUT_ERROR.lock().ok()?.take()
}
