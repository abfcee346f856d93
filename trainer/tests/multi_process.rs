//! Multi-process data parallelism on c10d (Gloo, CPU), launched as PyTorch jobs are: torchrun,
//! or the launcher variables set by hand (as Slurm or Kubernetes would), on loopback or across
//! two network namespaces. Every run is bounded in time (a hung launch fails its test).

mod common;

use common::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(300);

/// The tensor file of the checkpoint in `dir` (the weights, BN statistics and momentum).
fn checkpoint_tensors(dir: &Path) -> Vec<u8> {
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("checkpoint.json")).unwrap()).unwrap();
    std::fs::read(dir.join(meta["tensors"].as_str().unwrap())).unwrap()
}

/// `shardfeed-train` under torchrun, `n` local processes, rendezvous on loopback.
fn torchrun_train(torchrun: &Path, n: usize, extra: &[&str]) -> Command {
    let mut c = Command::new(torchrun);
    c.args(["--no-python", "--standalone", "--nnodes", "1"])
        .args(["--nproc-per-node", &n.to_string()])
        .args(extra)
        .arg(env!("CARGO_BIN_EXE_shardfeed-train"))
        .args(["--device", "cpu", "--threads", "1"]);
    c
}

fn must_succeed(out: &std::process::Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{}", err);
    err
}

/// A port free on loopback a moment ago.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Rank `rank` of `world`, started with the variables torchrun (or Slurm, or a JobSet) sets.
fn rank_process(rank: usize, world: usize, addr: &str, port: u16, netns: Option<&str>) -> Command {
    let bin = env!("CARGO_BIN_EXE_shardfeed-train");
    let mut c = match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, bin]);
            c
        }
        None => Command::new(bin),
    };
    c.args(["--device", "cpu", "--threads", "1"])
        .env("RANK", rank.to_string())
        .env("WORLD_SIZE", world.to_string())
        .env("LOCAL_RANK", "0")
        .env("LOCAL_WORLD_SIZE", "1")
        .env("MASTER_ADDR", addr)
        .env("MASTER_PORT", port.to_string());
    c
}

fn wait_within(child: &mut Child, limit: Duration) -> std::process::Output {
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > limit {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut out = std::process::Output {
        status: child.wait().unwrap(),
        stdout: Vec::new(),
        stderr: Vec::new(),
    };
    use std::io::Read;
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_end(&mut out.stderr);
    }
    out
}

/// torchrun's two processes (Gloo, overlapped bucketed all-reduce) end with weights bit for bit
/// those of the in-process pair of replicas on the same flags.
#[test]
fn torchrun_two_processes_train_exactly_as_two_in_process_replicas() {
    let Some(torchrun) = torchrun() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("torchrun"), dir.path().join("threads"));
    let flags = ["--epochs", "2", "--eval-every", "0", "--bucket-mb", "0.01"];
    let mut c = torchrun_train(&torchrun, 2, &[]);
    tiny(&mut c)
        .args(flags)
        .arg("--checkpoint-dir")
        .arg(&a)
        .arg("--log-file")
        .arg(dir.path().join("a.jsonl"));
    let err = must_succeed(&output_within(&mut c, LIMIT));
    assert!(
        err.contains("torchrun: rank 0 of 2 (local 0 of 2)"),
        "{err}"
    );
    assert!(
        err.contains("torchrun: rank 1 of 2 (local 1 of 2)"),
        "{err}"
    );

    let mut c = train();
    tiny(&mut c)
        .args(flags)
        .args(["--replicas", "2"])
        .arg("--checkpoint-dir")
        .arg(&b)
        .arg("--log-file")
        .arg(dir.path().join("b.jsonl"));
    must_succeed(&output_within(&mut c, LIMIT));

    let (la, lb) = (
        step_losses(&dir.path().join("a.jsonl")),
        step_losses(&dir.path().join("b.jsonl")),
    );
    assert_eq!(la.len(), 6);
    assert_eq!(la, lb, "the losses");
    assert!(
        checkpoint_tensors(&a) == checkpoint_tensors(&b),
        "the final weights, BN statistics and momentum differ"
    );
}

/// A namespace pair joined by one veth: `10.214.N.1` in the first, `10.214.N.2` in the second.
/// Deleted when dropped.
struct TwoHosts {
    ns: [String; 2],
    ifs: [String; 2],
    addrs: [String; 2],
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl TwoHosts {
    fn new() -> Result<TwoHosts, String> {
        let tag = std::process::id() % 10_000;
        let n = tag % 250 + 1;
        let hosts = TwoHosts {
            ns: [format!("sftr{tag}-a"), format!("sftr{tag}-b")],
            ifs: [format!("sfta{tag}"), format!("sftb{tag}")],
            addrs: [format!("10.214.{n}.1"), format!("10.214.{n}.2")],
        };
        for ns in &hosts.ns {
            let _ = ip(&["netns", "del", ns]);
            ip(&["netns", "add", ns])?;
        }
        ip(&[
            "link",
            "add",
            &hosts.ifs[0],
            "type",
            "veth",
            "peer",
            "name",
            &hosts.ifs[1],
        ])?;
        for i in 0..2 {
            let (ns, dev) = (&hosts.ns[i], &hosts.ifs[i]);
            ip(&["link", "set", dev, "netns", ns])?;
            let cidr = format!("{}/24", hosts.addrs[i]);
            ip(&["netns", "exec", ns, "ip", "addr", "add", &cidr, "dev", dev])?;
            ip(&["netns", "exec", ns, "ip", "link", "set", dev, "up"])?;
            ip(&["netns", "exec", ns, "ip", "link", "set", "lo", "up"])?;
        }
        Ok(hosts)
    }
}

impl Drop for TwoHosts {
    fn drop(&mut self) {
        for ns in &self.ns {
            let _ = ip(&["netns", "del", ns]);
        }
    }
}

/// The same job across two hosts (network namespaces joined by a veth): rank 0 hosts the store
/// on its veth address, gloo binds each rank's veth (`GLOO_SOCKET_IFNAME`). Same weights.
#[test]
fn two_hosts_train_exactly_as_two_in_process_replicas() {
    let hosts = match TwoHosts::new() {
        Ok(h) => h,
        Err(e) => {
            eprintln!("SKIPPED: network namespaces are not available here ({e}); run as root with iproute2");
            return;
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let flags = ["--epochs", "1", "--eval-every", "0"];
    let mut children: Vec<Child> = (0..2)
        .map(|rank| {
            let mut c = rank_process(rank, 2, &hosts.addrs[0], 29517, Some(&hosts.ns[rank]));
            c.env("GLOO_SOCKET_IFNAME", &hosts.ifs[rank]);
            tiny(&mut c)
                .args(flags)
                .arg("--checkpoint-dir")
                .arg(dir.path().join(format!("ckpt{rank}")))
                .stdout(Stdio::null())
                .stderr(Stdio::piped());
            c.spawn().unwrap()
        })
        .collect();
    for child in &mut children {
        must_succeed(&wait_within(child, LIMIT));
    }
    let mut c = train();
    tiny(&mut c)
        .args(flags)
        .args(["--replicas", "2", "--checkpoint-dir"])
        .arg(dir.path().join("threads"));
    must_succeed(&output_within(&mut c, LIMIT));
    assert!(
        checkpoint_tensors(&dir.path().join("ckpt0"))
            == checkpoint_tensors(&dir.path().join("threads")),
        "the two hosts' weights differ from the in-process pair's"
    );
}

/// Steps logged in `log` so far (tolerating a half-written last line).
fn steps_logged(log: &Path) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("\"event\":\"step\""))
        .count()
}

/// Waits until `ready`, failing the test after `limit` or as soon as one of `children` has
/// ended (with its stderr).
fn wait_for(what: &str, limit: Duration, children: &mut [Child], mut ready: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ready() {
        assert!(start.elapsed() < limit, "waited {limit:?} for {what}");
        for child in children.iter_mut() {
            if let Ok(Some(status)) = child.try_wait() {
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    use std::io::Read;
                    let _ = e.read_to_string(&mut err);
                }
                panic!("waiting for {what}, a process ended ({status}): {err}");
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Starts a two-rank job with collective timeout `timeout` (seconds), sends rank 1 `signal`
/// once rank 0 has trained 3 steps, and returns how long rank 0 then took to exit, its exit
/// code and its stderr.
fn rank_1_gets(signal: &str, timeout: &str) -> (Duration, Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("run.jsonl");
    let port = free_port();
    let mut ranks: Vec<Child> = (0..2)
        .map(|rank| {
            let mut c = rank_process(rank, 2, "127.0.0.1", port, None);
            tiny(&mut c)
                .args(["--epochs", "100000", "--eval-every", "0"])
                .args(["--dist-timeout", timeout, "--log-file"])
                .arg(&log)
                .stdout(Stdio::null())
                .stderr(Stdio::piped());
            c.spawn().unwrap()
        })
        .collect();
    wait_for("rank 0 to log 3 steps", LIMIT, &mut ranks, || {
        steps_logged(&log) >= 3
    });
    let pid = ranks[1].id().to_string();
    Command::new("kill").args([signal, &pid]).status().unwrap();
    let hit = Instant::now();
    let out = wait_within(&mut ranks[0], Duration::from_secs(120));
    let took = hit.elapsed();
    let _ = ranks[1].kill();
    let _ = ranks[1].wait();
    (
        took,
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `kill -9` of rank 1: rank 0 exits 1 naming rank 1, far sooner than the 60 s collective
/// timeout (a dead peer's connections close).
#[test]
fn a_killed_rank_makes_the_other_fail_naming_it() {
    let (took, code, err) = rank_1_gets("-KILL", "60");
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("rank 1 is lost"), "{err}");
    assert!(
        took < Duration::from_secs(30),
        "rank 0 took {took:?} to fail"
    );
}

/// A hung rank 1 (SIGSTOP): rank 0 exits 1 naming it, bounded by the collective timeout (5 s)
/// plus the 2.5 s the heartbeats are watched (allowed: 30 s on a loaded machine).
#[test]
fn a_hung_rank_makes_the_other_fail_within_the_timeout_naming_it() {
    let (took, code, err) = rank_1_gets("-STOP", "5");
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("Timed out"), "{err}");
    assert!(err.contains("rank 1 is lost"), "{err}");
    assert!(
        took >= Duration::from_secs(5),
        "before the timeout: {took:?}"
    );
    assert!(
        took < Duration::from_secs(30),
        "rank 0 took {took:?} to fail"
    );
}

/// Processes of this test's torchrun run (marked by an environment variable) with `RANK=rank`.
fn worker_pids(mark: &str, rank: usize) -> Vec<u32> {
    let want = [
        format!("SHARDFEED_TEST_MARK={mark}"),
        format!("RANK={rank}"),
    ];
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        let vars: Vec<&[u8]> = environ.split(|&b| b == 0).collect();
        let exe = std::fs::read_link(entry.path().join("exe")).unwrap_or_default();
        if want.iter().all(|w| vars.contains(&w.as_bytes()))
            && exe.file_name().is_some_and(|n| n == "shardfeed-train")
        {
            pids.push(pid);
        }
    }
    pids
}

/// torchrun `--max-restarts 1` with `--resume`: rank 1 is killed after the first checkpoint,
/// torchrun restarts both ranks, they resume from the checkpoint, and every step's loss equals
/// the uninterrupted run's.
#[test]
fn torchrun_restarts_after_a_lost_rank_and_the_losses_match_an_uninterrupted_run() {
    let Some(torchrun) = torchrun() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (ckpt, log) = (dir.path().join("ckpt"), dir.path().join("run.jsonl"));
    // Longer steps than tiny()'s (32 px, 16 images): the kill lands mid-run.
    let flags = [
        "--data",
        "synthetic",
        "--model",
        "small",
        "--classes",
        "4",
        "--image-size",
        "32",
        "--batch-size",
        "16",
        "--steps-per-epoch",
        "10",
        "--epochs",
        "9",
        "--eval-every",
        "0",
        "--lr",
        "5",
        "--warmup-epochs",
        "0.5",
    ];
    let mark = format!("{}-{}", std::process::id(), free_port());
    let mut c = torchrun_train(
        &torchrun,
        2,
        &["--max-restarts", "1", "--monitor-interval", "0.5"],
    );
    c.args(flags)
        .args(["--resume", "--checkpoint-every", "1", "--checkpoint-dir"])
        .arg(&ckpt)
        .arg("--log-file")
        .arg(&log)
        .env("SHARDFEED_TEST_MARK", &mark)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut run = c.spawn().unwrap();
    let mut rank1 = Vec::new();
    wait_for(
        "rank 1's process",
        LIMIT,
        std::slice::from_mut(&mut run),
        || {
            rank1 = worker_pids(&mark, 1);
            !rank1.is_empty()
        },
    );
    assert_eq!(rank1.len(), 1, "rank 1's process");
    // Three steps past the first checkpoint (at step 10, the next at 20), so that the restart
    // trains them again.
    wait_for("step 13", LIMIT, std::slice::from_mut(&mut run), || {
        steps_logged(&log) >= 13
    });
    Command::new("kill")
        .args(["-9", &rank1[0].to_string()])
        .status()
        .unwrap();
    assert!(
        ckpt.join("checkpoint.json").exists(),
        "the first checkpoint"
    );
    let out = wait_within(&mut run, LIMIT);
    let err = must_succeed(&out);
    assert!(err.contains("rank 0 of 2 (local 0 of 2), store"), "{err}");
    assert!(
        err.contains("restart 1"),
        "torchrun restarted the ranks: {err}"
    );
    assert!(err.contains("resuming at step"), "{err}");

    let reference = dir.path().join("reference.jsonl");
    let mut c = train();
    c.args(flags)
        .args(["--replicas", "2", "--log-file"])
        .arg(&reference);
    must_succeed(&output_within(&mut c, LIMIT));
    // The restarted run logs the steps after the checkpoint twice: each time the same loss.
    let mut by_step: BTreeMap<u64, Vec<f64>> = BTreeMap::new();
    for (step, loss) in step_losses(&log) {
        by_step.entry(step).or_default().push(loss);
    }
    let want: BTreeMap<u64, f64> = step_losses(&reference).into_iter().collect();
    assert_eq!(by_step.len(), want.len(), "every step trained");
    for (step, losses) in &by_step {
        for loss in losses {
            assert_eq!(loss.to_bits(), want[step].to_bits(), "step {step}");
        }
    }
    assert!(
        by_step.values().any(|l| l.len() > 1),
        "some steps ran twice: {by_step:?}; {err}"
    );
}

/// One `--sample-log` line.
#[derive(Debug, Clone, PartialEq)]
struct Slice {
    epoch: u64,
    batch: u64,
    rank: usize,
    world: usize,
    records: Vec<u64>,
}

fn slices(log: &Path) -> Vec<Slice> {
    std::fs::read_to_string(log)
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            Slice {
                epoch: v["epoch"].as_u64().unwrap(),
                batch: v["batch"].as_u64().unwrap(),
                rank: v["rank"].as_u64().unwrap() as usize,
                world: v["world"].as_u64().unwrap() as usize,
                records: v["records"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| r.as_u64().unwrap())
                    .collect(),
            }
        })
        .collect()
}

/// A fixed global batch of 8 across world sizes 2 → 1 → 4 (restarts from the checkpoint):
/// every rank's batch is exactly its slice of the global batch an uninterrupted single-process
/// run trained on, every global batch of the run is trained, and each epoch reads every sample
/// once.
#[test]
fn elastic_resume_across_world_sizes_trains_the_same_global_batches() {
    let Some(torchrun) = torchrun() else { return };
    let dir = tempfile::tempdir().unwrap();
    let data = tiny_shards(dir.path());
    let ckpt = dir.path().join("ckpt");
    let shards = format!("shards:{}", data.display());
    let run = |c: &mut Command, log: &PathBuf, extra: &[&str]| {
        c.args(["--data", &shards, "--model", "small", "--image-size", "16"])
            .args(["--global-batch", "8", "--workers", "1", "--epochs", "3"])
            .args(["--eval-every", "0", "--lr", "1", "--warmup-epochs", "0.5"])
            .args(extra)
            .arg("--sample-log")
            .arg(log);
        must_succeed(&output_within(c, LIMIT))
    };
    let reference = dir.path().join("reference.jsonl");
    run(&mut train(), &reference, &[]);
    let elastic = dir.path().join("elastic.jsonl");
    let ck = ckpt.to_str().unwrap();
    // 32 images, 4 global batches an epoch, 12 steps: 5 at world 2, 2 at world 1, 5 at world 4.
    run(
        &mut torchrun_train(&torchrun, 2, &[]),
        &elastic,
        &["--max-steps", "5", "--checkpoint-dir", ck],
    );
    let err = run(
        &mut train(),
        &elastic,
        &["--max-steps", "7", "--checkpoint-dir", ck, "--resume"],
    );
    assert!(
        err.contains("resuming at step 5 (epoch 1, batch 1)"),
        "{err}"
    );
    let err = run(
        &mut torchrun_train(&torchrun, 4, &[]),
        &elastic,
        &["--checkpoint-dir", ck, "--resume"],
    );
    assert!(
        err.contains("resuming at step 7 (epoch 1, batch 3)"),
        "{err}"
    );

    let global: BTreeMap<(u64, u64), Vec<u64>> = slices(&reference)
        .into_iter()
        .map(|s| ((s.epoch, s.batch), s.records))
        .collect();
    assert_eq!(global.len(), 12);
    for epoch in 0..3 {
        let mut seen: Vec<u64> = (0..4).flat_map(|b| global[&(epoch, b)].clone()).collect();
        seen.sort_unstable();
        assert_eq!(
            seen,
            (0..32).collect::<Vec<_>>(),
            "epoch {epoch} reads every sample once"
        );
    }
    let mut covered = std::collections::BTreeSet::new();
    let worlds: std::collections::BTreeSet<usize> =
        slices(&elastic).iter().map(|s| s.world).collect();
    assert_eq!(worlds, [1, 2, 4].into_iter().collect());
    for s in slices(&elastic) {
        let per = 8 / s.world;
        let want = &global[&(s.epoch, s.batch)][s.rank * per..(s.rank + 1) * per];
        assert_eq!(s.records, want, "{s:?}");
        covered.insert((s.epoch, s.batch));
    }
    assert_eq!(covered.len(), 12, "every global batch trained");
}
