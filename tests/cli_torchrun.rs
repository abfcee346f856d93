//! `shardfeed` under torchrun: torchrun's parser (argparse, abbreviations allowed) reads the
//! program's arguments too, and refuses the whole launch when one of them is an ambiguous prefix
//! of its own options (`--log` of `--log-dir` and `--logs-specs`, `--r` ...). Users
//! start `shardfeed bench --rank R --world W` per rank under torchrun or srun, so every flag of
//! every subcommand must pass torchrun's parser, flags added later included: the list comes
//! from the binary's own help, not from a list written here.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn shardfeed_help(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_shardfeed"))
        .args(args)
        .arg("-h")
        .output()
        .expect("run shardfeed");
    assert!(out.status.success(), "shardfeed {args:?} -h failed");
    String::from_utf8(out.stdout).expect("utf-8 help")
}

/// The lines of help section `title` (`Commands:`, `Options:`): up to the next unindented line.
fn section<'a>(help: &'a str, title: &str) -> Vec<&'a str> {
    help.lines()
        .skip_while(|l| *l != title)
        .skip(1)
        .take_while(|l| l.is_empty() || l.starts_with(' '))
        .filter(|l| !l.trim().is_empty())
        .collect()
}

/// A flag as clap prints it: `-x` or `--name`.
fn is_flag(t: &str) -> bool {
    let mut c = t.chars();
    match (c.next(), c.next()) {
        (Some('-'), Some('-')) => t.len() > 2,
        (Some('-'), Some(x)) => x.is_ascii_alphanumeric() && t.len() == 2,
        _ => false,
    }
}

/// The option strings of one help text's `Options:` section: `-o, --out <OUT>  Where` gives
/// `-o` and `--out`.
fn options(help: &str) -> Vec<String> {
    section(help, "Options:")
        .into_iter()
        .flat_map(|line| {
            line.split_whitespace()
                .map(|t| t.trim_end_matches(','))
                .take_while(|t| is_flag(t))
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Every subcommand of `shardfeed` but `help`, each with its option strings.
fn subcommands() -> Vec<(String, Vec<String>)> {
    let top = shardfeed_help(&[]);
    section(&top, "Commands:")
        .into_iter()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(|name| (name.to_owned(), options(&shardfeed_help(&[name]))))
        .collect()
}

fn torchrun() -> Option<PathBuf> {
    let venv = std::env::var_os("TORCH_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/torch"));
    let bin = venv.join("bin").join("torchrun");
    if bin.exists() {
        Some(bin)
    } else {
        eprintln!(
            "skipped: no torchrun at {} (scripts/setup-torch.sh installs it)",
            bin.display()
        );
        None
    }
}

/// Runs `c` to its end, killing it after `limit` (a hung launcher fails the test instead of
/// hanging it; nothing is asserted about the time taken).
fn output_within(c: &mut Command, limit: Duration) -> Output {
    let mut child = c
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start torchrun");
    let start = Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if start.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().expect("wait");
            panic!(
                "{c:?} still running after {limit:?}; stderr: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().expect("wait")
}

#[test]
fn help_parsing_finds_every_subcommand_and_its_flags() {
    let subs = subcommands();
    let names: Vec<&str> = subs.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["shard", "inspect", "verify", "extract", "synth", "bench", "serve", "health"]
    );
    let bench = &subs[5].1;
    for flag in ["--rank", "--world", "--batch", "--json", "-h", "--help"] {
        assert!(bench.iter().any(|f| f == flag), "{flag} in {bench:?}");
    }
    // Possible-value lines (`- train: ...`) and placeholders (`<SIZE>`) are not flags.
    assert!(bench.iter().all(|f| is_flag(f)), "{bench:?}");
    assert_eq!(
        options("Options:\n  -o, --out <OUT>  Where\n      --json  JSON\n  - a: not one\n"),
        ["-o", "--out", "--json"]
    );
}

#[test]
fn every_subcommand_flag_passes_torchruns_parser() {
    let Some(torchrun) = torchrun() else { return };
    // `/bin/true` stands in for the program: only torchrun's parse of the arguments is under
    // test. One local process, rendezvous on loopback (--standalone).
    let mut c = Command::new(torchrun);
    c.args([
        "--no-python",
        "--standalone",
        "--nnodes",
        "1",
        "--nproc-per-node",
        "1",
    ])
    .arg("/bin/true");
    for (name, flags) in subcommands() {
        c.arg(name).args(flags);
    }
    let out = output_within(&mut c, Duration::from_secs(300));
    assert!(
        out.status.success(),
        "torchrun refused {:?}: {}",
        c.get_args().collect::<Vec<_>>(),
        String::from_utf8_lossy(&out.stderr)
    );
}
