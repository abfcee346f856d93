//! `shardfeed serve` workers and the engine's remote source, end to end on loopback: the bytes
//! equal the local engine's (digests) whatever workers come, go, stall or die, and bad peers are
//! refused with messages that say why. Each test is bounded in count and time.

mod common;

use common::workers::Worker;
use shardfeed_engine::loader::{Loader, LoaderConfig, Position, StreamDigest};
use shardfeed_engine::remote::{RemoteConfig, WorkerList};
use shardfeed_engine::shards::Dataset;
use shardfeed_engine::wire::auth::Token;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// A dataset of 4 classes x 30 images (120 train records, 3 shards), made once per run of this
/// file and shared by its tests (workers only read it).
fn dataset() -> PathBuf {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        let base = Path::new(env!("CARGO_TARGET_TMPDIR"));
        // Earlier runs' copies.
        for e in std::fs::read_dir(base).into_iter().flatten().flatten() {
            if e.file_name().to_string_lossy().starts_with("serve_remote-") {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
        let dir = base.join(format!("serve_remote-{}", std::process::id()));
        let opts = shardfeed_engine::synth::SynthOptions {
            classes: 4,
            per_class: 30,
            val_per_class: 1,
            ..Default::default()
        };
        shardfeed_engine::demo::synthetic_dataset_with(&dir, &opts, 3).expect("dataset")
    })
    .clone()
}

fn config(rank: u32, world: u32) -> LoaderConfig {
    LoaderConfig {
        batch_size: 4,
        workers: 2,
        prefetch: 6,
        rank,
        world,
        seed: 11,
        ..LoaderConfig::train(32)
    }
}

fn remote_config(addrs: &[&str], deadline: Duration) -> RemoteConfig {
    RemoteConfig {
        deadline,
        connect_timeout: Duration::from_secs(1),
        refresh: Duration::from_millis(200),
        client_name: "test-client".into(),
        ..RemoteConfig::new(WorkerList {
            addresses: addrs.iter().map(|s| s.to_string()).collect(),
            file: None,
        })
    }
}

fn local_digest(train: &Path, config: LoaderConfig, epochs: u64) -> String {
    let mut loader = Loader::open(train, config).expect("local loader");
    let mut d = StreamDigest::default();
    for e in 0..epochs {
        for b in loader.epoch(e) {
            d.update(&b.expect("local batch"));
        }
    }
    d.hex()
}

fn remote_loader(train: &Path, config: LoaderConfig, remote: RemoteConfig) -> Loader {
    let dataset = Arc::new(Dataset::open(train).expect("dataset"));
    Loader::remote(dataset, config, remote).expect("remote loader")
}

/// Runs `epochs` epochs; `at(n)` is called before batch `n` (counted over the whole run).
fn remote_digest(loader: &mut Loader, epochs: u64, mut at: impl FnMut(u64, &Loader)) -> String {
    let mut d = StreamDigest::default();
    let mut n = 0;
    for e in 0..epochs {
        let mut batches = loader.epoch(e);
        loop {
            at(n, batches.loader());
            let Some(b) = batches.next() else { break };
            d.update(&b.expect("remote batch"));
            n += 1;
        }
    }
    d.hex()
}

#[test]
fn remote_batches_equal_local_ones_with_one_and_three_workers() {
    let root = dataset();
    let train = root.join("train");
    let want = local_digest(&train, config(0, 1), 2);
    let workers: Vec<Worker> = (0..3).map(|_| Worker::start(&root, &[])).collect();
    for n in [1, 3] {
        let addrs: Vec<&str> = workers[..n].iter().map(|w| w.addr.as_str()).collect();
        // Two epochs and no more: an unbounded stream prefetches into the third, and the
        // workers' answer count below would include those batches.
        let mut loader = remote_loader(
            &train,
            LoaderConfig {
                epochs: Some(2),
                ..config(0, 1)
            },
            remote_config(&addrs, Duration::from_secs(20)),
        );
        assert_eq!(
            remote_digest(&mut loader, 2, |_, _| {}),
            want,
            "{n} workers"
        );
        let stats = loader.remote_stats().expect("remote stats");
        let answered: Vec<u64> = stats.workers.values().map(|w| w.batches).collect();
        assert_eq!(answered.iter().sum::<u64>(), 2 * loader.batches_per_epoch());
        assert!(
            answered.iter().all(|&b| b > 0),
            "every worker served: {answered:?}"
        );
        assert_eq!(stats.reassigned, 0);
    }
}

#[test]
fn the_cli_prints_the_same_digest_locally_and_remotely() {
    let root = dataset();
    let r = root.to_str().expect("utf-8 path");
    let flags = [
        "bench", r, "--size", "32", "--batch", "8", "--epochs", "1", "--warmup", "0", "--digest",
    ];
    let digest = |out: String| {
        out.lines()
            .find_map(|l| l.strip_prefix("digest: ").map(str::to_owned))
            .unwrap_or_else(|| panic!("no digest in {out}"))
    };
    let local = digest(common::ok(&flags));
    let a = Worker::start(&root, &[]);
    let b = Worker::start(&root, &[]);
    let list = format!("{},{}", a.addr, b.addr);
    let mut remote_flags = flags.to_vec();
    remote_flags.extend(["--remote", &list]);
    let out = common::ok(&remote_flags);
    assert_eq!(digest(out.clone()), local);
    assert!(
        out.contains("remote: 2 workers, 0 batches reassigned"),
        "{out}"
    );
    // Local cores as one more worker, and no remote one listening: still the same bytes.
    let mut mixed = flags.to_vec();
    mixed.extend(["--remote", &a.addr, "--local-workers", "1"]);
    assert_eq!(digest(common::ok(&mixed)), local);
}

#[test]
fn a_worker_killed_mid_epoch_loses_no_batch() {
    let root = dataset();
    let train = root.join("train");
    let want = local_digest(&train, config(0, 1), 2);
    let mut victim = Worker::start(&root, &["--max-in-flight", "2"]);
    let other = Worker::start(&root, &["--max-in-flight", "2"]);
    let victim_addr = victim.addr.clone();
    let mut loader = remote_loader(
        &train,
        config(0, 1),
        remote_config(&[&victim.addr, &other.addr], Duration::from_secs(30)),
    );
    let got = remote_digest(&mut loader, 2, |n, _| {
        if n == 10 {
            // Stopped first, so that requests pile up at it, then killed with them outstanding.
            victim.signal("STOP");
            std::thread::sleep(Duration::from_millis(300));
            victim.kill();
        }
    });
    assert_eq!(got, want);
    let stats = loader.remote_stats().expect("stats");
    let v = &stats.workers[&victim_addr];
    assert_eq!(v.lost, 1, "{stats:?}");
    assert!(
        stats.reassigned >= 1,
        "the batches outstanding at the killed worker were reassigned: {stats:?}"
    );
    assert!(
        stats
            .log
            .iter()
            .any(|l| l.contains(&victim_addr) && l.contains("lost")),
        "{:?}",
        stats.log
    );
}

#[test]
fn a_stopped_worker_is_cut_off_at_the_deadline() {
    let root = dataset();
    let train = root.join("train");
    let want = local_digest(&train, config(0, 1), 1);
    let stalled = Worker::start(&root, &["--max-in-flight", "2"]);
    let other = Worker::start(&root, &["--max-in-flight", "2"]);
    let stalled_addr = stalled.addr.clone();
    let deadline = Duration::from_millis(1500);
    let mut loader = remote_loader(
        &train,
        config(0, 1),
        remote_config(&[&stalled.addr, &other.addr], deadline),
    );
    let mut stopped_at = None;
    let got = remote_digest(&mut loader, 1, |n, _| {
        if n == 8 {
            stalled.signal("STOP");
            stopped_at = Some(Instant::now());
        }
    });
    let took = stopped_at.expect("stopped").elapsed();
    stalled.signal("CONT");
    assert_eq!(got, want);
    let stats = loader.remote_stats().expect("stats");
    assert!(
        stats.workers[&stalled_addr].deadline_misses >= 1,
        "{stats:?}"
    );
    // Detected within the deadline (plus the coordinator's tick and the rest of the epoch).
    assert!(
        took < deadline * 6,
        "the epoch took {took:?} after the stop"
    );
}

#[test]
fn a_worker_that_joins_mid_epoch_gets_work() {
    let root = dataset();
    let train = root.join("train");
    let want = local_digest(&train, config(0, 1), 1);
    let first = Worker::start(&root, &["--max-in-flight", "1"]);
    let tmp = tempfile::tempdir().expect("tempdir");
    let list = tmp.path().join("workers.txt");
    std::fs::write(&list, format!("{}\n", first.addr)).expect("write list");
    let mut remote = remote_config(&[], Duration::from_secs(20));
    remote.workers.file = Some(list.clone());
    let mut loader = remote_loader(&train, config(0, 1), remote);
    let mut joined: Option<Worker> = None;
    let got = remote_digest(&mut loader, 1, |n, l| {
        if n == 5 {
            let w = Worker::start(&root, &[]);
            std::fs::write(&list, format!("{}\n# joined\n{}\n", first.addr, w.addr))
                .expect("write list");
            let t = Instant::now();
            while l.remote_stats().is_some_and(|s| s.connected() < 2)
                && t.elapsed() < Duration::from_secs(10)
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            joined = Some(w);
        }
    });
    assert_eq!(got, want);
    let joined = joined.expect("joined");
    let stats = loader.remote_stats().expect("stats");
    assert!(stats.workers[&joined.addr].batches > 0, "{stats:?}");
}

#[test]
fn with_every_worker_gone_the_loader_fails_after_the_deadline_naming_them() {
    let root = dataset();
    let train = root.join("train");
    let mut a = Worker::start(&root, &[]);
    let addr = a.addr.clone();
    let deadline = Duration::from_secs(1);
    let mut loader = remote_loader(&train, config(0, 1), remote_config(&[&addr], deadline));
    let mut batches = loader.epoch(0);
    assert!(batches.next().expect("a batch").is_ok());
    a.kill();
    let started = Instant::now();
    let error = batches.find_map(Result::err).expect("the loader fails");
    let text = error.to_string();
    assert!(
        text.contains("no worker answered") && text.contains(&addr),
        "{text}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "failed after {:?}",
        started.elapsed()
    );
    drop(batches);
    // Nothing is stuck: the loader can be asked again (and fails again, promptly).
    let again = loader.resume(Position::new(0, 3)).find_map(Result::err);
    assert!(again.is_some());
}

#[test]
fn two_ranks_share_the_same_workers() {
    let root = dataset();
    let train = root.join("train");
    let workers: Vec<Worker> = (0..2).map(|_| Worker::start(&root, &[])).collect();
    let addrs: Vec<String> = workers.iter().map(|w| w.addr.clone()).collect();
    let ranks: Vec<_> = (0..2u32)
        .map(|rank| {
            let (train, addrs) = (train.clone(), addrs.clone());
            std::thread::spawn(move || {
                let a: Vec<&str> = addrs.iter().map(String::as_str).collect();
                let mut remote = remote_config(&a, Duration::from_secs(20));
                remote.client_name = format!("rank{rank}");
                let mut loader = remote_loader(&train, config(rank, 2), remote);
                remote_digest(&mut loader, 1, |_, _| {})
            })
        })
        .collect();
    for (rank, h) in ranks.into_iter().enumerate() {
        let got = h.join().expect("rank thread");
        assert_eq!(
            got,
            local_digest(&train, config(rank as u32, 2), 1),
            "rank {rank}"
        );
    }
}

/// A trainer's train and val loaders connect under one client name; the worker's limit on
/// requests in flight is per connection, so each gets all of it and none is closed for
/// "more than N requests in flight" (which the worker once counted per name).
#[test]
fn two_loaders_of_one_client_each_get_the_whole_in_flight_limit() {
    let root = dataset();
    let train = root.join("train");
    let worker = Worker::start(&root, &["--max-in-flight", "2"]);
    let loaders: Vec<_> = (0..2)
        .map(|_| {
            let (train, addr) = (train.clone(), worker.addr.clone());
            std::thread::spawn(move || {
                let mut remote = remote_config(&[&addr], Duration::from_secs(20));
                remote.client_name = "trainer-0:7/rank0".into();
                let mut loader = remote_loader(&train, config(0, 1), remote);
                let digest = remote_digest(&mut loader, 2, |_, _| {});
                (digest, loader.remote_stats().expect("stats"))
            })
        })
        .collect();
    let want = local_digest(&train, config(0, 1), 2);
    for h in loaders {
        let (got, stats) = h.join().expect("loader thread");
        assert_eq!(got, want);
        let w = &stats.workers[&worker.addr];
        assert_eq!((w.lost, stats.reassigned), (0, 0), "{:?}", stats.log);
    }
}

#[test]
fn wrong_secrets_and_other_data_are_refused_with_clear_messages() {
    let root = dataset();
    let train = root.join("train");
    let tmp = tempfile::tempdir().expect("tempdir");
    let token_file = tmp.path().join("token");
    std::fs::write(&token_file, "correct horse battery staple\n").expect("token");
    let guarded = Worker::start(
        &root,
        &["--token-file", token_file.to_str().expect("utf-8")],
    );
    let first_error = |remote: RemoteConfig, dir: &Path| {
        let mut loader = remote_loader(dir, config(0, 1), remote);
        let e = loader.epoch(0).find_map(Result::err).map(|e| e.to_string());
        e.expect("refused")
    };
    let short = Duration::from_secs(1);
    let mut wrong = remote_config(&[&guarded.addr], short);
    wrong.token = Token::from_file_bytes(b"a wrong secret of some length".to_vec());
    let e = first_error(wrong, &train);
    assert!(
        e.contains("authentication failed") && e.contains(&guarded.addr),
        "{e}"
    );
    let e = first_error(remote_config(&[&guarded.addr], short), &train);
    assert!(e.contains("requires a shared secret"), "{e}");
    // The right secret works.
    let mut right = remote_config(&[&guarded.addr], short);
    right.token = Token::from_file_bytes(b"correct horse battery staple".to_vec());
    let mut loader = remote_loader(&train, config(0, 1), right);
    assert!(loader.epoch(0).all(|b| b.is_ok()));
    // Another dataset (here: the val split) is not what the worker serves under that name.
    let other = tempfile::tempdir().expect("tempdir");
    let other_root = shardfeed_engine::demo::synthetic_dataset(other.path(), 3, 5).expect("other");
    let open = Worker::start(&root, &[]);
    let e = first_error(
        remote_config(&[&open.addr], short),
        &other_root.join("train"),
    );
    assert!(
        e.contains("serves train") && e.contains("test-client asked for"),
        "{e}"
    );
}

#[test]
fn random_bytes_close_that_connection_and_the_others_are_served() {
    let root = dataset();
    let train = root.join("train");
    let w = Worker::start(&root, &[]);
    let garbage: [&[u8]; 3] = [
        b"GET / HTTP/1.1\r\n\r\n",
        // The right magic and version, a Hello claiming 4 GiB: closed before any allocation.
        &[
            b'S', b'F', b'S', b'P', 1, 0, 1, 0, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0,
        ],
        &[0u8; 7],
    ];
    let mut open = Vec::new();
    for bytes in garbage {
        let mut s = TcpStream::connect(&w.addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(15)))
            .expect("timeout");
        s.write_all(bytes).expect("send");
        open.push(s);
    }
    // A client works meanwhile.
    let want = local_digest(&train, config(0, 1), 1);
    let mut loader = remote_loader(
        &train,
        config(0, 1),
        remote_config(&[&w.addr], Duration::from_secs(20)),
    );
    assert_eq!(remote_digest(&mut loader, 1, |_, _| {}), want);
    // The bad connections were closed by the worker (the truncated one at its handshake
    // timeout at the latest).
    for (i, mut s) in open.into_iter().enumerate() {
        let mut buf = [0u8; 64];
        let mut total = 0;
        loop {
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => total += n,
                Err(e) => panic!("connection {i} not closed: {e}"),
            }
            assert!(total < 4096);
        }
    }
}

#[test]
fn a_remote_loader_resumes_exactly_where_a_local_one_would() {
    let root = dataset();
    let train = root.join("train");
    let w = Worker::start(&root, &[]);
    let from = Position::new(1, 7);
    let digest_from = |loader: &mut Loader| {
        let mut d = StreamDigest::default();
        for b in loader.resume(from) {
            d.update(&b.expect("batch"));
        }
        assert_eq!(loader.next_position(), Some(Position::new(2, 0)));
        d.hex()
    };
    let mut local = Loader::open(&train, config(0, 1)).expect("local");
    let mut remote = remote_loader(
        &train,
        config(0, 1),
        remote_config(&[&w.addr], Duration::from_secs(20)),
    );
    assert_eq!(digest_from(&mut remote), digest_from(&mut local));
}

/// `shardfeed health` (the images' health check) says healthy while the worker's metrics
/// endpoint answers, and fails, naming the address, when it is gone or is not HTTP.
#[test]
fn health_reports_a_worker_up_then_gone() {
    let root = dataset();
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        probe.local_addr().expect("its address").port()
    };
    let metrics = format!("127.0.0.1:{port}");
    let mut worker = Worker::start(&root, &["--metrics", &metrics]);
    let deadline = Instant::now() + Duration::from_secs(10);
    let up = loop {
        let out = common::shardfeed(&["health", &metrics]);
        if out.status.success() || Instant::now() > deadline {
            break out;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let text = String::from_utf8_lossy(&up.stdout);
    assert!(up.status.success(), "{text}");
    assert!(text.contains("healthy"), "{text}");
    // The batch port speaks shardfeed's protocol, not HTTP.
    let (code, err) = common::fails(&["health", &worker.addr, "--timeout", "2"]);
    assert_ne!(code, 0);
    assert!(err.contains(&worker.addr), "{err}");
    worker.kill();
    let (code, err) = common::fails(&["health", &metrics]);
    assert_ne!(code, 0);
    assert!(
        err.contains(&metrics) && err.contains("cannot connect"),
        "{err}"
    );
}
