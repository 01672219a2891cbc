//! Real processes of the built binary on loopback: clusters form, survive
//! `kill -9` of their leader with every committed entry, take back a
//! restarted node, and (with five nodes) keep committing with two down but
//! refuse, retryably, with three down. Times are printed, not asserted
//! beyond generous liveness bounds: these machines are shared.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::time::Instant;

use tenure_proto::v1;
use tenure_proto::v1::admin_client::AdminClient;
use tonic::transport::Endpoint;

const LIVENESS: Duration = Duration::from_secs(20);

struct Cluster {
    addrs: BTreeMap<u64, String>,
    members: String,
    dir: tempfile::TempDir,
    nodes: BTreeMap<u64, Child>,
    /// More `tenure serve` arguments for every node.
    extra: Vec<String>,
    /// Each node's HTTP port, when it has one.
    http: BTreeMap<u64, String>,
}

impl Cluster {
    fn new(n: u64) -> Cluster {
        Cluster::with_args(n, Vec::new())
    }

    fn with_args(n: u64, extra: Vec<String>) -> Cluster {
        Cluster::with_http(n, extra, false)
    }

    /// `n` nodes with `extra` arguments, each with an HTTP port if `http`.
    fn with_http(n: u64, extra: Vec<String>, http: bool) -> Cluster {
        let (addrs, members) = common::free_members(n);
        let http = if http {
            common::free_members(n).0
        } else {
            BTreeMap::new()
        };
        let mut c = Cluster {
            addrs,
            members,
            dir: tempfile::tempdir().expect("temp dir"),
            nodes: BTreeMap::new(),
            extra,
            http,
        };
        for id in 1..=n {
            c.start(id);
        }
        c
    }

    fn start(&mut self, id: u64) {
        let data = self.dir.path().join(format!("node-{id}"));
        let log = std::fs::File::create(self.dir.path().join(format!("node-{id}.log")))
            .expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_tenure"))
            .args([
                "serve",
                "--id",
                &id.to_string(),
                "--initial-cluster",
                &self.members,
            ])
            .arg("--data-dir")
            .arg(&data)
            .args(&self.extra)
            .args(
                self.http
                    .get(&id)
                    .map(|h| ["--http-listen".to_owned(), h.clone()])
                    .into_iter()
                    .flatten(),
            )
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("tenure serve starts");
        self.nodes.insert(id, child);
    }

    fn kill(&mut self, id: u64) {
        if let Some(mut child) = self.nodes.remove(&id) {
            child.kill().expect("SIGKILL");
            let _ = child.wait();
        }
    }

    fn log(&self, id: u64) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("node-{id}.log"))).unwrap_or_default()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let ids: Vec<u64> = self.nodes.keys().copied().collect();
        for id in ids {
            self.kill(id);
        }
    }
}

async fn status(addr: &str) -> Option<v1::StatusResponse> {
    let channel = Endpoint::from_shared(format!("http://{addr}"))
        .ok()?
        .connect_timeout(Duration::from_millis(300))
        .timeout(Duration::from_secs(2))
        .connect_lazy();
    AdminClient::new(channel)
        .status(v1::StatusRequest {})
        .await
        .ok()
        .map(|r| r.into_inner())
}

/// Polls until some node among `ids` reports a leader that is among `ids`.
async fn leader(c: &Cluster, ids: &[u64]) -> Option<(u64, Duration)> {
    let start = Instant::now();
    while start.elapsed() < LIVENESS {
        for id in ids {
            if let Some(s) = status(&c.addrs[id])
                .await
                .filter(|s| ids.contains(&s.leader_id))
            {
                return Some((s.leader_id, start.elapsed()));
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

/// The leader every node names, once that has held for half a second.
async fn settled_leader(c: &Cluster, ids: &[u64]) -> u64 {
    let start = Instant::now();
    let mut last = None;
    while start.elapsed() < LIVENESS {
        let mut named = Vec::new();
        for id in ids {
            named.push(status(&c.addrs[id]).await.map(|s| s.leader_id));
        }
        let agreed = named
            .first()
            .copied()
            .flatten()
            .filter(|l| *l != 0 && named.iter().all(|n| *n == Some(*l)));
        match (agreed, last) {
            (Some(l), Some(p)) if l == p => return l,
            _ => last = agreed,
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("the cluster never settled on a leader");
}

/// A committed no-op (a force-release of a lock nobody holds) through
/// tenure-client bound to `addr`, which retries a retryable refusal (a
/// leader change in progress) with the same request for up to ten seconds.
async fn write(addr: &str, n: u32) -> Result<(), tenure_client::Error> {
    let config = tenure_client::ClientConfig::new([addr.to_owned()], "t", "ops").with_admin();
    let client = tenure_client::Client::connect(config).await?;
    client
        .force_release(&format!("noop-{n}"), "test write", None)
        .await
        .map(|_| ())
}

/// One attempt, raw, at the node `addr` itself (to see its own refusal).
async fn write_once(addr: &str, n: u32) -> Result<(), tonic::Status> {
    let channel = Endpoint::from_shared(format!("http://{addr}"))
        .expect("uri")
        .timeout(Duration::from_secs(3))
        .connect_lazy();
    let mut request = tonic::Request::new(v1::ForceReleaseRequest {
        tenant_id: "t".into(),
        lock_key: format!("noop-{n}"),
        reason: "test write".into(),
        lease_id: String::new(),
    });
    request
        .metadata_mut()
        .insert("x-owner-id", "ops".parse().expect("ascii"));
    request
        .metadata_mut()
        .insert("x-role", "ADMIN".parse().expect("ascii"));
    AdminClient::new(channel)
        .force_release(request)
        .await
        .map(|_| ())
}

async fn applied_at_least(addr: &str, index: u64) -> bool {
    let start = Instant::now();
    while start.elapsed() < LIVENESS {
        if status(addr).await.is_some_and(|s| s.applied_index >= index) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tn_repl_003_three_processes_survive_kill_9_of_the_leader_and_take_it_back() {
    let mut c = Cluster::new(3);
    let all = [1, 2, 3];
    let (first, formed) = leader(&c, &all)
        .await
        .unwrap_or_else(|| panic!("no leader; log:\n{}", c.log(1)));
    eprintln!("cluster formed, leader {first}, after {formed:?}");
    for n in 0..20 {
        write(&c.addrs[&2], n)
            .await
            .expect("writes commit (forwarded to the leader)");
    }
    let committed = status(&c.addrs[&first])
        .await
        .expect("leader answers")
        .commit_index;

    let killed_at = Instant::now();
    c.kill(first);
    let rest: Vec<u64> = all.iter().copied().filter(|id| *id != first).collect();
    let (second, _) = leader(&c, &rest)
        .await
        .expect("a new leader among the survivors");
    eprintln!(
        "kill -9 of leader {first}: new leader {second} after {:?}",
        killed_at.elapsed()
    );
    for id in &rest {
        assert!(
            applied_at_least(&c.addrs[id], committed).await,
            "node {id} lost committed entries"
        );
    }
    write(&c.addrs[&second], 100)
        .await
        .expect("the new leader commits");
    let now = status(&c.addrs[&second])
        .await
        .expect("leader answers")
        .commit_index;

    c.start(first);
    assert!(
        applied_at_least(&c.addrs[&first], now).await,
        "the restarted node catches up"
    );
    let digests: Vec<String> = {
        let mut d = Vec::new();
        for id in all {
            d.push(status(&c.addrs[&id]).await.expect("answers").table_digest);
        }
        d
    };
    assert!(
        digests.windows(2).all(|w| w[0] == w[1]),
        "replicas differ: {digests:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tn_repl_004_five_processes_commit_with_two_down_and_refuse_with_three_down() {
    let path = Path::new(env!("CARGO_BIN_EXE_tenure"));
    assert!(path.exists());
    let mut c = Cluster::new(5);
    let all = [1, 2, 3, 4, 5];
    // Every node follows the first leader (so each holds the membership)
    // before two go down: a founder killed the moment it wins, before any
    // follower has the membership, leaves nodes that cannot campaign.
    let first = settled_leader(&c, &all).await;
    // Two down, the leader among them: the other three elect and commit.
    let down: Vec<u64> = std::iter::once(first)
        .chain(all.iter().copied().filter(|i| *i != first).take(1))
        .collect();
    for id in &down {
        c.kill(*id);
    }
    let up: Vec<u64> = all.iter().copied().filter(|i| !down.contains(i)).collect();
    let Some((second, _)) = leader(&c, &up).await else {
        // Say why: each survivor's last log lines.
        let logs: Vec<String> = up
            .iter()
            .map(|id| {
                let log = c.log(*id);
                let tail: Vec<&str> = log.lines().rev().take(15).collect();
                format!(
                    "node {id}:\n{}",
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                )
            })
            .collect();
        panic!(
            "three of five (nodes {up:?}) elected no leader within {LIVENESS:?}\n{}",
            logs.join("\n")
        );
    };
    write(&c.addrs[&second], 1)
        .await
        .expect("three of five commit");
    // A third one down: no quorum. Writes fail, with a retryable reason.
    let third = up
        .iter()
        .copied()
        .find(|i| *i != second)
        .expect("another node");
    c.kill(second);
    c.kill(third);
    let survivor = up
        .iter()
        .copied()
        .find(|i| *i != second && *i != third)
        .expect("a survivor");
    let refused = tokio::time::timeout(LIVENESS, write_once(&c.addrs[&survivor], 2))
        .await
        .expect("the refusal comes within the liveness bound")
        .expect_err("two of five cannot commit");
    let reason = tenure_proto::convert::reason_of(&refused);
    assert!(
        reason.is_some_and(|r| r.is_retryable()) || refused.code() == tonic::Code::Unavailable,
        "refusal {refused:?} is retryable"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tn_ops_001_sigterm_of_the_leader_hands_over_and_exits_0() {
    let mut c = Cluster::new(3);
    let all = [1, 2, 3];
    leader(&c, &all).await.expect("a leader");
    write(&c.addrs[&1], 0).await.expect("commits");
    // Let formation settle: every node names the same leader, twice in a row.
    let first = settled_leader(&c, &all).await;
    let before = status(&c.addrs[&first]).await.expect("answers");
    let mut child = c.nodes.remove(&first).expect("the leader's process");
    let stopped_at = Instant::now();
    let sent = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(sent.success());
    let rest: Vec<u64> = all.iter().copied().filter(|id| *id != first).collect();
    let (second, _) = leader(&c, &rest).await.expect("a successor leads");
    eprintln!(
        "SIGTERM of leader {first}: node {second} leads after {:?}",
        stopped_at.elapsed()
    );
    let exit = tokio::task::spawn_blocking(move || child.wait())
        .await
        .expect("join")
        .expect("wait");
    assert!(
        exit.success(),
        "a graceful stop exits 0, got {exit:?}; log:\n{}",
        c.log(first)
    );
    assert!(
        c.log(first).contains("leadership handed over"),
        "log:\n{}",
        c.log(first)
    );
    let after = status(&c.addrs[&second]).await.expect("answers");
    assert!(after.term > before.term);
    write(&c.addrs[&second], 1)
        .await
        .expect("the successor commits");
}

fn tenure(c: &Cluster, args: &[&str]) -> (i32, String, String) {
    let endpoints = c.addrs.values().cloned().collect::<Vec<_>>().join(",");
    // `--endpoints` before the subcommand's own arguments (`run` passes
    // everything after `--` to its command).
    let mut all = vec![args[0], "--endpoints", &endpoints];
    all.extend(&args[1..]);
    common::run(&all)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tn_cli_001_locks_from_the_shell_and_a_command_under_a_lock() {
    let c = Cluster::new(3);
    leader(&c, &[1, 2, 3]).await.expect("a leader");
    write(&c.addrs[&1], 0).await.expect("the cluster commits");

    let (code, out, err) = tenure(
        &c,
        &[
            "lock",
            "acquire",
            "jobs/nightly",
            "--owner",
            "alice",
            "--json",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let lease: serde_json::Value = serde_json::from_str(out.trim()).expect("json");
    assert_eq!(
        (lease["state"].as_str(), lease["fencing_token"].as_u64()),
        (Some("ACTIVE"), Some(1))
    );

    let (code, _, err) = tenure(&c, &["lock", "acquire", "jobs/nightly", "--owner", "bob"]);
    assert_eq!(code, 1);
    assert!(err.contains("LOCK_HELD"), "{err}");

    let (code, out, _) = tenure(&c, &["lock", "get", "jobs/nightly", "--json"]);
    assert_eq!(code, 0);
    let state: serde_json::Value = serde_json::from_str(out.trim()).expect("json");
    assert_eq!(state["active_lease"]["owner_id"], "alice");

    // A command under a lock sees its token and its exit status is ours.
    let (code, out, err) = tenure(
        &c,
        &[
            "lock",
            "run",
            "jobs/run",
            "--owner",
            "carol",
            "--ttl-ms",
            "10000",
            "--",
            "sh",
            "-c",
            "echo token=$TENURE_FENCING_TOKEN; exit 7",
        ],
    );
    assert_eq!(code, 7, "{err}");
    assert!(out.contains("token=1"), "{out}");
    let (_, out, _) = tenure(&c, &["lock", "get", "jobs/run", "--json"]);
    let state: serde_json::Value = serde_json::from_str(out.trim()).expect("json");
    assert_eq!(state["held"], false, "released after the command");

    let (code, out, err) = tenure(
        &c,
        &[
            "lock",
            "force-release",
            "jobs/nightly",
            "--reason",
            "test",
            "--owner",
            "ops",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("free"), "{out}");
}

/// The leader, as a status call with `token` names it (a cluster with an
/// auth file answers no status without one).
async fn leader_as(c: &Cluster, token: &str) -> u64 {
    let config = tenure_client::ClientConfig::new(c.addrs.values().cloned(), "default", "ops")
        .with_token(token);
    let start = Instant::now();
    while start.elapsed() < LIVENESS {
        if let Ok(client) = tenure_client::Client::connect(config.clone()).await
            && let Ok(s) = client.status().await
            && let Some(leader) = s.leader_id
        {
            return leader;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no leader named");
}

/// An Argon2id hash of `token`, as `tenure auth hash-token` prints it.
fn hash_token(token: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_tenure"))
        .args(["auth", "hash-token", token])
        .output()
        .expect("tenure runs");
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tn_cli_003_every_lock_and_cluster_command_works_with_a_token_and_is_refused_without() {
    let dir = tempfile::tempdir().expect("temp dir");
    let auth = dir.path().join("auth.toml");
    let file = format!(
        "[[principal]]\nname = \"ops\"\ntoken_hash = \"{}\"\nroles = [\"admin\"]\ntenants = [\"*\"]\n\n\
         [[principal]]\nname = \"worker\"\ntoken_hash = \"{}\"\nroles = [\"writer\", \"reader\"]\ntenants = [\"default\"]\n",
        hash_token("ops-secret"),
        hash_token("worker-secret"),
    );
    std::fs::write(&auth, file).expect("auth file");
    let c = Cluster::with_args(3, vec!["--auth-file".into(), auth.display().to_string()]);
    leader_as(&c, "ops-secret").await;
    // `--token` right after `lock` / `cluster` (it is global to both), so
    // it stays out of a `run` command's own arguments.
    let with_token = |token: &str, args: &[&str]| {
        let mut all = vec![args[0], "--token", token];
        all.extend(&args[1..]);
        tenure(&c, &all)
    };
    let as_worker = |args: &[&str]| with_token("worker-secret", args);
    let as_ops = |args: &[&str]| with_token("ops-secret", args);

    // Without a token every lock command is refused, clearly.
    for args in [
        &["lock", "acquire", "jobs/x"][..],
        &["lock", "get", "jobs/x"],
        &["lock", "list"],
        &["lock", "release", "0000000000000001"],
        &["lock", "renew", "0000000000000001"],
        &["lock", "force-release", "jobs/x", "--reason", "r"],
        &["lock", "watch", "--count", "1"],
        &["lock", "run", "jobs/x", "--", "true"],
        &["cluster", "status"],
    ] {
        let (code, _, err) = tenure(&c, args);
        assert_eq!(code, 1, "{args:?} without a token: {err}");
        assert!(err.contains("OWNER_TOKEN_REQUIRED"), "{args:?}: {err}");
    }

    // With one, everything works; the principal owns the lease.
    let (code, out, err) = as_worker(&["lock", "acquire", "jobs/x", "--owner", "worker", "--json"]);
    assert_eq!(code, 0, "{err}");
    let lease: serde_json::Value = serde_json::from_str(out.trim()).expect("json");
    assert_eq!(lease["owner_id"], "worker");
    let id = lease["lease_id"].as_str().expect("an id").to_owned();
    let (code, out, err) = as_worker(&["lock", "renew", &id, "--json"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("ACTIVE"), "{out}");
    let (code, out, err) = as_worker(&["lock", "get", "jobs/x", "--json"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&id), "{out}");
    let (code, out, err) = as_worker(&["lock", "list", "--json"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("jobs/x"), "{out}");
    let (code, out, err) = as_worker(&["lock", "release", &id, "--json"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("RELEASED"), "{out}");
    let (code, out, err) = as_worker(&["lock", "watch", "--from", "1", "--count", "2", "--json"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().count(), 2, "{out}");
    let (code, out, err) = as_worker(&[
        "lock",
        "run",
        "jobs/y",
        "--",
        "sh",
        "-c",
        "echo token=$TENURE_FENCING_TOKEN",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("token=1"), "{out}");
    // Force-release needs the admin role.
    let (code, _, err) = as_worker(&["lock", "force-release", "jobs/x", "--reason", "r"]);
    assert_eq!(code, 1);
    assert!(err.contains("FORBIDDEN"), "{err}");
    let (code, out, err) = as_ops(&["lock", "force-release", "jobs/x", "--reason", "r"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("free"), "{out}");
    // Cluster commands too.
    let (code, out, err) = as_ops(&["cluster", "status", "--json"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("\"leader_id\""), "{out}");
    let leader = leader_as(&c, "ops-secret").await;
    let to = if leader == 1 { "2" } else { "1" };
    let (code, out, err) = as_ops(&["cluster", "transfer-leader", "--to", to]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&format!("node {to} leads")), "{out}");
    let backup = dir.path().join("backup.bin");
    let (code, _, err) = as_ops(&["cluster", "export", "--out", &backup.display().to_string()]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = as_worker(&["cluster", "export", "--out", &backup.display().to_string()]);
    assert_eq!(code, 1);
    assert!(err.contains("FORBIDDEN"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ls_acc_01_over_three_processes_ten_concurrent_clients_one_wins() {
    let c = Cluster::new(3);
    leader(&c, &[1, 2, 3]).await.expect("a leader");
    write(&c.addrs[&1], 0).await.expect("the cluster commits");
    let addrs: Vec<String> = c.addrs.values().cloned().collect();
    let mut calls = Vec::new();
    for i in 0..10 {
        let addr = addrs[i % addrs.len()].clone();
        calls.push(tokio::spawn(async move {
            let channel = Endpoint::from_shared(format!("http://{addr}"))
                .expect("uri")
                .connect_lazy();
            let mut client = tenure_proto::v1::lock_client::LockClient::new(channel);
            let start = Instant::now();
            loop {
                let mut request = tonic::Request::new(v1::AcquireRequest {
                    tenant_id: "t".into(),
                    lock_key: "acc-01".into(),
                    owner_id: String::new(),
                    request_id: format!("r{i}"),
                    ttl_ms: 30_000,
                    wait_timeout_ms: 0,
                    ..Default::default()
                });
                request
                    .metadata_mut()
                    .insert("x-owner-id", format!("owner-{i}").parse().expect("ascii"));
                match client.acquire(request).await {
                    // A leader change in progress: retry, as a client does.
                    Err(s)
                        if start.elapsed() < Duration::from_secs(10)
                            && tenure_proto::convert::reason_of(&s)
                                .is_some_and(|r| r.is_retryable()) =>
                    {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    done => return done,
                }
            }
        }));
    }
    let mut outcomes = (0, 0);
    for call in calls {
        match call.await.expect("joined") {
            Ok(_) => outcomes.0 += 1,
            Err(s)
                if tenure_proto::convert::reason_of(&s) == Some(tenure_core::Reason::LockHeld) =>
            {
                outcomes.1 += 1
            }
            Err(s) => panic!("unexpected {s:?}"),
        }
    }
    assert_eq!(outcomes, (1, 9));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tn_bench_001_tn_mode_008_tenure_bench_runs_every_workload_against_real_processes() {
    let c = Cluster::new(3);
    leader(&c, &[1, 2, 3]).await.expect("a leader");
    write(&c.addrs[&1], 0).await.expect("the cluster commits");
    let pids = c
        .nodes
        .values()
        .map(|n| n.id().to_string())
        .collect::<Vec<_>>()
        .join(",");
    for workload in [
        "lock-cycle",
        "fenced",
        "keep-alive",
        "contended",
        "get",
        "shared-readers",
        "semaphore",
    ] {
        let (code, out, err) = tenure(
            &c,
            &[
                "bench",
                "--workload",
                workload,
                "--clients",
                "4",
                "--keys",
                "8",
                "--leases",
                "20",
                "--renew-ms",
                "100",
                "--limit",
                "2",
                "--writers",
                "0.2",
                "--duration",
                "1.5",
                "--warmup",
                "0.5",
                "--watch-pid",
                &pids,
                "--quiet",
                "--no-write",
                "--json",
            ],
        );
        assert_eq!(code, 0, "{workload}: {err}");
        let report: serde_json::Value = serde_json::from_str(out.trim()).expect("one JSON report");
        eprintln!("{workload}: {report}");
        assert_eq!(report["workload"], workload);
        assert!(
            report["ok"].as_u64().unwrap() > 0,
            "{workload}: nothing succeeded"
        );
        assert_eq!(report["errors"], serde_json::json!({}), "{workload}");
        assert!(report["p50_ms"].as_f64().unwrap() > 0.0);
        assert!(report["p50_ms"].as_f64() <= report["p99_ms"].as_f64());
        assert_eq!(report["cpu"].as_array().unwrap().len(), 3);
    }

    // CSV and Markdown files, and settings out of range refused.
    let out_dir = c.dir.path().join("bench-out");
    let (code, _, err) = tenure(
        &c,
        &[
            "bench",
            "--clients",
            "2",
            "--duration",
            "0.5",
            "--warmup",
            "0",
            "--quiet",
            "--format",
            "csv",
            "--name",
            "smoke",
            "--out",
            out_dir.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{err}");
    let csv = std::fs::read_to_string(out_dir.join("smoke.csv")).expect("the CSV file");
    assert!(csv.starts_with("system,workload,clients,"), "{csv}");
    assert!(
        csv.lines()
            .nth(1)
            .unwrap()
            .starts_with("tenure,lock-cycle,2,"),
        "{csv}"
    );
    let md = std::fs::read_to_string(out_dir.join("smoke.md")).expect("the Markdown file");
    assert!(md.contains("| tenure | lock-cycle | 2 |"), "{md}");
    let (code, _, err) = tenure(&c, &["bench", "--contention", "2", "--quiet", "--no-write"]);
    assert_ne!(code, 0);
    assert!(err.contains("--contention"), "{err}");
}

/// One fresh 3-node start: the time the first leader took office, and
/// whether, in the 5 s after, a leader changed or a call met a retryable
/// refusal (NOT_LEADER) on any node.
async fn fresh_start() -> Result<Duration, String> {
    let c = Cluster::new(3);
    let start = Instant::now();
    // One client per node, each bound to that node alone: a follower
    // forwards, so any NOT_LEADER it answers shows as a retry.
    let mut clients = Vec::new();
    for addr in c.addrs.values() {
        let mut config = tenure_client::ClientConfig::new([addr.clone()], "t", "probe");
        config.call_timeout = Duration::from_secs(30);
        clients.push(
            tenure_client::Client::connect(config)
                .await
                .map_err(|e| format!("{addr}: {e}"))?,
        );
    }
    // The first linearizable read answered: a leader is in office.
    clients[0]
        .get("probe")
        .await
        .map_err(|e| format!("no leader took office: {e}"))?;
    let took_office = start.elapsed();
    let first = clients[0].status().await.map_err(|e| e.to_string())?;
    let retries: Vec<u64> = clients.iter().map(tenure_client::Client::retries).collect();
    let watch_until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < watch_until {
        for client in &clients {
            client.get("probe").await.map_err(|e| e.to_string())?;
            let s = client.status().await.map_err(|e| e.to_string())?;
            if (s.leader_id, s.term) != (first.leader_id, first.term) {
                return Err(format!(
                    "leader changed from {:?} (term {}) to {:?} (term {})",
                    first.leader_id, first.term, s.leader_id, s.term
                ));
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for (client, before) in clients.iter().zip(retries) {
        if client.retries() != before {
            return Err(format!(
                "{} retryable refusals after the leader took office",
                client.retries() - before
            ));
        }
    }
    Ok(took_office)
}

/// `TENURE_FORMATION_STARTS=50` for the full check; CI runs 3.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tn_repl_011_a_fresh_cluster_elects_once_and_keeps_its_leader() {
    let starts: u32 = std::env::var("TENURE_FORMATION_STARTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let mut failures = Vec::new();
    for i in 0..starts {
        match fresh_start().await {
            Ok(took) => println!("start {i}: leader in office after {took:?}, kept for 5 s"),
            Err(e) => failures.push(format!("start {i}: {e}")),
        }
    }
    println!(
        "{} of {starts} fresh starts kept their first leader",
        starts as usize - failures.len()
    );
    assert!(failures.is_empty(), "{failures:#?}");
}

/// `scripts/durability-check`: three nodes of this binary under strace;
/// each of 10 grants must follow an fdatasync of the raft log's journal on
/// the leader and a follower, and the same run with `--unsafe-no-fsync` must fail that
/// check (the check bites). The script installs strace when missing.
#[test]
fn tn_dur_001_every_grant_is_acknowledged_after_an_fdatasync_on_a_quorum() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = Command::new("bash")
        .arg(root.join("scripts/durability-check"))
        .arg("10")
        .env("TENURE_BIN", env!("CARGO_BIN_EXE_tenure"))
        .output()
        .expect("the script runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{text}");
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("synced: every grant was acknowledged after an fdatasync"),
        "{text}"
    );
    // Without the syncs the check fails (a store may still sync its files
    // now and then on its own, so not necessarily for every grant).
    assert!(
        text.contains("grants were acknowledged without a quorum fdatasync"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tn_watch_001_a_watch_resumes_on_another_node_after_kill_9_of_its_node() {
    let mut c = Cluster::new(3);
    let leader = settled_leader(&c, &[1, 2, 3]).await;
    let config = tenure_client::ClientConfig::new(c.addrs.values().cloned(), "t", "watcher");
    let client = tenure_client::Client::connect(config)
        .await
        .expect("connects");
    let first = client
        .acquire("r/a", Duration::from_secs(30))
        .await
        .expect("granted");
    let mut watch = client
        .watch(tenure_client::WatchOptions {
            from_sequence: 1,
            ..tenure_client::WatchOptions::default()
        })
        .await
        .expect("watching");
    let mut seqs = vec![next_seq(&mut watch).await];
    // The watch runs on the node the client follows, the leader: kill it.
    c.kill(leader);
    let up: Vec<u64> = [1, 2, 3].into_iter().filter(|i| *i != leader).collect();
    settled_leader(&c, &up).await;
    let _second = client
        .acquire("r/b", Duration::from_secs(30))
        .await
        .expect("a new leader grants");
    let last = client.status().await.expect("status").audit_sequence;
    while seqs.last() != Some(&last) {
        seqs.push(next_seq(&mut watch).await);
    }
    let expected: Vec<u64> = (1..=last).collect();
    assert_eq!(
        seqs, expected,
        "every event once, in order, across the failover"
    );
    drop(first);
}

async fn next_seq(w: &mut tenure_client::Watch) -> u64 {
    tokio::time::timeout(LIVENESS, w.next())
        .await
        .expect("an event in time")
        .expect("the watch goes on")
        .expect("an event")
        .event
        .seq
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tn_cfg_002_lock_delay_from_a_flag_end_to_end_and_cluster_configure() {
    let c = Cluster::with_args(
        3,
        ["--ttl-min-ms", "1000", "--lock-delay-ms", "1500"]
            .map(String::from)
            .to_vec(),
    );
    // The founder put its limits in the log: every node shows them.
    let start = Instant::now();
    loop {
        let (code, out, _) = tenure(&c, &["cluster", "status", "--json"]);
        if code == 0 {
            let v: serde_json::Value = serde_json::from_str(out.trim()).expect("json");
            if v["limits"]["lock_delay_ms"] == 1500 && v["limits"]["ttl_min_ms"] == 1000 {
                break;
            }
        }
        assert!(
            start.elapsed() < LIVENESS,
            "the founding limits never showed"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (code, out, _) = tenure(&c, &["cluster", "status"]);
    assert_eq!(code, 0);
    assert!(out.contains("lock-delay 1500 ms"), "{out}");

    // A 1 s lease nobody keeps alive expires; the lock then stays delayed
    // for 1.5 s (LOCK_DELAYED), then is granted with the next token.
    let client = |owner: &str| {
        let config = tenure_client::ClientConfig::new(c.addrs.values().cloned(), "t", owner);
        tenure_client::Client::connect(config)
    };
    let alice = client("alice").await.expect("connects");
    let ttl = Duration::from_millis(1_000);
    let first = alice
        .lease("k", ttl, tenure_client::AcquireOptions::default())
        .await
        .expect("granted");
    // Bob asks with raw calls (tenure-client would retry LOCK_DELAYED, a
    // retryable refusal, until the grant) through node 1, which forwards.
    let channel = Endpoint::from_shared(format!("http://{}", c.addrs[&1]))
        .expect("uri")
        .timeout(Duration::from_secs(3))
        .connect_lazy();
    let mut lock = tenure_proto::v1::lock_client::LockClient::new(channel);
    let mut seen_delayed = false;
    let mut n = 0;
    let granted = loop {
        n += 1;
        let mut request = tonic::Request::new(v1::AcquireRequest {
            tenant_id: "t".into(),
            lock_key: "k".into(),
            owner_id: "bob".into(),
            request_id: format!("bob-{n}"),
            ttl_ms: 1_000,
            wait_timeout_ms: 0,
            ..Default::default()
        });
        request
            .metadata_mut()
            .insert("x-owner-id", "bob".parse().expect("ascii"));
        match lock.acquire(request).await {
            Ok(lease) => break lease.into_inner(),
            Err(status) => match tenure_proto::convert::reason_of(&status) {
                Some(tenure_client::Reason::LockDelayed) => seen_delayed = true,
                Some(tenure_client::Reason::LockHeld) => {}
                other => panic!("unexpected refusal {other:?}: {status}"),
            },
        }
        assert!(
            start.elapsed() < LIVENESS * 2,
            "never granted after the delay"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(seen_delayed, "the lock-delay was in force after the expiry");
    assert_eq!(granted.fencing_token, first.view.token + 1);

    // At run time: an admin changes it; an unworkable change is refused.
    let (code, out, err) = tenure(
        &c,
        &[
            "cluster",
            "configure",
            "--lock-delay-ms",
            "0",
            "--lease-retention-count",
            "5000",
            "--lease-retention-entries",
            "60000",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("lock-delay 0 ms"), "{out}");
    let (code, _, err) = tenure(
        &c,
        &[
            "cluster",
            "configure",
            "--ttl-min-ms",
            "5000",
            "--ttl-max-ms",
            "1000",
        ],
    );
    assert_eq!(code, 1);
    assert!(err.contains("INVALID_REQUEST"), "{err}");
    let (code, out, _) = tenure(&c, &["cluster", "status", "--json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("json");
    assert_eq!(v["limits"]["lock_delay_ms"], 0, "{out}");
    assert_eq!(v["limits"]["lease_retention_count"], 5000, "{out}");
    assert_eq!(v["limits"]["lease_retention_entries"], 60000, "{out}");
    assert_eq!(
        v["limits"]["request_retention_count"],
        tenure_core::DEFAULT_RETENTION_COUNT,
        "{out}"
    );
    assert_eq!(
        v["limits"]["ttl_min_ms"], 1000,
        "the refused change changed nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tn_probe_001_healthz_and_readyz_follow_the_cluster() {
    let mut c = Cluster::with_http(3, Vec::new(), true);
    settled_leader(&c, &[1, 2, 3]).await;
    // Every node: healthy, and ready once it knows the leader.
    for (id, addr) in &c.http {
        let (code, body) = common::http_get(addr, "/healthz", None)
            .await
            .expect("the HTTP port answers");
        assert_eq!(code, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).expect("json");
        assert_eq!(v["status"], "ok");
        assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
        let start = Instant::now();
        loop {
            let (code, body) = common::http_get(addr, "/readyz", None)
                .await
                .expect("answers");
            if code == 200 {
                let v: serde_json::Value = serde_json::from_str(&body).expect("json");
                assert_eq!(v["status"], "ready", "{body}");
                assert!(
                    v["leader_id"]
                        .as_u64()
                        .is_some_and(|l| (1..=3).contains(&l)),
                    "{body}"
                );
                break;
            }
            assert!(start.elapsed() < LIVENESS, "node {id} never ready: {body}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // A node alone knows no leader: still healthy, not ready, and says why.
    let leader = settled_leader(&c, &[1, 2, 3]).await;
    let others: Vec<u64> = (1..=3).filter(|i| *i != leader).collect();
    let alone = others[0];
    c.kill(leader);
    c.kill(others[1]);
    let addr = c.http[&alone].clone();
    let start = Instant::now();
    loop {
        let (code, body) = common::http_get(&addr, "/readyz", None)
            .await
            .expect("answers");
        if code == 503 {
            let v: serde_json::Value = serde_json::from_str(&body).expect("json");
            assert_eq!(v["status"], "not ready", "{body}");
            assert!(
                v["reason"].as_str().is_some_and(|r| !r.is_empty()),
                "{body}"
            );
            break;
        }
        assert!(start.elapsed() < LIVENESS, "still ready alone: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (code, _) = common::http_get(&addr, "/healthz", None)
        .await
        .expect("answers");
    assert_eq!(code, 200, "alive, though not ready");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tn_metrics_001_metrics_cover_raft_calls_leases_and_access_and_pass_promtool() {
    let c = Cluster::with_http(3, Vec::new(), true);
    let leader = settled_leader(&c, &[1, 2, 3]).await;
    let client = |owner: &str| {
        let config = tenure_client::ClientConfig::new(c.addrs.values().cloned(), "t", owner);
        tenure_client::Client::connect(config)
    };
    let alice = client("alice").await.expect("connects");
    let bob = client("bob").await.expect("connects");
    let ttl = Duration::from_secs(10);
    let lease = alice
        .lease("k", ttl, tenure_client::AcquireOptions::default())
        .await
        .expect("granted");
    let held = bob
        .lease("k", ttl, tenure_client::AcquireOptions::default())
        .await
        .expect_err("held");
    assert_eq!(held.reason(), tenure_client::Reason::LockHeld);
    alice
        .release(&lease.view.id.to_string(), None)
        .await
        .expect("released");
    // A call with no identity: an access refusal.
    let refused = write_once_anonymous(&c.addrs[&leader]).await;
    assert!(refused.is_err());
    // Two calls of the HTTP API: a read, and a refusal with its reason.
    let (code, _) = common::http_call(&c.http[&leader], "GET", "/locks/k?tenant_id=t", &[], "")
        .await
        .expect("the HTTP port answers");
    assert_eq!(code, 200);
    let (code, _) = common::http_call(&c.http[&leader], "POST", "/leases/acquire", &[], "null")
        .await
        .expect("the HTTP port answers");
    assert_eq!(code, 400);

    let (code, text) = common::http_get(&c.http[&leader], "/metrics", None)
        .await
        .expect("the HTTP port answers");
    assert_eq!(code, 200, "{text}");
    for needed in [
        "tenure_raft_role{role=\"leader\"} 1",
        "tenure_raft_term ",
        "tenure_raft_commit_index ",
        "tenure_raft_applied_index ",
        "tenure_raft_leader_changes_total",
        "tenure_raft_proposals_total",
        "tenure_raft_commands_per_entry_bucket",
        "tenure_log_flush_duration_seconds_bucket",
        "tenure_rpc_duration_seconds_bucket{method=\"Lock/Acquire\",result=\"OK\"",
        "tenure_rpc_duration_seconds_bucket{method=\"Lock/Acquire\",result=\"LOCK_HELD\"",
        "tenure_audit_events_total{kind=\"LEASE_ACQUIRE\"} 1",
        "tenure_audit_events_total{kind=\"LEASE_RELEASE\"} 1",
        "tenure_leases_active 0",
        "tenure_locks 1",
        "tenure_auth_failures_total{reason=\"OWNER_TOKEN_REQUIRED\"}",
    ] {
        assert!(text.contains(needed), "no {needed} in:\n{text}");
    }
    let http_series = |route: &str, result: &str| {
        text.lines().any(|l| {
            l.starts_with("tenure_http_duration_seconds_count{")
                && l.contains(&format!("route=\"{route}\""))
                && l.contains(&format!("result=\"{result}\""))
        })
    };
    assert!(http_series("/locks/{lock_key}", "OK"), "{text}");
    assert!(http_series("/leases/acquire", "INVALID_REQUEST"), "{text}");
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        assert!(
            line.starts_with("tenure_"),
            "a metric outside tenure_*: {line}"
        );
    }
    // Prometheus's own linter accepts the scrape.
    let mut check = Command::new(common::promtool())
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool runs");
    {
        use std::io::Write as _;
        check
            .stdin
            .take()
            .expect("stdin")
            .write_all(text.as_bytes())
            .expect("written");
    }
    let out = check.wait_with_output().expect("promtool ends");
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// An acquire with no caller identity at all, at `addr`.
async fn write_once_anonymous(addr: &str) -> Result<(), tonic::Status> {
    let channel = Endpoint::from_shared(format!("http://{addr}"))
        .expect("uri")
        .timeout(Duration::from_secs(3))
        .connect_lazy();
    let mut lock = tenure_proto::v1::lock_client::LockClient::new(channel);
    lock.acquire(v1::AcquireRequest {
        tenant_id: "t".into(),
        lock_key: "anon".into(),
        owner_id: String::new(),
        request_id: "anon-1".into(),
        ttl_ms: 10_000,
        wait_timeout_ms: 0,
        ..Default::default()
    })
    .await
    .map(|_| ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tn_log_001_json_logs_are_one_object_per_line_with_level_target_node_and_term() {
    let c = Cluster::with_args(3, ["--log-format", "json"].map(String::from).to_vec());
    let leader = settled_leader(&c, &[1, 2, 3]).await;
    // Make every node log once more now that it knows the term: a SIGHUP
    // without an auth file says so at info.
    for child in c.nodes.values() {
        let sent = Command::new("kill")
            .args(["-HUP", &child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(sent.success());
    }
    for id in 1..=3 {
        let start = Instant::now();
        while !c.log(id).contains("no auth file to reload") {
            assert!(
                start.elapsed() < LIVENESS,
                "node {id} did not log the SIGHUP"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let log = c.log(id);
        let mut lines = 0;
        let mut with_term = 0;
        for line in log.lines().filter(|l| !l.trim().is_empty()) {
            let v: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("node {id}: not one JSON object: {e}: {line}"));
            assert!(v["level"].is_string(), "{line}");
            assert!(v["target"].is_string(), "{line}");
            assert!(v["timestamp"].is_string(), "{line}");
            assert_eq!(v["node_id"], id, "{line}");
            assert!(v["term"].is_u64(), "{line}");
            lines += 1;
            if v["term"].as_u64().is_some_and(|t| t >= 1) {
                with_term += 1;
            }
        }
        assert!(lines > 0, "node {id} logged nothing");
        assert!(
            with_term > 0,
            "node {id} never logged a term (leader {leader})"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tn_bak_001_a_backup_through_a_follower_is_the_leaders_table_and_reads_back_whole() {
    let c = Cluster::new(3);
    let leader = settled_leader(&c, &[1, 2, 3]).await;
    let follower = (1..=3).find(|id| *id != leader).expect("a follower");
    // A lock workload: holders, a waiter, released and expired leases.
    let config = tenure_client::ClientConfig::new(c.addrs.values().cloned(), "t", "alice");
    let alice = tenure_client::Client::connect(config)
        .await
        .expect("connects");
    let ttl = Duration::from_secs(30);
    let mut held = Vec::new();
    for n in 0..20 {
        let l = alice
            .lease(
                &format!("jobs/{n}"),
                ttl,
                tenure_client::AcquireOptions::default(),
            )
            .await
            .expect("granted");
        if n % 3 == 0 {
            alice
                .release(&l.view.id.to_string(), None)
                .await
                .expect("released");
        } else {
            held.push(l);
        }
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("backup.jsonl");
    let file_arg = file.display().to_string();
    // Only the follower is named: the backup must come from the leader.
    let (code, out, err) = common::run(&[
        "cluster",
        "backup",
        "--endpoints",
        &c.addrs[&follower],
        "--out",
        &file_arg,
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("20 leases (13 active, 0 waiting)"), "{out}");
    let text = std::fs::read_to_string(&file).expect("the backup");
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    let header = &lines[0];
    assert_eq!(header["type"], "header");
    assert_eq!(header["format"], "tenure-backup/1");
    assert_eq!(
        header["source_node"], leader,
        "read on the leader: {header}"
    );
    assert_eq!(header["counts"]["active"], held.len(), "{header}");
    // The leader's digest at its applied index, as status shows it.
    let status = status(&c.addrs[&leader]).await.expect("status");
    if status.applied_index == header["applied_index"].as_u64().unwrap_or(0) {
        assert_eq!(header["table_digest"], status.table_digest.as_str());
    }
    // Every held lease, with its token and a remaining TTL within its TTL.
    for l in &held {
        let id = l.view.id.to_string();
        let line = lines
            .iter()
            .find(|v| v["type"] == "lease" && v["lease_id"] == id.as_str())
            .unwrap_or_else(|| panic!("lease {id} in the backup"));
        assert_eq!(line["state"], "ACTIVE");
        assert_eq!(line["fencing_token"], l.view.token);
        let left = line["remaining_ttl_ms"].as_u64().expect("a remaining TTL");
        assert!(left > 0 && left <= 30_000, "{line}");
    }
    let last = lines.last().expect("a trailer");
    assert_eq!(last["type"], "trailer");
    assert_eq!(last["lines"], lines.len() - 1);
    // It reads back whole; no partial file is left.
    let (code, out, err) = common::run(&["check", "backup", &file_arg]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("backup: pass"), "{out}");
    assert!(!dir.path().join("backup.jsonl.partial").exists());
    // To stdout: the same records (the export time differs).
    let (code, streamed, err) = tenure(&c, &["cluster", "backup", "--out", "-"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(streamed.lines().count(), text.lines().count());
    assert!(err.contains("sha256"), "{err}");
    // A damaged copy is refused with its line.
    let damaged = dir.path().join("damaged.jsonl");
    let mut cut: Vec<&str> = text.lines().collect();
    cut.pop();
    std::fs::write(&damaged, cut.join("\n") + "\n").expect("written");
    let (code, out, _) = common::run(&["check", "backup", &damaged.display().to_string()]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(&format!("line {}", cut.len() + 1)), "{out}");
}

/// A client of tenant `t` as `alice` on `c`.
async fn alice(c: &Cluster) -> tenure_client::Client {
    let config = tenure_client::ClientConfig::new(c.addrs.values().cloned(), "t", "alice");
    tenure_client::Client::connect(config)
        .await
        .expect("connects")
}

/// `alice` claiming the admin role (development mode).
async fn admin(c: &Cluster) -> tenure_client::Client {
    let config =
        tenure_client::ClientConfig::new(c.addrs.values().cloned(), "t", "alice").with_admin();
    tenure_client::Client::connect(config)
        .await
        .expect("connects")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tn_bak_003_back_up_through_a_follower_wipe_every_node_restore_into_a_fresh_cluster() {
    use tenure_client::AcquireOptions;
    let short_ttls = vec!["--ttl-min-ms".to_owned(), "1000".to_owned()];
    let mut old = Cluster::with_args(3, short_ttls);
    let leader = settled_leader(&old, &[1, 2, 3]).await;
    let follower = (1..=3).find(|id| *id != leader).expect("a follower");
    // The founder's limits are in force.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let limits = status(&old.addrs[&leader]).await.and_then(|s| s.limits);
        if limits.is_some_and(|l| l.ttl_min_ms == 1000) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the founding limits never applied"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let client = alice(&old).await;
    // A workload: holders with a long TTL, holders with a short one,
    // released leases, a second grant on some keys, a waiter.
    let mut held = BTreeMap::new();
    for n in 0..12u32 {
        let key = format!("jobs/{n}");
        let ttl = Duration::from_secs(if n % 4 == 1 { 4 } else { 120 });
        let l = client
            .lease(&key, ttl, AcquireOptions::default())
            .await
            .expect("granted");
        if n % 3 == 0 {
            client
                .release(&l.view.id.to_string(), None)
                .await
                .expect("released");
            let again = client
                .lease(&key, ttl, AcquireOptions::default())
                .await
                .expect("granted again");
            held.insert(key, again.view);
        } else {
            held.insert(key, l.view);
        }
    }
    let waiter = {
        let client = alice(&old).await;
        tokio::spawn(async move {
            let wait = AcquireOptions {
                wait: Duration::from_secs(60),
                ..AcquireOptions::default()
            };
            client.lease("jobs/2", Duration::from_secs(120), wait).await
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("backup.jsonl");
    let file_arg = file.display().to_string();
    let (code, out, err) = common::run(&[
        "cluster",
        "backup",
        "--endpoints",
        &old.addrs[&follower],
        "--out",
        &file_arg,
    ]);
    assert_eq!(code, 0, "{out}{err}");
    // After the backup the old cluster goes on granting: downstream stores
    // see these tokens, which the backup does not know.
    let mut seen_after = 0;
    for n in [0u32, 3, 6] {
        let key = format!("jobs/{n}");
        client
            .release(&held[&key].id.to_string(), None)
            .await
            .expect("released");
        for _ in 0..5 {
            let l = client
                .lease(&key, Duration::from_secs(120), AcquireOptions::default())
                .await
                .expect("granted");
            seen_after = seen_after.max(l.view.token);
            client
                .release(&l.view.id.to_string(), None)
                .await
                .expect("released");
        }
    }
    waiter.abort();
    // Every node is lost.
    for id in 1..=3 {
        old.kill(id);
    }
    let wiped = old.dir.path().to_path_buf();
    drop(old);
    assert!(!wiped.exists(), "the old nodes' data is gone");

    // A fresh cluster; the backup goes in through a follower's endpoint
    // list (the client finds the leader).
    let fresh = Cluster::new(3);
    let leader = settled_leader(&fresh, &[1, 2, 3]).await;
    let before = status(&fresh.addrs[&leader]).await.expect("status");
    let (code, out, err) = tenure(&fresh, &["cluster", "restore", "--in", &file_arg]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("restored backup"), "{out}");
    assert!(out.contains("waiters dropped: 1"), "{out}");
    let restored_at = Instant::now();
    let after = status(&fresh.addrs[&leader]).await.expect("status");
    assert_ne!(after.table_digest, before.table_digest);
    assert!(after.token_floor >= (1 << 20), "{after:?}");
    // The fresh cluster is now the backup's cluster.
    let backup_header: serde_json::Value = serde_json::from_str(
        std::fs::read_to_string(&file)
            .expect("the backup")
            .lines()
            .next()
            .expect("a header"),
    )
    .expect("JSON");
    assert!(!after.cluster_id.is_empty(), "{after:?}");
    assert_eq!(backup_header["cluster_id"], after.cluster_id.as_str());
    assert_ne!(after.cluster_id, before.cluster_id, "{before:?}");

    // The table matches: every holder with its id, owner, token, version.
    let client = alice(&fresh).await;
    let mut highest_before = 0;
    for (key, view) in &held {
        highest_before = highest_before.max(view.token);
        let got = client.get(key).await.expect("get");
        let holder = got
            .view
            .active
            .unwrap_or_else(|| panic!("{key} has its holder"));
        assert_eq!(holder.id, view.id, "{key}");
        assert_eq!(holder.owner, view.owner, "{key}");
        assert_eq!(holder.token, view.token, "{key}");
        assert_eq!(holder.version, view.version, "{key}");
        assert_eq!(got.view.waiters, 0, "{key}: waiters are dropped");
    }
    // A restored holder can renew its lease.
    let long = &held["jobs/2"];
    client
        .renew(&long.id.to_string(), None)
        .await
        .expect("a restored lease renews");
    // Restored leases expire on time: the 4-second ones, a full TTL after
    // the restore committed, not before and not never.
    let short: Vec<&String> = held
        .iter()
        .filter(|(_, v)| v.ttl_ms == 4_000)
        .map(|(k, _)| k)
        .collect();
    assert!(!short.is_empty());
    for key in &short {
        assert!(client.get(key).await.expect("get").view.active.is_some());
    }
    let deadline = restored_at + Duration::from_secs(15);
    for key in &short {
        loop {
            if client.get(key).await.expect("get").view.active.is_none() {
                break;
            }
            assert!(Instant::now() < deadline, "{key} never expired");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    assert!(
        restored_at.elapsed() >= Duration::from_millis(3_500),
        "expired before its TTL"
    );
    // Tokens never go back: a new grant on any key, old or new, is above
    // every token the old cluster handed out, before and after the backup.
    for key in [short[0].as_str(), "jobs/never-seen"] {
        let l = client
            .lease(key, Duration::from_secs(30), AcquireOptions::default())
            .await
            .expect("granted");
        assert!(
            l.view.token > highest_before.max(seen_after),
            "{key}: {l:?}"
        );
        assert!(l.view.token > after.token_floor, "{key}: {l:?}");
    }
    // A second restore is a no-op.
    let digest = status(&fresh.addrs[&leader]).await.expect("status");
    let (code, out, err) = tenure(&fresh, &["cluster", "restore", "--in", &file_arg]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("already restored at index"), "{out}");
    let again = status(&fresh.addrs[&leader]).await.expect("status");
    assert_eq!(again.audit_sequence, digest.audit_sequence);
    assert_eq!(again.locks, digest.locks);
    assert_eq!(again.active_leases, digest.active_leases);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tn_bak_005_bad_restores_are_refused_by_name_and_change_nothing() {
    use tenure_client::{AcquireOptions, RestoreOptions};
    let x = Cluster::new(3);
    let y = Cluster::new(3);
    let x_leader = settled_leader(&x, &[1, 2, 3]).await;
    let y_leader = settled_leader(&y, &[1, 2, 3]).await;
    // Each names itself once its first leader is in office.
    let deadline = Instant::now() + Duration::from_secs(10);
    for addr in [&x.addrs[&x_leader], &y.addrs[&y_leader]] {
        while status(addr).await.is_none_or(|s| s.cluster_id.is_empty()) {
            assert!(Instant::now() < deadline, "{addr} never named its cluster");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    for (c, prefix) in [(&x, "x"), (&y, "y")] {
        let client = alice(c).await;
        for n in 0..3 {
            client
                .lease(
                    &format!("{prefix}/{n}"),
                    Duration::from_secs(60),
                    AcquireOptions::default(),
                )
                .await
                .expect("granted");
        }
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("x.jsonl");
    let file_arg = file.display().to_string();
    let (code, out, err) = tenure(&x, &["cluster", "backup", "--out", &file_arg]);
    assert_eq!(code, 0, "{out}{err}");
    let text = std::fs::read_to_string(&file).expect("backup");
    let y_client = admin(&y).await;
    let digest = || async { status(&y.addrs[&y_leader]).await.expect("status") };
    let before = digest().await;
    // Refused before anything is proposed: not even the position moves.
    let unchanged = |s: v1::StatusResponse| {
        assert_eq!(s.table_digest, before.table_digest);
        assert_eq!(s.applied_index, before.applied_index);
        assert_eq!(s.token_floor, 0);
    };

    // Into a cluster that holds locks: refused, with and without --merge
    // (a merge takes only a backup of the same cluster).
    let (code, out, err) = tenure(&y, &["cluster", "restore", "--in", &file_arg]);
    assert_ne!(code, 0, "{out}");
    assert!(err.contains("already holds 3 locks"), "{err}");
    let (code, out, err) = tenure(&y, &["cluster", "restore", "--in", &file_arg, "--merge"]);
    assert_ne!(code, 0, "{out}");
    assert!(
        err.contains("is of cluster") && err.contains("this is cluster"),
        "{err}"
    );
    unchanged(digest().await);

    // Damaged files, refused by the CLI before any call and by the server
    // when a client skips that check, naming the line.
    let lines: Vec<&str> = text.lines().collect();
    let mut reordered = lines.clone();
    let last_lock = lines
        .iter()
        .rposition(|l| l.contains("\"type\":\"lock\""))
        .expect("a lock");
    reordered.swap(last_lock, last_lock + 1);
    let other_format = text.replacen("tenure-backup/1", "tenure-backup/9", 1);
    let cases = [
        (
            "truncated",
            lines[..lines.len() - 1].join("\n") + "\n",
            lines.len(),
        ),
        (
            "cut inside a line",
            text[..text.len() - 10].to_owned(),
            lines.len(),
        ),
        ("reordered", reordered.join("\n") + "\n", last_lock + 2),
        ("another format", other_format, 1),
    ];
    for (what, bytes, line) in cases {
        let path = dir.path().join(format!("{what}.jsonl"));
        std::fs::write(&path, &bytes).expect("written");
        let (code, out, err) = tenure(
            &y,
            &["cluster", "restore", "--in", &path.display().to_string()],
        );
        assert_ne!(code, 0, "{what}: {out}");
        assert!(err.contains(&format!("line {line}")), "{what}: {err}");
        let refused = y_client
            .restore(bytes.as_bytes(), RestoreOptions::default())
            .await
            .expect_err(what);
        let message = refused.to_string();
        assert!(
            message.contains("INVALID_REQUEST") || message.contains("invalid"),
            "{what}: {message}"
        );
        assert!(
            message.contains(&format!("line {line}")),
            "{what}: {message}"
        );
    }
    unchanged(digest().await);

    // Two restores of one backup at once into an empty cluster: it is
    // restored once; the other call is refused or finds it done.
    let z = Cluster::new(3);
    settled_leader(&z, &[1, 2, 3]).await;
    let (a, b) = (admin(&z).await, admin(&z).await);
    let (ta, tb) = (text.clone(), text.clone());
    let (ra, rb) = tokio::join!(
        async move { a.restore(ta.as_bytes(), RestoreOptions::default()).await },
        async move { b.restore(tb.as_bytes(), RestoreOptions::default()).await },
    );
    let done: Vec<_> = [&ra, &rb]
        .iter()
        .filter_map(|r| r.as_ref().ok())
        .filter(|d| !d.report.already)
        .collect();
    assert_eq!(done.len(), 1, "{ra:?} {rb:?}");
    for r in [&ra, &rb] {
        if let Err(e) = r {
            assert!(e.to_string().contains("restore"), "{e}");
        }
    }
    let z_client = admin(&z).await;
    let again = z_client
        .restore(text.as_bytes(), RestoreOptions::default())
        .await
        .expect("a repeat answers");
    assert!(again.report.already);
    assert_eq!(again.report.index, done[0].report.index);
}

/// Starts `tenure changes follow` against `c` with its state in `state`,
/// writing its lines to `out`.
fn follow(c: &Cluster, state: &Path, out: &Path, from: Option<u64>) -> Child {
    let endpoints = c.addrs.values().cloned().collect::<Vec<_>>().join(",");
    let mut args = vec![
        "changes".to_owned(),
        "--endpoints".to_owned(),
        endpoints,
        "follow".to_owned(),
        "--state-file".to_owned(),
        state.display().to_string(),
        "--batch".to_owned(),
        "7".to_owned(),
    ];
    if let Some(from) = from {
        args.extend(["--from".to_owned(), from.to_string()]);
    }
    Command::new(env!("CARGO_BIN_EXE_tenure"))
        .args(&args)
        .stdout(std::fs::File::create(out).expect("output file"))
        .stderr(Stdio::null())
        .spawn()
        .expect("tenure changes follow starts")
}

/// Waits until the state file says `seq`.
async fn cursor_at(state: &Path, seq: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = std::fs::read_to_string(state)
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok());
        if now == Some(seq) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the cursor stayed at {now:?}, not {seq}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Stops a follower with SIGTERM; it must exit 0.
fn stop(mut child: Child) {
    let pid = child.id().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status();
    assert!(killed.is_ok_and(|s| s.success()));
    let status = child.wait().expect("follow exits");
    assert!(status.success(), "follow exited with {status}");
}

/// Some lock traffic on `c`: each key taken and released.
async fn traffic(c: &Cluster, keys: std::ops::Range<u32>) {
    let client = alice(c).await;
    for n in keys {
        let l = client
            .lease(
                &format!("log/{n}"),
                Duration::from_secs(30),
                tenure_client::AcquireOptions::default(),
            )
            .await
            .expect("granted");
        client
            .release(&l.view.id.to_string(), None)
            .await
            .expect("released");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tn_bak_006_a_change_log_follow_survives_a_restart_of_every_node_without_gap_or_repeat() {
    // Small snapshots: after the restart, the old events come from each
    // node's kept history, not from a log replayed from the start.
    let args = ["--snapshot-every", "20", "--keep-after-snapshot", "5"];
    let mut c = Cluster::with_args(3, args.iter().map(|a| a.to_string()).collect());
    let leader = settled_leader(&c, &[1, 2, 3]).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let state = dir.path().join("cursor");
    let (out_a, out_b) = (dir.path().join("a.jsonl"), dir.path().join("b.jsonl"));

    traffic(&c, 0..10).await;
    let seq = status(&c.addrs[&leader])
        .await
        .expect("status")
        .audit_sequence;
    assert!(seq >= 20, "{seq}");
    // A consumer from the first event; it keeps running while every node
    // is killed and restarted.
    let first = follow(&c, &state, &out_a, Some(1));
    cursor_at(&state, seq).await;
    for id in 1..=3 {
        c.kill(id);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    for id in 1..=3 {
        c.start(id);
    }
    let leader = settled_leader(&c, &[1, 2, 3]).await;
    traffic(&c, 10..20).await;
    let seq = status(&c.addrs[&leader])
        .await
        .expect("status")
        .audit_sequence;
    cursor_at(&state, seq).await;
    stop(first);

    // While no consumer runs, more events, and every node restarts again.
    traffic(&c, 20..25).await;
    for id in 1..=3 {
        c.kill(id);
        c.start(id);
    }
    let leader = settled_leader(&c, &[1, 2, 3]).await;
    traffic(&c, 25..30).await;
    let seq = status(&c.addrs[&leader])
        .await
        .expect("status")
        .audit_sequence;
    // It resumes from its state file (no --from).
    let second = follow(&c, &state, &out_b, None);
    cursor_at(&state, seq).await;
    stop(second);

    let mut seqs = Vec::new();
    for out in [&out_a, &out_b] {
        for line in std::fs::read_to_string(out).expect("output").lines() {
            let v: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
            for field in [
                "seq", "at", "kind", "tenant", "key", "lease", "owner", "token", "actor", "reason",
            ] {
                assert!(v.get(field).is_some(), "{field} missing: {line}");
            }
            seqs.push(v["seq"].as_u64().expect("seq"));
        }
    }
    let expected: Vec<u64> = (1..=seq).collect();
    assert_eq!(seqs, expected, "every event once, in order");

    // An export of the whole range, and the checker passes it.
    let export = dir.path().join("export.jsonl");
    let (code, out, err) = tenure(
        &c,
        &[
            "changes",
            "export",
            "--from",
            "1",
            "--out",
            &export.display().to_string(),
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    let text = std::fs::read_to_string(&export).expect("export");
    assert_eq!(
        text.lines().count() as u64,
        seq + 1,
        "a header and every event"
    );
    let header: serde_json::Value =
        serde_json::from_str(text.lines().next().expect("header")).expect("JSON");
    assert_eq!(header["from_seq"], 1);
    assert_eq!(header["to_seq"], seq);
    let (code, out, _) = common::run(&["check", "audit", &export.display().to_string()]);
    assert_eq!(code, 0, "{out}");
    // A start older than what is kept is refused, not skipped.
    let c2 = Cluster::with_args(
        3,
        ["--audit-retention-events", "5"]
            .iter()
            .map(|a| a.to_string())
            .collect(),
    );
    settled_leader(&c2, &[1, 2, 3]).await;
    // Enough events for the pruning to run (it runs every 1,024).
    let client = alice(&c2).await;
    let keys: Vec<String> = (0..600).map(|n| format!("k/{n}")).collect();
    for chunk in keys.chunks(100) {
        let mut calls = Vec::new();
        for k in chunk {
            let client = client.clone();
            let k = k.clone();
            calls.push(tokio::spawn(async move {
                let l = client
                    .lease(
                        &k,
                        Duration::from_secs(30),
                        tenure_client::AcquireOptions::default(),
                    )
                    .await
                    .expect("granted");
                client
                    .release(&l.view.id.to_string(), None)
                    .await
                    .expect("released");
            }));
        }
        for call in calls {
            call.await.expect("joined");
        }
    }
    let (code, out, err) = tenure(&c2, &["changes", "export", "--from", "1", "--out", "-"]);
    assert_ne!(code, 0, "{out}");
    assert!(
        err.contains("no longer kept") && err.contains("history starts at sequence"),
        "{err}"
    );
}
