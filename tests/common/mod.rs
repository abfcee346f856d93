//! Helpers the end-to-end tests of the `shardfeed` binary share: run it, and require that it
//! succeeds or fails. (Each test file uses some of them.)
#![allow(dead_code)]

pub mod workers;

use std::path::Path;
use std::process::{Command, Output};

/// Runs `shardfeed ARGS` and returns what it did.
pub fn shardfeed(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_shardfeed"))
        .args(args)
        .output()
        .expect("run shardfeed")
}

/// Runs a command that must succeed; returns its stdout.
pub fn ok(args: &[&str]) -> String {
    let out = shardfeed(args);
    assert!(
        out.status.success(),
        "shardfeed {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs a command that must fail; returns its exit code and stdout + stderr.
pub fn fails(args: &[&str]) -> (i32, String) {
    let out = shardfeed(args);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !out.status.success(),
        "shardfeed {args:?} should fail: {text}"
    );
    (out.status.code().unwrap_or(-1), text)
}

/// A path as the `&str` argument the binary takes (test paths are UTF-8).
pub fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}
