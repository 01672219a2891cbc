//! Replicated commit throughput of a 3-node cluster on loopback, fsync on
//! (sled, flushed before every append is acknowledged), at 1, 16 and 128
//! concurrent proposers; and, measured by the same tool in the same run, the
//! disk's own fsync rate. Commits per leader fsync show whether appends are
//! batched: one `client_write` per command (raw) against the node's
//! `Proposer` (many commands per entry), alternately. Writes
//! artifacts/bench/commit.md and commit.json.
//!
//! `cargo bench -p tenure-server --bench commit` (or `scripts/bench-commit`).
//! Under `cargo test` it runs a short smoke version and writes nothing.
#![allow(missing_docs, clippy::disallowed_methods)] // wall-clock timing is the point here

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tenure_core::{ClearLockDelay, Command};
use tenure_raft::{Disk, FileDisk, NodeId, Proposal, TcpConnector};
use tenure_server::{ClusterState, Node, NodeConfig};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;

/// A command that commits and changes nothing: clearing a lock-delay that
/// does not exist.
fn noop(n: u64) -> Proposal {
    Proposal::one(
        0,
        Command::ClearLockDelay(ClearLockDelay {
            tenant: "bench".into(),
            key: format!("noop-{}", n % 1024),
        }),
    )
}

struct Cluster<D: Disk> {
    nodes: BTreeMap<NodeId, Node>,
    disks: BTreeMap<NodeId, D>,
    _dir: tempfile::TempDir,
}

async fn cluster<D: Disk>(open: impl Fn(&std::path::Path) -> D) -> Cluster<D> {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut listeners = BTreeMap::new();
    let mut members = BTreeMap::new();
    for id in 1..=3u64 {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("port");
        members.insert(id, l.local_addr().expect("addr").to_string());
        listeners.insert(id, l);
    }
    let mut nodes = BTreeMap::new();
    let mut disks = BTreeMap::new();
    for (id, l) in listeners {
        let disk = open(&dir.path().join(format!("n{id}")));
        let config = NodeConfig {
            id,
            listen: members[&id].clone(),
            advertise: members[&id].clone(),
            data_dir: dir.path().join(format!("n{id}")),
            initial_cluster: members.clone(),
            initial_cluster_state: ClusterState::New,
            heartbeat_ms: 100,
            election_min_ms: 1_000,
            election_max_ms: 2_000,
            snapshot_every: 100_000,
            keep_after_snapshot: 1_000,
            auth_file: None,
            rate_limit: 0,
            cache_mb: 64,
            audit_retention: tenure_raft::AuditRetention::default(),
            tls: None,
            http_listen: None,
            table: tenure_core::TableConfig::default(),
        };
        let node = Node::start(
            config,
            disk.clone(),
            TcpConnector::default(),
            TcpListenerStream::new(l),
            std::future::pending::<()>(),
        )
        .await
        .expect("node");
        nodes.insert(id, node);
        disks.insert(id, disk);
    }
    Cluster {
        nodes,
        disks,
        _dir: dir,
    }
}

struct Run {
    proposers: usize,
    commits: u64,
    seconds: f64,
    fsyncs: u64,
    p50_us: u64,
    p99_us: u64,
}

/// How the load's commands reach raft.
#[derive(Clone, Copy, PartialEq)]
enum Path {
    /// One `client_write` per command: one entry each.
    Raw,
    /// Through the node's `Proposer`: concurrent commands share entries.
    Batched,
}

async fn load<D: Disk>(
    c: &Cluster<D>,
    leader: NodeId,
    proposers: usize,
    secs: f64,
    path: Path,
) -> Run {
    let raft = c.nodes[&leader].raft.clone();
    let batcher = tenure_raft::Proposer::new(raft.clone());
    let fsyncs_before = c.disks[&leader].flushes();
    let counter = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let until = start + Duration::from_secs_f64(secs);
    let mut tasks = Vec::new();
    for p in 0..proposers {
        let (raft, batcher) = (raft.clone(), batcher.clone());
        let counter = counter.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut n = p as u64 * 1_000_000;
            while Instant::now() < until {
                n += 1;
                let t = Instant::now();
                let committed = match path {
                    Path::Raw => raft.client_write(noop(n)).await.is_ok(),
                    Path::Batched => {
                        let command = noop(n).commands.remove(0);
                        batcher.propose(0, command).await.is_ok()
                    }
                };
                if committed {
                    lat.push(t.elapsed().as_micros() as u64);
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            }
            lat
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.expect("proposer"));
    }
    let seconds = start.elapsed().as_secs_f64();
    lat.sort_unstable();
    let pct = |q: f64| {
        lat.get(((lat.len() as f64 * q) as usize).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    Run {
        proposers,
        commits: counter.load(Ordering::Relaxed),
        seconds,
        fsyncs: c.disks[&leader].flushes() - fsyncs_before,
        p50_us: pct(0.5),
        p99_us: pct(0.99),
    }
}

/// The disk alone: write a small record and flush, as fast as it goes.
async fn fsync_rate(secs: f64) -> f64 {
    let dir = tempfile::tempdir().expect("temp dir");
    let disk = FileDisk::open(dir.path()).expect("sled");
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed().as_secs_f64() < secs {
        n += 1;
        disk.put(
            tenure_raft::Space::Log,
            vec![(n.to_be_bytes().to_vec(), vec![0; 64])],
        )
        .expect("put");
        disk.flush().await.expect("flush");
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let secs = if full { 4.0 } else { 0.2 };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let c = cluster(|p| FileDisk::open(p).expect("sled")).await;
        let leader = c.nodes[&1].wait_for_leader(Duration::from_secs(10)).await.expect("a leader");
        let disk_rate = fsync_rate(secs).await;
        let mut runs = Vec::new();
        let mut batched = Vec::new();
        for p in [1, 16, 128] {
            // Raw and batched alternate, so machine noise hits both.
            runs.push(load(&c, leader, p, secs, Path::Raw).await);
            batched.push(load(&c, leader, p, secs, Path::Batched).await);
        }
        let disk_rate_after = fsync_rate(secs).await;
        // The same cluster on the in-memory disk: what raft and the network
        // cost without fsync.
        let mem = cluster(|_| tenure_raft::SimDisk::new()).await;
        let mem_leader = mem.nodes[&1].wait_for_leader(Duration::from_secs(10)).await.expect("a leader");
        let mut mem_runs = Vec::new();
        for p in [1, 16, 128] {
            mem_runs.push(load(&mem, mem_leader, p, secs, Path::Raw).await);
        }
        if !full {
            println!("smoke run: {} commits at 128 proposers, disk {disk_rate:.0} fsync/s", runs[2].commits);
            return;
        }
        let date = std::env::var("BENCH_DATE").unwrap_or_else(|_| "unknown date".into());
        let mut md = String::new();
        let _ = writeln!(md, "# Replicated commit throughput ({date})\n");
        let _ = writeln!(md, "3 nodes in one process on loopback TCP, sled with a flush before every acknowledged append, no-op commands through `Raft::client_write` on the leader, {secs} s per row (`cargo bench -p tenure-server --bench commit`). The disk's own fsync rate, measured by the same tool before and after: {disk_rate:.0} and {disk_rate_after:.0} fsync/s.\n");
        let _ = writeln!(md, "| proposers | commits/s | p50 | p99 | leader fsyncs/s | commits per fsync | commits/s ÷ disk fsync/s |");
        let _ = writeln!(md, "| --- | --- | --- | --- | --- | --- | --- |");
        let mut json = Vec::new();
        let disk = (disk_rate + disk_rate_after) / 2.0;
        for r in &runs {
            let cps = r.commits as f64 / r.seconds;
            let per_fsync = r.commits as f64 / r.fsyncs.max(1) as f64;
            let _ = writeln!(
                md,
                "| {} | {cps:.0} | {:.2} ms | {:.2} ms | {:.0} | {per_fsync:.2} | {:.2} |",
                r.proposers, r.p50_us as f64 / 1000.0, r.p99_us as f64 / 1000.0, r.fsyncs as f64 / r.seconds, cps / disk
            );
            json.push(serde_json::json!({"proposers": r.proposers, "commits_per_sec": cps, "p50_us": r.p50_us, "p99_us": r.p99_us,
                "leader_fsyncs_per_sec": r.fsyncs as f64 / r.seconds, "commits_per_fsync": per_fsync}));
        }
        let _ = writeln!(md, "\nThe same commands through the node's `Proposer`, which puts the commands of concurrent callers into one entry (up to 512, two entries in flight), measured alternately with the rows above:\n");
        let _ = writeln!(md, "| proposers | commands/s | p50 | p99 | leader fsyncs/s | commands per fsync | ÷ raw commits/s |");
        let _ = writeln!(md, "| --- | --- | --- | --- | --- | --- | --- |");
        let mut batched_json = Vec::new();
        for (r, raw) in batched.iter().zip(&runs) {
            let cps = r.commits as f64 / r.seconds;
            let per_fsync = r.commits as f64 / r.fsyncs.max(1) as f64;
            let raw_cps = raw.commits as f64 / raw.seconds;
            let _ = writeln!(
                md,
                "| {} | {cps:.0} | {:.2} ms | {:.2} ms | {:.0} | {per_fsync:.2} | {:.2} |",
                r.proposers, r.p50_us as f64 / 1000.0, r.p99_us as f64 / 1000.0, r.fsyncs as f64 / r.seconds, cps / raw_cps.max(1.0)
            );
            batched_json.push(serde_json::json!({"proposers": r.proposers, "commands_per_sec": cps, "p50_us": r.p50_us, "p99_us": r.p99_us,
                "leader_fsyncs_per_sec": r.fsyncs as f64 / r.seconds, "commands_per_fsync": per_fsync}));
        }
        let _ = writeln!(md, "\nWithout fsync (the simulations' in-memory disk), same cluster shape:\n");
        let _ = writeln!(md, "| proposers | commits/s | p50 | p99 | flushes per commit |\n| --- | --- | --- | --- | --- |");
        let mut mem_json = Vec::new();
        for r in &mem_runs {
            let cps = r.commits as f64 / r.seconds;
            let _ = writeln!(
                md,
                "| {} | {cps:.0} | {:.2} ms | {:.2} ms | {:.2} |",
                r.proposers, r.p50_us as f64 / 1000.0, r.p99_us as f64 / 1000.0, r.fsyncs as f64 / r.commits.max(1) as f64
            );
            mem_json.push(serde_json::json!({"proposers": r.proposers, "commits_per_sec": cps, "p50_us": r.p50_us, "p99_us": r.p99_us}));
        }
        print!("{md}");
        let out = serde_json::json!({"date": date, "disk_fsync_per_sec": [disk_rate, disk_rate_after], "runs": json, "batched_runs": batched_json, "in_memory_runs": mem_json});
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../artifacts/bench");
        let written = std::fs::create_dir_all(dir)
            .and_then(|()| std::fs::write(format!("{dir}/commit.md"), &md))
            .and_then(|()| std::fs::write(format!("{dir}/commit.json"), format!("{out:#}\n")));
        if let Err(e) = written {
            eprintln!("could not write {dir}: {e}");
            std::process::exit(1);
        }
        for (_, n) in c.nodes.into_iter().chain(mem.nodes) {
            n.kill().await;
        }
    });
}
